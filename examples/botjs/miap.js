'use strict';
// MIAP (Message and Information Authentication Protocol), version 1, written
// from miap/PROTOCOL.md alone: subkeys (§3.2), key files (§3.3, §3.4),
// header encoding (§4.2), MAC input (§5.3), compact form (§5.5),
// verification order (§8) and errors (§9). No NATS here: frames are plain
// objects, headers are a Map-like of name -> string.

const crypto = require('crypto');

const VERSION = 1;

// §5.2: purpose numbers are the index; the list is append-only.
const PURPOSES = ['', 'login', 'login-ack', 'imi', 'route', 'route-ack', 'gw-session', 'ticket', 'id',
  'ack', 'ack-reply', 'receipt', 'notify', 'conv', 'conv-reply', 'query', 'query-reply', 'announce', 'cancel'];
const G2B = 1, B2G = 2, SELF = 3, INTERNAL = 4;
const DIRECTION = {
  'login': G2B, 'login-ack': B2G, 'imi': G2B, 'route': B2G, 'route-ack': G2B, 'gw-session': SELF,
  'ticket': B2G, 'id': INTERNAL, 'ack': G2B, 'ack-reply': B2G, 'receipt': B2G, 'notify': B2G,
  'conv': G2B, 'conv-reply': B2G, 'query': G2B, 'query-reply': B2G, 'announce': G2B, 'cancel': G2B,
};

// §9: numbers and names never change.
const ERRORS = {
  MALFORMED: [1, false], TOO_LARGE: [2, false], BAD_VERSION: [3, false], UNKNOWN_KEY: [4, false],
  BAD_MAC: [5, false], STALE: [6, false], CLOCK_SKEW: [7, true], REPLAY: [8, false],
  BAD_SESSION: [9, false], ID_MISMATCH: [10, false], BAD_TICKET: [11, false], DIGEST_MISMATCH: [12, false],
  EXPIRED: [13, false], STORE_UNAVAILABLE: [14, true], QUARANTINE: [15, true], UNKNOWN_RECIPIENT: [16, false],
  UNKNOWN_SENDER: [17, false], NO_ROUTE: [18, true], QUOTA_EXCEEDED: [19, false], NOT_ALLOWED: [20, false],
  BUSY: [21, true], INTERNAL: [22, true], UNKNOWN_TX: [23, false], CONVERSION_FAILED: [24, false],
  DUPLICATE: [25, false], UNSUPPORTED: [26, false], UNAUTHORIZED: [27, false], STRICT_REQUIRED: [28, false],
  SETTLED: [29, false], REJECTED: [30, false], UNREACHABLE: [31, false],
};

// §10 limits.
const MAX_IMI = 8 << 10;
const MAX_ROUTED = 12 << 10;
const MAX_CONTROL = 16 << 10;

// §7.1 defaults.
const WINDOW_MS = 120000;
const SKEW_MS = 30000;

const ZERO_NONCE = Buffer.alloc(16);

class MiapError extends Error {
  // name: an error name of §9; text: the detail (for our log only).
  constructor(name, text, extra) {
    super(`${name}: ${text || name}`);
    this.code = name;
    this.number = ERRORS[name] ? ERRORS[name][0] : 22;
    this.retry = ERRORS[name] ? ERRORS[name][1] : true;
    Object.assign(this, extra || {});
  }
}

// ---- §3.2 subkeys -------------------------------------------------------

function u16be(n) { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; }
function u32be(n) { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; }
function i64be(n) { const b = Buffer.alloc(8); b.writeBigInt64BE(BigInt(n)); return b; }

function purposeNumber(purpose) {
  const p = PURPOSES.indexOf(purpose);
  if (p <= 0) throw new MiapError('MALFORMED', `unknown purpose ${purpose}`);
  return p;
}

function subkey(master, purpose, party, kid) {
  const p = purposeNumber(purpose);
  const partyB = Buffer.from(party, 'ascii'), kidB = Buffer.from(kid, 'ascii');
  const info = Buffer.concat([Buffer.from('MIAP/1 subkey', 'ascii'), Buffer.from([p, DIRECTION[purpose]]),
    u16be(partyB.length), partyB, u16be(kidB.length), kidB]);
  return Buffer.from(crypto.hkdfSync('sha256', master, Buffer.from('MIAP/1', 'ascii'), info, 32));
}

// ---- §5.3 MAC input -----------------------------------------------------

// A frame: {purpose, party, kid, ts, nonce, session, id, peer, ctype, clen,
// csha, expiry, body}; strings for party/kid/peer/ctype, numbers for
// ts/clen/expiry, Buffers for nonce/session/id/csha/body (body may be a
// string). Missing fields are empty; a missing nonce is 16 zero bytes (§5.3).
function norm(f) {
  const buf = (v) => (v == null ? Buffer.alloc(0) : Buffer.isBuffer(v) ? v : Buffer.from(v));
  return {
    purpose: f.purpose, party: f.party || '', kid: f.kid || '', ts: f.ts || 0,
    nonce: f.nonce && f.nonce.length ? buf(f.nonce) : ZERO_NONCE, session: buf(f.session), id: buf(f.id),
    peer: f.peer || '', ctype: f.ctype || '', clen: f.clen || 0, csha: buf(f.csha), expiry: f.expiry || 0,
    body: buf(f.body),
  };
}

function field(tag, value) { return Buffer.concat([Buffer.from([tag]), u32be(value.length), value]); }

function macInput(frame) {
  const f = norm(frame);
  const p = purposeNumber(f.purpose);
  return Buffer.concat([
    Buffer.from('MIAP', 'ascii'), Buffer.from([VERSION, p, DIRECTION[f.purpose]]),
    field(1, Buffer.from(f.party)), field(2, Buffer.from(f.kid)), field(3, i64be(f.ts)),
    field(4, f.nonce), field(5, f.session), field(6, f.id), field(7, Buffer.from(f.peer)),
    field(8, Buffer.from(f.ctype)), field(9, i64be(f.clen)), field(10, f.csha), field(11, i64be(f.expiry)),
    field(12, f.body),
  ]);
}

function hmac(key, data) { return crypto.createHmac('sha256', key).update(data).digest(); }

// mac computes a frame's MAC under master (the K1 of frame.party, or K2
// for purpose "id", whose party is empty).
function mac(master, frame) {
  return hmac(subkey(master, frame.purpose, frame.party || '', frame.kid), macInput(frame));
}

function equal(a, b) {
  return Buffer.isBuffer(a) && Buffer.isBuffer(b) && a.length === b.length && crypto.timingSafeEqual(a, b);
}

// ---- §5.5 compact form --------------------------------------------------

function compact(frame, macBuf) { return Buffer.concat([macInput(frame), field(13, macBuf)]); }

// parseCompact returns {frame, mac} or throws MALFORMED / BAD_VERSION.
function parseCompact(buf) {
  const bad = (why) => { throw new MiapError('MALFORMED', `compact form: ${why}`); };
  if (buf.length < 7 || buf.subarray(0, 4).toString('latin1') !== 'MIAP') bad('magic');
  if (buf[4] !== VERSION) throw new MiapError('BAD_VERSION', `compact version ${buf[4]}`);
  const purpose = PURPOSES[buf[5]];
  if (!purpose) bad('purpose');
  if (DIRECTION[purpose] !== buf[6]) bad('direction');
  let off = 7;
  const vals = [];
  for (let tag = 1; tag <= 13; tag++) {
    if (off + 5 > buf.length) bad('truncated');
    if (buf[off] !== tag) bad(`tag ${buf[off]} where ${tag} expected`);
    const len = buf.readUInt32BE(off + 1);
    off += 5;
    if (off + len > buf.length) bad('truncated value');
    vals.push(buf.subarray(off, off + len));
    off += len;
  }
  if (off !== buf.length) bad('trailing bytes');
  for (const t of [3, 9, 11]) if (vals[t - 1].length !== 8) bad(`integer tag ${t} not 8 bytes`);
  if (vals[3].length !== 16) bad('nonce not 16 bytes');
  if (vals[12].length !== 32) bad('mac not 32 bytes');
  const int = (b) => Number(b.readBigInt64BE());
  return {
    frame: {
      purpose, party: vals[0].toString(), kid: vals[1].toString(), ts: int(vals[2]), nonce: vals[3],
      session: vals[4], id: vals[5], peer: vals[6].toString(), ctype: vals[7].toString(), clen: int(vals[8]),
      csha: vals[9], expiry: int(vals[10]), body: vals[11],
    },
    mac: vals[12],
  };
}

// ---- §4.2 headers -------------------------------------------------------

const H = {
  version: 'Miap-Version', purpose: 'Miap-Purpose', party: 'Miap-Party', kid: 'Miap-Kid', ts: 'Miap-Ts',
  nonce: 'Miap-Nonce', session: 'Miap-Session', id: 'Miap-Id', peer: 'Miap-Peer', ctype: 'Miap-Ctype',
  clen: 'Miap-Clen', csha: 'Miap-Csha', expiry: 'Miap-Expiry', mac: 'Miap-Mac', mode: 'Miap-Mode',
  imiLen: 'Miap-Imi-Len', gwSession: 'Miap-Gw-Session', receipt: 'Miap-Receipt',
  ticketParty: 'Miap-Ticket-Party', ticketKid: 'Miap-Ticket-Kid', ticketTs: 'Miap-Ticket-Ts',
  ticketMac: 'Miap-Ticket-Mac', error: 'Miap-Error', serverTime: 'Miap-Server-Time',
  serviceError: 'Nats-Service-Error', serviceErrorCode: 'Nats-Service-Error-Code', status: 'Uims-Status',
  reason: 'Uims-Reason', retryAfter: 'Retry-After-Ms',
};

const B64URL = /^[A-Za-z0-9_-]*$/;

// b64d decodes canonical base64url without padding (RFC 4648 §5), or throws.
function b64d(s, what, exact, max) {
  if (!B64URL.test(s) || s.length % 4 === 1) throw new MiapError('MALFORMED', `${what}: not base64url`);
  const b = Buffer.from(s, 'base64url');
  if (b.toString('base64url') !== s) throw new MiapError('MALFORMED', `${what}: not canonical base64url`);
  if (exact != null && b.length !== exact) throw new MiapError('MALFORMED', `${what}: ${b.length} bytes, want ${exact}`);
  if (max != null && b.length > max) throw new MiapError('MALFORMED', `${what}: ${b.length} bytes, at most ${max}`);
  return b;
}
function b64e(b) { return Buffer.from(b).toString('base64url'); }

const DECIMAL = /^(0|[1-9][0-9]{0,18})$/;
function decimal(s, what) {
  if (!DECIMAL.test(s)) throw new MiapError('MALFORMED', `${what}: not canonical decimal`);
  const n = BigInt(s);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new MiapError('MALFORMED', `${what}: out of range`);
  return Number(n);
}

const ID_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
function validId(s) { return ID_RE.test(s); }

// frameFromHeaders reads the frame fields of §4.2 from get(name) (which
// returns '' for an absent header) and the body. It checks syntax (§8 step
// 1) and the expected purpose (step 2).
function frameFromHeaders(get, body, expectPurpose) {
  const v = get(H.version);
  if (v === '') throw new MiapError('MALFORMED', 'no Miap-Version');
  if (v !== String(VERSION)) throw new MiapError('BAD_VERSION', `version ${v}`);
  const purpose = get(H.purpose);
  if (!PURPOSES.includes(purpose) || purpose === '') throw new MiapError('MALFORMED', `purpose ${purpose}`);
  if (expectPurpose && purpose !== expectPurpose) {
    throw new MiapError('MALFORMED', `purpose ${purpose}, want ${expectPurpose}`);
  }
  const f = { purpose, body: body || Buffer.alloc(0) };
  for (const k of ['party', 'kid', 'peer']) {
    const s = get(H[k]);
    if (Buffer.byteLength(s) > 64) throw new MiapError('MALFORMED', `${k} longer than 64 bytes`);
    f[k] = s;
  }
  f.ctype = get(H.ctype);
  if (Buffer.byteLength(f.ctype) > 256) throw new MiapError('MALFORMED', 'ctype longer than 256 bytes');
  if (get(H.ts) === '') throw new MiapError('MALFORMED', 'no Miap-Ts'); // §4.2: every frame is dated
  for (const k of ['ts', 'clen', 'expiry']) {
    const s = get(H[k]);
    f[k] = s === '' ? 0 : decimal(s, H[k]);
  }
  const n = get(H.nonce);
  f.nonce = n === '' ? ZERO_NONCE : b64d(n, H.nonce, 16);
  const s = get(H.session);
  f.session = s === '' ? Buffer.alloc(0) : b64d(s, H.session, null, 128);
  const id = get(H.id);
  f.id = id === '' ? Buffer.alloc(0) : b64d(id, H.id, 32);
  const csha = get(H.csha);
  if (csha !== '' && !/^[0-9a-f]{64}$/.test(csha)) throw new MiapError('MALFORMED', 'csha not 64 lowercase hex');
  f.csha = Buffer.from(csha, 'hex');
  const m = get(H.mac);
  if (m === '') throw new MiapError('MALFORMED', 'no Miap-Mac');
  return { frame: f, mac: b64d(m, H.mac, 32) };
}

// frameHeaders returns [name, value] pairs carrying a frame and its MAC.
function frameHeaders(frame, macBuf) {
  const f = norm(frame);
  const out = [[H.version, String(VERSION)], [H.purpose, f.purpose]];
  if (f.party) out.push([H.party, f.party]);
  if (f.kid) out.push([H.kid, f.kid]);
  out.push([H.ts, String(f.ts)]);
  if (!f.nonce.equals(ZERO_NONCE)) out.push([H.nonce, b64e(f.nonce)]);
  if (f.session.length) out.push([H.session, b64e(f.session)]);
  if (f.id.length) out.push([H.id, b64e(f.id)]);
  if (f.peer) out.push([H.peer, f.peer]);
  if (f.ctype) out.push([H.ctype, f.ctype]);
  if (f.ctype || f.clen) out.push([H.clen, String(f.clen)]);
  if (f.csha.length) out.push([H.csha, f.csha.toString('hex')]);
  if (f.expiry) out.push([H.expiry, String(f.expiry)]);
  out.push([H.mac, b64e(macBuf)]);
  return out;
}

// ---- §3.3, §3.4 keys ----------------------------------------------------

class Keyring {
  // entries: the "keys" of a key file; extra fields ("role", "media") are ignored.
  constructor(entries, now) {
    this.now = now || Date.now;
    this.keys = [];
    for (const e of entries) {
      if (!validId(e.party || '') || !validId(e.kid || '')) throw new Error(`key file: bad party or kid ${e.party}/${e.kid}`);
      if (typeof e.secret !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(e.secret)) {
        throw new Error(`key file: ${e.party}/${e.kid}: secret not standard base64`);
      }
      const secret = Buffer.from(e.secret, 'base64');
      if (secret.length !== 32) throw new Error(`key file: ${e.party}/${e.kid}: secret is ${secret.length} bytes, want 32`);
      const t = (s, what) => {
        if (s == null || s === '') return null;
        const ms = Date.parse(s);
        if (Number.isNaN(ms)) throw new Error(`key file: ${e.party}/${e.kid}: bad ${what} ${s}`);
        return ms;
      };
      this.keys.push({ party: e.party, kid: e.kid, secret, notBefore: t(e.not_before, 'not_before'),
        notAfter: t(e.not_after, 'not_after') });
    }
  }

  static fromFile(text) {
    const kf = JSON.parse(text);
    if (kf.miap !== 1 || !Array.isArray(kf.keys)) throw new Error('key file: not a MIAP version 1 key file');
    return new Keyring(kf.keys);
  }

  valid(k, now) {
    return (k.notBefore == null || now >= k.notBefore) && (k.notAfter == null || now < k.notAfter);
  }

  // lookup returns the key (party, kid) valid now, or throws UNKNOWN_KEY.
  lookup(party, kid) {
    const now = this.now();
    const k = this.keys.find((x) => x.party === party && x.kid === kid);
    if (!k || !this.valid(k, now)) throw new MiapError('UNKNOWN_KEY', `no valid key ${party}/${kid}`);
    return k;
  }

  // signer returns, among party's keys valid now, the one with the latest not_before.
  signer(party) {
    const now = this.now();
    let best = null;
    for (const k of this.keys) {
      if (k.party !== party || !this.valid(k, now)) continue;
      if (!best || (k.notBefore || 0) >= (best.notBefore || 0)) best = k;
    }
    if (!best) throw new MiapError('UNKNOWN_KEY', `no valid key for ${party}`);
    return best;
  }

  parties() { return [...new Set(this.keys.map((k) => k.party))]; }
}

// ---- signing and verification (§8) -------------------------------------

// sign fills party's current kid (and ts, if missing) and returns {frame, mac}.
function sign(keys, frame, now) {
  const k = keys.signer(frame.party);
  const f = Object.assign({}, frame, { kid: k.kid });
  if (!f.ts) f.ts = now;
  return { frame: f, mac: mac(k.secret, f) };
}

// verify runs §8 steps 3-5 on a parsed frame: time (window and skew, or
// expiry for tickets; noAge skips the age check, §6.9), key, MAC.
function verify(keys, frame, macBuf, opts) {
  const o = Object.assign({ window: WINDOW_MS, skew: SKEW_MS }, opts || {});
  const now = o.now;
  if (frame.ts > now + o.skew) throw new MiapError('CLOCK_SKEW', `ts ${frame.ts} ahead of ${now}`, { serverTime: now });
  if (o.ticket) {
    if (frame.expiry < now) throw new MiapError('EXPIRED', `expiry ${frame.expiry} before ${now}`);
  } else if (!o.noAge && frame.ts < now - o.window) {
    throw new MiapError('STALE', `ts ${frame.ts} older than ${now} - ${o.window}`);
  }
  const k = keys.lookup(frame.party, frame.kid);
  if (!equal(mac(k.secret, frame), macBuf)) throw new MiapError('BAD_MAC', `${frame.purpose} of ${frame.party}/${frame.kid}`);
  return k;
}

function sha256(b) { return crypto.createHash('sha256').update(b).digest(); }
function nonce() { return crypto.randomBytes(16); }

module.exports = {
  VERSION, PURPOSES, DIRECTION, ERRORS, MAX_IMI, MAX_ROUTED, MAX_CONTROL, WINDOW_MS, SKEW_MS, ZERO_NONCE, H,
  MiapError, subkey, macInput, mac, hmac, equal, compact, parseCompact, frameFromHeaders, frameHeaders,
  Keyring, sign, verify, sha256, nonce, b64e, b64d, validId,
};
