'use strict';
// reload(): the config swapped in place under a running router.

const test = require('node:test');
const assert = require('node:assert/strict');

const llmr = require('..');
const { mock, config, reinit, hello, drained } = require('./helpers/standin');

test.after(() => llmr.shutdown());

test('reload before init rejects with not_initialized', () => {
  llmr.shutdown();
  assert.throws(() => llmr.reload(config([mock('a')])), { name: 'LlmrError', status: 'not_initialized' });
  assert.equal(llmr.isInitialized(), false);
});

test('reload swaps the config; in-flight requests finish on the old one; bad configs change nothing', async () => {
  reinit(llmr, config([mock('old', { mock_response: 'old answer', mock_delay_ms: 800 })]));
  const inFlight = llmr.complete(hello('slow'));
  const deadline = Date.now() + 5000;
  while (llmr.stats().deployments[0].in_flight === 0) {
    assert.ok(Date.now() < deadline, 'the request did not start');
    await new Promise((r) => setTimeout(r, 10));
  }

  llmr.reload(JSON.stringify(config([mock('new', { mock_response: 'new answer' })])));
  assert.equal(llmr.modelCount(), 1);
  assert.deepEqual(llmr.routerInfo().deployments.map((d) => d.id), ['new']);
  const fresh = await llmr.complete(hello('after'));
  assert.equal(fresh.choices[0].message.content, 'new answer');
  const old = await inFlight;
  assert.equal(old.choices[0].message.content, 'old answer');
  assert.equal(old.llmr.deployment_id, 'old');

  const before = llmr.routerInfo();
  assert.throws(() => llmr.reload('{not json'), { status: 'config' });
  assert.throws(() => llmr.reload({ global_llm_configs: [] }), { status: 'config' });
  assert.throws(() => llmr.reload(config([mock('x')], { max_wait_when_cooling: -1 })), (e) => {
    assert.equal(e.status, 'config');
    assert.match(e.message, /max_wait_when_cooling/);
    return true;
  });
  assert.throws(() => llmr.reload(42), { status: 'invalid_argument' });
  assert.deepEqual(llmr.routerInfo(), before);
  await drained(llmr);
});
