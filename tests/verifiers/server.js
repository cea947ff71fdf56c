#!/usr/bin/env node
// server.js: a receiver for one profile, verifying every POST with the profile's published
// verifier (the same verifyRequest() as verify.js).
//
//   node server.js --profile P --port N --secret S [--enc-secret B64 --enc-salt SALT]
//                  [--tls-cert PEM --tls-key PEM]
//
// Listens on 127.0.0.1:N (N = 0: any free port, reported on stderr), plain HTTP unless
// --tls-cert and --tls-key are given: then HTTPS (node:https) with that certificate (chain) and
// key, the same handler behind it. Any path:
//   POST          200 {"received":true} when the verifier accepts, 401 {"error":REASON} otherwise
//   GET /_count   200 {"accepted":N,"rejected":M}
// Prints "listening" on stdout once ready; one line per verdict on stderr (and, over HTTPS, one
// per handshake a client broke off). Stops on SIGTERM or SIGINT.

import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { PROFILES, verifyRequest } from './verifiers.js';

const USAGE = 'usage: node server.js --profile P --port N --secret S [--enc-secret B64 --enc-salt SALT]\n' +
  '                      [--tls-cert PEM --tls-key PEM]';
function usage(msg) {
  process.stderr.write(`server.js: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

const opts = {};
let profile;
let port;
let tlsCert;
let tlsKey;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '-h' || a === '--help') { process.stdout.write(USAGE + '\n'); process.exit(0); }
  if (i + 1 >= argv.length) usage(`${a} needs a value`);
  const v = argv[++i];
  switch (a) {
    case '--profile': profile = v; break;
    case '--port': port = v; break;
    case '--secret': opts.secret = v; break;
    case '--enc-secret': opts.encSecret = v; break;
    case '--enc-salt': opts.encSalt = v; break;
    case '--tls-cert': tlsCert = v; break;
    case '--tls-key': tlsKey = v; break;
    default: usage(`unknown argument ${a}`);
  }
}
if (!PROFILES.includes(profile)) usage(`--profile must be one of ${PROFILES.join(' ')}`);
if (port === undefined || !/^[0-9]+$/.test(port) || Number(port) > 65535) usage('--port N is required (0-65535)');
if (opts.secret === undefined && profile !== 'aksita') usage(`--secret is required for ${profile}`);
if (profile === 'humanos' && (opts.encSecret === undefined || opts.encSalt === undefined))
  usage('humanos needs --enc-secret and --enc-salt');
if ((tlsCert === undefined) !== (tlsKey === undefined)) usage('--tls-cert and --tls-key go together');
let tls = null;
if (tlsCert !== undefined) {
  try {
    tls = { cert: fs.readFileSync(tlsCert), key: fs.readFileSync(tlsKey) };
  } catch (e) {
    usage(`cannot read the TLS certificate or key: ${e.message}`);
  }
}

const MAX_BODY = 16 << 20;
let accepted = 0;
let rejected = 0;

function reply(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function handler(req, res) {
  if (req.method === 'GET' && req.url.split('?')[0] === '/_count') {
    reply(res, 200, { accepted, rejected });
    return;
  }
  if (req.method !== 'POST') {
    res.setHeader('Allow', 'POST');
    reply(res, 405, { error: 'POST only (GET /_count for the counters)' });
    return;
  }
  const chunks = [];
  let size = 0;
  let tooBig = false;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) tooBig = true;
    else chunks.push(c);
  });
  req.on('end', async () => {
    let r;
    if (tooBig) r = { ok: false, reason: `body larger than ${MAX_BODY} bytes` };
    else {
      try {
        r = await verifyRequest(profile, req.headers, Buffer.concat(chunks), opts);
      } catch (e) {
        r = { ok: false, reason: `verifier crashed: ${e && e.stack || e}` };
      }
    }
    if (r.ok) {
      accepted++;
      process.stderr.write(`server.js: ${profile}: accepted POST ${req.url}\n`);
      reply(res, 200, { received: true });
    } else {
      rejected++;
      process.stderr.write(`server.js: ${profile}: rejected POST ${req.url}: ${r.reason}\n`);
      reply(res, 401, { error: r.reason });
    }
  });
  req.on('error', () => {});
}

let server;
try {
  server = tls ? https.createServer(tls, handler) : http.createServer(handler);
} catch (e) { // a certificate/key node cannot load, or a key that does not match the certificate
  process.stderr.write(`server.js: TLS: ${e.message}\n`);
  process.exit(1);
}
// A client that refuses the certificate breaks the handshake off: no request, nothing counted.
server.on('tlsClientError', (e) => {
  process.stderr.write(`server.js: ${profile}: TLS handshake not completed: ${e.code || e.message}\n`);
});

server.on('error', (e) => {
  process.stderr.write(`server.js: ${e.message}\n`);
  process.exit(1);
});

server.listen(Number(port), '127.0.0.1', () => {
  process.stderr.write(`server.js: ${profile} receiver on ${tls ? 'https' : 'http'}://127.0.0.1:${server.address().port}/\n`);
  process.stdout.write('listening\n');
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
