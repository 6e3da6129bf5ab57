'use strict';
// Whole-process behaviour, in child processes: Node stays alive while requests are pending and
// exits by itself when idle; the package loads by name (CJS and ESM); LLMR_LIB is honoured.

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const path = require('node:path');

const PKG = path.resolve(__dirname, '..');
const llmr = require('..');

/** Runs `node -e code` (or an ESM snippet) in the package directory; resolves {code, stdout, stderr, ms}. */
function run(code, { esm = false, env = {}, timeout = 15_000 } = {}) {
  const args = esm ? ['--input-type=module', '-e', code] : ['-e', code];
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: PKG, env: { ...process.env, LLMR_LOG: 'error', ...env }, timeout },
      (err, stdout, stderr) => {
        resolve({ code: err ? (err.killed ? 'killed' : err.code ?? err.signal) : 0, stdout, stderr, ms: Date.now() - t0 });
      },
    );
  });
}

const MOCK_CONFIG = (params) =>
  JSON.stringify({
    global_llm_configs: [{ id: 1, provider: 'MOCK', model_name: 'm', litellm_params: params }],
    router_settings: { num_retries: 0 },
  });

test('a pending completion keeps Node alive; then it exits by itself', async () => {
  const r = await run(`
    const llmr = require('llmr');
    llmr.init(${MOCK_CONFIG({ mock_response: 'late answer', mock_delay_ms: 500 })});
    llmr.complete({ messages: [{ role: 'user', content: 'hi' }] })
      .then((r) => console.log('answer:', r.choices[0].message.content));
  `);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'answer: late answer');
  assert.ok(r.ms >= 500, `waited for the answer (${r.ms} ms)`);
});

test('a stream being consumed keeps Node alive', async () => {
  const r = await run(`
    import { init, stream } from 'llmr';
    init(${MOCK_CONFIG({ mock_response: 'one two three', mock_chunk_delay_ms: 150 })});
    const s = stream({ messages: [{ role: 'user', content: 'hi' }] });
    for await (const c of s) process.stdout.write(c.choices[0].delta.content);
    console.log('|', (await s.result).choices[0].finish_reason);
  `, { esm: true });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'one two three| stop');
});

test('an idle process exits at once, also with the router initialised', async () => {
  const r = await run(`
    const llmr = require('llmr');
    llmr.init(${MOCK_CONFIG({})});
    llmr.complete({ messages: [{ role: 'user', content: 'hi' }] }).then(() => console.log('done'));
  `);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'done');
  assert.ok(r.ms < 5000, `${r.ms} ms`);
});

test('an unobserved failing stream does not crash the process', async () => {
  const r = await run(`
    const llmr = require('llmr');
    llmr.init(${MOCK_CONFIG({ mock_error: 'upstream' })});
    llmr.stream({ messages: [{ role: 'user', content: 'hi' }] });
    const s = llmr.stream({ messages: [{ role: 'user', content: 'hi' }] });
    (async () => { for await (const c of s) void c; })().catch((e) => console.log('caught', e.status));
  `);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'caught upstream');
});

test('LLMR_LIB chooses the library; a wrong path says what to do', async () => {
  const ok = await run(`console.log(require('llmr').libraryPath)`, { env: { LLMR_LIB: llmr.libraryPath } });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout.trim(), llmr.libraryPath);
  const bad = await run(`require('llmr')`, { env: { LLMR_LIB: '/nonexistent/libllmr.so' } });
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /cannot load the native library from "\/nonexistent\/libllmr.so"/);
  assert.match(bad.stderr, /LLMR_LIB/);
});

test('examples/demo.js runs', async () => {
  const r = await run(`require('./examples/demo.js')`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /> What does llmr do\?\nllmr routes each request/);
  assert.match(r.stdout, /aborted: AbortError, status cancelled/);
});

test('worker threads: refused unless LLMR_ALLOW_WORKER=1, then usable', async () => {
  const inWorker = `
    const llmr = require('llmr');
    llmr.init(${MOCK_CONFIG({ mock_response: 'from a worker' })});
    llmr.complete({ messages: [{ role: 'user', content: 'hi' }] })
      .then((r) => console.log(r.choices[0].message.content));
  `;
  const worker = (env) =>
    run(
      `
      require('llmr'); // keeps koffi's native code loaded when the worker ends (see the README)
      const { Worker } = require('node:worker_threads');
      const w = new Worker(${JSON.stringify(inWorker)}, { eval: true, env: process.env });
      w.on('error', (e) => console.log('error:', e.message));
      `,
      { env },
    );
  const refused = await worker({});
  assert.equal(refused.code, 0, refused.stderr);
  assert.match(refused.stdout, /error: llmr: load it on the main thread/);
  const allowed = await worker({ LLMR_ALLOW_WORKER: '1' });
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.equal(allowed.stdout.trim(), 'from a worker');
});
