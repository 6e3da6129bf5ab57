'use strict';
// complete() and stream() that succeed: text, streaming, tools, against the stand-in (OpenAI
// and Anthropic wire formats) and MOCK deployments.

const test = require('node:test');
const assert = require('node:assert/strict');

const llmr = require('..');
const { startStandin, openai, anthropic, mock, config, reinit, hello, drained } = require('./helpers/standin');

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

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
  const chunks = [];
  for await (const chunk of s) chunks.push(chunk);
  return { chunks, result: await s.result };
}

const text = (chunks) => chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');

for (const [format, deployment] of [
  ['OpenAI', (s) => openai(s, 'd1', 'ok')],
  ['Anthropic', (s) => anthropic(s, 'd1', 'ok')],
]) {
  test(`complete: a chat.completion with llmr's metadata (${format})`, async () => {
    reinit(llmr, config([deployment(standin)]));
    const r = await llmr.complete(hello('ping'));
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content, 'echo: ping');
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(r.usage.prompt_tokens > 0);
    assert.equal(r.llmr.deployment_id, 'd1');
    assert.equal(r.llmr.provider, format.toLowerCase());
    assert.equal(r.llmr.attempts, 1);
  });

  test(`stream: the chunks put together are the result (${format})`, async () => {
    reinit(llmr, config([deployment(standin)]));
    const { chunks, result } = await collect(llmr.stream(hello('one two three four five')));
    assert.ok(chunks.length >= 2, `several chunks, got ${chunks.length}`);
    for (const c of chunks) assert.equal(c.object, 'chat.completion.chunk');
    assert.equal(text(chunks), result.choices[0].message.content);
    assert.equal(result.choices[0].message.content, 'echo: one two three four five');
    assert.equal(result.choices[0].finish_reason, 'stop');
    assert.ok(result.usage.completion_tokens > 0);
  });

  test(`tools: a tool call, complete and streamed (${format})`, async () => {
    reinit(llmr, config([deployment(standin)]));
    const request = { ...hello('What is the weather in Paris?'), tools: [WEATHER_TOOL], tool_choice: 'auto' };
    const r = await llmr.complete(request);
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    const [call] = r.choices[0].message.tool_calls;
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });

    const { chunks, result } = await collect(llmr.stream(request));
    assert.ok(chunks.some((c) => c.choices[0].delta.tool_calls), 'tool-call deltas');
    const args = chunks
      .flatMap((c) => c.choices[0].delta.tool_calls ?? [])
      .map((t) => t.function?.arguments ?? '')
      .join('');
    assert.deepEqual(JSON.parse(args), { city: 'Paris' });
    assert.equal(result.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(result.choices[0].message.tool_calls[0].function, call.function);

    // The tool's answer goes back as a `tool` message; the model then answers in text.
    const followUp = await llmr.complete({
      messages: [
        ...request.messages,
        r.choices[0].message,
        { role: 'tool', tool_call_id: call.id, content: '{"temp_c": 21}' },
      ],
      tools: [WEATHER_TOOL],
    });
    assert.equal(followUp.choices[0].finish_reason, 'stop');
    assert.equal(typeof followUp.choices[0].message.content, 'string');
  });
}

test('the request reaches the provider as sent (model routed, stream flag by function)', async () => {
  reinit(llmr, config([openai(standin, 'd1', 'ok-record')]));
  await standin.reset();
  await llmr.complete({ ...hello('x'), temperature: 0.3, max_tokens: 50, stop: ['\n\n'] });
  await collect(llmr.stream(hello('y')));
  const [sent, streamed] = await standin.requests('ok-record');
  const json = (b) => (typeof b === 'string' ? JSON.parse(b) : b);
  const body = json(sent.body);
  assert.equal(body.model, 'gpt-4o-mini');
  assert.equal(body.temperature, 0.3);
  assert.equal(body.max_tokens, 50);
  assert.deepEqual(body.stop, ['\n\n']);
  assert.equal(sent.headers.authorization, 'Bearer sk-test');
  assert.equal(json(streamed.body).stream, true);
});

test('a request may be a JSON string', async () => {
  reinit(llmr, config([openai(standin, 'd1', 'ok')]));
  const r = await llmr.complete(JSON.stringify(hello('as text')));
  assert.equal(r.choices[0].message.content, 'echo: as text');
  const { result } = await collect(llmr.stream(JSON.stringify(hello('streamed text'))));
  assert.equal(result.choices[0].message.content, 'echo: streamed text');
});

test('MOCK: text streamed word by word and tool calls', async () => {
  reinit(
    llmr,
    config([mock('m', { mock_response: 'alpha beta gamma delta', mock_chunk_delay_ms: 5 })]),
  );
  const { chunks, result } = await collect(llmr.stream(hello()));
  assert.equal(chunks.length, 4);
  assert.equal(text(chunks), 'alpha beta gamma delta');
  assert.equal(result.choices[0].message.content, 'alpha beta gamma delta');
  assert.equal(result.llmr.provider, 'mock');

  reinit(llmr, config([mock('t', { mock_tool_calls: [{ name: 'lookup', arguments: { q: 'llmr' } }] })]));
  const r = await llmr.complete({ ...hello(), tools: [WEATHER_TOOL] });
  assert.equal(r.choices[0].message.tool_calls[0].function.name, 'lookup');
  assert.deepEqual(JSON.parse(r.choices[0].message.tool_calls[0].function.arguments), { q: 'llmr' });
});

test('a stream nobody iterates still settles its result; chunks wait in order', async () => {
  reinit(llmr, config([mock('m', { mock_response: 'a b c d e f' })]));
  const s = llmr.stream(hello());
  const result = await s.result;
  assert.equal(result.choices[0].message.content, 'a b c d e f');
  const chunks = [];
  for await (const c of s) chunks.push(c);
  assert.equal(text(chunks), 'a b c d e f', 'buffered chunks are still delivered, in order');
  // A finished stream iterates as empty.
  for await (const c of s) assert.fail(`unexpected ${JSON.stringify(c)}`);
});

test('next() may be called ahead of the chunks', async () => {
  reinit(llmr, config([mock('m', { mock_response: 'one two', mock_chunk_delay_ms: 20 })]));
  const s = llmr.stream(hello());
  const [a, b, c, d] = await Promise.all([s.next(), s.next(), s.next(), s.next()]);
  assert.equal(a.value.choices[0].delta.content, 'one ');
  assert.equal(b.value.choices[0].delta.content, 'two');
  assert.deepEqual([c.done, d.done], [true, true]);
  assert.equal((await s.result).choices[0].message.content, 'one two');
});

test('model auto-large is accepted; a prompt too large for auto falls back to auto-large', async () => {
  reinit(
    llmr,
    config([
      mock('small', { mock_response: 'small' }, { max_input_tokens: 1000 }),
      mock('large', { mock_response: 'large' }, { max_input_tokens: 100000 }),
    ]),
  );
  const info = llmr.routerInfo();
  assert.deepEqual(info.context_window_fallbacks, [{ auto: ['auto-large'] }]);
  const r = await llmr.complete({ ...hello(), model: 'auto-large' });
  assert.equal(r.choices[0].message.content, 'large');
  // A prompt too large for the small window falls back to the large one.
  const big = await llmr.complete(hello('word '.repeat(2000)));
  assert.equal(big.choices[0].message.content, 'large');
});
