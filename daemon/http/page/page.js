// llmq's live page: polls llmqd's /v1/llmq/live every few seconds and draws
// it - lanes first, then batches, the last errors and today's usage. No
// framework and no library; it asks llmqd alone for anything. It keeps its
// own state in data attributes, for the browser test and for the curious:
// data-updates and data-js-errors on <body>, data-points on each chart,
// data-batch and data-progress on each batch's row.
'use strict';

const POLL_MS = 3000;
const TIMEOUT_MS = 10000;
const HOUR_MS = 60 * 60 * 1000;
const MIN_SPAN_MS = 5 * 60 * 1000; // a chart spans at least this, however young llmqd is
const SVG_NS = 'http://www.w3.org/2000/svg';

const $ = (id) => document.getElementById(id);
let jsErrors = 0;
let updates = 0;
let last = null; // the last figures drawn
let lastAt = 0;
let timer = null;
let busy = false; // a request is out
let paused = false;

function noteError() {
  jsErrors++;
  document.body.dataset.jsErrors = String(jsErrors);
}
window.addEventListener('error', noteError);
window.addEventListener('unhandledrejection', noteError);
document.body.dataset.jsErrors = '0';
document.body.dataset.updates = '0';

// Numbers and times, in the reader's locale and time zone.
const nf = new Intl.NumberFormat();
const cf = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
const tf = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const hm = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const df = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
const num = (n) => (n == null ? '–' : nf.format(n));
const compact = (n) => cf.format(n);

function time(ms) {
  if (!ms) return '–';
  const d = new Date(ms);
  return d.toDateString() === new Date().toDateString() ? tf.format(d) : df.format(d);
}

function dur(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, '0')} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

// Elements, never HTML text: what llmqd relays (an upstream's error message)
// is shown as text.
function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of kids) if (c != null && c !== false) e.append(c);
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

// ---- charts ----------------------------------------------------------------

// The smallest of 1, 2, 2.5, 5 x 10^k at or above v.
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// spec: {title, unit, t, series: [{name, cls, values}], limit: values|null,
// now, period}. Drawn at the element's own size; drawn again on resize.
function drawChart(box, spec) {
  const w = Math.max(240, Math.round(box.clientWidth || 600));
  const h = Math.max(80, Math.round(box.clientHeight || 130));
  const padL = 46, padR = 10, padT = 8, padB = 20;
  const t1 = spec.now;
  const first = spec.t.length ? spec.t[0] : t1;
  const t0 = Math.max(t1 - HOUR_MS, Math.min(t1 - MIN_SPAN_MS, first - spec.period));
  const x = (t) => padL + ((t - t0) / (t1 - t0)) * (w - padL - padR);
  let top = 0;
  for (const s of spec.series) for (const v of s.values) top = Math.max(top, v);
  if (spec.limit) for (const v of spec.limit) top = Math.max(top, v);
  top = niceCeil(top * 1.05);
  const y = (v) => padT + (1 - v / top) * (h - padT - padB);

  box.replaceChildren();
  box.setAttribute('viewBox', `0 0 ${w} ${h}`);
  box.append(svg('title', {}, spec.summary));
  for (const v of [0, top / 2, top]) {
    box.append(svg('line', { class: 'grid', x1: padL, x2: w - padR, y1: y(v), y2: y(v) }));
    box.append(svg('text', { x: padL - 6, y: y(v) + 4, 'text-anchor': 'end' }, compact(v)));
  }
  const span = t1 - t0;
  const step = span <= 10 * 60e3 ? 60e3 : span <= 30 * 60e3 ? 5 * 60e3 : 10 * 60e3;
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    box.append(svg('line', { class: 'axis', x1: x(t), x2: x(t), y1: h - padB, y2: h - padB + 4 }));
    box.append(svg('text', { x: x(t), y: h - 5, 'text-anchor': 'middle' }, hm.format(new Date(t))));
  }
  box.append(svg('line', { class: 'axis', x1: padL, x2: w - padR, y1: h - padB, y2: h - padB }));

  // The limit as steps; none where it is 0 (no limit).
  if (spec.limit) {
    let d = '';
    for (let i = 0; i < spec.t.length; i++) {
      if (spec.t[i] < t0) continue;
      const v = spec.limit[i];
      const xa = i > 0 && spec.t[i - 1] >= t0 ? x(spec.t[i - 1]) : x(spec.t[i]);
      if (v > 0) d += `M${xa.toFixed(1)},${y(v).toFixed(1)}H${x(spec.t[i]).toFixed(1)}`;
    }
    if (d) box.append(svg('path', { class: 'limit', d }));
  }
  // A line per series, broken where periods are missing (llmqd was busy or stopped).
  let drawn = 0;
  for (const s of spec.series) {
    let d = '', n = 0, lastI = -1;
    for (let i = 0; i < spec.t.length; i++) {
      if (spec.t[i] < t0) continue;
      const gap = lastI < 0 || spec.t[i] - spec.t[lastI] > 1.5 * spec.period;
      d += `${gap ? 'M' : 'L'}${x(spec.t[i]).toFixed(1)},${y(s.values[i]).toFixed(1)}`;
      lastI = i;
      n++;
    }
    if (d) box.append(svg('path', { class: `s ${s.cls}`, d }));
    if (lastI >= 0) box.append(svg('circle', { class: s.cls, cx: x(spec.t[lastI]), cy: y(s.values[lastI]), r: 3 }));
    drawn = Math.max(drawn, n);
  }
  box.dataset.points = String(drawn);
}

function chartFigure(spec, charts) {
  const box = svg('svg', { class: 'chart', role: 'img', 'aria-label': spec.summary, 'data-points': '0' });
  charts.push([box, spec]);
  const legend = el('figcaption', {}, el('b', { text: spec.title }));
  for (const s of spec.series) legend.append(el('span', {}, el('span', { class: `sw ${s.cls}`, 'aria-hidden': 'true' }), s.name));
  if (spec.limit) legend.append(el('span', {}, el('span', { class: 'sw dashed', 'aria-hidden': 'true' }), 'limit'));
  return el('figure', {}, legend, box);
}

// ---- lanes -----------------------------------------------------------------

function laneState(l) {
  if (l.paused_by_operator) return ['paused', 'paused by an operator'];
  if (l.unreachable) return ['unreachable', 'unreachable'];
  if (l.out_of_credit_since) return ['out_of_credit', 'out of credit'];
  if (l.paused_for_ms > 0) return ['paused', 'paused'];
  return ['ok', 'sending'];
}

function windowText(l) {
  if (l.window === 'second')
    return l.window_source === 'config' ? '~1 s (set in the configuration)'
      : `~1 s (learned ${time(l.window_learned_at)})`;
  if (l.window_source === 'probation') return `minute (on probation since ${time(l.window_probation_since)})`;
  return l.window_source === 'config' ? 'minute (set in the configuration)' : 'minute';
}

function fact(label, value, cls) {
  return el('div', { class: cls }, el('dt', { text: label }), el('dd', { text: value }));
}

function ofLimit(v, limit, unit) {
  return limit > 0 ? `${num(v)} of ${num(limit)} ${unit}` : `${num(v)} ${unit} (no limit)`;
}

function laneCard(l, i, data, charts) {
  const h = l.history || { t: [] };
  const n = h.t.length;
  const lastOf = (col) => (n ? h[col][n - 1] : 0);
  const [cls, text] = laneState(l);
  const facts = el('dl', { class: 'facts' });
  facts.append(fact('In flight', `${num(l.in_flight)} of ${num(l.max_concurrency)}` +
    (l.in_flight_interactive ? ` (${num(l.in_flight_interactive)} callers)` : '')));
  facts.append(fact('Queued', `${num(l.queued)} requests` +
    (l.calls_waiting ? ` (${num(l.calls_waiting)} callers waiting)` : '')));
  facts.append(fact('Tokens, last minute', ofLimit(lastOf('tokens_per_min'), l.effective_tpm, 'tok/min')));
  facts.append(fact('Requests, last minute', ofLimit(lastOf('requests_per_min'), l.effective_rpm, 'req/min')));
  const tot = h.totals || {};
  facts.append(fact('Last hour', `${num(tot.requests)} requests, ${num(tot.tokens_used)} tokens used` +
    (tot.r429 ? `, ${num(tot.r429)} × 429` : ''), tot.r429 ? 'warn' : null));
  facts.append(fact('Provider window', windowText(l)));
  facts.append(fact('Circuit breaker', l.unreachable
    ? `open since ${time(l.unreachable_since)}${l.probing ? ', probing' : ''}` : 'closed', l.unreachable ? 'bad' : null));
  if (l.avg_latency_ms) facts.append(fact('Latency', `${num(l.avg_latency_ms)} ms on average`));
  if (l.drain_ms > 0 && l.queued > 0) facts.append(fact('Queue drains in', `~${dur(l.drain_ms)}`));
  const op = l.paused_by_operator;
  if (op)
    facts.append(fact('Paused', `by ${op.user || `uid ${op.uid}`} since ${time(op.at)}: nothing new is sent until llmq resume ${l.name}`, 'wide warn'));
  if (l.paused_for_ms > 0)
    facts.append(fact('Paused', `until ${time(l.paused_until)} (${dur(l.paused_for_ms)} more)` +
      (l.pause_reason ? `: ${l.pause_reason}` : ''), 'wide warn'));
  if (l.out_of_credit_since)
    facts.append(fact('Out of credit', `since ${time(l.out_of_credit_since)}: the provider says the key has no quota left`, 'wide bad'));
  if (!l.has_key) facts.append(fact('Key', 'none configured for this lane', 'wide warn'));

  const base = { t: h.t, now: data.now, period: data.period_ms };
  const peak = (a) => (a && a.length ? Math.max(...a) : 0);
  const tok = chartFigure({
    ...base, title: 'Tokens per minute',
    series: [{ name: 'launched', cls: 'launched', values: h.tokens_per_min || [] },
      { name: 'used', cls: 'used', values: h.used_per_min || [] }],
    limit: h.tpm_limit,
    summary: `Tokens per minute over the last hour for lane ${l.name}: now ${num(lastOf('tokens_per_min'))} launched` +
      ` and ${num(lastOf('used_per_min'))} used, peak ${num(peak(h.tokens_per_min))}` +
      (l.effective_tpm ? `, limit ${num(l.effective_tpm)}` : ', no limit'),
  }, charts);
  const req = chartFigure({
    ...base, title: 'Requests per minute',
    series: [{ name: 'launched', cls: 'launched', values: h.requests_per_min || [] },
      { name: '429s', cls: 'r429', values: h.r429_per_min || [] }],
    limit: h.rpm_limit,
    summary: `Requests per minute over the last hour for lane ${l.name}: now ${num(lastOf('requests_per_min'))},` +
      ` peak ${num(peak(h.requests_per_min))}, ${num(tot.r429 || 0)} 429s in the hour` +
      (l.effective_rpm ? `, limit ${num(l.effective_rpm)}` : ', no limit'),
  }, charts);
  const q = chartFigure({
    ...base, title: 'In flight and queued',
    series: [{ name: 'in flight', cls: 'inflight', values: h.in_flight || [] },
      { name: 'queued', cls: 'queued', values: h.queued || [] }],
    limit: null,
    summary: `In flight and queued over the last hour for lane ${l.name}: now ${num(lastOf('in_flight'))} in flight` +
      ` and ${num(lastOf('queued'))} queued, most queued ${num(peak(h.queued))}`,
  }, charts);
  return el('article', { class: 'lane', 'aria-labelledby': `lane-${i}`, 'data-lane': l.name },
    el('h3', { id: `lane-${i}` }, l.name, el('span', { class: `badge ${cls}`, text: text }),
      el('span', { class: 'url', text: l.base_url })),
    facts, tok, req, q);
}

// ---- batches, errors, usage ------------------------------------------------

function userText(o) {
  if (o.user) return o.user;
  return o.uid != null ? `uid ${o.uid}` : 'anonymous';
}

function etaText(b, now) {
  if (b.state === 'in_progress' || b.state === 'cancelling' || b.state === 'validating') {
    if (b.eta_known === false) return 'unknown while its lane cannot send';
    if (!b.eta_ms) return 'any moment';
    return `~${dur(b.eta_ms)} (${hm.format(new Date(now + b.eta_ms))})`;
  }
  return b.finished_at ? `done ${time(b.finished_at)}` : '–';
}

function batchRow(b, now) {
  const c = b.counts || {};
  const done = (c.succeeded || 0) + (c.failed || 0) + (c.cancelled || 0);
  const total = b.total || 0;
  const pct = total ? Math.floor((done * 100) / total) : 0;
  const name = b.name || b.input_name || b.id;
  const state = b.expired_at ? 'expired' : b.state;
  const w = b.waiting;
  return el('tr', { 'data-batch': b.id, 'data-progress': String(pct), 'data-state': b.state },
    el('td', {}, name, el('br'), el('span', { class: 'id', text: b.id })),
    el('td', { class: 'owner', text: userText(b) }),
    el('td', { class: `state-${b.state}` }, state.replace('_', ' '),
      w ? el('div', { class: 'waiting', text: `waiting: ${w.message || w.reason}` +
        (w.until ? ` until ${time(w.until)}` : '') }) : null),
    el('td', {}, el('progress', { max: String(total || 1), value: String(done), 'aria-label': `${name}: ${pct} % done` }),
      `${num(done)} of ${num(total)} (${pct} %)`),
    el('td', { class: 'num', text: num(c.failed || 0) }),
    el('td', { class: 'num', text: num(b.tokens_used) }),
    el('td', { text: etaText(b, now) }),
    el('td', { text: time(b.created_at) }));
}

function errorRow(e) {
  const from = e.class === 'batch' ? `batch ${e.batch || ''}${e.custom_id ? ` · ${e.custom_id}` : ''}`
    : `caller ${userText(e)}`;
  return el('tr', {},
    el('td', { text: time(e.at) }), el('td', { text: e.lane }), el('td', { text: from }),
    el('td', { text: e.model || '–' }), el('td', { class: 'num', text: e.status_code ?? '–' }),
    el('td', { text: e.code }), el('td', { class: 'msg', text: e.message || '' }));
}

// A user's budgets (llmqd.conf's [user] and [group]): spent of allowed, and what holds them.
function budgetText(b) {
  if (!b) return '–';
  const parts = [];
  if (b.daily_tokens) parts.push(`${num(b.daily_tokens.used)} of ${num(b.daily_tokens.allowed)} tokens today`);
  if (b.monthly_usd) parts.push(`$${b.monthly_usd.used.toFixed(2)} of $${b.monthly_usd.allowed.toFixed(2)} this month`);
  if (b.tpm_share != null) parts.push(`${Math.round(b.tpm_share * 100)} % of a lane`);
  return parts.join(', ') + (b.waiting ? ` · held back${b.waiting.until ? ` until ${time(b.waiting.until)}` : ''}` : '');
}

function usageRow(u, cost, budgets) {
  const b = budgets && budgets.find((x) => x.uid === u.uid);
  return el('tr', {},
    el('td', { text: u.user || (u.uid != null ? `uid ${u.uid}` : 'callers nobody could tell') }),
    el('td', { class: 'num', text: num(u.requests) }),
    el('td', { class: 'num', text: num(u.tokens) }),
    el('td', { class: 'num', text: num(u.failed) }),
    el('td', { class: 'num', text: num(u.rate_limited) }),
    cost ? el('td', { class: 'num', text: u.cost_usd != null ? `$${u.cost_usd.toFixed(2)}` : '–' }) : null,
    budgets && budgets.length ? el('td', { class: 'budget', text: budgetText(b) }) : null);
}

function fillTable(id, rows) {
  $(id).querySelector('tbody').replaceChildren(...rows);
  $(id).hidden = rows.length === 0;
  $(`${id}-empty`).hidden = rows.length !== 0;
}

// ---- the whole page --------------------------------------------------------

function viewerText(v) {
  if (!v || v.sees === 'lanes')
    return 'llmqd cannot tell who you are, so only the lanes are shown. Open this page on llmqd\'s host, as your own user, to see your batches.';
  const who = v.user || `uid ${v.uid}`;
  return v.sees === 'all' ? `You are ${who}: you see every user's batches, errors and usage.`
    : `You are ${who}: you see your own batches, errors and usage; the lanes are everyone's.`;
}

let charts = [];

function render(data) {
  last = data;
  lastAt = Date.now();
  charts = [];
  $('lanes').replaceChildren(...(data.lanes || []).map((l, i) => laneCard(l, i, data, charts)));
  for (const [box, spec] of charts) drawChart(box, spec);

  const seesAll = data.viewer && data.viewer.sees === 'all';
  $('batches').classList.toggle('hidden-col', !seesAll);
  fillTable('batches', (data.batches || []).map((b) => batchRow(b, data.now)));
  fillTable('errors', (data.errors || []).map(errorRow));
  const users = (data.usage && data.usage.users) || [];
  const cost = users.some((u) => u.cost_usd != null);
  for (const th of document.querySelectorAll('#usage th.cost')) th.hidden = !cost;
  const budgets = data.budgets || [];
  for (const th of document.querySelectorAll('#usage th.budget')) th.hidden = !budgets.length;
  fillTable('usage', users.map((u) => usageRow(u, cost, budgets)));
  $('usage-since').textContent = data.usage ? `(since ${hm.format(new Date(data.usage.since))})` : '';
  $('viewer').textContent = viewerText(data.viewer);
  $('updated').textContent = `Updated ${tf.format(new Date(data.now))}, every ${POLL_MS / 1000} s`;
  updates++;
  document.body.dataset.updates = String(updates);
}

function problem(text) {
  $('problem').hidden = !text;
  $('problem').textContent = text || '';
}

function schedule() {
  if (!paused && !document.hidden && !timer && !busy) timer = setTimeout(refresh, POLL_MS);
}

async function refresh() {
  if (timer) clearTimeout(timer);
  timer = null;
  if (busy) return;
  busy = true;
  const ac = new AbortController();
  const giveUp = setTimeout(() => ac.abort(), TIMEOUT_MS);
  try {
    const r = await fetch('/v1/llmq/live', { cache: 'no-store', signal: ac.signal, headers: { Accept: 'application/json' } });
    const body = await r.json().catch(() => null);
    if (!r.ok || !body) throw new Error((body && body.error && body.error.message) || `llmqd answered ${r.status}`);
    render(body);
    problem('');
  } catch (e) {
    const why = e.name === 'AbortError' ? `no answer in ${TIMEOUT_MS / 1000} s` : e.message;
    problem(`Cannot update the figures: ${why}. ` +
      (last ? `They are as of ${tf.format(new Date(lastAt))}; ` : '') + 'trying again.');
  } finally {
    clearTimeout(giveUp);
    busy = false;
    schedule();
  }
}

$('pause').addEventListener('click', () => {
  paused = !paused;
  $('pause').setAttribute('aria-pressed', String(paused));
  $('pause').textContent = paused ? 'Resume updates' : 'Pause updates';
  if (paused && timer) {
    clearTimeout(timer);
    timer = null;
  }
  if (!paused) refresh();
});
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && !paused) refresh();
});
let resizing = null;
window.addEventListener('resize', () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => { for (const [box, spec] of charts) drawChart(box, spec); }, 100);
});
refresh();
