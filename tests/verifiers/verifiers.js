// The receiver side of every hookring profile, written with each provider's PUBLISHED verifier:
// the npm library receivers install (standard, svix, stripe, github) or the verification snippet
// of the provider document in spec/providers/ (humanconnection, humiris, humanos, aksita; humcli's
// is Python: verify_humcli.py). verify.js (one request file) and server.js (HTTP) both call
// verifyRequest(), so the command-line check and the live receiver accept exactly the same
// requests.
//
// Rules kept throughout:
//   - a snippet is reproduced as its document gives it (types dropped, nothing "fixed"); the
//     glue around it only supplies what the document's framework would (express.json(),
//     express.raw(), Flask's get_json(), node's lower-cased req.headers);
//   - where the glue is stricter than the snippet it says so (aksita, github), and it never makes
//     the snippet accept something it would refuse;
//   - a refusal carries the library's / snippet's own reason.

import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

// The libraries are imported when a profile first needs one (importing svix and stripe costs a
// quarter of a second each, and verify.js runs once per check); loadLibraries() imports them all.
const LIBRARIES = {
  standard: 'standardwebhooks',
  svix: 'svix',
  stripe: 'stripe',
  github: '@octokit/webhooks-methods',
};
const loaded = {};
async function lib(profile) {
  if (!loaded[profile]) loaded[profile] = await import(LIBRARIES[profile]);
  return loaded[profile];
}
export async function loadLibraries() {
  for (const p of Object.keys(LIBRARIES)) await lib(p);
}

export const PROFILES = [
  'humanconnection', 'humiris', 'humcli', 'humanos', 'aksita',
  'standard', 'svix', 'stripe', 'github',
];

const HERE = path.dirname(fileURLToPath(import.meta.url));

// ------------------------------------------------------------------------------------------------
// Request files: what `hookring sign` prints. 'Name: value' lines ending in \r\n or \n, one empty
// line, then the body bytes verbatim (nothing stripped, no newline added).

// Headers node's HTTP parser keeps only once (the first wins); every other repeated header is
// joined with ", ". Mirrored so that verify.js sees what an http.Server handler would.
const SINGLE_VALUE = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host',
  'if-modified-since', 'if-unmodified-since', 'last-modified', 'location',
  'max-forwards', 'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent',
]);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export function addHeader(headers, name, value) {
  const key = name.toLowerCase();
  if (!(key in headers)) headers[key] = value;
  else if (!SINGLE_VALUE.has(key)) headers[key] += ', ' + value;
}

// Returns {headers (lower-cased names, as node's req.headers), rawHeaders ([name, value, ...] as
// written), body (Buffer)}; throws Error with the reason when the file is not a request.
export function parseRequest(buf) {
  const headers = {};
  const rawHeaders = [];
  let pos = 0;
  for (;;) {
    const nl = buf.indexOf(0x0a, pos);
    if (nl < 0) throw new Error('request file: no empty line between the headers and the body');
    let end = nl;
    if (end > pos && buf[end - 1] === 0x0d) end--;
    const line = buf.subarray(pos, end).toString('latin1');
    pos = nl + 1;
    if (line === '') break;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`request file: header line without "Name:": ${JSON.stringify(line)}`);
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new Error(`request file: bad header name ${JSON.stringify(name)}`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    rawHeaders.push(name, value);
    addHeader(headers, name, value);
  }
  const body = buf.subarray(pos);
  return { headers, rawHeaders, body };
}

// HTTP framing a real server would enforce before any verifier runs.
function checkFraming(headers, body) {
  const cl = headers['content-length'];
  if (cl === undefined) return null;
  if (!/^[0-9]+$/.test(cl)) return `Content-Length ${JSON.stringify(cl)} is not a number`;
  if (Number(cl) !== body.length) return `Content-Length ${cl} but the body has ${body.length} bytes`;
  return null;
}

// What express.json() / express.raw({type: 'application/json'}) / Flask's get_json() need before
// they hand the handler a body: a JSON media type (type-is semantics: application/json or
// application/*+json, parameters ignored).
function isJsonContentType(headers) {
  const ct = headers['content-type'];
  if (!ct) return false;
  const mt = ct.split(';')[0].trim().toLowerCase();
  return mt === 'application/json' || /^application\/[^/]*\+json$/.test(mt);
}

function tryParse(text) {
  try { return JSON.parse(text); } catch { return undefined; }
}

function describe(e) {
  const name = e && (e.type || e.name || (e.constructor && e.constructor.name)) || 'Error';
  const msg = e && e.message !== undefined ? e.message : String(e);
  return `${name}: ${msg}`;
}

// ================================================================================================
// 1. humanconnection: 000_9e8faea4628eae67.txt, "Verifying signatures" (TypeScript types dropped)

function humanconnectionVerifyWebhook(payload, signature, secret) {
  const expected = crypto
    .createHmac('sha256', secret)
    .update(payload)
    .digest('hex');
  return crypto.timingSafeEqual(
    Buffer.from(`sha256=${expected}`),
    Buffer.from(signature)
  );
}

// ================================================================================================
// 2. humiris: 001_3fafbeaef7d4375a.txt, "Verification and signing" (TypeScript types dropped).
// The document's snippet checks no timestamp tolerance, so none is checked here.

function humirisVerifyWebhook(
  payload,
  signature,
  secret
) {
  const [tPart, vPart] = signature.split(',');
  const timestamp = tPart.replace('t=', '');
  const expectedSig = vPart.replace('v1=', '');

  const computed = crypto
    .createHmac('sha256', secret)
    .update(timestamp + '.' + payload)
    .digest('hex');

  return crypto.timingSafeEqual(
    Buffer.from(computed),
    Buffer.from(expectedSig)
  );
}

// ================================================================================================
// 4. humanos: 003_16d9acd9ea58d15e.txt. generateSignature() verbatim; humanosHandler() is the
// body of the document's app.post("/webhook") handler with SIGNATURE_SECRET, ENCRYPTION_SECRET
// and ENCRYPTION_SALT as parameters.
//
// RAW BODY: the document mounts express.json() and passes the PARSED req.body to
// generateSignature(), whose template literal would then sign "<timestamp>.[object Object]" -- a
// receiver copying it literally can verify nothing. A working receiver needs the raw body text
// (express.raw / express.json({verify}) keeping the raw string), which is what Humanos signs
// ("<x-timestamp>.<the encrypted JSON text as sent>"). So `data` below is the raw body string, and
// `{ iv, data, tag }` are read from JSON.parse(raw body), i.e. what express.json() would have put
// in req.body.

function generateSignature(data, secret, timestamp) {
  const hmac = crypto.createHmac("sha256", secret);
  hmac.update(data ? `${timestamp}.${data}` : timestamp.toString());
  return hmac.digest("hex");
}

function humanosHandler(req, SIGNATURE_SECRET, ENCRYPTION_SECRET, ENCRYPTION_SALT) {
  try {
    const signature = req.headers["x-signature"];
    const timestamp = req.headers["x-timestamp"];
    // 1. Verify signature
    const expected = generateSignature(req.rawBody, SIGNATURE_SECRET, timestamp);
    if (signature !== expected)
      return { status: 401, reason: "Invalid signature" };
    // 2. Decrypt payload
    const { iv, data, tag } = req.body;
    const key = crypto.pbkdf2Sync(
      Buffer.from(ENCRYPTION_SECRET, "base64"),
      ENCRYPTION_SALT,
      10000,
      32,
      "sha256",
    );
    const decipher = crypto.createDecipheriv(
      "aes-256-gcm",
      key,
      Buffer.from(iv, "base64"),
    );
    decipher.setAuthTag(Buffer.from(tag, "base64"));
    const decrypted = Buffer.concat([
      decipher.update(Buffer.from(data, "base64")),
      decipher.final(),
    ]).toString("utf8");
    const webhook = JSON.parse(decrypted);
    return { status: 200, webhook };
  } catch (err) {
    return { status: 500, reason: describe(err) };
  }
}

// ================================================================================================
// 5. aksita: 004_e32a31b99092e436.txt, "Implementation Examples" handler body (express.raw()),
// webhookSecret passed in instead of process.env.WEBHOOK_SECRET.

function aksitaHandler(req, webhookSecret) {
  const signature = req.headers['x-webhook-signature'];

  // Verify signature if provided
  if (signature && webhookSecret) {
    const hmac = crypto.createHmac('sha256', webhookSecret);
    hmac.update(req.body); // Raw body as buffer
    const calculatedSignature = hmac.digest('hex');

    if (calculatedSignature !== signature) {
      return { status: 400, reason: 'Invalid signature' };
    }
  }

  // Parse and process webhook
  const payload = JSON.parse(req.body);
  // (the document logs payload.response[0], payload.conversation_id, payload.source)
  void payload.response[0];
  void payload.conversation_id;
  void payload.source;

  return { status: 200, payload };
}

// ================================================================================================
// 3. humcli: the document's verifier is Python (hmac.new(...).hexdigest() + compare_digest) and
// its Flask handler; verify_humcli.py reproduces both. Body on stdin, exit 0 = accepted.

function runHumcliPython(body, signature, secret, contentType) {
  return new Promise((resolve) => {
    // --opt=value so that a value starting with "-" is never taken for an option
    const args = [path.join(HERE, 'verify_humcli.py'), `--secret=${secret}`,
      `--signature=${signature}`, `--content-type=${contentType}`];
    let child;
    try {
      child = spawn(process.env.PYTHON || 'python3', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      resolve({ ok: false, reason: `cannot run python3 for humcli's verifier: ${describe(e)}` });
      return;
    }
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', (e) => resolve({ ok: false, reason: `cannot run python3 for humcli's verifier: ${describe(e)}` }));
    child.on('close', (code) => {
      const text = (out + err).trim();
      if (code === 0 && out.trim() === 'OK') resolve({ ok: true, payload: tryParse(body.toString('utf8')) });
      else resolve({ ok: false, reason: text || `verify_humcli.py exited with ${code}` });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(body);
  });
}

// ================================================================================================
// The libraries. stripe.webhooks.constructEvent needs a Stripe instance; no API call is made, so
// the key is a placeholder.

let stripeClient = null;
async function stripe() {
  if (!stripeClient) {
    const Stripe = (await lib('stripe')).default;
    stripeClient = new Stripe('sk_test_hookring_conformance_no_network');
  }
  return stripeClient;
}

// ------------------------------------------------------------------------------------------------
// verifyRequest(profile, headers, body, opts) -> {ok: true, payload} | {ok: false, reason}
//   headers: lower-cased names (node's req.headers); body: Buffer, byte-exact
//   opts: {secret, encSecret, encSalt}

export async function verifyRequest(profile, headers, body, opts) {
  const secret = opts.secret;
  const framing = checkFraming(headers, body);
  if (framing) return { ok: false, reason: framing };
  const text = body.toString('utf8'); // the raw body as a string, as the snippets take it

  try {
    switch (profile) {
      case 'humanconnection': {
        const signature = headers['x-humanconnection-signature'];
        if (signature === undefined) return { ok: false, reason: 'no X-HumanConnection-Signature header' };
        if (!humanconnectionVerifyWebhook(text, signature, secret))
          return { ok: false, reason: 'verifyWebhook() returned false' };
        return { ok: true, payload: tryParse(text) };
      }

      case 'humiris': {
        const signature = headers['x-humiris-signature'];
        if (signature === undefined) return { ok: false, reason: 'no X-Humiris-Signature header' };
        if (!humirisVerifyWebhook(text, signature, secret))
          return { ok: false, reason: 'verifyWebhook() returned false' };
        return { ok: true, payload: tryParse(text) };
      }

      case 'humcli':
        return await runHumcliPython(body, headers['x-signature'] ?? '', secret,
          headers['content-type'] ?? '');

      case 'humanos': {
        // express.json(): only a JSON media type is parsed; a body it cannot parse is a 400.
        if (!isJsonContentType(headers))
          return { ok: false, reason: `Content-Type ${JSON.stringify(headers['content-type'] ?? '')}: express.json() would not parse the body` };
        let parsed;
        try { parsed = JSON.parse(text); } catch (e) {
          return { ok: false, reason: `express.json() refuses the body: ${describe(e)}` };
        }
        const r = humanosHandler({ headers, rawBody: text, body: parsed },
          secret, opts.encSecret ?? '', opts.encSalt ?? '');
        if (r.status !== 200) return { ok: false, reason: `${r.status} ${r.reason}` };
        return { ok: true, payload: r.webhook };
      }

      case 'aksita': {
        // express.raw({type: 'application/json'}) hands over the body only for that type.
        if (!isJsonContentType(headers))
          return { ok: false, reason: `Content-Type ${JSON.stringify(headers['content-type'] ?? '')}: express.raw({type:'application/json'}) would not read the body` };
        // Stricter than the snippet, which skips verification when the header is absent: with a
        // secret configured the profile always sends X-Webhook-Signature, so its absence is a
        // failure here (the snippet would accept; this never accepts more than it does).
        if (secret && headers['x-webhook-signature'] === undefined)
          return { ok: false, reason: 'no X-Webhook-Signature header although a secret is configured (the document\'s snippet would skip verification)' };
        const r = aksitaHandler({ headers, body }, secret);
        if (r.status !== 200) return { ok: false, reason: `${r.status} ${r.reason}` };
        return { ok: true, payload: r.payload };
      }

      case 'standard': {
        // standardwebhooks: new Webhook(secret).verify(payload, headers) -- throws on refusal,
        // returns the parsed JSON on success.
        const { Webhook } = await lib('standard');
        const payload = new Webhook(secret).verify(text, headers);
        return { ok: true, payload };
      }

      case 'svix': {
        // svix: new Webhook(secret).verify(payload, headers) -- same contract.
        const { Webhook } = await lib('svix');
        const payload = new Webhook(secret).verify(text, headers);
        return { ok: true, payload };
      }

      case 'stripe': {
        // stripe.webhooks.constructEvent(rawBody, sigHeader, endpointSecret), raw body as the
        // Buffer express.raw() gives.
        const event = (await stripe()).webhooks.constructEvent(body, headers['stripe-signature'], secret);
        return { ok: true, payload: event };
      }

      case 'github': {
        // As @octokit/webhooks' middleware, refuse a request missing any of its required headers
        // before verifying (webhooks-methods' verify() itself only sees the signature).
        const missing = ['x-github-event', 'x-hub-signature-256', 'x-github-delivery']
          .filter((h) => headers[h] === undefined);
        if (missing.length) return { ok: false, reason: `Required headers missing: ${missing.join(', ')}` };
        const { verify } = await lib('github');
        const good = await verify(secret, text, headers['x-hub-signature-256']);
        if (!good) return { ok: false, reason: 'verify() returned false (signature does not match)' };
        return { ok: true, payload: tryParse(text) };
      }

      default:
        return { ok: false, reason: `unknown profile ${JSON.stringify(profile)}` };
    }
  } catch (e) {
    return { ok: false, reason: describe(e) };
  }
}
