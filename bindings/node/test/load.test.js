'use strict';
// Many requests at once, the event loop staying free, and no growth after 100,000 requests.

const test = require('node:test');
const assert = require('node:assert/strict');
const koffi = require('koffi');

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

async function collect(s) {
  let text = '';
  for await (const c of s) text += c.choices[0].delta.content ?? '';
  return { text, result: await s.result };
}

test('1,000 concurrent completions and 1,000 concurrent streams', async () => {
  reinit(llmr, config([openai(standin, 'd', 'ok-many')], { timeout: 60 }));
  await standin.reset();
  const answers = await Promise.all(
    Array.from({ length: 1000 }, (_, i) => llmr.complete(hello(`request ${i}`))),
  );
  answers.forEach((r, i) => assert.equal(r.choices[0].message.content, `echo: request ${i}`));
  assert.equal(await standin.count('ok-many'), 1000);

  const streams = await Promise.all(
    Array.from({ length: 1000 }, (_, i) => collect(llmr.stream(hello(`stream ${i}`)))),
  );
  streams.forEach(({ text, result }, i) => {
    assert.equal(text, `echo: stream ${i}`);
    assert.equal(result.choices[0].message.content, text);
  });
  assert.equal(llmr._internal.pendingCount(), 0);
});

test('the event loop keeps running during slow requests', async () => {
  reinit(llmr, config([openai(standin, 'd', 'slow-1000')]));
  let ticks = 0;
  let maxGap = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 10);
  try {
    const t0 = performance.now();
    const [r, s] = await Promise.all([llmr.complete(hello('slow')), collect(llmr.stream(hello('slow too')))]);
    const elapsed = performance.now() - t0;
    assert.equal(r.choices[0].message.content, 'echo: slow');
    assert.equal(s.text, 'echo: slow too');
    assert.ok(elapsed >= 950, `the requests took the stand-in's second (${elapsed} ms)`);
    assert.ok(ticks >= 40, `a 10 ms interval ticked ${ticks} times in ${elapsed} ms`);
    assert.ok(maxGap < 250, `longest gap between ticks ${maxGap} ms`);
  } finally {
    clearInterval(timer);
  }
});

test('a slow consumer delays no other request (chunks wait in JS, not in the library)', async () => {
  reinit(llmr, config([mock('m', { mock_response: 'one two three four five six seven eight' })]));
  let slowDone = false;
  const slow = (async () => {
    const s = llmr.stream(hello());
    let n = 0;
    for await (const c of s) {
      void c;
      n++;
      await new Promise((r) => setTimeout(r, 150)); // a consumer that takes its time: >= 1.2 s
    }
    slowDone = true;
    return n;
  })();
  await new Promise((r) => setTimeout(r, 20));
  const t0 = performance.now();
  const others = await Promise.all(Array.from({ length: 50 }, () => collect(llmr.stream(hello()))));
  const fastMs = performance.now() - t0;
  assert.ok(others.every((o) => o.text === 'one two three four five six seven eight'));
  assert.equal(slowDone, false, `50 other streams (${fastMs} ms) finished while the slow one went on`);
  assert.equal(await slow, 8);
});

test('100,000 requests: no registered callback, pending entry or memory left behind', async (t) => {
  reinit(llmr, config([mock('m', { mock_response: 'a short answer' })], { timeout: 60 }));
  const request = hello('hi');
  const callbacks = koffi.stats().callbacks;
  const batch = async () => {
    const jobs = [];
    for (let i = 0; i < 900; i++) jobs.push(llmr.complete(request));
    for (let i = 0; i < 100; i++) jobs.push(llmr.stream(request).result);
    const answers = await Promise.all(jobs);
    assert.equal(answers[999].choices[0].message.content, 'a short answer');
  };
  for (let b = 0; b < 10; b++) await batch(); // warm up: pools, JIT, allocator
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const t0 = Date.now();
  for (let b = 10; b < 100; b++) await batch();
  const elapsed = Date.now() - t0;
  global.gc?.();
  const growthMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
  t.diagnostic(`90,000 requests in ${elapsed} ms, rss growth ${growthMb.toFixed(1)} MiB`);

  assert.equal(llmr._internal.pendingCount(), 0);
  assert.equal(koffi.stats().callbacks, callbacks, 'the one persistent pair, nothing per request');
  assert.equal(llmr.stats().totals.successes, 100_000);
  assert.ok(growthMb < 64, `rss grew ${growthMb.toFixed(1)} MiB over 90,000 requests`);
});
