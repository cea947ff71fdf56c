#!/usr/bin/env node
// verify.js: check one request the way the profile's published verifier does.
//
//   node verify.js PROFILE REQUEST_FILE --secret S [--enc-secret B64 --enc-salt SALT]
//                  [--now UNIX_SECONDS] [--print-payload]
//
// REQUEST_FILE ('-' = standard input) is exactly what `hookring sign` prints: 'Name: value'
// header lines (\n or \r\n), one empty line, the body bytes. Exit 0 and print OK when accepted;
// exit 1 and print the verifier's reason when refused; exit 2 on bad usage.
//   --now T          make the receiver's clock read T (unix seconds): for known answers whose
//                    timestamp is long past; the libraries read Date.now(), nothing else changes
//   --print-payload  after OK, print what the verifier handed the application, as one JSON line
//                    (the parsed event; humanos: the decrypted plaintext)
// The secret is optional for aksita only (an endpoint without a secret gets no signature).

import fs from 'node:fs';
import { PROFILES, parseRequest, verifyRequest } from './verifiers.js';

const USAGE = 'usage: node verify.js PROFILE REQUEST_FILE --secret S [--enc-secret B64 --enc-salt SALT] [--now UNIX] [--print-payload]';

function usage(msg) {
  process.stderr.write(`verify.js: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

const positional = [];
const opts = {};
let printPayload = false;
let now = null;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const value = () => {
    if (i + 1 >= argv.length) usage(`${a} needs a value`);
    return argv[++i];
  };
  switch (a) {
    case '--secret': if (opts.secret !== undefined) usage('--secret given twice (a receiver verifies with one secret; run once per secret)'); opts.secret = value(); break;
    case '--enc-secret': opts.encSecret = value(); break;
    case '--enc-salt': opts.encSalt = value(); break;
    case '--now': now = value(); if (!/^[0-9]+$/.test(now)) usage('--now takes unix seconds'); break;
    case '--print-payload': printPayload = true; break;
    case '-h': case '--help': process.stdout.write(USAGE + '\n'); process.exit(0); break;
    default:
      if (a.startsWith('--')) usage(`unknown option ${a}`);
      positional.push(a);
  }
}
if (positional.length !== 2) usage('PROFILE and REQUEST_FILE are required');
const [profile, file] = positional;
if (!PROFILES.includes(profile)) usage(`unknown profile ${JSON.stringify(profile)} (${PROFILES.join(' ')})`);
if (opts.secret === undefined && profile !== 'aksita') usage(`--secret is required for ${profile}`);
if (profile === 'humanos' && (opts.encSecret === undefined || opts.encSalt === undefined))
  usage('humanos needs --enc-secret and --enc-salt');

let raw;
try {
  raw = fs.readFileSync(file === '-' ? 0 : file);
} catch (e) {
  usage(`cannot read ${file}: ${e.message}`);
}

let req;
try {
  req = parseRequest(raw);
} catch (e) {
  process.stdout.write(`${e.message}\n`);
  process.exit(1);
}

if (now !== null) {
  const fixed = Number(now) * 1000;
  Date.now = () => fixed;
}

const r = await verifyRequest(profile, req.headers, req.body, opts);
if (r.ok) {
  process.stdout.write('OK\n');
  if (printPayload) process.stdout.write(JSON.stringify(r.payload ?? null) + '\n');
  process.exit(0);
}
process.stdout.write(`${r.reason}\n`);
process.exit(1);
