#!/usr/bin/env node
'use strict';
// UIMS echo bot: an external gateway for medium "bot" joining the fabric
// with a party bundle alone (README.md).
//
//   node bot.js [serve] [--stall hang|noack] [BUNDLE_DIR]   run the echo bot
//   node bot.js send [--bundle DIR] --to TO [--from ADDRESS] [--client ID]
//                    [--subject S] [--timeout MS] TEXT        one message, then exit
//   node bot.js probe [--bundle DIR] --to TO [--from ADDRESS] [--client ID]
//                     [--timeout MS]                         frames the brokers refuse, then a valid one
//
// BUNDLE_DIR defaults to $UIMS_BUNDLE. Deliveries and status notifications
// are appended as JSON lines to $BOT_INBOX (default: stdout); every step is
// logged on stderr. --stall defaults to $BOT_STALL (1 means hang).

const fs = require('fs');
const { Gateway, loadBundle, log } = require('./gateway');

function usage(msg) {
  if (msg) process.stderr.write(`bot.js: ${msg}\n`);
  process.stderr.write('usage: node bot.js [serve] [--stall hang|noack] [BUNDLE_DIR]\n' +
    '       node bot.js send [--bundle DIR] --to TO [--from ADDRESS] [--client ID] [--subject S] [--timeout MS] TEXT\n' +
    '       node bot.js probe [--bundle DIR] --to TO [--from ADDRESS] [--client ID] [--timeout MS]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const out = { cmd: 'serve', flags: {}, rest: [] };
  let i = 0;
  if (['send', 'serve', 'probe'].includes(argv[0])) { out.cmd = argv[0]; i = 1; }
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') usage();
    if (a.startsWith('--')) {
      const [k, v] = a.includes('=') ? [a.slice(2, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a.slice(2), argv[++i]];
      if (v === undefined) usage(`--${k} needs a value`);
      out.flags[k] = v;
    } else {
      out.rest.push(a);
    }
  }
  return out;
}

// writeInbox appends one JSON line to $BOT_INBOX, or writes it to stdout.
function writeInbox(obj) {
  const line = `${JSON.stringify(obj)}\n`;
  if (process.env.BOT_INBOX) fs.appendFileSync(process.env.BOT_INBOX, line);
  else process.stdout.write(line);
}

// stallMode reads --stall or $BOT_STALL: '' (answer and acknowledge),
// 'hang' (take transfers, answer nothing) or 'noack' (deliver, answer
// transferred, never acknowledge to the brokers).
function stallMode(v) {
  if (v === undefined || v === '' || v === '0') return '';
  if (v === '1' || v === 'hang') return 'hang';
  if (v === 'noack') return 'noack';
  return usage(`--stall ${v}: want hang or noack`);
}

async function serve(bundleDir, stall) {
  const bundle = loadBundle(bundleDir);
  let gw;
  // processed: the echo was sent (or could not be) for a delivered
  // message; the bot then acknowledges it read (§6.8).
  const processed = (imi) => gw.read(imi.msg_id)
    .catch((e) => log(`read ${imi.msg_id}: acknowledgement failed: ${e.message}`));
  gw = new Gateway(bundle, {
    stall,
    deliver: async ({ routed, content }) => {
      const imi = routed.imi;
      writeInbox({
        kind: 'message', at: gw.now(), msg_id: imi.msg_id, tx: routed.tx, from: imi.from, sender: routed.sender,
        to: imi.to, recipient: routed.recipient, address: routed.dest.address, subject: imi.subject,
        type: imi.content.type, text: content.toString('utf8'), in_reply_to: imi.in_reply_to,
      });
      log(`delivered ${imi.msg_id} to ${routed.dest.medium}:${routed.dest.address}${process.env.BOT_INBOX ? ` (${process.env.BOT_INBOX})` : ''}`);
      return 'delivered';
    },
    // the echo: reply as the bot address the message came in on, to its
    // sender; then the message is read
    onDelivered: ({ routed, content }) => {
      const imi = routed.imi;
      if (imi.from && imi.from.medium === gw.medium) {
        log(`echo ${imi.msg_id}: sender is on medium ${gw.medium} too, not echoing (no bot loops)`);
        return processed(imi);
      }
      if (!routed.sender) {
        log(`echo ${imi.msg_id}: sender is no client (outside address ${imi.from && imi.from.address}), not echoing`);
        return processed(imi);
      }
      const from = { medium: routed.dest.medium, address: routed.dest.address };
      if (routed.recipient) from.client = routed.recipient;
      const text = `echo: ${content.toString('utf8')}`;
      return gw.send({ from, to: routed.sender, text, subject: imi.subject, inReplyTo: imi.msg_id }, 30000)
        .then((r) => log(`echo ${imi.msg_id}: reply ${r.msg_id} ${r.status}`))
        .catch((e) => log(`echo ${imi.msg_id}: reply failed: ${e.message}`))
        .then(() => processed(imi));
    },
    onNotify: (ev) => writeInbox({ kind: 'status', at: gw.now(), via: ev.via, msg_id: ev.msg_id, status: ev.status, code: ev.code, reason: ev.reason }),
  });
  if (stall) log(`stall mode ${stall}: ${stall === 'hang' ? 'transfers and deadline checks are never answered' : 'transfers are answered transferred and never acknowledged'}`);
  await gw.connect();
  await gw.serve();
  gw.startAnnouncing();
  gw.takeNotifications();
  const stop = async (sig) => {
    log(`${sig}: announcing ttl 0 and stopping`);
    await gw.close();
    process.exit(0);
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  const done = await gw.nc.closed();
  if (done) { log(`connection closed: ${done.message}`); process.exit(1); }
}

async function send(args) {
  const bundle = loadBundle(args.flags.bundle || process.env.UIMS_BUNDLE);
  const text = args.rest.join(' ');
  if (!args.flags.to) usage('send needs --to');
  if (!text) usage('send needs a text');
  const gw = new Gateway(bundle, {});
  const from = sender(args, gw, bundle);
  await gw.connect();
  let code = 0;
  try {
    const r = await gw.send({ from, to: args.flags.to, text, subject: args.flags.subject },
      Number(args.flags.timeout || 15000));
    process.stdout.write(`${JSON.stringify(r)}\n`);
    if (r.status !== 'delivered' && r.status !== 'transferred') code = 1;
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ error: e.code || 'INTERNAL', message: e.message, reason: e.reason || undefined })}\n`);
    code = 1;
  }
  await gw.close();
  process.exit(code);
}

// sender reads --from and --client: the bot address to speak as.
function sender(args, gw, bundle) {
  const from = { medium: gw.medium, address: args.flags.from || process.env.BOT_ADDRESS || bundle.party };
  if (args.flags.client) from.client = args.flags.client;
  return from;
}

// probe prints one JSON line per case (probe.js) and exits 0 if every
// answer was the documented one and the valid message was delivered.
async function probe(args) {
  const bundle = loadBundle(args.flags.bundle || process.env.UIMS_BUNDLE);
  if (!args.flags.to) usage('probe needs --to');
  const gw = new Gateway(bundle, {});
  await gw.connect();
  let code = 0;
  try {
    const results = await require('./probe').run(gw, { from: sender(args, gw, bundle), to: args.flags.to },
      Number(args.flags.timeout || 15000));
    for (const r of results) {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      if (!r.ok) code = 1;
    }
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ case: 'probe', error: e.code || 'INTERNAL', message: e.message })}\n`);
    code = 1;
  }
  await gw.close();
  process.exit(code);
}

const args = parseArgs(process.argv.slice(2));
const commands = {
  send: () => send(args),
  probe: () => probe(args),
  serve: () => serve(args.rest[0] || args.flags.bundle || process.env.UIMS_BUNDLE,
    stallMode(args.flags.stall !== undefined ? args.flags.stall : process.env.BOT_STALL)),
};
commands[args.cmd]().catch((e) => { log(`fatal: ${process.env.BOT_DEBUG ? e.stack : e.message}`); process.exit(1); });
