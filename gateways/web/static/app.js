// UIMS client page: sign in with a bearer token, a live inbox over
// Server-Sent Events, read receipts, compose with attachments, and the live
// status of sent messages. Plain JavaScript, no build step; it talks to
// /api/v1/ only.
'use strict';

const MEDIA = { web: 'Web', email: 'E-mail', sms: 'SMS', fax: 'Fax', voice: 'Voice', bot: 'Bot' };
const STEPS = ['accepted', 'routed', 'delivered', 'read'];
const STEP_LABEL = { accepted: 'Accepted', routed: 'Routed', delivered: 'Delivered', read: 'Read' };
const RANK = { accepted: 1, held: 1.5, routed: 2, released: 2, 'route-acknowledged': 2, transferred: 3, delivered: 4, read: 5, failed: 9 };
const MAX_BUSY_TRIES = 3;

const state = {
  token: null, me: null, es: null, opened: false,
  inbox: [], next: null, selected: null,
  sent: [], pendingKey: null,
  files: [], limits: { max_upload: 25 * 1024 * 1024, max_files: 50 },
};

const $ = (id) => document.getElementById(id);

// h builds an element: h('p', {class: 'x'}, 'text', child...). Text is never parsed as HTML.
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function badge(medium) {
  const m = MEDIA[medium] ? medium : 'other';
  return h('span', { class: 'badge m-' + m, title: 'Came by ' + (MEDIA[medium] || medium || 'unknown medium') }, MEDIA[medium] || medium || '?');
}

function when(ms) {
  if (!ms) return '';
  const d = new Date(ms), now = new Date();
  const t = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === now.toDateString() ? t : d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + t;
}

function fullTime(ms) { return ms ? new Date(ms).toLocaleString() : ''; }

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function randomKey() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// ---- API ----

class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || ('HTTP ' + status));
    this.status = status; this.code = code || ''; this.retryAfter = retryAfter;
  }
}

async function api(method, path, body, headers) {
  const opts = { method, headers: Object.assign({ Authorization: 'Bearer ' + state.token }, headers || {}) };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, 'NETWORK', 'Cannot reach the gateway. Check the connection and try again.');
  }
  let data = null;
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) {
    if (r.status === 401 && state.me) signOut('Your session ended: the token is no longer valid. Sign in again.');
    throw new ApiError(r.status, data && data.code, data && data.error, r.headers.get('Retry-After'));
  }
  return data;
}

// upload posts a message with files as multipart/form-data (docs/WEB.md,
// "Attachments") with XMLHttpRequest, whose upload reports progress (fetch
// has no upload progress). It settles as api() does.
function upload(fields, files, key, onProgress) {
  return new Promise((resolve, reject) => {
    const fd = new FormData();
    for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== '') fd.append(k, v);
    for (const f of files) fd.append('file', f, f.name);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/v1/messages');
    xhr.setRequestHeader('Authorization', 'Bearer ' + state.token);
    xhr.setRequestHeader('Idempotency-Key', key);
    xhr.upload.addEventListener('progress', (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
    xhr.upload.addEventListener('load', () => onProgress(1));
    xhr.addEventListener('load', () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) return resolve(data);
      if (xhr.status === 401 && state.me) signOut('Your session ended: the token is no longer valid. Sign in again.');
      reject(new ApiError(xhr.status, data && data.code, data && data.error, xhr.getResponseHeader('Retry-After')));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'NETWORK', 'Cannot reach the gateway. Check the connection and try again.')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'NETWORK', 'The upload was interrupted; nothing was sent.')));
    xhr.send(fd);
  });
}

// ---- sign in / out ----

async function signIn(token, quiet) {
  state.token = token;
  const me = await api('GET', '/api/v1/me');
  state.me = me;
  sessionStorage.setItem('uims.token', token);
  $('signin').hidden = true;
  $('app').hidden = false;
  $('who').hidden = false;
  $('me').replaceChildren(me.name || me.id, h('small', {}, me.id));
  document.title = 'UIMS: ' + (me.name || me.id);
  loadLimits();
  loadUsage();
  loadSent();
  renderSent();
  connect();
  await loadInbox();
  refreshSent();
  if (!quiet) $('inbox-h').focus();
}

function signOut(message) {
  if (state.es) state.es.close();
  Object.assign(state, { token: null, me: null, es: null, opened: false, inbox: [], next: null, selected: null, sent: [], pendingKey: null, files: [] });
  renderFiles();
  sessionStorage.removeItem('uims.token');
  $('app').hidden = true;
  $('who').hidden = true;
  $('signin').hidden = false;
  $('inbox').replaceChildren();
  $('inbox-more').hidden = true;
  $('sent').replaceChildren();
  resetReader();
  const err = $('signin-error');
  err.hidden = !message;
  err.textContent = message || '';
  document.title = 'UIMS messages';
  $('token').value = '';
  $('token').focus();
}

async function onSignIn(ev) {
  ev.preventDefault();
  const input = $('token'), err = $('signin-error'), btn = $('signin-button');
  const token = input.value.trim();
  err.hidden = true;
  input.removeAttribute('aria-invalid');
  if (!token) {
    input.setAttribute('aria-invalid', 'true');
    err.textContent = 'Enter your access token.';
    err.hidden = false;
    input.focus();
    return;
  }
  btn.disabled = true;
  try {
    await signIn(token);
  } catch (e) {
    state.token = null;
    input.setAttribute('aria-invalid', 'true');
    err.textContent = e.status === 401 ? 'This token is not valid. Check it and try again.' : explain(e);
    err.hidden = false;
    input.focus();
  } finally {
    btn.disabled = false;
  }
}

// ---- live events ----

function setLive(text, cls) {
  const el = $('live');
  el.textContent = text;
  el.className = 'live ' + (cls || '');
}

function connect() {
  if (state.es) state.es.close();
  setLive('connecting');
  const es = new EventSource('/api/v1/events?access_token=' + encodeURIComponent(state.token));
  state.es = es;
  es.addEventListener('open', () => {
    setLive('live', 'on');
    if (state.opened) { // a reconnect: catch up on what the stream missed
      loadInbox();
      refreshSent();
    }
    state.opened = true;
  });
  es.addEventListener('message', (e) => {
    const ev = JSON.parse(e.data);
    if (ev.message) addToInbox(ev.message);
  });
  es.addEventListener('status', (e) => {
    const ev = JSON.parse(e.data);
    if (ev.status) onStatus(ev.status);
  });
  es.addEventListener('error', async () => {
    if (es !== state.es) return;
    setLive('reconnecting', 'off');
    if (es.readyState === EventSource.CLOSED) {
      try {
        await api('GET', '/api/v1/me');
        setTimeout(() => { if (es === state.es) connect(); }, 3000);
      } catch (e) { /* api() signs out on 401 */ }
    }
  });
}

// ---- inbox ----

// loadInbox shows the newest page; more=true appends the next older one
// (the answer's "next" cursor, absent at the end of the inbox).
async function loadInbox(more) {
  try {
    const q = more && state.next ? '&before=' + encodeURIComponent(state.next) : '';
    const data = await api('GET', '/api/v1/inbox?limit=50' + q);
    const page = (data.messages || []).filter((m) => !(more && state.inbox.some((x) => x.id === m.id)));
    state.inbox = more ? state.inbox.concat(page) : page;
    state.next = data.next || null;
    renderInbox();
  } catch (e) {
    $('inbox-empty').textContent = 'The inbox could not be loaded: ' + explain(e);
    $('inbox-empty').hidden = false;
  }
}

function addToInbox(m) {
  if (state.inbox.some((x) => x.id === m.id)) return;
  state.inbox.unshift(m);
  renderInbox();
}

function renderInbox() {
  const ul = $('inbox');
  const focusedId = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.id : null;
  ul.replaceChildren(...state.inbox.map((m) => {
    const from = m.from.name || m.from.client || m.from.address;
    const btn = h('button', {
      type: 'button', class: 'item' + (m.read_at ? '' : ' unread'), 'data-id': m.id,
      'aria-current': state.selected === m.id ? 'true' : null,
      'aria-label': (m.read_at ? '' : 'Unread. ') + 'From ' + from + ' by ' + (MEDIA[m.medium] || m.medium) + ', ' +
        (m.subject || 'no subject') + ', ' + when(m.at) +
        (m.attachments && m.attachments.length ? ', ' + files(m.attachments.length) : ''),
      on: { click: () => openMessage(m.id), keydown: onInboxKey },
    },
    h('span', { class: 'row1' }, h('span', { class: 'from' }, from), h('span', { class: 'time' }, when(m.at))),
    h('span', { class: 'row2' }, badge(m.medium), h('span', { class: 'subj' }, m.subject || '(no subject)'),
      m.attachments && m.attachments.length ? h('span', { class: 'clip', 'aria-hidden': 'true' }, '+ ' + files(m.attachments.length)) : null),
    h('span', { class: 'snippet' }, (m.text || '').slice(0, 160)));
    return h('li', {}, btn);
  }));
  $('inbox-empty').hidden = state.inbox.length > 0;
  $('inbox-more').hidden = !state.next;
  const unread = state.inbox.filter((m) => !m.read_at).length;
  $('unread').textContent = unread ? String(unread) : '';
  if (focusedId) {
    const again = ul.querySelector('[data-id="' + CSS.escape(focusedId) + '"]');
    if (again) again.focus();
  }
}

function onInboxKey(ev) {
  const items = Array.from($('inbox').querySelectorAll('.item'));
  const i = items.indexOf(ev.currentTarget);
  let j = -1;
  if (ev.key === 'ArrowDown') j = Math.min(i + 1, items.length - 1);
  else if (ev.key === 'ArrowUp') j = Math.max(i - 1, 0);
  else if (ev.key === 'Home') j = 0;
  else if (ev.key === 'End') j = items.length - 1;
  if (j >= 0) {
    ev.preventDefault();
    items[j].focus();
  }
}

function resetReader() {
  $('reader-h').textContent = 'Message';
  $('reader-body').replaceChildren(h('p', { class: 'empty' }, 'Select a message to read it. Opening it sends a read receipt to its sender.'));
}

async function openMessage(id) {
  const m = state.inbox.find((x) => x.id === id);
  if (!m) return;
  state.selected = id;
  renderInbox();
  renderReader(m, m.read_at ? null : 'sending');
  $('reader-h').focus();
  if (!m.read_at) {
    try {
      const r = await api('POST', '/api/v1/messages/' + encodeURIComponent(id) + '/read');
      m.read_at = r.read_at || Date.now();
      renderInbox();
      if (state.selected === id) renderReader(m, 'sent');
    } catch (e) {
      if (state.selected === id) renderReader(m, 'failed: ' + explain(e));
    }
  }
}

function renderReader(m, receipt) {
  $('reader-h').textContent = m.subject || '(no subject)';
  const f = m.from;
  const who = [f.name, f.name && (f.client || f.address) ? '<' + (f.client || f.address) + '>' : (f.client || f.address)].filter(Boolean).join(' ');
  let receiptText;
  if (receipt === 'sending') receiptText = 'sending…';
  else if (receipt && receipt !== 'sent') receiptText = receipt;
  else receiptText = 'sent to ' + (f.name || f.client || f.address) + (m.read_at ? ' at ' + when(m.read_at) : '');
  const meta = h('dl', { class: 'meta' },
    h('dt', {}, 'From'), h('dd', {}, who, ' ', badge(m.medium)),
    h('dt', {}, 'To'), h('dd', {}, m.to),
    h('dt', {}, 'Received'), h('dd', {}, fullTime(m.at)),
    h('dt', {}, 'Read receipt'), h('dd', { class: receipt === 'sending' ? '' : 'receipt', id: 'receipt' }, receiptText));
  const parts = [meta];
  if (m.html) {
    parts.push(h('iframe', { class: 'body-html', sandbox: '', title: 'Message content (HTML)', srcdoc: m.html }));
  } else {
    parts.push(h('div', { class: 'body', id: 'message-text' }, m.text || ''));
  }
  if (m.partial) parts.push(h('p', { class: 'help' }, 'Part of this message was shortened on the way.'));
  if (m.attachments && m.attachments.length) {
    parts.push(h('h3', { class: 'sr-only', id: 'atts-h' }, 'Attachments'),
      h('ul', { class: 'list atts', 'aria-labelledby': 'atts-h' },
        m.attachments.map((a, i) => h('li', { class: 'att' },
          h('span', { class: 'fname', title: a.name }, a.name),
          h('span', { class: 'fmeta' }, a.type + ', ' + size(a.length)),
          h('button', { type: 'button', 'aria-label': 'Download ' + a.name + ' (' + size(a.length) + ')', on: { click: () => download(m, i) } }, 'Download')))),
      h('p', { class: 'help', id: 'download-note', role: 'status' }));
  }
  if (replyAddress(f)) {
    parts.push(h('div', { class: 'actions' }, h('button', { type: 'button', on: { click: () => reply(m) } }, 'Reply')));
  }
  $('reader-body').replaceChildren(...parts);
}

function size(n) {
  if (n < 1024) return n + ' B';
  if (n < 1 << 20) return (n / 1024).toFixed(1) + ' KiB';
  return (n / (1 << 20)).toFixed(1) + ' MiB';
}

function files(n) { return n === 1 ? '1 attachment' : n + ' attachments'; }

// download saves attachment i of m with its name; the request carries the
// token in its header, so it goes by fetch, and the file through a blob.
async function download(m, i) {
  const a = m.attachments[i], note = $('download-note');
  try {
    note.textContent = 'Downloading ' + a.name + '…';
    const r = await fetch('/api/v1/messages/' + encodeURIComponent(m.id) + '/attachments/' + i, { headers: { Authorization: 'Bearer ' + state.token } });
    if (!r.ok) {
      let data = null;
      try { data = await r.json(); } catch (e) { /* not JSON */ }
      throw new ApiError(r.status, data && data.code, data && data.error);
    }
    const url = URL.createObjectURL(await r.blob());
    const link = h('a', { href: url, download: a.name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    note.textContent = 'Downloaded ' + a.name + '.';
  } catch (e) {
    note.textContent = 'Download of ' + a.name + ' failed: ' + explain(e);
  }
}

// replyAddress is whom a reply goes to: the sending client, else the
// outside address; on a medium other than e-mail or SMS written
// MEDIUM:ADDRESS (xmpp:dave@chat.example.test), since the brokers take a
// bare address for e-mail or SMS by its look (PROTOCOL.md §6.3).
function replyAddress(f) {
  if (f.client || !f.address) return f.client || '';
  if (!f.medium || f.medium === 'email' || f.medium === 'sms') return f.address;
  return f.medium + ':' + f.address;
}

function reply(m) {
  $('to').value = replyAddress(m.from);
  $('subject').value = m.subject ? (m.subject.startsWith('Re: ') ? m.subject : 'Re: ' + m.subject) : '';
  state.pendingKey = null;
  $('text').focus();
}

// ---- compose ----

function explain(e) {
  switch (e.status) {
    case 0: return e.message;
    case 404: return e.code === 'UNKNOWN_RECIPIENT' ? 'Unknown recipient.' : 'Not found.';
    case 403: return 'Not allowed: ' + (e.message || 'this client may not do that') + '.';
    case 413: return 'The message is too large' + (e.message ? ': ' + e.message : '') + '.';
    case 422: return 'It cannot be delivered: ' + (e.message || 'refused') + (e.code ? ' (' + e.code + ')' : '') + '.';
    case 429: return 'Your sending quota is used up for today.';
    case 503: return 'The fabric is busy; try again in a moment.';
    default: return (e.message || 'Something went wrong') + (e.code ? ' (' + e.code + ')' : '') + '.';
  }
}

function showComposeError(title, detail, busy, field) {
  const err = $('compose-error');
  err.className = 'error' + (busy ? ' busy' : '');
  err.replaceChildren(h('strong', {}, title), detail ? h('span', {}, detail) : null);
  err.hidden = false;
  if (field) {
    $(field).setAttribute('aria-invalid', 'true');
    $(field).setAttribute('aria-describedby', field + '-help compose-error');
    $(field).focus();
  }
}

function clearComposeError() {
  $('compose-error').hidden = true;
  for (const id of ['to', 'text', 'files']) {
    $(id).removeAttribute('aria-invalid');
    $(id).setAttribute('aria-describedby', id + '-help');
  }
}

async function onSend(ev) {
  ev.preventDefault();
  clearComposeError();
  const to = $('to').value.trim(), subject = $('subject').value.trim(), text = $('text').value;
  const at = $('send-at').value; // local time, "2026-12-08T07:00"
  const sendAt = at ? new Date(at).toISOString() : undefined;
  if (!to) return showComposeError('Enter a recipient.', 'A client id, an e-mail address or a phone number.', false, 'to');
  const sending = state.files.slice();
  if (!text.trim() && !sending.length) return showComposeError('Write a message first.', '', false, 'text');
  if (overLimit()) return;
  const key = state.pendingKey || (state.pendingKey = randomKey());
  const btn = $('send'), note = $('compose-note');
  btn.disabled = true;
  note.textContent = sending.length ? 'Uploading ' + files(sending.length) + '…' : 'Sending…';
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        let res;
        if (sending.length) {
          setProgress(0);
          res = await upload({ to, subject, text, send_at: sendAt }, sending, key, setProgress);
        } else {
          res = await api('POST', '/api/v1/messages', { to, subject: subject || undefined, text, send_at: sendAt }, { 'Idempotency-Key': key });
        }
        clearComposeError();
        mergeSent({ id: res.id, to, subject, snippet: text.slice(0, 140), at: Date.now(), status: res.status, times: { accepted: Date.now() },
          heldUntil: res.held_until, held: res.held });
        state.pendingKey = null;
        $('text').value = '';
        $('subject').value = '';
        $('send-at').value = '';
        state.files = state.files.filter((f) => !sending.includes(f));
        renderFiles();
        note.textContent = 'Sent to ' + to + (sending.length ? ' with ' + files(sending.length) : '') + '.';
        announce('Message to ' + to + ' accepted; status ' + (res.status || 'accepted') + '.');
        refreshOne(res.id);
        $('text').focus();
        return;
      } catch (e) {
        if (e.status === 503 && attempt < MAX_BUSY_TRIES) {
          const wait = Math.min(Math.max(parseInt(e.retryAfter, 10) || 1, 1), 30);
          showComposeError('The fabric is busy.', 'Retrying in ' + wait + ' s (attempt ' + (attempt + 1) + ' of ' + MAX_BUSY_TRIES + '). Your message is kept here until it is taken.', true);
          note.textContent = '';
          await sleep(wait * 1000);
          continue;
        }
        note.textContent = '';
        if (e.status === 404 && e.code === 'UNKNOWN_RECIPIENT') {
          showComposeError('Unknown recipient “' + to + '”.', 'No client or address matches it. Check the client id, e-mail address or phone number.', false, 'to');
        } else if (e.status === 422 && e.code === 'UNREACHABLE') {
          // Permanent: no gateway is set up to reach the address; retrying will not help.
          showComposeError('“' + to + '” cannot be reached from here.', e.message, false, 'to');
        } else if (e.status === 503) {
          showComposeError('The fabric is busy.', 'It could not take the message after ' + MAX_BUSY_TRIES + ' tries, so nothing was sent. Try again in a moment.', true);
        } else if (e.status === 413) {
          showComposeError('The message is too large.', (e.message || '') + ' Remove some files and send again.', false, sending.length ? 'files' : 'text');
        } else if (e.status === 400) {
          showComposeError('The message was refused.', e.message, false);
        } else if (e.status !== 401) {
          showComposeError('The message was not sent.', explain(e), false);
        }
        return;
      }
    }
  } finally {
    btn.disabled = false;
  }
}

function announce(text) { $('sent-live').textContent = text; }

// ---- usage (GET /api/v1/usage) ----

async function loadUsage() {
  let u;
  try {
    u = await api('GET', '/api/v1/usage?days=1');
  } catch (e) {
    $('usage-quota').textContent = 'Usage is not available now.';
    return;
  }
  const q = u.quota || {};
  $('usage-quota').textContent = q.limit
    ? `Daily quota: ${q.used} of ${q.limit} messages used, ${q.left} left until ${fullTime(q.resets)}.`
    : 'No daily quota.';
  const media = (u.today && u.today.media) || {};
  const rows = Object.keys(media).sort().map((m) => {
    const x = media[m];
    return h('tr', {}, h('th', { scope: 'row' }, m), h('td', {}, String(x.sent)), h('td', {}, String(x.failed)),
      h('td', {}, String(x.received)), h('td', {}, size(x.sent_bytes)), h('td', {}, size(x.received_bytes)));
  });
  $('usage-rows').replaceChildren(...rows);
  $('usage').hidden = rows.length === 0;
  $('usage-empty').hidden = rows.length > 0;
}

// ---- attachments to send ----

async function loadLimits() {
  try {
    state.limits = await api('GET', '/api/v1/limits');
  } catch (e) { /* keep the defaults; the gateway still checks */ }
  $('max-upload').textContent = size(state.limits.max_upload);
}

function addFiles(list) {
  for (const f of list) {
    if (!state.files.some((x) => x.name === f.name && x.size === f.size && x.lastModified === f.lastModified)) state.files.push(f);
  }
  state.pendingKey = null;
  $('upload').hidden = true;
  renderFiles();
  clearComposeError();
  overLimit();
}

function removeFile(i) {
  const f = state.files[i];
  state.files.splice(i, 1);
  state.pendingKey = null;
  renderFiles();
  clearComposeError();
  overLimit();
  announce(f.name + ' removed.');
  const left = $('file-list').querySelectorAll('button');
  (left[Math.min(i, left.length - 1)] || $('files')).focus();
}

function renderFiles() {
  const ul = $('file-list');
  ul.replaceChildren(...state.files.map((f, i) => h('li', {},
    h('span', { class: 'fname', title: f.name }, f.name),
    h('span', { class: 'fsize' }, size(f.size)),
    h('button', { type: 'button', class: 'link', 'aria-label': 'Remove ' + f.name, on: { click: () => removeFile(i) } }, 'Remove'))));
  ul.hidden = state.files.length === 0;
}

// overLimit says so, as the gateway would (413), when the chosen files are
// too many or too large to send.
function overLimit() {
  const total = state.files.reduce((n, f) => n + f.size, 0), lim = state.limits;
  if (total > lim.max_upload) {
    showComposeError('The files are too large to send.', 'They are ' + size(total) + ' in all; at most ' + size(lim.max_upload) + ' can be sent. Remove some.', false, 'files');
    return true;
  }
  if (state.files.length > lim.max_files) {
    showComposeError('Too many files.', state.files.length + ' chosen; at most ' + lim.max_files + ' can be sent at once.', false, 'files');
    return true;
  }
  return false;
}

function setProgress(frac) {
  const pct = Math.floor(Math.min(Math.max(frac, 0), 1) * 100);
  $('upload').hidden = false;
  $('upload-progress').value = pct;
  $('upload-pct').textContent = pct + '%';
}

function onDrag(ev) {
  if (!ev.dataTransfer || !Array.from(ev.dataTransfer.types || []).includes('Files')) return;
  ev.preventDefault();
  $('compose').classList.toggle('dragging', ev.type === 'dragover' || ev.type === 'dragenter');
}

function onDrop(ev) {
  if (!ev.dataTransfer || !ev.dataTransfer.files.length) return;
  ev.preventDefault();
  $('compose').classList.remove('dragging');
  addFiles(ev.dataTransfer.files);
  announce(files(ev.dataTransfer.files.length) + ' added.');
}

// ---- sent messages and their status ----

function sentKey() { return 'uims.sent.' + state.me.id; }

function loadSent() {
  try { state.sent = JSON.parse(sessionStorage.getItem(sentKey()) || '[]'); } catch (e) { state.sent = []; }
}

function saveSent() {
  state.sent = state.sent.slice(0, 50);
  sessionStorage.setItem(sentKey(), JSON.stringify(state.sent));
}

// mergeSent adds or updates a sent message; a status never goes back.
function mergeSent(upd) {
  let s = state.sent.find((x) => x.id === upd.id);
  if (!s) {
    s = { id: upd.id, to: '', subject: '', snippet: '', at: upd.at || Date.now(), status: 'accepted', times: {} };
    state.sent.unshift(s);
    state.sent.sort((a, b) => b.at - a.at);
  }
  for (const k of ['to', 'subject', 'snippet']) if (upd[k] && !s[k]) s[k] = upd[k];
  if (upd.heldUntil) { s.heldUntil = upd.heldUntil; s.held = upd.held || s.held; }
  Object.assign(s.times, upd.times || {});
  const cur = RANK[s.status] || 0, next = RANK[upd.status] || 0;
  const before = s.status;
  if (next > cur) s.status = upd.status;
  if (upd.status === 'failed') { s.code = upd.code; s.reason = upd.reason; }
  saveSent();
  renderSent();
  if (s.status !== before && before) announce('Message to ' + (s.to || 'recipient') + ': ' + s.status + '.');
}

function onStatus(ev) {
  if (ev.status === 'delivered' || ev.status === 'failed') { // the usage counts outcomes
    clearTimeout(state.usageTimer);
    state.usageTimer = setTimeout(loadUsage, 500);
  }
  const times = {};
  times[ev.status] = ev.at;
  mergeSent({ id: ev.msg_id, to: ev.to, subject: ev.subject, status: ev.status, code: ev.code, reason: ev.reason, at: ev.at, times });
}

async function refreshOne(id) {
  try {
    const st = await api('GET', '/api/v1/messages/' + encodeURIComponent(id));
    const times = {};
    let failed = null;
    for (const e of st.history || []) {
      times[e.status === 'route-acknowledged' ? 'routed' : e.status] = e.at;
      if (e.status === 'failed') failed = e;
    }
    const heldUntil = st.held_until ? new Date(st.held_until).toISOString() : undefined;
    mergeSent({ id, to: st.to, status: st.state, times, code: failed && failed.code, reason: failed && failed.reason, heldUntil });
  } catch (e) { /* the status events still come */ }
}

function refreshSent() {
  for (const s of state.sent) if (s.status !== 'read' && s.status !== 'failed') refreshOne(s.id);
}

function renderSent() {
  const ol = $('sent');
  ol.replaceChildren(...state.sent.map((s) => {
    const rank = RANK[s.status] || 0;
    const failed = s.status === 'failed';
    let current = null;
    for (const st of STEPS) if ((!failed && rank >= RANK[st]) || (failed && s.times[st])) current = st;
    if (failed && !current) current = 'accepted';
    const steps = h('ol', { class: 'steps' + (failed ? ' failed' : ''), 'aria-label': 'Status: ' + statusText(s) },
      STEPS.map((st) => {
        const done = failed ? RANK[st] <= RANK[current] : rank >= RANK[st];
        const cls = st === current && !failed ? 'current' + (st === 'read' ? ' final' : '') : done ? 'done' : '';
        return h('li', { class: cls, title: s.times[st] ? STEP_LABEL[st] + ' ' + fullTime(s.times[st]) : STEP_LABEL[st] }, STEP_LABEL[st]);
      }));
    return h('li', { class: 'sent-item', 'data-id': s.id, 'data-status': s.status },
      h('div', { class: 'row1' }, h('span', { class: 'to' }, 'To ' + (s.to || '?')), h('span', { class: 'time' }, when(s.at))),
      h('div', { class: 'snippet' }, s.subject ? s.subject + ' · ' + (s.snippet || '') : (s.snippet || '')),
      steps,
      failed ? h('p', { class: 'fail' }, 'Not delivered: ' + (s.reason || 'no reason given') + (s.code ? ' (' + s.code + ')' : '')) : null,
      s.status === 'transferred' ? h('p', { class: 'help' }, 'Handed to the destination; waiting for delivery.') : null,
      s.status === 'held' ? h('p', { class: 'help held' }, 'Waiting until ' + fullTime(Date.parse(s.heldUntil)) + (s.held ? ' (' + s.held + ')' : '') + '. ',
        h('button', { type: 'button', class: 'cancel', on: { click: () => cancelSent(s.id) } }, 'Cancel')) : null);
  }));
  $('sent-empty').hidden = state.sent.length > 0;
}

// cancelSent cancels a message the brokers still hold (DELETE; 409 once
// it is on its way).
async function cancelSent(id) {
  try {
    const st = await api('DELETE', '/api/v1/messages/' + encodeURIComponent(id));
    const last = (st.history || []).slice(-1)[0] || {};
    mergeSent({ id, status: st.state, code: last.code, reason: last.reason, times: { failed: last.at } });
    announce('Message cancelled.');
  } catch (e) {
    announce(e.status === 409 ? 'Too late to cancel: the message is on its way.' : 'Not cancelled: ' + explain(e));
    refreshOne(id);
  }
}

function statusText(s) {
  switch (s.status) {
    case 'failed': return 'failed';
    case 'transferred': return 'routed, handed to the destination';
    case 'held': return 'waiting until ' + fullTime(Date.parse(s.heldUntil));
    case 'route-acknowledged': return 'routed';
    default: return s.status;
  }
}

// ---- start ----

function onComposeKey(ev) {
  if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
    ev.preventDefault();
    $('compose').requestSubmit();
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', onSignIn);
  $('signout').addEventListener('click', () => signOut());
  $('inbox-more').addEventListener('click', () => loadInbox(true));
  $('usage-refresh').addEventListener('click', () => loadUsage());
  $('compose').addEventListener('submit', onSend);
  $('compose').addEventListener('input', () => { state.pendingKey = null; });
  $('text').addEventListener('keydown', onComposeKey);
  $('files').addEventListener('change', (ev) => { addFiles(ev.target.files); ev.target.value = ''; });
  for (const t of ['dragenter', 'dragover', 'dragleave']) $('compose').addEventListener(t, onDrag);
  $('compose').addEventListener('drop', onDrop);
  const saved = sessionStorage.getItem('uims.token');
  if (saved) {
    signIn(saved, true).catch(() => signOut('Sign in again.'));
  } else {
    $('signin').hidden = false;
    $('token').focus();
  }
});
