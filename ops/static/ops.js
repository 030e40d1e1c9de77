// UIMS operator view: the fabric as a live picture, throughput and latency,
// recent transactions, and one message's MIAP timeline (patent figure 5 for
// a real message). Plain JavaScript, no build step; it reads /ops/api/.
'use strict';

const SVGNS = 'http://www.w3.org/2000/svg';
const MEDIA = { web: 'Web', email: 'E-mail', sms: 'SMS', fax: 'Fax', voice: 'Voice', bot: 'Bot', processor: 'Processor' };
const MEDIUM_COLOR = { web: '#2454d6', email: '#6a2bb8', sms: '#1d7a46', fax: '#7a4a14', voice: '#a04d00', bot: '#0d6565', processor: '#5d6679' };
const FINAL = { read: true, failed: true, rejected: true };

const state = { token: null, es: null, version: -1, selected: null, timeline: null, loadingTl: false, q: '', txTimer: null, usageQ: '', usageTimer: null };

const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}

function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVGNS, tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else el.setAttribute(k, v === true ? '' : v);
  }
}

function append(el, kids) {
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
}

function when(ms) {
  if (!ms) return '';
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function preciseTime(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return '';
  if (ms < 1) return ms.toFixed(2) + ' ms';
  if (ms < 100) return ms.toFixed(1) + ' ms';
  if (ms < 10000) return Math.round(ms) + ' ms';
  return (ms / 1000).toFixed(1) + ' s';
}

function fmtRate(r) { return r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2); }

const isCode = (r) => /^[A-Z][A-Z_]+$/.test(r || '') && r !== 'OK';

// ---- API and sign in ----

class ApiError extends Error {
  constructor(status, code, message) { super(message || 'HTTP ' + status); this.status = status; this.code = code; }
}

async function api(path) {
  let r;
  try {
    r = await fetch(path, { headers: { Authorization: 'Bearer ' + state.token } });
  } catch (e) {
    throw new ApiError(0, 'NETWORK', 'Cannot reach the gateway.');
  }
  let data = null;
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) {
    if (r.status === 401 && state.es) signOut('The operator token is no longer accepted. Sign in again.');
    throw new ApiError(r.status, data && data.code, data && data.error);
  }
  return data;
}

async function signIn(token, quiet) {
  state.token = token;
  const fabric = await api('/ops/api/fabric');
  sessionStorage.setItem('uims.ops.token', token);
  $('signin').hidden = true;
  $('app').hidden = false;
  $('who').hidden = false;
  renderFabric(fabric);
  connect();
  clearInterval(state.usageTimer);
  state.usageTimer = setInterval(() => { if (state.token) loadUsage(); }, 5000);
  loadUsage();
  await loadTransactions();
  const m = /msg=([0-9a-fA-F]+)/.exec(location.hash);
  if (m) selectMessage(m[1].toLowerCase(), true);
  else if (!quiet) $('fabric-h').setAttribute('tabindex', '-1'), $('fabric-h').focus();
}

function signOut(message) {
  if (state.es) state.es.close();
  clearInterval(state.usageTimer);
  Object.assign(state, { token: null, es: null, version: -1, selected: null, timeline: null });
  sessionStorage.removeItem('uims.ops.token');
  $('app').hidden = true;
  $('who').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  $('signin-error').hidden = !message;
  $('token').value = '';
  $('token').focus();
}

async function onSignIn(ev) {
  ev.preventDefault();
  const input = $('token'), err = $('signin-error');
  const token = input.value.trim();
  err.hidden = true;
  input.removeAttribute('aria-invalid');
  if (!token) {
    input.setAttribute('aria-invalid', 'true');
    err.textContent = 'Enter the operator token.';
    err.hidden = false;
    return input.focus();
  }
  $('signin-button').disabled = true;
  try {
    await signIn(token);
  } catch (e) {
    input.setAttribute('aria-invalid', 'true');
    err.textContent = e.status === 401 ? 'This operator token is not valid.' :
      e.status === 404 ? 'The operator view is off: this gateway has no operator token configured.' : e.message;
    err.hidden = false;
    input.focus();
  } finally {
    $('signin-button').disabled = false;
  }
}

// ---- live stream ----

function setLive(text, cls) {
  $('live').textContent = text;
  $('live').className = 'live ' + (cls || '');
}

function connect() {
  if (state.es) state.es.close();
  const es = new EventSource('/ops/api/stream?access_token=' + encodeURIComponent(state.token));
  state.es = es;
  setLive('connecting');
  es.addEventListener('open', () => setLive('live', 'on'));
  es.addEventListener('error', () => { if (es === state.es) setLive('reconnecting', 'off'); });
  es.addEventListener('snapshot', (e) => {
    const snap = JSON.parse(e.data);
    renderFabric(snap.fabric);
    renderStats(snap.stats);
    if (snap.version !== state.version) {
      state.version = snap.version;
      loadTransactions();
      if (state.selected && !(state.timeline && FINAL[state.timeline.state] && Date.now() - state.timeline.last > 5000)) {
        loadTimeline(state.selected, true);
      }
    }
  });
}

// ---- fabric picture ----

function nodeLabel(n) {
  if (n.kind === 'broker') return 'Brokers';
  if (n.kind === 'processor') return 'Processor';
  return (MEDIA[n.medium] || n.medium || n.name) + ' gateway';
}

// layout puts the gateways in a column on the left, the brokers in the
// middle and the processors on the right; the height grows with the nodes.
function layout(nodes) {
  const gws = nodes.filter((n) => n.kind === 'gateway');
  const procs = nodes.filter((n) => n.kind === 'processor');
  const rows = Math.max(gws.length, procs.length, 1);
  const H = Math.max(230, rows * 104 + 40);
  const pos = { H };
  for (const n of nodes) if (n.kind === 'broker') pos[n.id] = { x: 535, y: H / 2, w: 196, h: 80 };
  const column = (list, x, w) => list.forEach((n, i) => {
    pos[n.id] = { x, y: H / 2 + (i - (list.length - 1) / 2) * 104, w, h: 64 };
  });
  column(gws, 210, 160);
  column(procs, 778, 146);
  return pos;
}

// border returns where the segment from a's centre towards b leaves a's box.
function border(a, b) {
  const dx = b.x - a.x, dy = b.y - a.y;
  if (!dx && !dy) return { x: a.x, y: a.y };
  const t = Math.min(dx ? (a.w / 2 + 4) / Math.abs(dx) : Infinity, dy ? (a.h / 2 + 4) / Math.abs(dy) : Infinity);
  return { x: a.x + dx * t, y: a.y + dy * t };
}

function renderFabric(f) {
  const svg = $('graph');
  const pos = layout(f.nodes);
  svg.setAttribute('viewBox', '0 0 860 ' + pos.H);
  const nodes = Object.fromEntries(f.nodes.map((n) => [n.id, n]));
  const kids = [svg.querySelector('title'), svg.querySelector('desc'), s('defs', {},
    marker('arrow', '#2454d6'), marker('arrow-idle', '#9aa3b5'), marker('arrow-im', '#1d7a46'))];
  // edges between a node and the brokers: one line each way; transfers: arcs
  const pairs = {};
  const arcs = [];
  for (const e of f.edges) {
    if (!pos[e.from] || !pos[e.to]) continue;
    if (e.kind === 'im') { arcs.push(e); continue; }
    const key = e.from + '>' + e.to;
    (pairs[key] = pairs[key] || []).push(e);
  }
  const edgeGroup = s('g', {});
  const labelGroup = s('g', {});
  for (const [key, es] of Object.entries(pairs)) {
    const [from, to] = key.split('>');
    const a = pos[from], b = pos[to];
    const rate = es.reduce((t, e) => t + e.rate, 0);
    // the two directions side by side, each with its label on its own side
    const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
    const off = 5, ox = -dy / len * off, oy = dx / len * off;
    const p = border(a, b), q = border(b, a);
    const active = rate > 0;
    edgeGroup.append(s('line', { x1: p.x + ox, y1: p.y + oy, x2: q.x + ox, y2: q.y + oy,
      stroke: active ? '#2454d6' : '#9aa3b5', 'stroke-width': width(rate), 'stroke-dasharray': active ? null : '5 4',
      'marker-end': active ? 'url(#arrow)' : 'url(#arrow-idle)' }, s('title', {}, es.map(edgeText).join(', '))));
    // the label near the gateway's end, on the line's own side
    const lines = es.map(edgeText);
    const g = nodes[from] && nodes[from].kind === 'broker' ? q : p, o = g === p ? q : p;
    let mx, my;
    if (Math.hypot(o.x - g.x, o.y - g.y) < 130) { // a short edge: the label above or below its middle
      mx = (g.x + o.x) / 2;
      my = (g.y + o.y) / 2 + (oy >= 0 ? 1 : -1) * (lines.length * 7 + 16);
    } else {
      mx = g.x + (o.x - g.x) * 0.3 + (g.x < o.x ? 12 : -12);
      my = g.y + (o.y - g.y) * 0.3 + (oy >= 0 ? 1 : -1) * (lines.length * 7 + 6);
    }
    labelGroup.append(label(mx, my, lines, active));
  }
  for (const e of arcs) {
    const a = pos[e.from], b = pos[e.to];
    const active = e.rate > 0;
    const attrs = { fill: 'none', stroke: active ? '#1d7a46' : '#9aa3b5', 'stroke-width': width(e.rate),
      'stroke-dasharray': active ? null : '5 4', 'marker-end': active ? 'url(#arrow-im)' : 'url(#arrow-idle)' };
    let d, lx, ly;
    const left = a.x - a.w / 2;
    if (e.from === e.to) { // a gateway delivering to itself: a loop on its left
      d = `M${left - 2},${a.y - 16} C${left - 66},${a.y - 56} ${left - 66},${a.y + 56} ${left - 6},${a.y + 16}`;
      lx = left - 50; ly = a.y;
    } else { // between two gateways of the column: an arc on the left
      const bl = b.x - b.w / 2;
      const kx = Math.min(left, bl) - 60 - Math.abs(a.y - b.y) / 6, ky = (a.y + b.y) / 2;
      d = `M${left - 2},${a.y} Q${kx},${ky} ${bl - 6},${b.y}`;
      lx = (left + 2 * kx + bl) / 4; ly = ky;
    }
    edgeGroup.append(s('path', Object.assign({ d }, attrs), s('title', {}, 'content transfer: ' + edgeText(e))));
    labelGroup.append(label(lx, ly, [edgeText(e)], active, true));
  }
  kids.push(edgeGroup);
  for (const n of f.nodes) kids.push(drawNode(n, pos[n.id]));
  kids.push(labelGroup);
  if (f.nodes.length <= 1 && !f.edges.length) {
    kids.push(s('text', { x: 210, y: pos.H / 2, 'text-anchor': 'middle', fill: '#5d6679', 'font-size': 13 }, 'Waiting for gateways…'));
  }
  svg.replaceChildren(...kids);
  $('graph-desc').textContent = f.nodes.map((n) => nodeLabel(n) + ' with ' + n.instances.length + ' instance' + (n.instances.length === 1 ? '' : 's')).join('; ') +
    '. ' + f.edges.map((e) => (nodes[e.from] ? nodes[e.from].name : e.from) + ' to ' + (nodes[e.to] ? nodes[e.to].name : e.to) + ': ' + edgeText(e)).join('; ');
  renderGateways(f.nodes);
  renderBrokers(f.nodes.find((n) => n.kind === 'broker'));
}

function marker(id, color) {
  return s('marker', { id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
    s('path', { d: 'M0,0 L10,5 L0,10 z', fill: color }));
}

function width(rate) { return (1.6 + Math.min(4, Math.log2(1 + rate))).toFixed(2); }

function edgeText(e) {
  const name = { imi: 'IMI', im: 'IM', ack: 'ack', status: 'status', conv: 'conv', login: 'login', routeack: 'route ack' }[e.kind] || e.kind;
  return name + ' ' + fmtRate(e.rate) + '/s';
}

function label(x, y, lines, active, green) {
  const g = s('g', {});
  const w = Math.max(...lines.map((l) => l.length)) * 6.4 + 12, hh = lines.length * 14 + 6;
  g.append(s('rect', { x: x - w / 2, y: y - hh / 2, width: w, height: hh, rx: 5, fill: '#fff', stroke: active ? (green ? '#9fd3b4' : '#b9c8f3') : '#dfe3ea' }));
  lines.forEach((l, i) => g.append(s('text', { x, y: y - hh / 2 + 14 + i * 14, 'text-anchor': 'middle', 'font-size': 11.5,
    fill: active ? (green ? '#1d6b3f' : '#1f46b5') : '#5d6679' }, l)));
  return g;
}

function drawNode(n, p) {
  const g = s('g', { class: 'node', 'data-id': n.id });
  const x = p.x - p.w / 2, y = p.y - p.h / 2;
  const broker = n.kind === 'broker';
  const color = broker ? '#141a2a' : (MEDIUM_COLOR[n.medium] || '#5d6679');
  g.append(s('title', {}, nodeLabel(n) + (n.not_routable ? ' (not routable: no heartbeat)' : '') + (n.queue ? '\nqueue: ' + n.queue : '') +
    (n.service ? '\nservice: ' + n.service : '') + '\n' + n.instances.map(instanceText).join('\n') +
    (n.traffic ? '\n' + trafficText(n.traffic.rate) : '')));
  g.append(s('rect', { x, y, width: p.w, height: p.h, rx: 10, fill: broker ? '#141a2a' : '#fff', stroke: n.not_routable ? '#f0a43a' : color,
    'stroke-width': broker ? 0 : 1.6, 'stroke-dasharray': n.not_routable ? '6 4' : null }));
  if (!broker) g.append(s('rect', { x, y, width: 6, height: p.h, rx: 3, fill: color }));
  const ink = broker ? '#fff' : '#1d2330', sub = broker ? '#aeb8d0' : '#5d6679';
  g.append(s('text', { x: p.x, y: y + 22, 'text-anchor': 'middle', 'font-weight': 700, 'font-size': 14, fill: ink }, nodeLabel(n)));
  const count = n.instances.length;
  g.append(s('text', { x: p.x, y: y + 39, 'text-anchor': 'middle', 'font-size': 11.5, fill: sub },
    (n.kind === 'processor' && n.conversions && n.conversions.length ? n.conversions.join(', ') : n.name) + ' · ' + count + ' instance' + (count === 1 ? '' : 's')));
  // one dot per instance (up to 12)
  const dots = Math.min(count, 12);
  for (let i = 0; i < dots; i++) {
    const fresh = n.instances[i].age_ms < 5000 && !n.instances[i].unannounced;
    g.append(s('circle', { cx: p.x - (dots - 1) * 6 + i * 12, cy: y + p.h - 12, r: 4, fill: fresh ? '#3ccf7a' : '#f0a43a' },
      s('title', {}, n.instances[i].id)));
  }
  if (!count) g.append(s('text', { x: p.x, y: y + p.h - 8, 'text-anchor': 'middle', 'font-size': 11, fill: '#f0a43a' }, 'no live instance'));
  return g;
}

function instanceText(i) {
  return i.id + (i.version ? ' v' + i.version : '') + (i.miap_mode ? ' · ' + i.miap_mode : '') + (i.unannounced ? ' · no heartbeat' : '');
}

function trafficText(r) {
  return 'received ' + fmtRate(r.received) + '/s, delivered ' + fmtRate(r.delivered + r.transferred) + '/s, failed ' +
    fmtRate(r.failed + r.refused) + '/s, sent ' + fmtRate(r.sent) + '/s';
}

// renderGateways lists the gateways, bots among them, with their medium,
// instances and rates, from their micro services uims-gw-<party>.
function renderGateways(nodes) {
  const box = $('gateways');
  const gws = nodes.filter((n) => n.kind === 'gateway' && (n.service || n.traffic));
  if (!gws.length) { box.replaceChildren(); return; }
  const col = (text, n, title) => h('th', { scope: 'col', class: n ? 'n' : null, title }, text);
  box.replaceChildren(h('div', { class: 'scroll' }, h('table', { class: 'mini', id: 'gateway-table', 'aria-label': 'Gateways: instances and rates' },
    h('thead', {}, h('tr', {}, col('Gateway'), col('Instances'), col('Received', true, 'IM transfers that reached the gateway'),
      col('Delivered', true, 'delivered or handed on by the medium'), col('Failed', true, 'failed by the medium or refused by the gateway'),
      col('Sent', true, 'messages the gateway originated and the brokers routed'), col('Codes, last minute'))),
    h('tbody', {}, gws.map(gatewayRow)))),
    h('p', { class: 'caption' }, 'Gateways, bots among them, from their micro services (', h('code', {}, 'nats micro stats uims-gw-<party>'),
      '): per second over the last 10 s, and below, the total of the last minute. A dashed node has no heartbeat: the brokers route nothing to it.'));
}

function gatewayRow(n) {
  const t = n.traffic || { rate: {}, minute: {} };
  const r = t.rate, m = t.minute;
  const z = (v) => v || 0;
  const cell = (rate, total, bad) => h('td', { class: bad && total ? 'n res-bad' : 'n' },
    h('span', { class: 'rate' }, fmtRate(rate) + '/s'), h('span', { class: 'sub' }, total + ' / min'));
  const codes = Object.entries(t.codes || {}).sort((a, b) => b[1] - a[1]);
  return h('tr', { 'data-gw': n.name },
    h('td', { class: 'nw' }, h('span', { class: 'badge m-' + (MEDIUM_COLOR[n.medium] && n.medium !== 'processor' ? n.medium : 'other') }, MEDIA[n.medium] || n.medium || '?'),
      ' ', n.name, n.not_routable ? h('span', { class: 'sub res-bad', title: 'no live heartbeat: the brokers route nothing to it' }, 'not routable') : null),
    h('td', {}, n.instances.map((i) => h('div', { class: 'mono nw' }, instanceText(i)))),
    cell(z(r.received), z(m.received)),
    cell(z(r.delivered) + z(r.transferred), z(m.delivered) + z(m.transferred)),
    cell(z(r.failed) + z(r.refused), z(m.failed) + z(m.refused), true),
    cell(z(r.sent), z(m.sent)),
    h('td', { class: codes.length ? 'res-bad' : null }, codes.length ? codes.map(([c, k]) => c + ' ' + k).join(', ') : 'none'));
}

function renderBrokers(b) {
  const box = $('brokers');
  if (!b || !b.endpoints || !b.endpoints.length) { box.replaceChildren(); return; }
  const rej = Object.entries(b.rejections || {}).sort((x, y) => y[1] - x[1]);
  box.replaceChildren(
    h('table', { class: 'mini', 'aria-label': 'Broker endpoints over all instances' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Broker endpoint'), h('th', { scope: 'col', class: 'n' }, 'Requests'),
        h('th', { scope: 'col', class: 'n' }, 'Refused'))),
      h('tbody', {}, b.endpoints.filter((e) => e.requests > 0).map((e) => h('tr', {}, h('td', {}, e.name), h('td', { class: 'n' }, e.requests),
        h('td', { class: 'n' }, e.errors))))),
    h('p', { class: 'caption' }, 'MIAP refusals by code: ', rej.length ? rej.map(([c, n]) => c + ' ' + n).join(', ') : 'none'));
}

// ---- throughput and latency ----

function renderStats(st) {
  const fig = (k, v, unit) => h('div', { class: 'figure' }, h('div', { class: 'v' }, v, unit ? h('small', {}, ' ' + unit) : null), h('div', { class: 'k' }, k));
  $('figures').replaceChildren(
    fig('delivered per second, last minute', fmtRate(st.rate)),
    fig('latency p50', st.p50_ms ? fmtMs(st.p50_ms) : '–'),
    fig('latency p99', st.p99_ms ? fmtMs(st.p99_ms) : '–'),
    fig('accepted, last minute', st.accepted),
    fig('read, last minute', st.read),
    fig('failed / rejected, last minute', st.failed + ' / ' + st.rejected));
  const svg = $('chart');
  const W = 520, H = 220, L = 40, R = 52, T = 16, B = 26;
  const pts = st.points || [];
  const step = st.step_s || 10;
  const rates = pts.map((p) => p.delivered / step);
  const maxRate = nice(Math.max(1, ...rates));
  const maxLat = nice(Math.max(1, ...pts.map((p) => p.p99_ms)));
  const pw = (W - L - R) / Math.max(pts.length, 1);
  const y = (v, max) => T + (H - T - B) * (1 - v / max);
  const kids = [svg.querySelector('title'), svg.querySelector('desc')];
  for (let i = 0; i <= 4; i++) {
    const yy = T + (H - T - B) * i / 4;
    kids.push(s('line', { x1: L, x2: W - R, y1: yy, y2: yy, stroke: '#eceff4' }));
    kids.push(s('text', { x: L - 6, y: yy + 4, 'text-anchor': 'end', 'font-size': 10.5, fill: '#5d6679' }, fmtRate(maxRate * (1 - i / 4))));
    kids.push(s('text', { x: W - R + 6, y: yy + 4, 'font-size': 10.5, fill: '#a04d00' }, fmtMs(maxLat * (1 - i / 4))));
  }
  kids.push(s('text', { x: 2, y: 9, 'font-size': 10, fill: '#5d6679' }, 'msg/s'));
  kids.push(s('text', { x: W - 2, y: 9, 'text-anchor': 'end', 'font-size': 10, fill: '#a04d00' }, 'latency'));
  pts.forEach((p, i) => {
    const r = rates[i];
    if (r > 0) kids.push(s('rect', { x: L + i * pw + 1, y: y(r, maxRate), width: Math.max(pw - 2, 1), height: H - B - y(r, maxRate), fill: '#b9c8f3' },
      s('title', {}, when(p.t) + ': ' + p.delivered + ' delivered, p50 ' + fmtMs(p.p50_ms) + ', p99 ' + fmtMs(p.p99_ms))));
  });
  for (const [key, color, dash] of [['p50_ms', '#2454d6', null], ['p99_ms', '#a04d00', '4 3']]) {
    const line = pts.map((p, i) => p[key] > 0 ? [L + i * pw + pw / 2, y(p[key], maxLat)] : null);
    let d = '';
    let pen = false;
    for (const q of line) {
      if (!q) { pen = false; continue; }
      d += (pen ? 'L' : 'M') + q[0].toFixed(1) + ',' + q[1].toFixed(1);
      pen = true;
    }
    if (d) kids.push(s('path', { d, fill: 'none', stroke: color, 'stroke-width': 2, 'stroke-dasharray': dash }));
    line.forEach((q) => { if (q) kids.push(s('circle', { cx: q[0], cy: q[1], r: 2.6, fill: color })); });
  }
  if (pts.length) {
    const mins = Math.round(pts.length * step / 60);
    kids.push(s('text', { x: L, y: H - 8, 'font-size': 10.5, fill: '#5d6679' }, '−' + mins + ' min'));
    kids.push(s('text', { x: W - R, y: H - 8, 'text-anchor': 'end', 'font-size': 10.5, fill: '#5d6679' }, 'now'));
  }
  kids.push(s('g', { 'font-size': 10.5 },
    s('rect', { x: L + 130, y: H - 16, width: 10, height: 8, fill: '#b9c8f3' }), s('text', { x: L + 144, y: H - 8, fill: '#5d6679' }, 'delivered/s'),
    s('line', { x1: L + 218, x2: L + 236, y1: H - 12, y2: H - 12, stroke: '#2454d6', 'stroke-width': 2 }), s('text', { x: L + 240, y: H - 8, fill: '#5d6679' }, 'p50'),
    s('line', { x1: L + 270, x2: L + 288, y1: H - 12, y2: H - 12, stroke: '#a04d00', 'stroke-width': 2, 'stroke-dasharray': '4 3' }), s('text', { x: L + 292, y: H - 8, fill: '#5d6679' }, 'p99')));
  svg.replaceChildren(...kids);
  $('chart-desc').textContent = 'Last minute: ' + fmtRate(st.rate) + ' delivered per second, latency p50 ' + fmtMs(st.p50_ms) + ', p99 ' + fmtMs(st.p99_ms) + '.';
}

function nice(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// ---- usage (docs/OPS.md, "Usage") ----

async function loadUsage() {
  const day = $('usage-day').value;
  try {
    const u = await api('/ops/api/usage?limit=200&day=' + encodeURIComponent(day) + '&q=' + encodeURIComponent(state.usageQ));
    renderUsage(u);
  } catch (e) {
    $('usage-empty').textContent = 'Usage could not be loaded: ' + e.message;
    $('usage-empty').hidden = false;
  }
}

function renderUsage(u) {
  const sel = $('usage-day');
  if (sel.options.length !== u.days.length || sel.options[0].value !== u.days[0]) {
    const keep = sel.value;
    sel.replaceChildren(...u.days.map((d, i) => h('option', { value: d }, d + (i === 0 ? ' (today)' : ''))));
    sel.value = u.days.includes(keep) ? keep : u.days[0];
  }
  const fig = (k, v) => h('div', { class: 'figure' }, h('div', { class: 'v' }, v), h('div', { class: 'k' }, k));
  const media = Object.keys(u.media).sort();
  $('usage-figures').replaceChildren(
    fig('messages ended', u.total.sent),
    fig('delivered', u.total.received),
    fig('failed', u.total.failed),
    ...media.map((m) => fig((MEDIA[m] || m) + ': sent / received', u.media[m].sent + ' / ' + u.media[m].received)));
  const rows = [];
  for (const c of u.clients) {
    const ms = Object.keys(c.media).sort();
    ms.forEach((m, i) => {
      const x = c.media[m];
      rows.push(h('tr', {}, h('td', {}, i === 0 ? c.client : ''), h('td', {}, MEDIA[m] || m),
        h('td', { class: 'n' }, x.sent), h('td', { class: 'n' }, x.failed ? h('span', { class: 'res-bad' }, x.failed) : 0),
        h('td', { class: 'n' }, x.received), h('td', { class: 'n' }, x.sent_bytes), h('td', { class: 'n' }, x.received_bytes)));
    });
  }
  $('usage').replaceChildren(...rows);
  $('usage-empty').textContent = u.error ? 'The accounting stream cannot be read now: ' + u.error :
    state.usageQ ? 'No client matching “' + state.usageQ + '” on ' + u.day + '.' : 'No message ended on ' + u.day + '.';
  $('usage-empty').hidden = rows.length > 0 && !u.error;
}

// ---- transactions ----

async function loadTransactions() {
  try {
    const data = await api('/ops/api/transactions?limit=50&q=' + encodeURIComponent(state.q));
    renderTransactions(data.transactions || []);
  } catch (e) {
    $('txs-empty').textContent = 'Transactions could not be loaded: ' + e.message;
    $('txs-empty').hidden = false;
  }
}

function renderTransactions(txs) {
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.msg : null;
  $('txs').replaceChildren(...txs.map((t) => {
    const open = h('button', { type: 'button', class: 'link mono', 'data-msg': t.msg_id, 'aria-label': 'Timeline of message ' + t.msg_id,
      on: { click: (e) => { e.stopPropagation(); selectMessage(t.msg_id); } } }, t.msg_id.slice(0, 12) + '…');
    return h('tr', { 'data-msg': t.msg_id, 'aria-selected': state.selected === t.msg_id ? 'true' : 'false', on: { click: () => selectMessage(t.msg_id) } },
      h('td', {}, when(t.first)),
      h('td', {}, open),
      h('td', {}, t.sender || (t.origin ? '(' + t.origin + ')' : '')),
      h('td', {}, t.to || t.recipient || ''),
      h('td', {}, (t.origin || '?') + ' → ' + (t.dest || '?')),
      h('td', {}, h('span', { class: 'state ' + t.state }, t.state || '?'), t.code ? h('span', { class: 'res-bad' }, ' ' + t.code) : null),
      h('td', { class: 'attempts' }, attemptsBadge(t)),
      h('td', { class: 'n' }, t.latency_ms ? fmtMs(t.latency_ms) : ''),
      h('td', { class: 'n' }, t.steps));
  }));
  $('txs-empty').textContent = state.q ? 'No recent transaction matches “' + state.q + '”.' : 'No transactions yet.';
  $('txs-empty').hidden = txs.length > 0;
  if (focused) {
    const again = $('txs').querySelector('button[data-msg="' + CSS.escape(focused) + '"]');
    if (again) again.focus();
  }
}

// ---- attempts and holds (docs/OPS.md, "Attempts, holds and chains") ----

// OUTCOME_MARK marks an attempt's outcome in the list: ✓ delivered or read,
// ✗ failed, expired or cancelled, … still open.
const OUTCOME_MARK = { delivered: '✓', read: '✓', failed: '✗', expired: '✗', cancelled: '✗' };

// heldUntil is when a hold ends as its reason gives it: the wall clock of
// the zone it names ("07:00 Europe/Paris"), with the date if full.
function heldUntil(hold, full) {
  if (!hold.local) return '';
  const [date, time] = hold.local.split(' ');
  return (full ? date + ' ' : '') + time + (hold.zone ? ' ' + hold.zone : '');
}

// attemptsBadge is the list's cell for a message routed more than once or
// held: "2 attempts: email ✗ → web ✓", "held until 07:00".
function attemptsBadge(t) {
  const out = [];
  if (t.hold && !t.hold.released && !t.hold.cancelled) {
    out.push(h('span', { class: 'badge held', title: t.hold.reason || 'held by the brokers' },
      t.hold.local ? 'held until ' + t.hold.local.split(' ')[1] : 'held'));
  } else if (t.hold && t.hold.cancelled) {
    out.push(h('span', { class: 'badge cancelled', title: t.hold.reason || '' }, 'cancelled while held'));
  }
  const atts = t.attempts || [];
  if (atts.length > 1) {
    out.push(h('span', { class: 'badge tries', title: atts.map(attemptTitle).join('\n') },
      atts.length + ' attempts: ' + atts.map((a) => (a.medium || a.gateway || '?') + ' ' + (OUTCOME_MARK[a.outcome] || '…')).join(' → ')));
  }
  return out;
}

function attemptTitle(a) {
  return 'attempt ' + a.n + ' — ' + (a.medium || '?') + ' via ' + (a.gateway || '?') + ': ' + attemptOutcome(a);
}

// attemptOutcome says how an attempt ended: "failed: UNKNOWN_RECIPIENT
// 550 5.1.1 no such mailbox", "expired", "delivered", or how far it got.
function attemptOutcome(a) {
  switch (a.outcome) {
    case 'failed': return 'failed: ' + [a.code, a.reason].filter(Boolean).join(' ');
    case 'expired': return 'expired' + (a.reason ? ': ' + a.reason : '');
    case 'cancelled': return 'cancelled';
    case 'delivered': case 'read': return a.outcome + (a.code ? ' (acknowledged late)' : '');
    default: return (a.state || 'routed') + ', in progress';
  }
}

function onSearch() {
  clearTimeout(state.txTimer);
  state.txTimer = setTimeout(() => {
    state.q = $('q').value.trim();
    loadTransactions();
  }, 200);
}

// ---- one message's MIAP timeline ----

function selectMessage(id, quiet) {
  state.selected = id;
  state.timeline = null;
  history.replaceState(null, '', '#msg=' + id);
  for (const tr of $('txs').querySelectorAll('tr')) tr.setAttribute('aria-selected', tr.dataset.msg === id ? 'true' : 'false');
  loadTimeline(id, false).then(() => { if (!quiet) $('timeline-h').focus(); });
}

async function loadTimeline(id, background) {
  if (state.loadingTl && background) return;
  state.loadingTl = true;
  try {
    const tl = await api('/ops/api/messages/' + encodeURIComponent(id));
    if (state.selected !== id) return;
    state.timeline = tl;
    renderTimeline(tl);
  } catch (e) {
    if (state.selected !== id || background) return;
    $('timeline-body').replaceChildren(h('p', { class: 'error', role: 'alert' },
      e.status === 404 ? 'No trace events and no transaction are known for message ' + id + '.' : 'The timeline could not be loaded: ' + e.message));
  } finally {
    state.loadingTl = false;
  }
}

// arrow maps a trace event to an arrow of the sequence diagram: the step as
// the patent's figure 5 draws it.
function arrow(ev, hasProc) {
  const r = ev.result;
  switch ((ev.source === 'broker' ? 'broker.' : '') + ev.step) {
    case 'accepted': return ['sender', 'og', 'submit to the originating gateway', 'accepted'];
    case 'login': return ['og', 'broker', 'TSCS login', 'session key C_ack issued'];
    case 'broker.login': return ['og', 'broker', 'TSCS login', r];
    case 'imi': return ['og', 'broker', 'IMI, signed (MAC, nonce)', isCode(r) ? 'refused: ' + r : r];
    case 'broker.imi': return ['og', 'broker', 'IMI, signed (MAC, nonce)', r === 'held' ? 'verified, held' : 'verified, routed to ' + (ev.dest || '?') + (ev.id ? ', ID ' + ev.id + '…' : '')];
    case 'route': return ['broker', 'og', 'IMI′ + ID, outer digest', r === 'verified' ? 'outer digest verified' : r];
    case 'broker.routeack': return ['og', 'broker', 'acknowledge IMI′', r];
    case 'transfer': return ['og', hasProc ? 'proc' : 'dg', 'IM: IMI′ + content + ticket', isCode(r) ? 'refused: ' + r : r];
    case 'broker.conv': return ['proc', 'broker', 'conversion report (' + (ev.conversion || '') + ')', r];
    case 'convert': return ['proc', 'proc', 'convert (' + (ev.conversion || '') + ')', isCode(r) ? 'refused: ' + r : r];
    case 'receive': return ['og', 'dg', 'IM', 'refused: ' + r];
    case 'deliver': return ['dg', 'recipient', 'deliver to the client', r];
    case 'broker.ack': return ['dg', 'broker', 'acknowledgement: ' + (ev.status || '') + ' + ID',
      r === 'recorded' ? 'late: recorded, changed nothing' : ev.id_match ? 'ID compared: match · ' + r : isCode(r) ? 'refused: ' + r : r];
    case 'ack': return ['broker', 'dg', 'signed receipt', r];
    case 'broker.notify': return r === 'rerouted' ? ['broker', 'og', 'notification rerouted: new IMI′ + ticket', 'queued for the originator']
      : r === 'released' ? ['broker', 'og', 'notification released: IMI′ + ticket', 'queued for the originator']
      : ['broker', 'og', 'notification: ' + r, 'queued for the originator'];
    case 'broker.reroute': return ['broker', 'broker', 'route attempt ' + (ev.attempt || '') + ' to ' + (ev.dest || '?'), 'after ' + (ev.code || 'a failure')];
    case 'reroute': return ['og', 'og', 'check the new IMI′', r === 'verified' ? 'new route verified' : isCode(r) ? 'refused: ' + r : r];
    case 'broker.hold': return ['broker', 'broker', 'hold the message', r];
    case 'broker.release': return ['broker', 'broker', 'release: route to ' + (ev.dest || '?'), r];
    case 'broker.cancel': return ['og', 'broker', 'cancel, signed', r];
    case 'notified': return ['og', 'sender', 'status to the client: ' + r, 'told'];
    default: return ['broker', 'broker', ev.step, r];
  }
}

function renderTimeline(tl) {
  const events = (tl.events || []).slice().sort((a, b) => a.seen - b.seen);
  const hasProc = events.some((e) => e.step === 'conv');
  const first = events.length ? events[0].seen : 0;
  const head = h('div', { class: 'tl-head' },
    h('span', {}, h('b', {}, 'message'), h('span', { class: 'mono' }, tl.msg_id)),
    tl.tx ? h('span', {}, h('b', {}, 'transaction'), h('span', { class: 'mono' }, tl.tx)) : null,
    h('span', {}, h('b', {}, 'from'), tl.sender || '?', ' via ', tl.origin || '?'),
    h('span', {}, h('b', {}, 'to'), tl.to || tl.recipient || '?', ' via ', tl.dest || '?'),
    h('span', {}, h('b', {}, 'state'), h('span', { class: 'state ' + tl.state, id: 'tl-state' }, tl.state || '?')),
    tl.latency_ms ? h('span', {}, h('b', {}, 'accepted → delivered'), fmtMs(tl.latency_ms)) : null,
    tl.audit ? h('span', { id: 'tl-audit', class: tl.audit.state === 'broken' ? 'res-bad' : (tl.audit.state === 'verified' ? 'res-ok' : null),
      title: (tl.audit.findings || []).map((f) => f.kind + ': ' + f.detail).join('\n') || null }, h('b', {}, 'audit'), tl.audit.summary) : null);
  const parts = [head];
  const list = attemptList(tl);
  if (list) parts.push(list);
  const byAttempt = banded(tl);
  if (events.length) {
    parts.push(sequence(tl, events, hasProc, first));
    parts.push(h('div', { class: 'scroll' }, h('table', { class: 'mini', id: 'steps', 'aria-label': 'Protocol steps of message ' + tl.msg_id },
      h('thead', {}, h('tr', {}, ['Time', '+', byAttempt ? 'Attempt' : null, 'Step', 'Published by', 'Party', 'Result', 'Details'].filter(Boolean).map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, events.map((e) => h('tr', { 'data-step': (e.source === 'broker' ? 'broker.' : '') + e.step, 'data-attempt': byAttempt ? e.attempt || 0 : null,
        class: e.result === 'recorded' ? 'muted' : null },
        h('td', { class: 'mono' }, preciseTime(e.at)),
        h('td', { class: 'n mono' }, '+' + fmtMs((e.seen - first) / 1000)),
        byAttempt ? h('td', { class: 'n' }, e.attempt ? String(e.attempt) : 'held') : null,
        h('td', {}, (e.source === 'broker' ? 'broker ' : 'gateway ') + e.step),
        h('td', {}, e.source === 'broker' ? e.by || 'broker' : e.source + (e.by ? ' (' + e.by + ')' : '')),
        h('td', {}, e.party),
        h('td', { class: isCode(e.result) ? 'res-bad' : 'res-ok' }, e.result),
        h('td', {}, details(e))))))));
  } else {
    parts.push(h('p', { class: 'help' }, 'This message is no longer in the gateway\'s memory of trace events; the brokers\' transaction history follows.'));
  }
  if (tl.history && tl.history.length) {
    parts.push(h('h3', { class: 'help' }, 'Brokers\' transaction history'));
    parts.push(h('table', { class: 'mini', 'aria-label': 'Transaction history' },
      h('thead', {}, h('tr', {}, ['Time', 'Status', 'Attempt', 'Party', 'Code', 'Reason'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, tl.history.map((e) => h('tr', { class: e.status === 'recorded' ? 'muted' : null, 'data-status': e.status },
        h('td', { class: 'mono' }, preciseTime(e.at)), h('td', {}, e.status),
        h('td', {}, e.attempt ? e.attempt + (e.medium ? ' (' + e.medium + ')' : '') : ''),
        h('td', {}, e.party || ''), h('td', {}, e.code || ''), h('td', {}, e.reason || ''))))));
  }
  $('timeline-body').replaceChildren(...parts);
}

// attemptList lists a message's hold and attempts above its diagram: the
// whole story when the diagram has no steps (a message known from the
// brokers' history only).
function attemptList(tl) {
  const atts = tl.attempts || [];
  if (!atts.length && !tl.hold) return null;
  const items = [];
  if (tl.hold) items.push(h('li', { class: 'hold', 'data-hold': tl.hold.cancelled ? 'cancelled' : tl.hold.released ? 'released' : 'held' },
    holdLabel(tl.hold), tl.hold.released ? ' · released ' + when(tl.hold.released) : '', tl.hold.cancelled ? ' · cancelled ' + when(tl.hold.cancelled) : ''));
  for (const a of atts) {
    items.push(h('li', { 'data-attempt': a.n, value: a.n, class: 'outcome-' + (a.outcome || 'open') },
      h('b', {}, 'attempt ' + a.n + ' — ' + (a.medium || '?') + ' via ' + (a.gateway || '?')), a.address ? ' (' + a.address + ')' : '',
      ': ', h('span', { class: /failed|expired|cancelled/.test(a.outcome || '') ? 'res-bad' : a.outcome ? 'res-ok' : '' }, attemptOutcome(a)),
      a.late ? h('span', { class: 'muted' }, ' · ' + a.late + ' late acknowledgement' + (a.late === 1 ? '' : 's') + ' recorded') : ''));
  }
  if (tl.state === 'failed' && tl.code === 'CANCELLED' && !(tl.hold && tl.hold.cancelled)) items.push(h('li', { class: 'res-bad' }, 'cancelled'));
  return h('ol', { class: 'attempts', id: 'attempts', 'aria-label': 'Attempts of message ' + tl.msg_id }, items);
}

// banded reports whether a timeline is drawn by attempt: a message routed
// more than once or held.
function banded(tl) { return !!((tl.attempts && tl.attempts.length) || tl.hold); }

// holdLabel is "held until 2026-12-06 07:00 Europe/Paris — quiet hours on sms …".
function holdLabel(hold) {
  const until = heldUntil(hold, true);
  return 'held' + (until ? ' until ' + until : '') + (hold.reason ? ' — ' + hold.reason : '');
}

function details(e) {
  const d = [];
  if (e.dest) d.push('dest ' + e.dest);
  if (e.id) d.push('ID ' + e.id + '…');
  if (e.status) d.push('status ' + e.status);
  if (e.id_match !== undefined && e.id_match !== null) d.push('ID match ' + (e.id_match ? 'yes' : 'no'));
  if (e.conversion) d.push('conversion ' + e.conversion);
  return d.join(', ');
}

// diagramRows orders the events as figure 5 draws them. Trace events come
// in the order they were published, which differs from the protocol in
// three places: the originator's route may come in a batch after the
// destination's steps; the originating gateway reports the transfer when
// the destination's reply comes back (after delivery and acknowledgement);
// and a broker publishes a notification just before the acknowledgement
// that caused it. The diagram draws the route before the destination's
// steps, the transfer request where it happens (a row without a time) and
// its reply where it came back, and each acknowledgement before its
// notification. The table keeps the true order.
function diagramRows(events) {
  const rows = events.map((ev) => ({ ev }));
  // the originator's route (the IMI′ it verified) comes before the
  // destination's steps, though its batch may come after theirs
  const ri = rows.findIndex((r) => r.ev.source !== 'broker' && r.ev.step === 'route');
  const fi = rows.findIndex((r) => r.ev.source !== 'broker' && (r.ev.step === 'deliver' || r.ev.step === 'receive'));
  if (ri >= 0 && fi >= 0 && fi < ri) rows.splice(fi, 0, rows.splice(ri, 1)[0]);
  const ti = rows.findIndex((r) => r.ev.source !== 'broker' && r.ev.step === 'transfer');
  const di = rows.findIndex((r) => (r.ev.source !== 'broker' && (r.ev.step === 'deliver' || r.ev.step === 'receive')) ||
    (r.ev.source === 'broker' && r.ev.step === 'conv'));
  if (ti >= 0 && di >= 0 && di < ti) {
    rows[ti].reply = true;
    rows.splice(di, 0, { ev: rows[ti].ev, request: true });
  }
  // a processor forwards the converted content to the destination with the
  // broker's new ticket, right after its conversion report
  for (let i = rows.length - 1; i >= 0; i--) {
    if (!rows[i].request && rows[i].ev.source === 'broker' && rows[i].ev.step === 'conv' && !isCode(rows[i].ev.result)) {
      rows.splice(i + 1, 0, { ev: rows[i].ev, forward: true });
    }
  }
  for (let i = 0; i + 1 < rows.length; i++) {
    const a = rows[i].ev, b = rows[i + 1].ev;
    if (a.source === 'broker' && a.step === 'notify' && b.source === 'broker' && b.step === 'ack' &&
        b.status === a.result && b.seen - a.seen < 5000) {
      [rows[i], rows[i + 1]] = [rows[i + 1], rows[i]];
      i++;
    }
  }
  return rows;
}

// OPENS orders the steps that open an attempt after a reroute or a
// release: the broker's new route, its notification to the originator
// (new IMI′ and ticket), the originator's check of it; the transfer of the
// kept content follows.
const OPENS = { 'broker.reroute': 1, 'broker.release': 1, 'broker.notify:rerouted': 2, 'broker.notify:released': 2, 'reroute': 3 };

function opens(e) {
  const k = (e.source === 'broker' ? 'broker.' : '') + e.step;
  return OPENS[k + ':' + e.result] || (k === 'broker.notify' ? 0 : OPENS[k]) || 9;
}

// diagramItems is what the diagram draws, top to bottom: the rows of the
// steps and, for a message routed more than once or held (tl.attempts),
// a band per attempt, "attempt n — <medium> via <gateway>" with its
// outcome, over the steps of that attempt; a band "held until …" over the
// steps from the hold to the release; "cancelled" at the end of a message
// its sender cancelled. Each attempt's steps are ordered as figure 5 draws
// them (diagramRows); a conversion chain stays within its attempt.
function diagramItems(tl, events) {
  if (!banded(tl)) return diagramRows(events).map((rw) => ({ rw }));
  const groups = new Map();
  for (const e of events) {
    const n = e.attempt || 0;
    if (!groups.has(n)) groups.set(n, []);
    groups.get(n).push(e);
  }
  const items = [];
  let heldShown = false;
  const held = () => {
    heldShown = true;
    const cls = tl.hold.cancelled ? 'held cancelled' : 'held';
    items.push({ band: { cls, label: holdLabel(tl.hold), outcome: tl.hold.cancelled ? 'cancelled' : tl.hold.released ? 'released ' + when(tl.hold.released) : 'waiting' } });
  };
  for (const n of [...groups.keys()].sort((a, b) => a - b)) {
    let evs = groups.get(n);
    if (n > 1 || (n === 1 && tl.hold)) evs = evs.slice().sort((a, b) => opens(a) - opens(b)); // stable
    if (n === 0) {
      items.push({ band: null });
      for (const rw of diagramRows(evs)) {
        const e = rw.ev;
        if (tl.hold && !heldShown && e.source === 'broker' && (e.step === 'hold' || (e.step === 'notify' && e.result === 'held'))) held();
        items.push({ rw });
      }
      continue;
    }
    if (tl.hold && !heldShown) held();
    const a = tl.attempts.find((x) => x.n === n) || { n };
    items.push({ band: { cls: 'attempt outcome-' + (a.outcome || 'open'), n, label: 'attempt ' + n + ' — ' + (a.medium || '?') + ' via ' + (a.gateway || '?'),
      outcome: attemptOutcome(a), bad: /failed|expired|cancelled/.test(a.outcome || '') } });
    for (const rw of diagramRows(evs)) items.push({ rw });
  }
  if (tl.hold && !heldShown) held();
  if (tl.state === 'failed' && tl.code === 'CANCELLED' && !(tl.hold && tl.hold.cancelled)) {
    items.push({ band: { cls: 'cancelled', label: 'cancelled', outcome: 'by the sender', bad: true } });
  }
  return items;
}

const BAND_FILL = { attempt: '#f2f5fc', 'outcome-failed': '#fcf1f0', 'outcome-expired': '#fcf1f0', 'outcome-cancelled': '#fcf1f0',
  'outcome-delivered': '#eef8f2', 'outcome-read': '#eef8f2', held: '#fdf5e4', cancelled: '#fcf1f0' };

function sequence(tl, events, hasProc, first) {
  const lanes = [['sender', 'Sender', tl.sender || ''], ['og', 'Originating gateway', tl.origin || ''], ['broker', 'Broker', brokerName(events)]];
  if (hasProc) lanes.push(['proc', 'Processor', [...new Set(events.filter((e) => e.step === 'conv').map((e) => e.party))].join(', ')]);
  lanes.push(['dg', 'Destination gateway', tl.dest || ''], ['recipient', 'Recipient', tl.recipient || tl.to || '']);
  const items = diagramItems(tl, events);
  const L = 92, R = 40, top = 58, row = 40, bandH = 26, W = Math.max(1000, L + R + lanes.length * 160);
  // where each item goes, and how far each band reaches
  let y = top, band = null;
  const bands = [];
  for (const it of items) {
    if ('band' in it) {
      band = it.band ? Object.assign({ y0: y, y1: y + bandH }, it.band) : null;
      if (band) { bands.push(band); y += bandH; }
      continue;
    }
    it.y = y;
    y += row;
    if (band) band.y1 = y;
  }
  const H = y + 24;
  const x = {};
  lanes.forEach(([id], i) => { x[id] = L + (W - L - R) * (i + 0.5) / lanes.length; });
  const kids = [s('title', {}, 'MIAP timeline of message ' + tl.msg_id),
    s('defs', {}, marker('seq-ok', '#2454d6'), marker('seq-bad', '#b42318'), marker('seq-reply', '#5d6679'), marker('seq-muted', '#aab1bf'))];
  for (const b of bands) {
    const fill = b.cls.split(' ').reduce((f, c) => BAND_FILL[c] || f, '#f2f5fc');
    kids.push(s('g', { class: 'band ' + b.cls, 'data-attempt': b.n || null },
      s('rect', { x: 4, y: b.y0 + 2, width: W - 8, height: b.y1 - b.y0 - 4, rx: 6, fill, stroke: b.cls.startsWith('held') ? '#f0c36a' : '#d5dbe6' }),
      s('text', { x: 14, y: b.y0 + 18, 'font-size': 12, 'font-weight': 700, fill: '#1d2330', class: 'band-label' }, b.label.length > 110 ? b.label.slice(0, 109) + '…' : b.label),
      s('text', { x: W - 14, y: b.y0 + 18, 'text-anchor': 'end', 'font-size': 12, fill: b.bad ? '#b42318' : '#1d7a46', class: 'band-outcome' },
        b.outcome.length > 70 ? b.outcome.slice(0, 69) + '…' : b.outcome)));
  }
  for (const [id, name, sub] of lanes) {
    kids.push(s('rect', { x: x[id] - 78, y: 8, width: 156, height: 38, rx: 7, fill: id === 'broker' ? '#141a2a' : '#fff', stroke: '#c4cad6' }));
    kids.push(s('text', { x: x[id], y: 24, 'text-anchor': 'middle', 'font-size': 12.5, 'font-weight': 700, fill: id === 'broker' ? '#fff' : '#1d2330' }, name));
    kids.push(s('text', { x: x[id], y: 39, 'text-anchor': 'middle', 'font-size': 11, fill: id === 'broker' ? '#aeb8d0' : '#5d6679' }, sub.length > 24 ? sub.slice(0, 23) + '…' : sub));
    kids.push(s('line', { x1: x[id], x2: x[id], y1: 46, y2: H - 8, stroke: '#c4cad6', 'stroke-dasharray': '3 4' }));
  }
  for (const it of items) {
    if (!it.rw) continue;
    const rw = it.rw, e = rw.ev;
    let [from, to, text, result] = arrow(e, hasProc);
    // after a reroute or a release, the originator sends the content it
    // kept: its transfer says so whether it is drawn as one arrow or as
    // request and reply (the observer hears the steps in batches)
    const kept = e.source !== 'broker' && e.step === 'transfer' && (e.attempt > 1 || (tl.hold && e.attempt === 1));
    if (kept && text.startsWith('IM: ')) text = 'IM: kept content + new ticket';
    const bad = isCode(e.result) && !rw.request && !rw.forward;
    const late = e.result === 'recorded';
    let color = bad ? '#b42318' : '#2454d6', mark = bad ? 'url(#seq-bad)' : 'url(#seq-ok)', dash = null;
    if (rw.forward) {
      // to the destination, or to the next conversion step's processor
      [from, to, text, result] = e.next && tl.dest && e.next !== tl.dest
        ? ['proc', 'proc', 'IM: converted content + new ticket to ' + e.next, 'sent by request-reply']
        : ['proc', 'dg', 'IM: converted content + new ticket', 'sent by request-reply'];
      color = '#2454d6'; mark = 'url(#seq-ok)';
    } else if (rw.request) {
      result = 'sent by request-reply';
      if (kept) text = 'IM: kept content + new ticket';
      color = '#2454d6'; mark = 'url(#seq-ok)';
    } else if (rw.reply) {
      [from, to] = [to, from];
      text = 'reply to the IM: ' + e.result;
      result = bad ? 'refused: ' + e.result : 'receipt relayed and checked';
      if (!bad) { color = '#5d6679'; mark = 'url(#seq-reply)'; dash = '6 4'; }
    }
    if (late) { color = '#aab1bf'; mark = 'url(#seq-muted)'; dash = '3 3'; }
    const yy = it.y + 26;
    const g = s('g', { class: 'row' + (late ? ' muted' : ''), 'data-step': (e.source === 'broker' ? 'broker.' : '') + e.step, 'data-attempt': e.attempt === undefined ? null : e.attempt });
    if (!rw.request && !rw.forward) g.append(s('text', { x: 8, y: yy + 4, 'font-size': 11, fill: '#5d6679', class: 'mono' }, '+' + fmtMs((e.seen - first) / 1000)));
    const x1 = x[from] !== undefined ? x[from] : x.broker, x2 = x[to] !== undefined ? x[to] : x.broker;
    if (x1 === x2) {
      g.append(s('rect', { x: x1 - 60, y: yy - 10, width: 120, height: 16, rx: 4, fill: late ? '#f4f5f8' : '#eef0f4' }));
    } else {
      const dir = x2 > x1 ? 1 : -1;
      g.append(s('line', { x1: x1 + dir * 3, x2: x2 - dir * 3, y1: yy, y2: yy, stroke: color, 'stroke-width': 1.8, 'stroke-dasharray': dash, 'marker-end': mark }));
    }
    const mid = (x1 + x2) / 2;
    g.append(s('text', { x: mid, y: yy - 6, 'text-anchor': 'middle', 'font-size': 12, 'font-weight': 600, fill: late ? '#8a93a6' : '#1d2330' }, text));
    g.append(s('text', { x: mid, y: yy + 14, 'text-anchor': 'middle', 'font-size': 11, fill: late ? '#8a93a6' : bad ? '#b42318' : '#1d7a46' }, result));
    kids.push(g);
  }
  return s('svg', { class: 'seq', id: 'seq', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Sequence of the protocol steps of message ' + tl.msg_id +
    (bands.length ? ': ' + bands.map((b) => b.label + ', ' + b.outcome).join('; ') : '') }, kids);
}

function brokerName(events) {
  const by = [...new Set(events.filter((e) => e.source === 'broker' && e.by).map((e) => e.by))];
  return by.join(', ');
}

// ---- start ----

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', onSignIn);
  $('signout').addEventListener('click', () => signOut());
  $('search').addEventListener('submit', (e) => { e.preventDefault(); clearTimeout(state.txTimer); state.q = $('q').value.trim(); loadTransactions(); });
  $('q').addEventListener('input', onSearch);
  $('usage-form').addEventListener('submit', (e) => { e.preventDefault(); state.usageQ = $('usage-q').value.trim(); loadUsage(); });
  $('usage-q').addEventListener('input', () => { state.usageQ = $('usage-q').value.trim(); loadUsage(); });
  $('usage-day').addEventListener('change', loadUsage);
  window.addEventListener('hashchange', () => {
    const m = /msg=([0-9a-fA-F]+)/.exec(location.hash);
    if (m && state.token && m[1].toLowerCase() !== state.selected) selectMessage(m[1].toLowerCase());
  });
  const saved = sessionStorage.getItem('uims.ops.token');
  if (saved) {
    signIn(saved, true).catch(() => signOut('Sign in again.'));
  } else {
    $('signin').hidden = false;
    $('token').focus();
  }
});
