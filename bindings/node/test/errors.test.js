'use strict';
// Every status a request can end with comes back as an LlmrError with the fields of the error
// JSON: from real wire formats (the stand-in's presets) and from MOCK's mock_error.

const test = require('node:test');
const assert = require('node:assert/strict');

const { startStandin, openai, anthropic, mock, config, reinit, hello, drained } = require('./helpers/standin');
const llmr = require('..');

let standin;
test.before(async () => {
  standin = await startStandin();
});
test.after(async () => {
  llmr.shutdown();
  await standin.stop();
});
test.afterEach(() => drained(llmr));

/** Runs the request both ways and checks both reject with an LlmrError matching `expected`. */
async function rejectsBothWays(request, expected) {
  const check = (e) => {
    assert.ok(e instanceof llmr.LlmrError, `an LlmrError, got ${e}`);
    assert.equal(e.name, 'LlmrError');
    for (const [k, v] of Object.entries(expected)) {
      if (v instanceof RegExp) assert.match(String(e[k]), v, k);
      else assert.deepEqual(e[k], v, `${k} of ${e.status}: ${e.message}`);
    }
    assert.equal(e.code, llmr.Status[e.status.toUpperCase()]);
    return true;
  };
  await assert.rejects(llmr.complete(request), check);
  const s = llmr.stream(request);
  await assert.rejects(async () => {
    for await (const c of s) void c;
  }, check);
  await assert.rejects(s.result, check);
}

const UPSTREAM_CASES = [
  // [tenant, status, httpStatus, extra fields]
  ['overflow', 'context_overflow', 400],
  ['e429', 'rate_limited', 429, { retryAfter: 2 }],
  ['e401', 'auth', 401],
  ['e403', 'auth', 403],
  ['e400', 'bad_request', 400],
  ['e404', 'bad_request', 404],
  ['policy', 'content_policy', 400],
  ['e500', 'upstream', 500],
  ['e503', 'upstream', 503],
];

for (const [format, deployment] of [
  ['openai', (tenant) => openai(standin, 'dep-1', tenant)],
  ['anthropic', (tenant) => anthropic(standin, 'dep-1', tenant)],
]) {
  for (const [tenant, status, httpStatus, extra] of UPSTREAM_CASES) {
    test(`${format} ${tenant} → ${status}`, async () => {
      reinit(llmr, config([deployment(tenant)]));
      await rejectsBothWays(hello(), {
        status,
        httpStatus,
        provider: format,
        deploymentId: 'dep-1',
        attempts: 1,
        message: /./,
        ...extra,
      });
    });
  }
}

test('transport and format faults → upstream', async () => {
  for (const tenant of ['reset', 'garbage', 'errorfirst']) {
    reinit(llmr, config([openai(standin, 'd', tenant)]));
    await rejectsBothWays(hello(), { status: 'upstream', deploymentId: 'd', provider: 'openai' });
  }
});

test('a stream that breaks after its first chunk: the chunk, then upstream', async () => {
  reinit(llmr, config([openai(standin, 'd', 'midstreamerror')]));
  const s = llmr.stream(hello('a b c'));
  const got = [];
  await assert.rejects(
    async () => {
      for await (const c of s) got.push(c);
    },
    { status: 'upstream', message: /stream broke after it began/ },
  );
  assert.equal(got.length, 1);
  await assert.rejects(s.result, { status: 'upstream' });
});

test('timeout: the request timeout, and a stream idle gap', async () => {
  reinit(llmr, config([openai(standin, 'd', 'hang')]));
  const t0 = Date.now();
  await assert.rejects(llmr.complete({ ...hello(), timeout: 0.3 }), {
    status: 'timeout',
    code: 9,
    deploymentId: 'd',
    message: /timed out/,
  });
  assert.ok(Date.now() - t0 < 3000);
  reinit(llmr, config([openai(standin, 'd', 'trickle')]));
  const s = llmr.stream({ ...hello(), timeout: 0.3 });
  await assert.rejects(s.result, { status: 'timeout', message: /idle/ });
});

test('every deployment cooling down → rate_limited with retryAfter', async () => {
  reinit(
    llmr,
    config([openai(standin, 'a', 'e500-cool'), openai(standin, 'b', 'e503-cool')], {
      allowed_fails: 1,
      cooldown_time: 30,
      num_retries: 1,
    }),
  );
  for (let i = 0; i < 2; i++) await assert.rejects(llmr.complete(hello()), { status: 'upstream' });
  const before = (await standin.count('e500-cool')) + (await standin.count('e503-cool'));
  await assert.rejects(llmr.complete(hello()), (e) => {
    assert.equal(e.status, 'rate_limited');
    assert.ok(e.retryAfter > 20 && e.retryAfter <= 30, `retryAfter ${e.retryAfter}`);
    assert.match(e.message, /cooling down/);
    return true;
  });
  const after = (await standin.count('e500-cool')) + (await standin.count('e503-cool'));
  assert.equal(after, before, 'no upstream call while every deployment cools down');
  assert.ok(llmr.stats().deployments.every((d) => d.cooling_down));
});

test('failover: a failing deployment is retried on another; attempts says so', async () => {
  reinit(llmr, config([openai(standin, 'bad', 'e500-fo'), openai(standin, 'good', 'ok-fo')], { num_retries: 2 }));
  for (let i = 0; i < 4; i++) {
    const r = await llmr.complete(hello());
    assert.equal(r.llmr.deployment_id, 'good');
    assert.ok(r.llmr.attempts >= 1 && r.llmr.attempts <= 2);
  }
  assert.ok((await standin.count('e500-fo')) >= 1);
});

test('MOCK mock_error: each status name, and an HTTP error with retry_after', async () => {
  for (const status of [
    'context_overflow',
    'rate_limited',
    'auth',
    'bad_request',
    'content_policy',
    'timeout',
    'upstream',
  ]) {
    reinit(llmr, config([mock('m', { mock_error: status })]));
    await rejectsBothWays(hello(), { status, provider: 'mock', deploymentId: 'm' });
  }
  reinit(llmr, config([mock('m', { mock_error: { http_status: 429, message: 'slow down', retry_after: 1.5 } })]));
  await rejectsBothWays(hello(), { status: 'rate_limited', httpStatus: 429, retryAfter: 1.5, message: 'slow down' });
});

test('invalid requests → invalid_argument, from the library and from the binding', async () => {
  reinit(llmr, config([mock('m')]));
  for (const request of [
    {},
    { messages: 'not a list' },
    { ...hello(), temperature: 'hot' },
    { ...hello(), timeout: -1 },
    { ...hello(), model: 'no-such-group' },
    '{"messages": [',
    'a\0b',
    42,
    null,
    [hello()],
    { ...hello(), big: 1n }, // not serialisable
  ]) {
    await rejectsBothWays(request, { status: 'invalid_argument', code: 1, httpStatus: undefined });
  }
});

test('bad options are a TypeError', async () => {
  await assert.rejects(llmr.complete(hello(), { signal: 'stop' }), TypeError);
  assert.throws(() => llmr.stream(hello(), { signal: {} }), TypeError);
  assert.throws(() => llmr.stream(hello(), 5), TypeError);
});
