'use strict';
// A UIMS gateway party over NATS, MIAP fast mode (PROTOCOL.md §6): it
// announces itself (§6.12), serves transfers as a destination gateway
// (§6.6, acknowledging with the ID, §6.8), originates messages (§6.2, §6.3,
// §6.6) and takes its status notifications (§6.9). Stock nats.js client.

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const nats = require('nats');
const miap = require('./miap');

const { MiapError, H } = miap;

const TEXT = 'text/plain; charset=utf-8';
// VERSION is what the micro service reports: the package's version.
const VERSION = require('./package.json').version;

function log(...parts) {
  process.stderr.write(`${new Date().toISOString()} botjs ${parts.join(' ')}\n`);
}

// loadBundle reads a party bundle folder: bundle.json, keys.json, <party>.creds.
function loadBundle(dir) {
  if (!dir) throw new Error('no party bundle: give its folder as argument or in UIMS_BUNDLE');
  const b = JSON.parse(fs.readFileSync(path.join(dir, 'bundle.json'), 'utf8'));
  if (!miap.validId(b.party || '')) throw new Error(`bundle.json: bad party ${JSON.stringify(b.party)}`);
  if (b.role && b.role !== 'gateway') throw new Error(`bundle.json: role ${b.role}, want gateway`);
  const keysText = fs.readFileSync(path.join(dir, 'keys.json'), 'utf8');
  const kf = JSON.parse(keysText);
  if (kf.miap !== 1 || !Array.isArray(kf.keys)) throw new Error('keys.json: not a MIAP version 1 key file');
  const own = kf.keys.filter((e) => e.party === b.party);
  if (own.length === 0) throw new Error(`keys.json: no key for party ${b.party}`);
  const creds = fs.readFileSync(path.join(dir, `${b.party}.creds`));
  return {
    party: b.party,
    media: Array.isArray(b.media) && b.media.length ? b.media : ['bot'],
    natsURL: process.env.NATS_URL || b.nats_url || 'nats://127.0.0.1:4222',
    inboxPrefix: b.inbox_prefix || `_INBOX.${b.party}`,
    keys: new miap.Keyring(own),
    creds,
  };
}

// §9: the fixed text of each code, in Nats-Service-Error.
const ERROR_TEXT = {
  MALFORMED: 'malformed frame or document', TOO_LARGE: 'size limit exceeded', BAD_VERSION: 'unsupported version',
  UNKNOWN_KEY: 'unknown or retired key id', BAD_MAC: 'authentication failed', STALE: 'timestamp older than the window',
  CLOCK_SKEW: 'timestamp ahead of server time', REPLAY: 'nonce already used',
  BAD_SESSION: 'session key unknown, used or expired', ID_MISMATCH: 'the returned ID is not the one the broker minted',
  BAD_TICKET: 'the ticket does not verify or names another party',
  DIGEST_MISMATCH: 'content does not match its length or SHA-256', EXPIRED: "the transaction's deadline passed",
  STORE_UNAVAILABLE: 'the nonce, session or profile store failed', QUARANTINE: 'the nonce store lost its state',
  UNKNOWN_RECIPIENT: 'no client or address matches', UNKNOWN_SENDER: 'the sender is not a known client',
  NO_ROUTE: 'no live gateway can take the message now', QUOTA_EXCEEDED: "the sender's quota is used up",
  NOT_ALLOWED: 'the party may not do this', BUSY: 'the fabric cannot take it now', INTERNAL: 'an unexpected failure',
  UNKNOWN_TX: 'no such transaction', CONVERSION_FAILED: 'a processor could not convert the content',
  DUPLICATE: 'the message id names another message', UNSUPPORTED: 'the destination cannot take this content',
  UNAUTHORIZED: 'missing or wrong client credentials', STRICT_REQUIRED: 'the broker enforces strict mode: log in first',
  SETTLED: 'a retry of a message that has its outcome or whose deadline passed',
  REJECTED: "refused by the recipient's side",
  UNREACHABLE: 'no gateway is set up to reach the address',
};

class Gateway {
  // opts: {medium, instance, deliver(delivery) -> Promise<status>, onNotify(event), onDelivered(delivery)}
  constructor(bundle, opts) {
    this.b = bundle;
    this.party = bundle.party;
    this.keys = bundle.keys;
    this.medium = (opts && opts.medium) || (bundle.media.includes('bot') ? 'bot' : bundle.media[0]);
    this.instance = (opts && opts.instance) || `botjs-${crypto.randomBytes(4).toString('hex')}`;
    this.opts = opts || {};
    this.offset = 0; // added to the local clock after a CLOCK_SKEW answer (§7.1)
    this.seen = new Map(); // msg_id -> {promise, at}: de-duplication of transfers (§6.6)
    this.timers = [];
    this.disconnects = 0; // disconnections from NATS since connect()
    this.refusedSRV = []; // $SRV subjects the server refused us to subscribe to
  }

  now() { return Date.now() + this.offset; }

  async connect() {
    log(`connecting to ${this.b.natsURL} as party ${this.party} (inbox prefix ${this.b.inboxPrefix})`);
    this.nc = await nats.connect({
      servers: this.b.natsURL,
      name: `${this.party}-${this.instance}`,
      authenticator: nats.credsAuthenticator(new Uint8Array(this.b.creds)),
      inboxPrefix: this.b.inboxPrefix,
      maxReconnectAttempts: -1,
    });
    log(`connected to ${this.nc.getServer()}`);
    (async () => {
      for await (const s of this.nc.status()) {
        if (s.type === 'disconnect') this.disconnects++;
        const pc = s.permissionContext;
        if (pc && pc.operation === 'subscription' && pc.subject.startsWith('$SRV.')) {
          this.refusedSRV.push(pc.subject); // reported by serve()
          continue;
        }
        if (s.type === 'error' || s.type === 'disconnect' || s.type === 'reconnect') {
          log(`nats ${s.type}: ${s.data}${pc ? ` (${pc.operation} ${pc.subject})` : ''}`);
        }
      }
    })().catch(() => {});
  }

  // ---- frames on NATS ---------------------------------------------------

  signedHeaders(frame, extra) {
    const s = miap.sign(this.keys, frame, this.now());
    const h = nats.headers();
    for (const [k, v] of miap.frameHeaders(s.frame, s.mac)) h.set(k, v);
    for (const [k, v] of extra || []) h.set(k, v);
    return { h, frame: s.frame };
  }

  static getter(msg) {
    return (n) => (msg.headers ? msg.headers.get(n, nats.Match.IgnoreCase) : '');
  }

  // errorOf returns the MiapError an error reply carries (§9), or null.
  errorOf(msg) {
    const get = Gateway.getter(msg);
    const name = get(H.error);
    if (!name) return null;
    const e = new MiapError(name, get(H.serviceError) || name);
    e.reason = get(H.reason);
    const st = get(H.serverTime);
    if (st && /^[0-9]+$/.test(st)) e.serverTime = Number(st);
    return e;
  }

  // request sends a fresh frame (a new nonce each try) to a broker subject
  // and returns {reply, frame}; an error answer throws its MiapError. A
  // CLOCK_SKEW answer corrects the clock from Miap-Server-Time and retries
  // once (§7.1).
  async brokerRequest(subject, frame, timeout) {
    for (let attempt = 0; ; attempt++) {
      const f = Object.assign({}, frame, { party: this.party, nonce: miap.nonce(), ts: 0 });
      const { h, frame: sent } = this.signedHeaders(f, [[H.mode, f.session && f.session.length ? 'strict' : 'fast']]);
      let reply;
      try {
        reply = await this.nc.request(subject, sent.body, { headers: h, timeout: timeout || 5000 });
      } catch (e) {
        throw new MiapError(e.code === '503' ? 'NO_ROUTE' : 'BUSY', `${subject}: ${e.message}`, { transport: true });
      }
      const err = this.errorOf(reply);
      if (err && err.code === 'CLOCK_SKEW' && err.serverTime && attempt === 0) {
        this.offset += err.serverTime - Date.now() - this.offset;
        log(`clock corrected by ${this.offset} ms (Miap-Server-Time), retrying ${subject}`);
        continue;
      }
      if (err) throw err;
      return { reply, frame: sent };
    }
  }

  // sessionRequest sends an IMI or an acknowledgement: in fast mode as it
  // is; in strict mode bound to a C_ack from a login first (§6.1). Fast is
  // the default; brokers that enforce strict mode answer STRICT_REQUIRED
  // (§6.13), and this gateway then switches to strict mode for good.
  async sessionRequest(subject, frame) {
    for (;;) {
      const f = Object.assign({}, frame);
      if (this.strict) f.session = await this.brokerLogin();
      try {
        return await this.brokerRequest(subject, f);
      } catch (e) {
        if (e.code !== 'STRICT_REQUIRED' || this.strict) throw e;
        this.strict = true;
        if (this.metadata) this.metadata.miap_mode = 'strict'; // INFO and STATS show it; PING keeps the start's
        log(`${subject}: the brokers enforce strict mode (STRICT_REQUIRED); switching to strict mode (login before each IMI and ack)`);
      }
    }
  }

  // brokerLogin is the TSCS login (§6.1): it returns a single-use C_ack.
  async brokerLogin() {
    const { reply, frame: sent } = await this.brokerRequest('uims.broker.login', { purpose: 'login' });
    const f = this.checkReply(reply, 'login-ack', sent);
    if (f.session.length === 0) throw new MiapError('MALFORMED', 'login-ack without C_ack');
    log(`login -> uims.broker.login: C_ack received (strict)`);
    return f.session;
  }

  // checkReply parses and verifies a broker's reply frame (§8): the expected
  // purpose, party = self, the request's nonce echoed, time, key, MAC.
  checkReply(reply, purpose, sent) {
    const { frame, mac } = miap.frameFromHeaders(Gateway.getter(reply), Buffer.from(reply.data), purpose);
    if (frame.party !== this.party) throw new MiapError('BAD_MAC', `${purpose} names party ${frame.party}`);
    if (!miap.equal(frame.nonce, sent.nonce)) throw new MiapError('BAD_MAC', `${purpose} does not echo our nonce`);
    if (frame.body.length > miap.MAX_CONTROL) throw new MiapError('TOO_LARGE', `${purpose} body`);
    miap.verify(this.keys, frame, mac, { now: this.now() });
    return frame;
  }

  // ---- §6.12 announcement ----------------------------------------------

  announce(ttl) {
    const body = Buffer.from(JSON.stringify({
      v: 1, gateway: this.party, medium: this.medium, instance: this.instance,
      accepts: ['text/plain', 'text/*'], ttl, at: this.now(),
    }));
    const { h } = this.signedHeaders({ purpose: 'announce', party: this.party, nonce: miap.nonce(), body });
    this.nc.publish('uims.broker.announce', body, { headers: h });
  }

  startAnnouncing() {
    this.announcing = true;
    this.announce(3000);
    log(`announced on uims.broker.announce: gateway ${this.party}, medium ${this.medium}, instance ${this.instance}, every 1 s, ttl 3 s`);
    this.timers.push(setInterval(() => { try { this.announce(3000); } catch (e) { log(`announce: ${e.message}`); } }, 1000));
  }

  // ---- §4.1 the destination's subjects, as a nats micro service ----------

  // endpoints are the subjects a gateway serves (§4.1, §6.14), all in queue
  // group uims-gw-<party>: transfers (§6.6), logins of strict originators
  // (§6.5), the brokers' deadline check (§6.14).
  endpoints() {
    return [
      { name: 'im', subject: `uims.gw.${this.party}.im`, fn: (m) => this.onIM(m) },
      { name: 'login', subject: `uims.gw.${this.party}.login`, fn: (m) => this.onLogin(m) },
      { name: 'held', subject: `uims.gw.${this.party}.held`, fn: (m) => this.onHeld(m) },
    ];
  }

  // serve registers the micro service uims-gw-<party> (version, metadata
  // and endpoints as the Go gateways register theirs), so that `nats micro
  // ls` and the operator view find this gateway. The service also answers
  // $SRV.PING, INFO and STATS, which needs the NATS permission to subscribe
  // there. A server that refuses it leaves the service without discovery
  // (nats.js 2.29 keeps it running, its endpoints serve); a service that
  // stops is replaced by plain subscriptions to the same subjects in the
  // same queue group. Either way the bot serves.
  async serve() {
    const name = `uims-gw-${this.party}`;
    this.metadata = { party: this.party, medium: this.medium, instance: this.instance,
      miap_mode: this.strict ? 'strict' : 'fast', kind: 'gateway' };
    let srv = null;
    try {
      srv = await this.nc.services.add({ name, version: VERSION, queue: name, metadata: this.metadata,
        description: `UIMS gateway ${this.party} (medium ${this.medium})` });
      for (const ep of this.endpoints()) {
        srv.addEndpoint(ep.name, { subject: ep.subject, handler: (err, m) => { if (!err) this.dispatch(ep, m); } });
      }
      await this.nc.flush(); // a refused subscription is reported before the PONG
      await new Promise((r) => setImmediate(r)); // and its status event handled
    } catch (e) {
      log(`micro service ${name}: ${e.message}`);
      if (srv) srv.stop().catch(() => {});
    }
    if (srv && !srv.isStopped) {
      this.srv = srv;
      log(`micro service ${name} ${VERSION} (id ${srv.id}): endpoints ${this.endpoints().map((ep) => `${ep.name} on ${ep.subject}`).join(', ')}, queue group ${name}`);
      if (this.refusedSRV.length) {
        log(`micro service ${name} not discoverable: the server refused the subscriptions to ${[...new Set(this.refusedSRV)].join(', ')} (permissions); its endpoints serve`);
      }
      srv.stopped.then((err) => {
        this.srv = null;
        if (this.closing) return;
        log(`micro service ${name} stopped${err ? `: ${err.message}` : ''}; serving its subjects with plain subscriptions`);
        this.servePlain();
      });
      return;
    }
    const err = srv ? await srv.stopped : null;
    log(`micro service ${name} not registered${err ? ` (${err.message})` : ''}: not discoverable; serving its subjects with plain subscriptions`);
    this.servePlain();
    await this.nc.flush();
  }

  // servePlain subscribes to the endpoints' subjects without the service.
  servePlain() {
    for (const ep of this.endpoints()) {
      this.nc.subscribe(ep.subject, {
        queue: `uims-gw-${this.party}`,
        callback: (err, m) => {
          if (err) { log(`subscription ${ep.subject}: ${err.message}`); return; }
          this.dispatch(ep, m);
        },
      });
      log(`serving ${ep.subject} in queue group uims-gw-${this.party}`);
    }
  }

  dispatch(ep, m) {
    ep.fn(m).catch((e) => {
      log(`${ep.name}: unexpected ${e.stack || e}`);
      this.respondError(m, new MiapError('INTERNAL', e.message), ep.name);
    });
  }

  // respondError answers the error headers of §9 through the micro
  // service's error path (msg.respondError), and counts the error in the
  // endpoint's stats: nats.js 2.29 counts only errors thrown by a handler
  // before it returns, and these handlers answer after awaiting.
  respondError(msg, e, endpoint) {
    const name = e instanceof MiapError ? e.code : 'INTERNAL';
    const [num] = miap.ERRORS[name] || [22];
    const text = `${name}: ${ERROR_TEXT[name] || name}`;
    const h = nats.headers();
    h.set(H.serviceError, text);
    h.set(H.serviceErrorCode, String(num));
    h.set(H.error, name);
    if (name === 'CLOCK_SKEW') h.set(H.serverTime, String(this.now()));
    if (e.reason) h.set(H.reason, e.reason);
    if (typeof msg.respondError === 'function') msg.respondError(num, text, nats.Empty, { headers: h });
    else msg.respond(nats.Empty, { headers: h });
    const ep = this.srv && endpoint && this.srv.handlers.find((x) => x.name === endpoint);
    if (ep && ep.stats) ep.stats.countError(new Error(text));
  }

  // ---- §6.5 login of strict originators ----------------------------------

  // onLogin checks the ticket and answers with a stateless session token
  // bound to its ID.
  async onLogin(msg) {
    try {
      const body = Buffer.from(msg.data);
      if (body.length > miap.MAX_ROUTED) throw new MiapError('TOO_LARGE', `routed IMI of ${body.length} bytes`);
      const t = this.checkTicket(Gateway.getter(msg), body);
      const { frame, mac } = miap.sign(this.keys, { purpose: 'gw-session', party: this.party, nonce: miap.nonce(), id: t.id }, this.now());
      const h = nats.headers();
      h.set(H.gwSession, miap.b64e(miap.compact(frame, mac)));
      msg.respond(nats.Empty, { headers: h });
      log(`login from ${t.peer} (strict): ticket ok, session token issued`);
    } catch (e) {
      log(`login refused: ${e.message}`);
      this.respondError(msg, e, 'login');
    }
  }

  // checkTicket reads and verifies a ticket (§6.6): it names this party, has
  // an ID, and verifies (kid, MAC, expiry, ts); body is the routed IMI.
  checkTicket(get, body) {
    const { frame: t, mac } = miap.frameFromHeaders(get, body, 'ticket');
    if (t.party !== this.party) throw new MiapError('BAD_TICKET', `ticket names ${t.party}`);
    if (t.id.length !== 32) throw new MiapError('BAD_TICKET', 'ticket without ID');
    try {
      miap.verify(this.keys, t, mac, { now: this.now(), ticket: true });
    } catch (e) {
      if (e.code === 'BAD_MAC' || e.code === 'UNKNOWN_KEY') throw new MiapError('BAD_TICKET', e.message);
      throw e;
    }
    return t;
  }

  // checkSessionToken checks a Miap-Gw-Session token (§6.6, strict):
  // compact form valid, party = self, id = the ticket's ID, MAC and window.
  checkSessionToken(b64, id) {
    try {
      const { frame, mac } = miap.parseCompact(miap.b64d(b64, H.gwSession));
      if (frame.purpose !== 'gw-session' || frame.party !== this.party) throw new MiapError('BAD_SESSION', 'token of another party or purpose');
      if (!miap.equal(frame.id, id)) throw new MiapError('BAD_SESSION', 'token for another ID');
      miap.verify(this.keys, frame, mac, { now: this.now() });
    } catch (e) {
      throw new MiapError('BAD_SESSION', e.message);
    }
  }

  // ---- §6.6 destination: the instant message -----------------------------

  async onIM(msg) {
    const get = Gateway.getter(msg);
    const t0 = Date.now();
    let step = 'check';
    let msgID = '';
    try {
      // Miap-Imi-Len within the body and at most the routed limit
      const body = Buffer.from(msg.data);
      const il = get(H.imiLen);
      if (!/^(0|[1-9][0-9]{0,9})$/.test(il)) throw new MiapError('MALFORMED', 'Miap-Imi-Len missing or not decimal');
      const imiLen = Number(il);
      if (imiLen > miap.MAX_ROUTED) throw new MiapError('TOO_LARGE', `routed IMI of ${imiLen} bytes`);
      if (imiLen === 0 || imiLen > body.length) throw new MiapError('MALFORMED', `Miap-Imi-Len ${imiLen} of ${body.length}`);
      const routedBytes = body.subarray(0, imiLen);
      const content = body.subarray(imiLen);
      // the ticket names this party and verifies (kid, MAC, expiry, ts)
      const t = this.checkTicket(get, routedBytes);
      // content carried by reference (§10) is not fetched by this gateway
      const ref = get('Miap-Content-Ref');
      if (ref) {
        if (content.length > 0 || Buffer.byteLength(ref) > 64) throw new MiapError('MALFORMED', 'Miap-Content-Ref with inline content, or over 64 bytes');
        throw new MiapError('UNSUPPORTED', 'content by reference', { reason: 'this bot takes inline content only' });
      }
      // the content is the one the ticket binds
      if (content.length !== t.clen || !miap.equal(miap.sha256(content), t.csha)) {
        throw new MiapError('DIGEST_MISMATCH', `content of ${content.length} bytes`);
      }
      let routed;
      try { routed = JSON.parse(routedBytes.toString('utf8')); } catch (e) { throw new MiapError('MALFORMED', 'routed IMI not JSON'); }
      if (!routed || routed.v !== 1 || !routed.imi || !routed.dest || typeof routed.imi.msg_id !== 'string') {
        throw new MiapError('MALFORMED', 'routed IMI');
      }
      msgID = routed.imi.msg_id;
      if (routed.dest.gateway !== this.party) throw new MiapError('BAD_TICKET', `routed to ${routed.dest.gateway}`);
      if (get(H.gwSession)) this.checkSessionToken(get(H.gwSession), t.id);
      log(`im ${msgID} tx ${routed.tx} from ${routed.imi.from && routed.imi.from.medium}:${routed.imi.from && routed.imi.from.address}` +
        ` (client ${routed.sender || '-'}) via ${t.peer}: ticket ok (kid ${t.kid}), digest ok, ${content.length} bytes`);
      if (this.opts.stall === 'hang') {
        // a bot that hangs: the transfer is never answered, nothing is
        // acknowledged; the brokers' deadline turns it into a failure (§6.14)
        log(`im ${msgID}: stalled (BOT_STALL=hang): not delivering, not answering, not acknowledging`);
        return;
      }
      // de-duplicate by msg_id: a retry gets the first transfer's answer
      let entry = this.seen.get(msgID);
      if (!entry) {
        entry = { at: Date.now(), routed, id: t.id, delivered: null, reply: null, status: '' };
        this.seen.set(msgID, entry);
        this.gcSeen();
      } else {
        log(`im ${msgID}: already seen, not delivering again`);
      }
      step = 'deliver';
      if (!entry.delivered) {
        entry.delivered = Promise.resolve(this.opts.deliver({ routed, content, ticket: t }));
        entry.delivered.catch(() => { entry.delivered = null; });
      }
      const status = await entry.delivered;
      if (this.opts.stall === 'noack') {
        // a bot that takes the message "for later delivery" and never
        // reports the outcome: the originator hears transferred, then the
        // deadline's failure (§6.6, §6.9)
        const h = nats.headers();
        h.set(H.status, 'transferred');
        msg.respond(nats.Empty, { headers: h });
        log(`im ${msgID}: stalled (BOT_STALL=noack): answered transferred, never acknowledging to the brokers`);
        return;
      }
      step = 'ack';
      if (!entry.reply) {
        entry.reply = this.acknowledge(routed, t.id, status, true);
        entry.reply.catch(() => { entry.reply = null; });
      }
      const { status: st, receipt } = await entry.reply;
      entry.status = entry.status || st;
      const h = nats.headers();
      h.set(H.status, st);
      if (receipt) h.set(H.receipt, receipt);
      msg.respond(nats.Empty, { headers: h });
      log(`im ${msgID}: answered ${st}${receipt ? ' with the broker receipt' : ''} in ${Date.now() - t0} ms`);
      if (this.opts.onDelivered && !entry.after) {
        entry.after = true;
        setImmediate(() => this.opts.onDelivered({ routed, content, id: t.id }));
      }
    } catch (e) {
      log(`im ${msgID || '?'}: refused at ${step}: ${e.message}`);
      this.respondError(msg, e, 'im');
    }
  }

  gcSeen() {
    const old = Date.now() - 10 * 60 * 1000;
    for (const [k, v] of this.seen) {
      if (v.at < old) this.seen.delete(k); else break;
    }
  }

  // read acknowledges a delivered message as read (§6.8, not relayed: the
  // brokers notify the originator, §6.9), once whoever takes the bot's
  // messages has processed it.
  async read(msgID) {
    const entry = this.seen.get(msgID);
    if (!entry || !entry.status) throw new MiapError('UNKNOWN_TX', `${msgID} was not delivered here`);
    if (entry.status === 'read') return;
    await this.acknowledge(entry.routed, entry.id, 'read', false);
    entry.status = 'read';
  }

  // acknowledge sends the ack with the ID to the brokers (§6.8), checks the
  // ack-reply and returns the receipt to relay.
  async acknowledge(routed, id, status, relayed) {
    const ack = { v: 1, tx: routed.tx, msg_id: routed.imi.msg_id, gateway: this.party, status, at: this.now(), relayed };
    const body = Buffer.from(JSON.stringify(ack));
    const { reply, frame: sent } = await this.sessionRequest('uims.broker.ack', { purpose: 'ack', id, body });
    const f = this.checkReply(reply, 'ack-reply', sent);
    if (!miap.equal(f.id, id)) throw new MiapError('ID_MISMATCH', 'ack-reply with another ID');
    let ar = {};
    try { ar = JSON.parse(f.body.toString('utf8')); } catch (e) { throw new MiapError('MALFORMED', 'ack-reply body'); }
    const receipt = Gateway.getter(reply)(H.receipt);
    log(`ack ${routed.imi.msg_id} ${status} -> uims.broker.ack: ID accepted, state ${ar.state}${ar.duplicate ? ' (duplicate)' : ''}`);
    return { status, receipt };
  }

  // ---- §6.14 deadline check ------------------------------------------------

  // onHeld answers a broker's question about a message whose deadline
  // passed: one delivered here is acknowledged again (with its latest
  // status) and held; one never delivered here is not.
  async onHeld(msg) {
    let q;
    try { q = JSON.parse(Buffer.from(msg.data).toString('utf8')); } catch (e) { q = null; }
    if (!q || typeof q.msg_id !== 'string') {
      this.respondError(msg, new MiapError('MALFORMED', 'held query not JSON'), 'held');
      return;
    }
    if (this.opts.stall) {
      log(`held ${q.msg_id}: stalled (BOT_STALL=${this.opts.stall}): not answering`);
      return;
    }
    const reply = { v: 1, held: false };
    const entry = this.seen.get(q.msg_id);
    if (entry && entry.status) {
      try {
        await this.acknowledge(entry.routed, entry.id, entry.status, false);
        reply.held = true;
        log(`held ${q.msg_id}: delivered here; acknowledged ${entry.status} again`);
      } catch (e) {
        reply.later = e instanceof MiapError && e.retry;
        log(`held ${q.msg_id}: delivered here, but the acknowledgement failed: ${e.message}`);
      }
    } else {
      log(`held ${q.msg_id}: not delivered here`);
    }
    msg.respond(Buffer.from(JSON.stringify(reply)));
  }

  // ---- §6.2, §6.3, §6.6 origination -------------------------------------

  // send originates a text message: IMI to the brokers, route check,
  // transfer with the ticket, the destination's answer and the receipt.
  // Retryable failures are retried with the same msg_id until deadlineMs.
  async send(msg, deadlineMs) {
    const { imi, imiBytes, content, csha } = this.newIMI(msg);
    if (imiBytes.length > miap.MAX_IMI) throw new MiapError('TOO_LARGE', 'IMI');
    const until = Date.now() + (deadlineMs || 15000);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.sendOnce(imi, imiBytes, content, csha);
      } catch (e) {
        if (e instanceof MiapError && e.code === 'SETTLED') return this.settled(imi.msg_id); // §6.3
        const retry = e instanceof MiapError && e.retry;
        if (!retry || Date.now() + 500 > until) throw e;
        log(`send ${imi.msg_id}: ${e.code} (retryable), attempt ${attempt}, retrying with the same msg_id`);
        await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
      }
    }
  }

  // query asks the brokers for a message's status and history (§6.10).
  async query(msgID) {
    const body = Buffer.from(JSON.stringify({ v: 1, msg_id: msgID }));
    const { reply, frame: sent } = await this.brokerRequest('uims.broker.status', { purpose: 'query', body });
    const f = this.checkReply(reply, 'query-reply', sent);
    return JSON.parse(f.body.toString('utf8'));
  }

  // settled answers a retry the brokers call settled (§6.3): the message's
  // status, or its final failure with its code.
  async settled(msgID) {
    const st = await this.query(msgID);
    log(`send ${msgID}: SETTLED, its state is ${st.state}`);
    if (st.state === 'failed') {
      const last = (st.history || [])[st.history.length - 1] || {};
      const code = last.code && miap.ERRORS[last.code] && !miap.ERRORS[last.code][1] ? last.code : 'EXPIRED';
      throw new MiapError(code, last.reason || 'failed', { reason: last.reason });
    }
    if (['transferred', 'delivered', 'read'].includes(st.state)) return { msg_id: msgID, tx: st.tx, status: st.state };
    throw new MiapError('BUSY', `state ${st.state}: not settled yet`);
  }

  // newIMI makes the IMI of a text message (§6.2) with a fresh msg_id.
  newIMI({ from, to, text, subject, inReplyTo, ctype }) {
    const content = Buffer.from(text, 'utf8');
    const csha = miap.sha256(content);
    const imi = {
      v: 1, msg_id: crypto.randomBytes(16).toString('hex'), gateway: this.party, instance: this.instance,
      from, to, content: { type: ctype || TEXT, length: content.length, sha256: csha.toString('hex') }, created: this.now(),
    };
    if (subject) imi.subject = subject;
    if (inReplyTo) imi.in_reply_to = inReplyTo;
    return { imi, imiBytes: Buffer.from(JSON.stringify(imi)), content, csha };
  }

  async sendOnce(imi, imiBytes, content, csha) {
    const id = imi.msg_id;
    log(`imi ${id} -> uims.broker.imi: from ${imi.from.medium}:${imi.from.address}${imi.from.client ? ` (client ${imi.from.client})` : ''} to ${imi.to}, ${content.length} bytes`);
    const { reply, frame: sent } = await this.sessionRequest('uims.broker.imi', { purpose: 'imi', body: imiBytes });
    return this.forward(imi, content, csha, reply, sent);
  }

  // forward takes the brokers' route reply to the IMI frame sent: it checks
  // the route (§6.3), acknowledges it in strict mode (§6.4) and transfers
  // the content with the ticket (§6.6); it returns the destination's answer.
  async forward(imi, content, csha, reply, sent) {
    const id = imi.msg_id;
    // §6.3: the route frame (outer digest), IMI' and the ticket headers
    const r = this.checkReply(reply, 'route', sent);
    if (r.id.length !== 32) throw new MiapError('MALFORMED', 'route without a 32-byte ID');
    if (r.body.length > miap.MAX_ROUTED) throw new MiapError('TOO_LARGE', 'routed IMI');
    let routed;
    try { routed = JSON.parse(r.body.toString('utf8')); } catch (e) { throw new MiapError('MALFORMED', 'routed IMI not JSON'); }
    const ri = routed && routed.imi;
    if (!ri || ri.msg_id !== id || ri.gateway !== this.party || !ri.content || ri.content.sha256 !== imi.content.sha256 ||
        ri.content.length !== imi.content.length || ri.content.type !== imi.content.type) {
      throw new MiapError('MALFORMED', 'routed IMI does not carry our msg_id, gateway and content');
    }
    const get = Gateway.getter(reply);
    const tp = get(H.ticketParty), tk = get(H.ticketKid), tts = get(H.ticketTs), tmac = get(H.ticketMac);
    if (!tp || !tk || !tts || !tmac) throw new MiapError('MALFORMED', 'route without ticket headers');
    let next, hop;
    if (Array.isArray(routed.conversions) && routed.conversions.length > 0) {
      hop = routed.conversions[0].processor;
      next = `uims.proc.${routed.conversions[0].conversion}`;
    } else {
      hop = routed.dest.gateway;
      next = `uims.gw.${hop}.im`;
    }
    if (tp !== hop) throw new MiapError('BAD_TICKET', `ticket for ${tp}, next hop ${hop}`);
    if (sent.session && sent.session.length) {
      // strict: the route is bound to our C_ack; acknowledge it (§6.4)
      if (!miap.equal(r.session, sent.session)) throw new MiapError('BAD_SESSION', 'route with another C_ack');
      const ra = Buffer.from(JSON.stringify({ v: 1, tx: routed.tx }));
      const { reply: rr, frame: rs } = await this.brokerRequest('uims.broker.routeack', { purpose: 'route-ack', id: r.id, body: ra });
      this.checkReply(rr, 'query-reply', rs);
      log(`route-ack ${id} -> uims.broker.routeack: accepted (strict)`);
    }
    log(`route ${id}: outer digest ok, tx ${routed.tx}, sender ${routed.sender || '-'} -> ${routed.recipient || '-'} ` +
      `at ${routed.dest.medium}:${routed.dest.address} via ${hop}, deadline in ${routed.deadline - this.now()} ms`);
    // §6.6: the ticket frame in headers, body = IMI' ‖ content
    const h = nats.headers();
    const ticket = [[H.version, '1'], [H.purpose, 'ticket'], [H.party, tp], [H.kid, tk], [H.ts, tts],
      [H.id, miap.b64e(r.id)], [H.peer, this.party], [H.ctype, imi.content.type], [H.clen, String(content.length)],
      [H.csha, csha.toString('hex')], [H.expiry, String(routed.deadline)], [H.mac, tmac],
      [H.imiLen, String(r.body.length)], [H.mode, 'fast']];
    for (const [k, v] of ticket) h.set(k, v);
    const timeout = Math.max(1000, Math.min(30000, routed.deadline - this.now()));
    const loginSubject = next.endsWith('.im') ? `${next.slice(0, -3)}.login` : `${next}.login`;
    const transfer = async (token) => {
      if (token) h.set(H.gwSession, token);
      log(`transfer ${id} -> ${next}: ${r.body.length} + ${content.length} bytes with the ticket${token ? ' and session token' : ''}`);
      try {
        return await this.nc.request(next, Buffer.concat([r.body, content]), { headers: h, timeout });
      } catch (e) {
        throw new MiapError(e.code === '503' ? 'NO_ROUTE' : 'BUSY', `${next}: ${e.message}`, { transport: true });
      }
    };
    // A destination running strict mode wants a session token (§6.5): this
    // originator stays in fast mode with the brokers, and logs in to such a
    // destination when it refuses a transfer without one (remembered per hop).
    // In strict mode it logs in to every destination first.
    const first = this.strict || (this.strictHops && this.strictHops.has(hop));
    let tr = await transfer(first ? await this.destLogin(loginSubject, ticket, r.body, id) : null);
    let err = this.errorOf(tr);
    if (err && (err.code === 'BAD_SESSION' || err.code === 'MALFORMED') && !first) {
      log(`transfer ${id}: ${hop} refused ${err.code} without a session token; logging in to it (§6.5)`);
      let token = null;
      try { token = await this.destLogin(loginSubject, ticket, r.body, id); } catch (e) { log(`login to ${hop}: ${e.message}`); }
      if (token) {
        (this.strictHops = this.strictHops || new Set()).add(hop);
        tr = await transfer(token);
        err = this.errorOf(tr);
      }
    }
    if (err) { log(`transfer ${id}: ${hop} refused: ${err.message}${err.reason ? ` (${err.reason})` : ''}`); throw err; }
    const tget = Gateway.getter(tr);
    const status = tget(H.status);
    const out = { msg_id: id, tx: routed.tx, status, dest: routed.dest, recipient: routed.recipient };
    const rc = tget(H.receipt);
    if (rc) out.receipt = this.checkReceipt(rc, r.id, hop);
    log(`transfer ${id}: ${hop} answered ${status}${out.receipt ? `; receipt verified: ${out.receipt.status}` : '; no receipt'}`);
    // the brokers store no notification for a relayed status (§6.8): the
    // receipt is this message's delivered (or failed) notification
    if (out.receipt && this.opts.onNotify) this.opts.onNotify(Object.assign({ via: 'receipt' }, out.receipt));
    return out;
  }

  // destLogin logs in to a destination (§6.5): the ticket frame in headers,
  // body = IMI'; the answer carries its session token in Miap-Gw-Session.
  async destLogin(subject, ticket, routedBytes, id) {
    const h = nats.headers();
    for (const [k, v] of ticket) if (k !== H.imiLen && k !== H.mode) h.set(k, v);
    h.set(H.mode, 'strict');
    let rep;
    try {
      rep = await this.nc.request(subject, routedBytes, { headers: h, timeout: 5000 });
    } catch (e) {
      throw new MiapError(e.code === '503' ? 'NO_ROUTE' : 'BUSY', `${subject}: ${e.message}`, { transport: true });
    }
    const err = this.errorOf(rep);
    if (err) throw err;
    const token = Gateway.getter(rep)(H.gwSession);
    if (!token) throw new MiapError('MALFORMED', `${subject}: no session token`);
    log(`login ${id} -> ${subject}: session token received`);
    return token;
  }

  // checkReceipt verifies a relayed receipt (§6.8) with our own key.
  checkReceipt(b64, id, hop) {
    const { frame, mac } = miap.parseCompact(miap.b64d(b64, H.receipt));
    if (frame.purpose !== 'receipt' || frame.party !== this.party) throw new MiapError('BAD_MAC', 'receipt for another party or purpose');
    if (!miap.equal(frame.id, id)) throw new MiapError('ID_MISMATCH', 'receipt with another ID');
    miap.verify(this.keys, frame, mac, { now: this.now() });
    if (frame.peer && frame.peer !== hop) log(`receipt: peer ${frame.peer}, first hop ${hop}`);
    return JSON.parse(frame.body.toString('utf8'));
  }

  // ---- §6.9 notifications -----------------------------------------------

  async takeNotifications() {
    const stream = 'UIMS_STATUS', durable = `status-${this.party}`, subject = `uims.gw.${this.party}.status`;
    for (;;) {
      try {
        const jsm = await this.nc.jetstreamManager({ checkAPI: false });
        await jsm.consumers.add(stream, { durable_name: durable, filter_subject: subject, ack_policy: nats.AckPolicy.Explicit });
        const c = await this.nc.jetstream().consumers.get(stream, durable);
        log(`taking notifications from ${stream} (${subject}) with durable consumer ${durable}`);
        const msgs = await c.consume();
        for await (const m of msgs) this.onNotify(m);
        return;
      } catch (e) {
        if (this.closing) return;
        log(`notifications: ${e.message}; retrying in 5 s`);
        await new Promise((r) => setTimeout(r, 5000));
      }
    }
  }

  onNotify(m) {
    try {
      const get = (n) => (m.headers ? m.headers.get(n, nats.Match.IgnoreCase) : '');
      const { frame, mac } = miap.frameFromHeaders(get, Buffer.from(m.data), 'notify');
      if (frame.party !== this.party) throw new MiapError('BAD_MAC', `notify names ${frame.party}`);
      miap.verify(this.keys, frame, mac, { now: this.now(), noAge: true });
      const ev = JSON.parse(frame.body.toString('utf8'));
      log(`notify ${ev.msg_id}: ${ev.status}${ev.code ? ` ${ev.code}` : ''}${ev.reason ? ` (${ev.reason})` : ''}`);
      if (this.opts.onNotify) this.opts.onNotify(Object.assign({ via: 'notify' }, ev));
      m.ack(); // the originator's final acknowledgement
    } catch (e) {
      log(`notify refused: ${e.message}`);
      m.term();
    }
  }

  async close() {
    this.closing = true;
    for (const t of this.timers) clearInterval(t);
    if (this.nc && !this.nc.isClosed()) {
      try { if (this.announcing) this.announce(0); } catch (e) { /* closing */ }
      if (this.srv) await this.srv.stop().catch(() => {});
      await this.nc.drain().catch(() => {});
    }
  }
}

module.exports = { Gateway, loadBundle, log, TEXT, VERSION, ERROR_TEXT };
