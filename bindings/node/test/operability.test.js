'use strict';
// setLogger (the library's structured logs on the JS thread) and metrics (Prometheus text).

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const path = require('node:path');

const llmr = require('..');
const { mock, config, reinit, hello, drained } = require('./helpers/standin');

const PKG = path.resolve(__dirname, '..');
const WORD = 'PINEAPPLEPROMPT';

test.after(() => {
  llmr.setLogger(null);
  llmr.shutdown();
});

/** Collects the logger's messages; `until(pred)` waits up to 10 s for one that matches. */
function collector() {
  const got = [];
  const logger = (level, json) => got.push({ level, msg: JSON.parse(json), json });
  async function until(pred) {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const m = got.find(pred);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`no such log message in 10 s: ${JSON.stringify(got)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  return { got, logger, until };
}

test('the logger gets warnings and one debug line per request, without content', async () => {
  const c = collector();
  llmr.setLogger(c.logger, 'debug');
  reinit(llmr, config([mock(1, { mock_response: `echo ${WORD}` }), { id: 'bad', provider: 'OPENAI' }]));
  const skipped = await c.until((m) => m.msg.msg === 'config entry skipped');
  assert.equal(skipped.level, 2);

  const r = await llmr.complete(hello(WORD));
  const line = await c.until((m) => m.msg.msg === 'request completed');
  assert.equal(line.level, 4);
  assert.equal(line.msg.level, 'debug');
  assert.equal(line.msg.deployment_id, '1');
  assert.equal(line.msg.attempts, 1);
  assert.equal(line.msg.status, 'ok');
  assert.equal(line.msg.prompt_tokens, r.usage.prompt_tokens);
  assert.equal(typeof line.msg.latency_ms, 'number');
  assert.ok(c.got.every((m) => !m.json.includes(WORD)), 'no message content in the logs');

  // A level name or number filters what arrives.
  const w = collector();
  llmr.setLogger(w.logger, 2);
  await llmr.complete(hello());
  reinit(llmr, config([mock(1), { id: 'bad', provider: 'OPENAI' }]));
  await w.until((m) => m.msg.msg === 'config entry skipped');
  assert.ok(w.got.every((m) => m.level <= 2), JSON.stringify(w.got));
  await drained(llmr);
});

test('setLogger(null) goes back to stderr: the logger gets nothing more', async () => {
  const c = collector();
  llmr.setLogger(c.logger, 'debug');
  reinit(llmr, config([mock(1)]));
  await llmr.complete(hello());
  await c.until((m) => m.msg.msg === 'request completed');
  llmr.setLogger(null);
  await new Promise((r) => setTimeout(r, 50)); // a message under way may still arrive
  const n = c.got.length;
  await llmr.complete(hello());
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(c.got.length, n);
});

test('setLogger checks its arguments', () => {
  assert.throws(() => llmr.setLogger('not a function'), TypeError);
  assert.throws(() => llmr.setLogger(() => {}, 9), TypeError);
  assert.throws(() => llmr.setLogger(() => {}, 'loud'), TypeError);
  llmr.setLogger(null);
});

test('metrics are Prometheus text that counts requests and cost', async () => {
  reinit(
    llmr,
    config([mock(7, { input_cost_per_token: 0.000001, output_cost_per_token: 0.000002 })]),
  );
  const r = await llmr.complete(hello());
  assert.ok(r.llmr.cost_usd > 0, JSON.stringify(r.llmr));
  const text = llmr.metrics();
  assert.match(text, /^# TYPE llmr_requests_total counter$/m);
  assert.match(text, /^llmr_requests_total\{deployment_id="7",[^}]*status="ok"\} 1$/m);
  const cost = /^llmr_cost_usd_total\{deployment_id="7"[^}]*\} (\S+)$/m.exec(text);
  assert.ok(cost, text);
  assert.ok(Math.abs(Number(cost[1]) - r.llmr.cost_usd) < 1e-12, `${cost[1]} vs ${r.llmr.cost_usd}`);
  llmr.shutdown();
  assert.match(llmr.metrics(), /^llmr_initialized 0$/m);
});

function run(code) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    execFile(process.execPath, ['-e', code], { cwd: PKG, timeout: 15_000, env: { ...process.env, LLMR_LOG: 'error' } },
      (err, stdout, stderr) => resolve({ code: err ? (err.killed ? 'killed' : err.code ?? err.signal) : 0, stdout, stderr, ms: Date.now() - t0 }));
  });
}

test('a logger delivers while Node runs and does not keep it alive', async () => {
  const cfg = JSON.stringify(config([mock(1), { id: 'bad', provider: 'OPENAI' }]));
  // Busy for a moment: the warning arrives on the JS thread.
  let r = await run(`
    const llmr = require('llmr');
    llmr.setLogger((level, m) => console.log(level, JSON.parse(m).msg), 'warn');
    llmr.init(${cfg});
    setTimeout(() => {}, 300);
  `);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), '2 config entry skipped');
  // Idle at once, messages on their way: it exits by itself, cleanly (a message reaching koffi
  // while Node tears down would abort the process: the binding unhooks the logger on 'exit').
  for (let i = 0; i < 5; i++) {
    r = await run(`
      const llmr = require('llmr');
      llmr.setLogger(() => {}, 'trace');
      llmr.init(${cfg});
      llmr.complete({ messages: [{ role: 'user', content: 'hi' }] });
    `);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.ms < 5000, `${r.ms} ms`);
  }
});
