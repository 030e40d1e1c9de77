// A third-party SMS centre for the UIMS SMS gateway tests, on the npm
// package smpp 0.5.1 (node-smpp). It accepts transceiver binds, answers
// submit_sm with message ids in its own format (upper-case hex with leading
// zeros), sends a delivery receipt for each part whose registered_delivery
// asks for one, writing the id in decimal in the receipt text (stat UNDELIV
// for destinations ending in 99), and sends mobile-originated deliver_sm on
// command. Events are written to stdout as JSON lines; commands are read from
// stdin as JSON lines: {"cmd":"mo","source":"...","dest":"...","text":"..."}.
//
// Environment: PORT (default 0: any free port), PASSWORD (default "secret").
'use strict';
const smpp = require('smpp');
const readline = require('readline');

const port = +(process.env.PORT || 0);
const password = process.env.PASSWORD || 'secret';
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
let sessions = [];
let next = 0x0a1b00;

const server = smpp.createServer({ debug: false }, (session) => {
  session.on('error', () => {});
  session.on('close', () => { sessions = sessions.filter((s) => s !== session); });
  session.on('bind_transceiver', (pdu) => {
    if (pdu.password !== password) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      out({ event: 'bindfail', system_id: pdu.system_id });
      session.close();
      return;
    }
    session.send(pdu.response({ system_id: 'nodesmsc' }));
    sessions.push(session);
    out({ event: 'bound', system_id: pdu.system_id });
  });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => { session.send(pdu.response()); session.close(); });
  session.on('submit_sm', (pdu) => {
    const sm = pdu.short_message;
    const id = (++next).toString(16).toUpperCase().padStart(10, '0');
    session.send(pdu.response({ message_id: id }));
    out({
      event: 'submit_sm', id,
      source_addr: pdu.source_addr, source_addr_ton: pdu.source_addr_ton,
      destination_addr: pdu.destination_addr, dest_addr_ton: pdu.dest_addr_ton,
      esm_class: pdu.esm_class, data_coding: pdu.data_coding, registered_delivery: pdu.registered_delivery,
      udh: (sm.udh || []).map((b) => b.toString('hex')),
      text: typeof sm.message === 'string' ? sm.message : Buffer.from(sm.message || sm).toString('hex'),
    });
    if (pdu.registered_delivery & 1) {
      setTimeout(() => {
        const stat = pdu.destination_addr.endsWith('99') ? 'UNDELIV' : 'DELIVRD';
        const text = 'id:' + parseInt(id, 16) + ' sub:001 dlvrd:' + (stat === 'DELIVRD' ? '001' : '000') +
          ' submit date:2401011200 done date:2401011201 stat:' + stat + ' err:' + (stat === 'DELIVRD' ? '000' : '001') + ' text:';
        session.deliver_sm({ source_addr: pdu.destination_addr, destination_addr: pdu.source_addr, esm_class: 4, short_message: text },
          (resp) => out({ event: 'receipt_resp', id, status: resp.command_status }));
      }, 20);
    }
  });
});

server.listen(port, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }));

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let c;
  try { c = JSON.parse(line); } catch (e) { return; }
  if (c.cmd === 'mo') {
    const s = sessions[0];
    if (!s) { out({ event: 'mo_resp', status: -1 }); return; }
    s.deliver_sm({ source_addr: c.source, source_addr_ton: 1, source_addr_npi: 1, destination_addr: c.dest, short_message: c.text },
      (resp) => out({ event: 'mo_resp', status: resp.command_status }));
  }
});
process.stdin.on('end', () => process.exit(0));
