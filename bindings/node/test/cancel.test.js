'use strict';
// Cancellation: AbortSignal, leaving a `for await` loop, stream.cancel(). Each cancels the
// request in the library (its on_done arrives, nothing is left in flight), promptly.

const test = require('node:test');
const assert = require('node:assert/strict');
const { getEventListeners } = require('node:events');

const { startStandin, openai, mock, config, reinit, hello, drained } = require('./helpers/standin');
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function isAbortError(reason) {
  return (e) => {
    assert.ok(e instanceof llmr.LlmrError);
    assert.equal(e.name, 'AbortError');
    assert.equal(e.status, 'cancelled');
    assert.equal(e.code, llmr.Status.CANCELLED);
    if (reason !== undefined) assert.equal(e.cause, reason);
    return true;
  };
}

function inFlight() {
  return llmr.stats().deployments.reduce((n, d) => n + d.in_flight, 0);
}

/** A MOCK stream of `words` words, one every `ms` milliseconds. */
function slowMock(words = 200, ms = 20) {
  const text = Array.from({ length: words }, (_, i) => `w${i}`).join(' ');
  return config([mock('slow', { mock_response: text, mock_chunk_delay_ms: ms })]);
}

test('an already-aborted signal rejects at once; nothing is sent', async () => {
  reinit(llmr, config([openai(standin, 'd', 'ok-aborted')]));
  const reason = new Error('user gave up');
  const ac = new AbortController();
  ac.abort(reason);
  await assert.rejects(llmr.complete(hello(), { signal: ac.signal }), isAbortError(reason));
  const s = llmr.stream(hello(), { signal: ac.signal });
  assert.equal(s.id, 0, 'not started');
  await assert.rejects(s.result, isAbortError(reason));
  await assert.rejects(s.next(), isAbortError(reason));
  assert.deepEqual(await s.next(), { value: undefined, done: true });
  assert.equal(llmr._internal.pendingCount(), 0);
  assert.equal(await standin.count('ok-aborted'), 0);
});

test('abort during a completion: rejects at once, the library drops the request', async () => {
  reinit(llmr, config([openai(standin, 'd', 'hang')]));
  const ac = new AbortController();
  const p = llmr.complete(hello(), { signal: ac.signal });
  await sleep(100);
  assert.equal(inFlight(), 1);
  const t0 = performance.now();
  ac.abort();
  await assert.rejects(p, isAbortError(ac.signal.reason));
  assert.ok(performance.now() - t0 < 50, 'rejected at once');
  await drained(llmr, 2000); // the library's on_done (cancelled) has come back
  assert.equal(inFlight(), 0);
  assert.equal(llmr.stats().deployments[0].requests, 1);
});

test('AbortSignal.timeout cancels a slow request', async () => {
  reinit(llmr, config([openai(standin, 'd', 'slow-5000')]));
  const t0 = Date.now();
  await assert.rejects(llmr.complete(hello(), { signal: AbortSignal.timeout(150) }), (e) => {
    assert.equal(e.name, 'AbortError');
    assert.equal(e.cause.name, 'TimeoutError');
    return true;
  });
  assert.ok(Date.now() - t0 < 1000);
  await drained(llmr, 2000);
  assert.equal(inFlight(), 0);
});

test('abort during a stream: iteration throws, no chunk after it, the library stops', async () => {
  reinit(llmr, slowMock());
  const ac = new AbortController();
  const s = llmr.stream(hello(), { signal: ac.signal });
  const got = [];
  const t0 = Date.now();
  await assert.rejects(async () => {
    for await (const c of s) {
      got.push(c);
      if (got.length === 3) ac.abort();
    }
  }, isAbortError());
  assert.equal(got.length, 3);
  await assert.rejects(s.result, isAbortError());
  await drained(llmr, 2000);
  assert.ok(Date.now() - t0 < 1500, 'stopped long before the 200 words (4 s) were streamed');
  assert.equal(inFlight(), 0);
});

test('breaking out of for-await cancels the request in the library', async () => {
  reinit(llmr, slowMock());
  const s = llmr.stream(hello());
  const t0 = Date.now();
  let n = 0;
  for await (const c of s) {
    assert.ok(c.choices[0].delta.content);
    if (++n === 2) break;
  }
  await assert.rejects(s.result, (e) => {
    assert.equal(e.name, 'LlmrError');
    assert.equal(e.status, 'cancelled');
    assert.match(e.message, /consumer/);
    return true;
  });
  await drained(llmr, 2000);
  assert.ok(Date.now() - t0 < 1500, `stopped early (${Date.now() - t0} ms)`);
  assert.equal(inFlight(), 0);
  assert.deepEqual(await s.next(), { value: undefined, done: true }, 'finished for good');
});

test('an exception in the loop body cancels too (the loop calls return())', async () => {
  reinit(llmr, config([openai(standin, 'd', 'ok-throw')]));
  await standin.always('ok-throw', { text: 'a b c d e f g h i j', chunk_interval_ms: 200 });
  const s = llmr.stream(hello());
  const t0 = Date.now();
  await assert.rejects(async () => {
    for await (const c of s) throw new Error(`stop at ${c.choices[0].delta.content}`);
  }, /stop at/);
  await assert.rejects(s.result, { status: 'cancelled' });
  await drained(llmr, 2000);
  assert.ok(Date.now() - t0 < 1500, 'the stand-in stream (2 s) was dropped');
});

test('stream.cancel() before iterating', async () => {
  reinit(llmr, slowMock());
  const s = llmr.stream(hello());
  assert.ok(s.id > 0);
  s.cancel();
  await assert.rejects(s.result, { status: 'cancelled' });
  for await (const c of s) assert.fail(`no chunk after cancel: ${JSON.stringify(c)}`);
  await drained(llmr, 2000);
});

test('abort after the answer changes nothing; a shared signal carries one listener', async () => {
  reinit(llmr, config([mock('m', { mock_response: 'fine', mock_delay_ms: 20 })]));
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  const ac = new AbortController();
  const all = Array.from({ length: 200 }, (_, i) =>
    i % 2 ? llmr.complete(hello(), { signal: ac.signal }) : llmr.stream(hello(), { signal: ac.signal }).result,
  );
  assert.equal(getEventListeners(ac.signal, 'abort').length, 1);
  const answers = await Promise.all(all);
  assert.ok(answers.every((r) => r.choices[0].message.content === 'fine'));
  assert.equal(getEventListeners(ac.signal, 'abort').length, 0, 'unsubscribed when done');
  ac.abort();
  await new Promise((r) => setImmediate(r));
  process.off('warning', onWarning);
  assert.deepEqual(warnings.map(String), []);
});

test('cancelling half of 1,000 requests in flight', async () => {
  reinit(llmr, config([mock('m', { mock_delay_ms: 1000 })]));
  const controllers = Array.from({ length: 1000 }, () => new AbortController());
  const all = controllers.map((ac) => llmr.complete(hello(), { signal: ac.signal }));
  await sleep(10);
  controllers.forEach((ac, i) => i % 2 === 0 && ac.abort());
  const outcomes = await Promise.allSettled(all);
  outcomes.forEach((o, i) => {
    if (i % 2 === 0) {
      assert.equal(o.status, 'rejected', `request ${i} was to be aborted`);
      assert.equal(o.reason.name, 'AbortError');
    } else {
      assert.equal(o.status, 'fulfilled', `request ${i}: ${o.reason}`);
    }
  });
  await drained(llmr);
  // The library cancelled the other half: they never succeeded there.
  assert.equal(llmr.stats().totals.successes, 500);
  assert.equal(inFlight(), 0);
});
