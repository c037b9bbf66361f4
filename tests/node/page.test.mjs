// The live page in a real browser: headless Chromium, driven over its
// DevTools protocol on a pipe (fds 3 and 4; Node 20 has no WebSocket client
// and the tests add no npm package), loads the page from a real llmqd in
// front of the mock upstream while a batch runs. No console errors and no
// script errors; the lane's charts have points; the batch's progress goes
// to 100 %; the page answers the keyboard; a screenshot is written to
// PAGE_SCREENSHOT (the build directory, where CI keeps its logs).
//
// Run by ctest (test_page_browser) with LLMQD_BIN, LLMQ_BIN, MOCK_BIN,
// CHROMIUM_BIN and PAGE_SCREENSHOT set. Chromium and its profile directory
// are removed however the test ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setup, sleep, LLMQ_BIN } from './llmqd.mjs';

const { CHROMIUM_BIN, PAGE_SCREENSHOT } = process.env;
assert.ok(CHROMIUM_BIN && PAGE_SCREENSHOT, 'CHROMIUM_BIN and PAGE_SCREENSHOT must be set');

// Chromium, and what to do so that it never outlives the test.
const browsers = new Set();
function killAll() {
  for (const b of browsers) {
    try { process.kill(-b.p.pid, 'SIGKILL'); } catch { /* gone already */ }
    rmSync(b.profile, { recursive: true, force: true });
  }
  browsers.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { killAll(); process.exit(1); });

// A run killed outright (SIGKILL) cannot clean up: Chromium ends with its
// pipe, and its profile, named after the run's pid, is swept by the next run.
function sweep() {
  for (const name of readdirSync(tmpdir())) {
    const m = /^llmq-chromium-(\d+)-/.exec(name);
    if (!m) continue;
    try { process.kill(Number(m[1]), 0); continue; } catch (e) { if (e.code !== 'ESRCH') continue; }
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}

async function launch() {
  sweep();
  const profile = mkdtempSync(join(tmpdir(), `llmq-chromium-${process.pid}-`));
  const p = spawn(CHROMIUM_BIN, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--user-data-dir=${profile}`, '--remote-debugging-pipe', 'about:blank',
  ], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], detached: true });
  const b = { p, profile, id: 0, pending: new Map(), listeners: [], stderr: '' };
  browsers.add(b);
  p.stderr.on('data', (d) => { b.stderr = (b.stderr + d.toString()).slice(-4000); });
  let buf = Buffer.alloc(0);
  p.stdio[4].on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (let i; (i = buf.indexOf(0)) >= 0;) {
      const msg = JSON.parse(buf.subarray(0, i).toString());
      buf = buf.subarray(i + 1);
      if (msg.id && b.pending.has(msg.id)) {
        const { resolve, reject, method } = b.pending.get(msg.id);
        b.pending.delete(msg.id);
        if (msg.error) reject(new Error(`${method}: ${msg.error.message}`));
        else resolve(msg.result);
      } else {
        for (const f of b.listeners) f(msg);
      }
    }
  });
  p.once('exit', () => {
    for (const { reject, method } of b.pending.values()) reject(new Error(`chromium exited during ${method}: ${b.stderr}`));
    b.pending.clear();
  });
  b.send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
    const id = ++b.id;
    b.pending.set(id, { resolve, reject, method });
    p.stdio[3].write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
  });
  b.close = async () => {
    const exited = new Promise((r) => (p.exitCode !== null ? r() : p.once('exit', r)));
    await Promise.race([b.send('Browser.close').catch(() => {}), sleep(2000)]);
    await Promise.race([exited, sleep(3000)]);
    try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone already */ }
    rmSync(profile, { recursive: true, force: true });
    browsers.delete(b);
  };
  await b.send('Browser.getVersion');
  return b;
}

function line(i) {
  return JSON.stringify({
    custom_id: `q-${i}`, method: 'POST', url: '/v1/chat/completions',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `question ${i}: ${'x'.repeat(200)}` }], max_tokens: 300 },
  });
}

test('the live page in Chromium while a batch runs', { timeout: 150000 }, async (t) => {
  const { dir, d, client } = await setup(t, ['--latency-ms', '400', '--fail-every', '13'], {
    OPENAI_MAX_CONCURRENCY: '3', OPENAI_RETRY_MAX_ATTEMPTS: '1',
    OPENAI_TPM_LIMIT: '200000', OPENAI_RPM_LIMIT: '600',
  });
  const b = await launch();
  t.after(() => b.close());

  // Some interactive calls, then a batch that takes several seconds.
  for (let i = 0; i < 3; i++)
    await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], max_tokens: 20 });
  const file = join(dir, 'nightly.jsonl');
  writeFileSync(file, Array.from({ length: 120 }, (_, i) => line(i)).join('\n') + '\n');
  const id = execFileSync(LLMQ_BIN, ['--socket', d.sock, 'submit', '--name', 'nightly eval', file]).toString().trim();
  assert.match(id, /^b_[0-9a-f]{16}$/);

  const { targetId } = await b.send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await b.send('Target.attachToTarget', { targetId, flatten: true });
  const s = (method, params) => b.send(method, params, sessionId);
  const problems = [];
  let loaded = false;
  b.listeners.push((m) => {
    if (m.sessionId !== sessionId) return;
    if (m.method === 'Runtime.exceptionThrown')
      problems.push(`exception: ${m.params.exceptionDetails.exception?.description ?? m.params.exceptionDetails.text}`);
    if (m.method === 'Runtime.consoleAPICalled' && ['error', 'assert', 'warning'].includes(m.params.type))
      problems.push(`console.${m.params.type}: ${m.params.args.map((a) => a.value ?? a.description).join(' ')}`);
    if (m.method === 'Log.entryAdded' && ['error', 'warning'].includes(m.params.entry.level))
      problems.push(`${m.params.entry.source} ${m.params.entry.level}: ${m.params.entry.text} ${m.params.entry.url ?? ''}`);
    if (m.method === 'Page.loadEventFired') loaded = true;
  });
  await s('Runtime.enable');
  await s('Log.enable');
  await s('Page.enable');
  await s('Emulation.setDeviceMetricsOverride', { width: 1280, height: 1000, deviceScaleFactor: 1, mobile: false });
  const url = d.base.replace(/\/v1$/, '/');
  await s('Page.navigate', { url });
  for (let i = 0; i < 100 && !loaded; i++) await sleep(100);
  assert.ok(loaded, 'the page loaded');

  // What the page says about itself, read from the DOM.
  const state = async () => {
    const r = await s('Runtime.evaluate', {
      returnByValue: true,
      expression: `(() => {
        const row = document.querySelector('tr[data-batch="${id}"]');
        const lane = document.querySelector('article[data-lane="openai"]');
        const charts = lane ? [...lane.querySelectorAll('svg.chart')].map((c) => Number(c.dataset.points)) : [];
        return {
          updates: Number(document.body.dataset.updates), jsErrors: Number(document.body.dataset.jsErrors),
          progress: row ? Number(row.dataset.progress) : null, batchState: row ? row.dataset.state : null,
          charts, paths: lane ? lane.querySelectorAll('svg.chart path.s').length : 0,
          errorRows: document.querySelectorAll('#errors tbody tr').length,
          usageRows: document.querySelectorAll('#usage tbody tr').length,
          problem: document.getElementById('problem').hidden ? null : document.getElementById('problem').textContent,
          laneText: lane ? lane.textContent : '',
        };
      })()`,
    });
    return r.result.value;
  };
  const seen = [];
  let st;
  for (let i = 0; i < 400; i++) {
    st = await state();
    if (st.progress != null) seen.push(st.progress);
    if (st.progress === 100 && st.updates >= 3 && st.errorRows > 0) break;
    await sleep(250);
  }
  assert.equal(st.problem, null, `the page had a problem: ${st.problem}`);
  assert.equal(st.progress, 100, `the batch's progress: ${JSON.stringify(st)}`);
  assert.equal(st.batchState, 'completed');
  assert.ok(seen.some((p) => p < 100), `the page saw the batch running: ${seen.join(' ')}`);
  assert.ok(st.updates >= 3, 'the page refreshed itself, without a reload');
  assert.equal(st.charts.length, 3, 'three charts for the lane');
  assert.ok(st.charts.every((n) => n >= 1), `the charts have points: ${st.charts}`);
  assert.ok(st.paths >= 6, 'a line per series');
  assert.ok(st.errorRows > 0, 'the failed requests are among the last errors');
  assert.equal(st.usageRows, 1, "today's usage: this user");
  assert.match(st.laneText, /tok\/min/);

  // The keyboard: the pause button takes Enter, and says it is pressed.
  await s('Runtime.evaluate', { expression: "document.getElementById('pause').focus()" });
  await s('Input.dispatchKeyEvent', { type: 'keyDown', key: 'Enter', code: 'Enter', windowsVirtualKeyCode: 13, text: '\r', unmodifiedText: '\r' });
  await s('Input.dispatchKeyEvent', { type: 'keyUp', key: 'Enter', code: 'Enter', windowsVirtualKeyCode: 13 });
  const pressed = await s('Runtime.evaluate', { returnByValue: true, expression: "document.getElementById('pause').getAttribute('aria-pressed')" });
  assert.equal(pressed.result.value, 'true');
  await s('Runtime.evaluate', { expression: "document.getElementById('pause').click()" });

  // The whole page, as a screenshot.
  await s('Runtime.evaluate', { expression: 'document.activeElement.blur()' });
  const { cssContentSize } = await s('Page.getLayoutMetrics');
  await s('Emulation.setDeviceMetricsOverride', { width: 1280, height: Math.ceil(cssContentSize.height), deviceScaleFactor: 1, mobile: false });
  await sleep(300);
  const shot = await s('Page.captureScreenshot', { format: 'png' });
  writeFileSync(PAGE_SCREENSHOT, Buffer.from(shot.data, 'base64'));

  assert.deepEqual(problems, [], 'no errors or warnings in the console');
  assert.equal((await state()).jsErrors, 0);
});
