// What the SDK tests share: a mock upstream and a real llmqd in front of it,
// in a directory of their own, stopped and removed when the test ends.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';

export const { LLMQD_BIN, LLMQ_BIN, MOCK_BIN } = process.env;
assert.ok(LLMQD_BIN && LLMQ_BIN && MOCK_BIN, 'LLMQD_BIN, LLMQ_BIN and MOCK_BIN must be set');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function startMock(dir, args = []) {
  const log = join(dir, 'mock.log');
  const p = spawn(MOCK_BIN, ['--log', log, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
  const port = await new Promise((resolve, reject) => {
    p.stdout.once('data', (d) => resolve(parseInt(d.toString(), 10)));
    p.once('exit', (code) => reject(new Error(`mock exited ${code}`)));
  });
  return {
    p, port, log,
    async stats() {
      const r = await fetch(`http://127.0.0.1:${port}/stats`);
      return r.json();
    },
  };
}

export async function startDaemon(dir, mock, env = {}) {
  const sock = join(dir, 'llmq.sock');
  const p = spawn(LLMQD_BIN, ['--socket', sock, '--db', join(dir, 'llmq.db')], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: {
      PATH: '/usr/bin:/bin',
      LLMQ_CONFIG: '',
      LLMQ_HTTP_ADDR: '127.0.0.1:0',
      OPENAI_BASE_URL: `http://127.0.0.1:${mock.port}/v1`,
      OPENAI_API_KEY: 'sk-lane-key',
      OPENAI_STAGGER_SECONDS: '0',
      OPENAI_TPM_LIMIT: '100000000',
      ...env,
    },
  });
  let ping;
  for (let i = 0; i < 200; i++) {
    try {
      ping = JSON.parse(execFileSync(LLMQ_BIN, ['--socket', sock, 'ping', '--json'],
        { stdio: ['ignore', 'pipe', 'ignore'] }).toString());
      break;
    } catch {
      await sleep(25);
    }
  }
  assert.ok(ping, 'llmqd started');
  return { p, sock, db: join(dir, 'llmq.db'), base: `http://${ping.http}/v1` };
}

export async function setup(t, mockArgs = [], env = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'llmq-sdk-'));
  const mock = await startMock(dir, mockArgs);
  const d = await startDaemon(dir, mock, env);
  t.after(async () => {
    d.p.kill('SIGTERM');
    await new Promise((r) => d.p.once('exit', r));
    mock.p.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });
  // The caller's key is its own business: llmqd sends the lane's key.
  const client = new OpenAI({ baseURL: d.base, apiKey: 'sk-caller-never-forwarded', maxRetries: 0 });
  return { dir, mock, d, client };
}

