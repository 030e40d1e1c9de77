'use strict';
// The probe: on one connection with the bot's own credentials, frames the
// brokers must refuse, each with the code of PROTOCOL.md §8 and §9, then a
// valid message that must be delivered. It shows what a gateway that sends
// something wrong is told, and that it stays connected.

const nats = require('nats');
const miap = require('./miap');
const { log } = require('./gateway');

const { MiapError, H } = miap;

// answerOf returns what an error reply says (§9): the name (Miap-Error),
// the number (Nats-Service-Error-Code) and the reason (Nats-Service-Error,
// "NAME: text"), plus Uims-Reason if present.
function answerOf(reply) {
  const get = (n) => (reply.headers ? reply.headers.get(n, nats.Match.IgnoreCase) : '');
  const out = { error: get(H.error), code: Number(get(H.serviceErrorCode)) || 0, reason: get(H.serviceError) };
  if (get(H.reason)) out.uims_reason = get(H.reason);
  return out;
}

// imiFrame signs an imi frame with a fresh nonce (§6.2); it returns the
// headers and the frame.
function imiFrame(gw, body) {
  return gw.signedHeaders({ purpose: 'imi', party: gw.party, nonce: miap.nonce(), ts: 0, body }, [[H.mode, 'fast']]);
}

async function request(gw, h, body) {
  try {
    return await gw.nc.request('uims.broker.imi', body, { headers: h, timeout: 5000 });
  } catch (e) {
    throw new MiapError(e.code === '503' ? 'NO_ROUTE' : 'BUSY', `uims.broker.imi: ${e.message}`, { transport: true });
  }
}

// run sends every case and returns the results, one object per case.
// msg: {from, to}: a sender the bot may name and a recipient.
async function run(gw, { from, to }, timeout) {
  const out = [];
  const refused = async (name, expect, h, body) => {
    const reply = await request(gw, h, body);
    const a = answerOf(reply);
    const r = Object.assign({ case: name, expect }, a, { ok: a.error === expect && a.reason !== '' });
    if (!a.error) r.answer = (reply.headers && reply.headers.get(H.purpose)) || 'no error';
    log(`probe ${name}: ${a.error || 'accepted'} (${a.code}) ${a.reason}`);
    out.push(r);
    return r;
  };
  const good = (text) => gw.newIMI({ from, to, text });

  // §8 step 6c: the body is no JSON document
  let f = imiFrame(gw, Buffer.from('this is not JSON'));
  await refused('not-json', 'MALFORMED', f.h, f.frame.body);

  // §8 step 6c: JSON, but not an IMI (no msg_id, from, to, content)
  f = imiFrame(gw, Buffer.from(JSON.stringify({ v: 1, gateway: gw.party })));
  await refused('missing-fields', 'MALFORMED', f.h, f.frame.body);

  // §8 step 5: one bit of the MAC flipped
  const m = good('probe: bad MAC');
  f = imiFrame(gw, m.imiBytes);
  const mac = miap.b64d(f.h.get(H.mac), H.mac, 32);
  mac[0] ^= 1;
  f.h.set(H.mac, miap.b64e(mac));
  await refused('bad-mac', 'BAD_MAC', f.h, f.frame.body);

  // §7.2, §8 step 6e: the same frame (same nonce) twice. The first is
  // routed and delivered; the second is refused.
  const rp = good('probe: replayed frame, first copy');
  f = imiFrame(gw, rp.imiBytes);
  const first = await request(gw, f.h, f.frame.body);
  const fa = answerOf(first);
  let firstStatus = fa.error;
  if (!fa.error) {
    const res = await gw.forward(rp.imi, rp.content, rp.csha, first, f.frame);
    firstStatus = res.status;
  }
  const r = await refused('replay', 'REPLAY', f.h, f.frame.body);
  r.first = firstStatus;
  r.msg_id = rp.imi.msg_id;
  r.ok = r.ok && firstStatus === 'delivered';

  // §8 step 2, §10: an IMI over 8 KiB, refused before any MAC work
  const big = good('probe: too large');
  big.imi.meta = { pad: 'x'.repeat(1000) };
  for (let i = 0; i < 9; i++) big.imi.meta[`pad${i}`] = 'x'.repeat(1000);
  f = imiFrame(gw, Buffer.from(JSON.stringify(big.imi)));
  await refused('too-large', 'TOO_LARGE', f.h, f.frame.body);

  // §3.5, §6.2 sender binding step 3: a medium outside the party's grant
  const other = ['web', 'email', 'sms'].find((x) => !gw.b.media.includes(x));
  const og = gw.newIMI({ from: { medium: other, address: from.address }, to, text: 'probe: medium outside the grant' });
  f = imiFrame(gw, og.imiBytes);
  await refused('medium-outside-grant', 'NOT_ALLOWED', f.h, f.frame.body);

  // then a valid message on the same connection
  const valid = { case: 'valid', expect: 'delivered' };
  try {
    const res = await gw.send({ from, to, text: 'probe: valid after errors' }, timeout);
    Object.assign(valid, { msg_id: res.msg_id, status: res.status, receipt: res.receipt, ok: res.status === 'delivered' });
  } catch (e) {
    Object.assign(valid, { error: e.code || 'INTERNAL', reason: e.message, ok: false });
  }
  out.push(valid);
  out.push({ case: 'connection', disconnects: gw.disconnects, closed: gw.nc.isClosed(),
    ok: gw.disconnects === 0 && !gw.nc.isClosed() });
  return out;
}

module.exports = { run, answerOf };
