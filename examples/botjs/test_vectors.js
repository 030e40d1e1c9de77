#!/usr/bin/env node
'use strict';
// Checks miap.js against miap/testdata/vectors.json (PROTOCOL.md §11):
// subkeys, MAC inputs, compact forms, MACs, inner digest IDs, the refusal of
// every negative vector with its expected error, and the round trip of
// every frame through NATS headers (§4.2) and the compact form (§5.5).
// Usage: node test_vectors.js [path/to/vectors.json]

const fs = require('fs');
const path = require('path');
const assert = require('assert');
const miap = require('./miap');

const file = process.argv[2] || path.join(__dirname, '..', '..', 'miap', 'testdata', 'vectors.json');
const v = JSON.parse(fs.readFileSync(file, 'utf8'));

const h = (s) => Buffer.from(s, 'hex');
function frameOf(f) {
  return {
    purpose: f.purpose, party: f.party, kid: f.kid, ts: f.ts, nonce: h(f.nonce), session: h(f.session), id: h(f.id),
    peer: f.peer, ctype: f.ctype, clen: f.clen, csha: h(f.csha), expiry: f.expiry, body: Buffer.from(f.body, 'utf8'),
  };
}

const masters = new Map(v.keys.map((k) => [`${k.party}/${k.kid}`, Buffer.from(k.secret, 'base64')]));
const keys = new miap.Keyring(v.keys, () => v.now);
let checked = 0;

for (const s of v.subkeys) {
  const got = miap.subkey(masters.get(`${s.party}/${s.kid}`), s.purpose, s.party, s.kid).toString('hex');
  assert.strictEqual(got, s.subkey, `subkey ${s.party}/${s.kid}/${s.purpose}`);
  checked++;
}

for (const fv of v.frames) {
  const f = frameOf(fv.frame);
  const mi = miap.macInput(f);
  assert.strictEqual(mi.toString('hex'), fv.mac_input, `mac input: ${fv.name}`);
  const m = miap.mac(masters.get(`${f.party}/${f.kid}`), f);
  assert.strictEqual(m.toString('hex'), fv.frame.mac, `mac: ${fv.name}`);
  assert.strictEqual(miap.compact(f, m).toString('hex'), fv.compact, `compact: ${fv.name}`);
  // the compact form parses back to the same frame
  const pc = miap.parseCompact(h(fv.compact));
  assert.ok(miap.equal(pc.mac, m), `compact mac: ${fv.name}`);
  assert.strictEqual(miap.macInput(pc.frame).toString('hex'), fv.mac_input, `compact parse: ${fv.name}`);
  // the header form parses back to the same frame and verifies
  const hdrs = new Map(miap.frameHeaders(f, m));
  const pf = miap.frameFromHeaders((n) => hdrs.get(n) || '', f.body, f.purpose);
  assert.strictEqual(miap.macInput(pf.frame).toString('hex'), fv.mac_input, `headers: ${fv.name}`);
  miap.verify(keys, pf.frame, pf.mac, { now: v.now, ticket: f.purpose === 'ticket' });
  checked++;
}

for (const iv of v.ids) {
  const f = { purpose: 'id', party: '', kid: iv.k2_kid, ts: 0, nonce: Buffer.alloc(16), session: h(iv.session),
    body: Buffer.from(iv.routed, 'utf8') };
  assert.strictEqual(miap.mac(masters.get(`broker/${iv.k2_kid}`), f).toString('hex'), iv.id, `id: ${iv.name}`);
  checked++;
}

for (const nv of v.negative) {
  const f = frameOf(nv.frame);
  let err = null;
  try {
    miap.verify(keys, f, h(nv.frame.mac), { now: v.now, window: v.window_ms, skew: v.skew_ms });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof miap.MiapError, `negative vector accepted: ${nv.name}`);
  assert.strictEqual(err.code, nv.error, `negative ${nv.name}: got ${err.code}`);
  checked++;
}

// A few parser refusals of §4.2 and §5.5.
const bad = [
  () => miap.b64d('AAAA=', 'x'), // padding
  () => miap.b64d('AB', 'x', 16), // wrong length
  () => miap.frameFromHeaders((n) => ({ 'Miap-Version': '1', 'Miap-Purpose': 'login', 'Miap-Ts': '01', 'Miap-Mac': miap.b64e(Buffer.alloc(32)) }[n] || ''), null),
  () => miap.parseCompact(Buffer.concat([h(v.frames[0].compact), Buffer.from([0])])),
  () => miap.parseCompact(Buffer.from(h(v.frames[0].compact)).fill(2, 6, 7)),
];
for (const fn of bad) {
  assert.throws(fn, (e) => e instanceof miap.MiapError && e.code === 'MALFORMED');
  checked++;
}

console.log(`test_vectors.js: ${checked} vectors and checks agree with PROTOCOL.md`);
