#!/usr/bin/env node
// reqtool.js: helpers for run.sh, working on request files as `hookring sign` prints them.
//
//   node reqtool.js tamper IN OUT   copy IN to OUT with ONE body byte changed: an ASCII letter or
//                                   digit inside a JSON string value (the longest one; for
//                                   humanos that is the ciphertext), never inside an escape, so
//                                   the body stays valid UTF-8 and valid JSON of the same length.
//                                   Headers are copied byte for byte. Prints what changed.
//   node reqtool.js post IN URL     POST IN's headers and body to URL (Content-Length and
//                                   Connection are left to node); prints the status and body.

import fs from 'node:fs';
import http from 'node:http';
import { parseRequest } from './verifiers.js';

function die(msg) {
  process.stderr.write(`reqtool.js: ${msg}\n`);
  process.exit(2);
}

// Offset of the body in the file: after the first empty line.
function bodyOffset(buf) {
  let pos = 0;
  for (;;) {
    const nl = buf.indexOf(0x0a, pos);
    if (nl < 0) die('no empty line between the headers and the body');
    const empty = nl === pos || (nl === pos + 1 && buf[pos] === 0x0d);
    pos = nl + 1;
    if (empty) return pos;
  }
}

const isAlnum = (c) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
function flip(c) {
  if (c === 0x39) return 0x30; // 9 -> 0
  if (c === 0x5a) return 0x41; // Z -> A
  if (c === 0x7a) return 0x61; // z -> a
  return c + 1;
}

// Candidate byte offsets (ASCII alnum, outside escapes) of each JSON string that is a value
// (after ':' or inside an array), in body coordinates.
function stringValues(body) {
  const values = [];
  const stack = [];
  let prev = 0; // previous significant byte outside strings
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === 0x22) { // '"'
      const isValue = prev === 0x3a || (stack[stack.length - 1] === 0x5b && (prev === 0x5b || prev === 0x2c));
      const alnum = [];
      let j = i + 1;
      for (; j < body.length && body[j] !== 0x22; j++) {
        if (body[j] === 0x5c) { j += body[j + 1] === 0x75 ? 5 : 1; continue; } // \uXXXX, \x
        if (isAlnum(body[j])) alnum.push(j);
      }
      if (isValue && alnum.length) values.push(alnum);
      i = j;
      prev = 0x22;
      continue;
    }
    if (c === 0x7b || c === 0x5b) stack.push(c);
    else if (c === 0x7d || c === 0x5d) stack.pop();
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) prev = c;
  }
  return values;
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'tamper') {
  if (args.length !== 2) die('usage: reqtool.js tamper IN OUT');
  const buf = Buffer.from(fs.readFileSync(args[0]));
  const off = bodyOffset(buf);
  const body = buf.subarray(off);
  const values = stringValues(body);
  if (!values.length) die('the body has no JSON string value with a letter or digit to change');
  const longest = values.reduce((a, b) => (b.length > a.length ? b : a));
  const at = longest[Math.floor(longest.length / 2)];
  const before = body[at];
  const original = Buffer.from(body);
  body[at] = flip(before);
  // the result must still be valid UTF-8 JSON differing from the original in exactly one byte
  try { JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body)); } catch (e) {
    die(`tampered body is not valid UTF-8 JSON (${e.message})`);
  }
  let diff = 0;
  for (let i = 0; i < body.length; i++) if (body[i] !== original[i]) diff++;
  if (diff !== 1) die(`tampering changed ${diff} bytes`);
  fs.writeFileSync(args[1], buf);
  process.stdout.write(`body byte ${at}: '${String.fromCharCode(before)}' -> '${String.fromCharCode(body[at])}'\n`);
} else if (cmd === 'post') {
  if (args.length !== 2) die('usage: reqtool.js post IN URL');
  const req = parseRequest(fs.readFileSync(args[0]));
  // node adds no Host header when the headers are given as an array; its server requires one
  const headers = ['Host', new URL(args[1]).host];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i];
    if (/^(content-length|connection|host|transfer-encoding)$/i.test(name)) continue;
    headers.push(name, req.rawHeaders[i + 1]);
  }
  headers.push('Content-Length', String(req.body.length));
  const r = http.request(args[1], { method: 'POST', headers }, (res) => {
    let out = '';
    res.setEncoding('utf8');
    res.on('data', (d) => { out += d; });
    res.on('end', () => { process.stdout.write(`${res.statusCode} ${out}\n`); });
  });
  r.on('error', (e) => die(`POST ${args[1]}: ${e.message}`));
  r.end(req.body);
} else {
  die('usage: reqtool.js tamper IN OUT | post IN URL');
}
