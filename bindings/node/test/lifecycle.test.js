'use strict';
// init/shutdown semantics and the small queries. Tests in one file run one after another: the
// router is process-wide.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const llmr = require('..');
const { startStandin, openai, mock, config, reinit, hello, drained } = require('./helpers/standin');

let standin;
test.before(async () => {
  standin = await startStandin();
});
test.after(async () => {
  llmr.shutdown();
  await standin.stop();
});

test('version is the library version', () => {
  assert.match(llmr.version(), /^\d+\.\d+\.\d+/);
});

test('before init: not initialised, no models, requests reject with not_initialized', async () => {
  llmr.shutdown();
  assert.equal(llmr.isInitialized(), false);
  assert.equal(llmr.modelCount(), 0);
  await assert.rejects(llmr.complete(hello()), { name: 'LlmrError', status: 'not_initialized', code: 3 });
  const s = llmr.stream(hello());
  await assert.rejects(s.result, { status: 'not_initialized' });
  assert.throws(() => llmr.routerInfo(), { status: 'not_initialized' });
  await drained(llmr);
});

test('init takes an object or a JSON string; a second init changes nothing', () => {
  llmr.shutdown();
  llmr.init(config([mock(1), mock(2)]));
  assert.equal(llmr.isInitialized(), true);
  assert.equal(llmr.modelCount(), 2);
  llmr.init(JSON.stringify(config([mock(1)])));
  assert.equal(llmr.modelCount(), 2, 'initialised: the second config is ignored');
  llmr.shutdown();
  llmr.init(JSON.stringify(config([mock(1)])));
  assert.equal(llmr.modelCount(), 1);
});

test('init errors are LlmrErrors with status config or invalid_argument', () => {
  llmr.shutdown();
  assert.throws(() => llmr.init('{not json'), (e) => {
    assert.ok(e instanceof llmr.LlmrError);
    assert.ok(e instanceof Error);
    assert.equal(e.status, 'config');
    assert.equal(e.code, llmr.Status.CONFIG);
    assert.match(e.message, /config/);
    return true;
  });
  // No usable entry: a model without a name, an OpenAI one without a key.
  assert.throws(
    () => llmr.init(config([{ id: 1, provider: 'MOCK' }, { id: 2, provider: 'OPENAI', model_name: 'gpt-4o' }])),
    { status: 'config', code: 2 },
  );
  assert.throws(() => llmr.init(42), { status: 'invalid_argument', code: 1 });
  assert.throws(() => llmr.init('{"a":"\0"}'), { status: 'invalid_argument' });
  assert.equal(llmr.isInitialized(), false);
});

test('shutdown is idempotent and init works again after it', () => {
  llmr.shutdown();
  llmr.shutdown();
  assert.equal(llmr.isInitialized(), false);
  llmr.init(config([mock(1)]));
  assert.equal(llmr.isInitialized(), true);
});

test('isAutoMode takes a number or a bigint', () => {
  assert.equal(llmr.isAutoMode(0), true);
  assert.equal(llmr.isAutoMode(0n), true);
  assert.equal(llmr.isAutoMode(llmr.AUTO_MODE_ID), true);
  assert.equal(llmr.isAutoMode(7), false);
  assert.equal(llmr.isAutoMode(-1n), false);
  assert.equal(llmr.isAutoMode(2n ** 70n), false);
  assert.throws(() => llmr.isAutoMode(1.5), TypeError);
  assert.throws(() => llmr.isAutoMode('0'), TypeError);
});

test('routerInfo and stats are parsed objects without the API key', async () => {
  reinit(llmr, config([openai(standin, 'a', 'ok'), mock('m')]));
  const info = llmr.routerInfo();
  assert.deepEqual(info.deployments.map((d) => d.id), ['a', 'm']);
  assert.deepEqual(info.deployments[0].groups, ['auto']);
  assert.equal(info.deployments[0].api_base, standin.base('ok'));
  assert.equal(info.router_settings.num_retries, 0);
  assert.ok(!JSON.stringify(info).includes('sk-test'));

  await llmr.complete(hello());
  const stats = llmr.stats();
  assert.equal(stats.deployments.length, 2);
  assert.equal(stats.totals.requests, 1);
  assert.equal(stats.totals.successes, 1);
  assert.ok(!JSON.stringify(stats).includes('sk-test'));
});

test('strings the library returns are freed with llmr_string_free', () => {
  const koffi = require('koffi');
  reinit(llmr, config([mock(1)]));
  const before = koffi.stats().disposed;
  for (let i = 0; i < 1000; i++) {
    llmr.stats();
    llmr.routerInfo();
  }
  llmr.init('{'); // initialised: OK without even reading the config, no error string
  llmr.shutdown();
  assert.throws(() => llmr.init('{'), { status: 'config' });
  // Every out-string goes through llmr_string_free (koffi also hands it the NULL ones).
  assert.equal(koffi.stats().disposed - before, 2002);
  llmr.init(config([mock(1)]));
});

test('shutdown cancels what is in flight: pending requests reject with cancelled', async () => {
  reinit(llmr, config([openai(standin, 'h', 'hang')]));
  const pending = [llmr.complete(hello()), llmr.complete(hello())];
  const s = llmr.stream(hello());
  const iterated = (async () => {
    for await (const chunk of s) assert.fail(`no chunk expected: ${JSON.stringify(chunk)}`);
  })();
  await new Promise((r) => setTimeout(r, 100)); // the requests reach the stand-in and hang
  const t0 = Date.now();
  llmr.shutdown();
  const outcomes = await Promise.allSettled([...pending, s.result, iterated]);
  for (const o of outcomes) {
    assert.equal(o.status, 'rejected');
    assert.ok(o.reason instanceof llmr.LlmrError);
    assert.equal(o.reason.status, 'cancelled');
    assert.equal(o.reason.code, 11);
    assert.match(o.reason.message, /shutdown/);
  }
  assert.ok(Date.now() - t0 < 2000, 'promptly');
  await drained(llmr);
  assert.equal(llmr.isInitialized(), false);
});

test('statusName and the Status constants match the C values', () => {
  assert.equal(llmr.Status.CONTEXT_OVERFLOW, 4);
  assert.equal(llmr.statusName(4), 'context_overflow');
  assert.equal(llmr.statusName(llmr.Status.INTERNAL), 'internal');
  assert.equal(llmr.statusName(99), 'unknown');
  assert.equal(Object.keys(llmr.Status).length, 13);
  const e = new llmr.LlmrError('rate_limited', 'slow down', { retryAfter: 2 });
  assert.equal(e.code, 5);
  assert.equal(e.retryAfter, 2);
  assert.equal(new llmr.LlmrError(8, 'no').status, 'content_policy');
});

test('the ESM entry exports the same module', async () => {
  const esm = await import(pathToFileURL(path.join(__dirname, '..', 'index.mjs')).href);
  assert.equal(esm.default, llmr);
  assert.equal(esm.complete, llmr.complete);
  assert.equal(esm.LlmrError, llmr.LlmrError);
  assert.equal(esm.version(), llmr.version());
});
