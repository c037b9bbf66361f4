// The official openai SDK, pointed at a real llmqd in front of the mock
// upstream: every program on the host changes only its base URL.
//
// Run by ctest (test_sdk) with LLMQD_BIN, LLMQ_BIN and MOCK_BIN set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { setup } from './llmqd.mjs';

const hello = (extra = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'hi' }],
  max_tokens: 10,
  ...extra,
});

test('chat, embeddings and responses through the SDK', async (t) => {
  const { client } = await setup(t);
  const chat = await client.chat.completions.create(hello());
  assert.equal(chat.choices[0].message.content, 'echo: hi');
  assert.ok(chat.usage.total_tokens > 0);

  const emb = await client.embeddings.create(
    { model: 'text-embedding-3-small', input: 'x', encoding_format: 'float' });
  assert.equal(emb.data[0].embedding.length, 2);

  const rsp = await client.responses.create({ model: 'gpt-4o-mini', input: 'ping' });
  assert.equal(rsp.output_text, 'echo: ping');

  const { data, response } = await client.chat.completions.create(hello()).withResponse();
  assert.equal(data.object, 'chat.completion');
  assert.match(response.headers.get('x-request-id'), /^req_mock_/);
});

test('streaming arrives chunk by chunk, usage last', async (t) => {
  const { client } = await setup(t, ['--drip-ms', '300']);
  const t0 = Date.now();
  const stream = await client.chat.completions.create(
    hello({ stream: true, stream_options: { include_usage: true } }));
  let text = '';
  let first = 0;
  let usage = null;
  for await (const chunk of stream) {
    if (!first) first = Date.now() - t0;
    if (chunk.choices[0]?.delta?.content) text += chunk.choices[0].delta.content;
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, 'echo: hi');
  assert.equal(usage.total_tokens, 11); // "hi": 1 prompt token, 10 completion
  assert.ok(first < 290, `first chunk after ${first} ms, before the second was sent`);
  assert.ok(Date.now() - t0 >= 1200, 'the whole answer took the drips');
});

test('a 429 from the gate reaches the SDK with the retry-after it must honour', async (t) => {
  const { client, d } = await setup(t, [], {
    OPENAI_TPM_LIMIT: '600', OPENAI_TPM_HEADROOM: '0',
    LLMQ_INTERACTIVE_MAX_WAIT_SECONDS: '1',
  });
  await client.chat.completions.create(hello({ max_tokens: 100 }));
  await assert.rejects(client.chat.completions.create(hello({ max_tokens: 100 })), (e) => {
    assert.equal(e.status, 429);
    assert.equal(e.code, 'rate_limit_exceeded');
    const ms = Number(e.headers.get('retry-after-ms'));
    assert.ok(ms > 1000 && ms < 15000, `retry-after-ms ${ms}`);
    assert.ok(Number(e.headers.get('retry-after')) >= 1);
    return true;
  });
  // An SDK left to retry waits what llmqd said, and then gets through.
  const patient = new OpenAI({ baseURL: d.base, apiKey: 'x', maxRetries: 3 });
  const t0 = Date.now();
  const ok = await patient.chat.completions.create(hello({ max_tokens: 100 }));
  assert.equal(ok.choices[0].message.content, 'echo: hi');
  assert.ok(Date.now() - t0 > 800, 'the SDK waited for the lane');
});

test('a call that can never fit the lane is a BadRequestError, not retried', async (t) => {
  const { d } = await setup(t, [], { OPENAI_TPM_LIMIT: '1000', OPENAI_TPM_HEADROOM: '0' });
  let posts = 0;
  const client = new OpenAI({
    baseURL: d.base, apiKey: 'x', maxRetries: 2,
    fetch: (url, init) => { posts++; return fetch(url, init); },
  });
  await assert.rejects(client.chat.completions.create(hello({ max_tokens: 5000 })), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, `${e.constructor.name}: ${e.message}`);
    assert.equal(e.code, 'request_too_large');
    return true;
  });
  assert.equal(posts, 1, 'a 400 is not retried');
});

test('models.list pages through what the lane routes', async (t) => {
  const { client } = await setup(t);
  const ids = [];
  for await (const m of client.models.list()) ids.push(`${m.id}/${m.owned_by}`);
  assert.deepEqual(ids.sort(), ['gpt-4o-mini/system', 'gpt-4o/system', 'o3-mini/mock-lab',
    'text-embedding-3-small/system']);
});

test('200 concurrent SDK calls on a lane of 3: all served, never 4 upstream, never a 429',
  async (t) => {
    // The provider allows 1,200 requests/min; llmq is told the same.
    const { client, mock } = await setup(t, ['--latency-ms', '30', '--rpm', '1200'], {
      OPENAI_MAX_CONCURRENCY: '3', OPENAI_RPM_LIMIT: '1200', OPENAI_TPM_LIMIT: '0',
      OPENAI_TPM_HEADROOM: '0.05',
    });
    const calls = [];
    for (let i = 0; i < 200; i++)
      calls.push(client.chat.completions.create(hello({
        messages: [{ role: 'user', content: `q${i}` }] })));
    const answers = await Promise.all(calls);
    answers.forEach((a, i) => assert.equal(a.choices[0].message.content, `echo: q${i}`));
    const st = await mock.stats();
    assert.equal(st.ok, 200);
    assert.equal(st.r429, 0, 'the provider never refused: its budget was never exceeded');
    assert.ok(st.max_in_flight <= 3, `max in flight upstream ${st.max_in_flight}`);
    // The provider's bucket holds a minute (1,200 requests) and says so in its
    // headers: llmq spends what it holds rather than pacing at 20/s, and the
    // provider never refuses (r429 above is 0). The mock logs every arrival.
    const arrivals = readFileSync(mock.log, 'utf8').split('\n')
      .filter((l) => l.includes(' arrive ')).length;
    assert.equal(arrivals, 200);
  });
