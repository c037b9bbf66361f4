// The Batch API through the official openai SDK, against a real llmqd and
// the mock upstream: upload a JSONL file, create a batch, poll it, read its
// output and error files; list with pagination, cancel, admission's 503
// (and its 400 for a batch that can never run).
//
// Run by ctest (test_sdk_batch) with LLMQD_BIN, LLMQ_BIN and MOCK_BIN set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { setup, sleep, LLMQ_BIN } from './llmqd.mjs';

function line(i, extra = {}) {
  return JSON.stringify({
    custom_id: `req-${i}`,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `q${i}` }], max_tokens: 10, ...extra },
  });
}

function writeBatch(dir, name, lines) {
  const path = join(dir, name);
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

async function upload(client, path) {
  return client.files.create({ file: createReadStream(path), purpose: 'batch' });
}

async function until(client, id, done, ms = 20000) {
  const t0 = Date.now();
  for (;;) {
    const b = await client.batches.retrieve(id);
    if (done(b)) return b;
    assert.ok(Date.now() - t0 < ms, `batch ${id} still ${b.status} after ${ms} ms`);
    await sleep(100);
  }
}

async function lines(client, fileId) {
  const r = await client.files.content(fileId);
  const text = await r.text();
  return text.split('\n').filter((l) => l).map((l) => JSON.parse(l));
}

test('upload, create, poll to completed, read the output and error files', async (t) => {
  const { dir, client, d } = await setup(t, ['--fail-every', '5'], { OPENAI_RETRY_MAX_ATTEMPTS: '1' });
  const path = writeBatch(dir, 'in.jsonl', Array.from({ length: 20 }, (_, i) => line(i)));
  const file = await upload(client, path);
  assert.match(file.id, /^file-/);
  assert.equal(file.object, 'file');
  assert.equal(file.purpose, 'batch');
  assert.equal(file.filename, 'in.jsonl');
  assert.equal(file.bytes, Buffer.byteLength(Array.from({ length: 20 }, (_, i) => line(i)).join('\n') + '\n'));
  assert.equal((await client.files.retrieve(file.id)).bytes, file.bytes);
  const listed = await client.files.list();
  assert.deepEqual(listed.data.map((f) => f.id), [file.id]);
  // The stored bytes come back as they went.
  const back = await (await client.files.content(file.id)).text();
  assert.equal(back.split('\n').filter((l) => l).length, 20);

  const created = await client.batches.create({
    input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h',
    metadata: { purpose: 'sdk test' },
  });
  assert.equal(created.object, 'batch');
  assert.equal(created.status, 'in_progress');
  assert.equal(created.input_file_id, file.id);
  assert.equal(created.request_counts.total, 20);
  assert.deepEqual(created.metadata, { purpose: 'sdk test' });

  const b = await until(client, created.id, (x) => x.status === 'completed');
  assert.equal(b.request_counts.total, 20);
  assert.equal(b.request_counts.completed + b.request_counts.failed, 20);
  assert.ok(b.request_counts.failed >= 3, `the mock failed every 5th: ${b.request_counts.failed}`);
  assert.ok(b.completed_at >= b.created_at);
  assert.ok(b.output_file_id && b.error_file_id);

  const out = await lines(client, b.output_file_id);
  const errs = await lines(client, b.error_file_id);
  assert.equal(out.length, b.request_counts.completed);
  assert.equal(errs.length, b.request_counts.failed);
  const ids = new Set([...out, ...errs].map((l) => l.custom_id));
  assert.equal(ids.size, 20, 'every request answered once, in one of the two files');
  for (const l of out) {
    assert.equal(l.response.status_code, 200);
    assert.equal(l.response.body.choices[0].message.content, `echo: q${l.custom_id.slice(4)}`);
    assert.equal(l.error, null);
  }
  for (const l of errs) assert.ok(l.error || l.response.status_code >= 400);

  // The same batch, seen by llmq over the socket: the same lines.
  const cli = execFileSync(LLMQ_BIN, ['--socket', d.sock, 'results', b.id]).toString();
  assert.equal(cli.split('\n').filter((x) => x).length, out.length);
  const st = JSON.parse(execFileSync(LLMQ_BIN, ['--socket', d.sock, 'status', b.id, '--json']).toString());
  assert.equal(st.batch?.id ?? st.id, b.id);

  // Output files are made from the jobs: not deletable; the upload is.
  await assert.rejects(client.files.delete(b.output_file_id), (e) => e.status === 400);
  const del = await client.files.delete(file.id);
  assert.equal(del.deleted, true);
  await assert.rejects(client.files.retrieve(file.id), (e) => e.status === 404);
});

test('a file with a bad line makes a failed batch naming the line; a wrong endpoint too', async (t) => {
  const { dir, client, mock } = await setup(t);
  const bad = writeBatch(dir, 'bad.jsonl', [line(0), '{"custom_id": "x"', line(2),
    JSON.stringify({ custom_id: 'e', method: 'POST', url: '/v1/embeddings', body: { model: 'text-embedding-3-small', input: 'x' } })]);
  const f = await upload(client, bad);
  const b = await client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
  assert.equal(b.status, 'failed');
  assert.ok(b.failed_at);
  const byLine = Object.fromEntries(b.errors.data.map((e) => [e.line, e.message]));
  assert.ok(byLine[2], 'line 2 is malformed JSON');
  assert.match(byLine[4], /endpoint/);
  assert.equal((await client.batches.retrieve(b.id)).status, 'failed');
  await sleep(300);
  assert.equal((await mock.stats()).ok, 0, 'nothing ran');
});

test('batches.list pages with limit and after, newest first', async (t) => {
  const { dir, client } = await setup(t);
  const f = await upload(client, writeBatch(dir, 'one.jsonl', [line(0)]));
  const made = [];
  for (let i = 0; i < 5; i++)
    made.push((await client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' })).id);
  const first = await client.batches.list({ limit: 2 });
  assert.deepEqual(first.data.map((b) => b.id), [made[4], made[3]]);
  assert.equal(first.has_more, true);
  const seen = [];
  for await (const b of client.batches.list({ limit: 2 })) seen.push(b.id);
  assert.deepEqual(seen, [...made].reverse(), 'the SDK follows after= to the end');
});

test('batches.cancel mid-run: queued requests cancelled, the batch ends cancelled', async (t) => {
  const { dir, client, mock } = await setup(t, ['--latency-ms', '50'], {
    OPENAI_MAX_CONCURRENCY: '1', OPENAI_RPM_LIMIT: '600', OPENAI_TPM_LIMIT: '0',
  });
  const f = await upload(client, writeBatch(dir, 'long.jsonl', Array.from({ length: 200 }, (_, i) => line(i))));
  const b = await client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
  await until(client, b.id, (x) => x.request_counts.completed >= 2);
  const c = await client.batches.cancel(b.id);
  assert.ok(['cancelling', 'cancelled'].includes(c.status), c.status);
  assert.ok(c.cancelling_at);
  const done = await until(client, b.id, (x) => x.status === 'cancelled');
  assert.ok(done.cancelled_at);
  assert.ok(done.request_counts.completed < 200);
  const errs = await lines(client, done.error_file_id);
  assert.equal(errs.length + done.request_counts.completed + done.request_counts.failed, 200);
  assert.ok(errs.every((l) => l.error.code === 'batch_cancelled' || l.response));
  const ran = (await mock.stats()).ok;
  await sleep(300);
  assert.equal((await mock.stats()).ok, ran, 'nothing runs after the cancel');
  assert.equal((await client.batches.cancel(b.id)).status, 'cancelled', 'a second cancel is a no-op');
});

test('a batch admission refuses for now is a 503 BATCH_RATE_LIMITED with Retry-After; nothing stored', async (t) => {
  const { dir, client } = await setup(t, [], { OPENAI_TPM_LIMIT: '1000', OPENAI_TPM_HEADROOM: '0' });
  // About 5 minutes of the lane's budget, queued ahead.
  const ahead = await upload(client, writeBatch(dir, 'ahead.jsonl',
    Array.from({ length: 10 }, (_, i) => line(i, { max_tokens: 500 }))));
  const first = await client.batches.create({ input_file_id: ahead.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
  // Alone it would fit its minute; behind the queue it cannot, for now.
  const f = await upload(client, writeBatch(dir, 'one.jsonl', [line(0, { max_tokens: 500 })]));
  await assert.rejects(
    client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '1m' }),
    (e) => {
      assert.equal(e.status, 503);
      assert.equal(e.code, 'BATCH_RATE_LIMITED');
      assert.equal(e.type, 'rate_limit');
      assert.ok(Number(e.headers.get('retry-after')) >= 1, `retry-after ${e.headers.get('retry-after')}`);
      return true;
    });
  assert.deepEqual((await client.batches.list()).data.map((b) => b.id), [first.id], 'nothing was stored');
});

test('a batch that can never run is a 400 naming the line, which the SDK does not retry', async (t) => {
  const { dir, d } = await setup(t, [], { OPENAI_TPM_LIMIT: '1000', OPENAI_TPM_HEADROOM: '0' });
  let posts = 0;
  // The SDK's own retries on (2 by default), counting what reaches llmqd.
  const client = new OpenAI({
    baseURL: d.base, apiKey: 'sk-caller-never-forwarded', maxRetries: 2,
    fetch: (url, init) => {
      if (String(url).endsWith('/batches') && init?.method === 'POST') posts++;
      return fetch(url, init);
    },
  });
  const f = await upload(client, writeBatch(dir, 'dear.jsonl',
    [line(0), line(1, { max_tokens: 5000 }), line(2)]));
  await assert.rejects(
    client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' }),
    (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, `${e.constructor.name}: ${e.message}`);
      assert.equal(e.status, 400);
      assert.equal(e.code, 'batch_cannot_run');
      assert.match(e.message, /on line 2 /);
      assert.equal(e.headers.get('retry-after'), null);
      return true;
    });
  assert.equal(posts, 1, 'asked once: a 400 is not retried');
  assert.equal((await client.batches.list()).data.length, 0, 'nothing was stored');
});

test('a batch whose window ends is expired, its unfinished requests batch_expired', async (t) => {
  // Admission sees a fast lane; the provider then answers in 1.5 s each.
  const { dir, client } = await setup(t, ['--latency-ms', '1500'], {
    OPENAI_MAX_CONCURRENCY: '1', OPENAI_TPM_LIMIT: '0',
  });
  const f = await upload(client, writeBatch(dir, 'slow.jsonl', Array.from({ length: 6 }, (_, i) => line(i))));
  const b = await client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '3s' });
  const done = await until(client, b.id, (x) => x.status === 'expired', 15000);
  assert.ok(done.expired_at);
  const errs = await lines(client, done.error_file_id);
  assert.ok(errs.length >= 1);
  assert.ok(errs.every((l) => l.error.code === 'batch_expired'));
  assert.equal(errs.length + done.request_counts.completed, 6);
});
