#!/usr/bin/env node
'use strict';
// An offline tour of llmr from Node: MOCK deployments answer in-process, so no key or network
// is needed. Run it from bindings/node after `make build` and `npm ci`:
//
//   node examples/demo.js
//
// In your own code, `require('llmr')` (or `import … from 'llmr'`) instead of the path below.

const llmr = require('..');

const ANSWER =
  'llmr routes each request to the best deployment of its group, retries and fails over when ' +
  'a provider errors, cools down deployments that keep failing, and falls back to a larger ' +
  'context window when a prompt does not fit.';

const config = {
  global_llm_configs: [
    {
      id: 'mock-small',
      provider: 'MOCK',
      model_name: 'mock-small',
      max_input_tokens: 2000,
      litellm_params: { mock_response: ANSWER, mock_chunk_delay_ms: 30 },
    },
    {
      id: 'mock-large',
      provider: 'MOCK',
      model_name: 'mock-large',
      max_input_tokens: 8000,
      litellm_params: { mock_response: ANSWER, mock_chunk_delay_ms: 30 },
    },
  ],
  router_settings: { routing_strategy: 'usage-based-routing', num_retries: 2, timeout: 60 },
};

async function main() {
  console.log(`llmr ${llmr.version()} (${llmr.libraryPath})`);
  llmr.init(config);
  const info = llmr.routerInfo();
  console.log(`${llmr.modelCount()} deployments:`, info.deployments.map((d) => `${d.id} [${d.groups}]`).join(', '));

  // 1. A streamed answer: print the chunks as they come, then the assembled result.
  const s = llmr.stream({ messages: [{ role: 'user', content: 'What does llmr do?' }] });
  process.stdout.write('\n> What does llmr do?\n');
  for await (const chunk of s) {
    const delta = chunk.choices[0].delta;
    if (delta.content) process.stdout.write(delta.content);
  }
  const result = await s.result;
  console.log(
    `\n(${result.choices[0].finish_reason}; deployment ${result.llmr.deployment_id}, ` +
      `${result.usage.prompt_tokens}+${result.usage.completion_tokens} tokens, ${result.llmr.attempts} attempt(s))`,
  );

  // 2. A prompt too long for the small window falls back to the larger one.
  const long = 'Summarise this. ' + 'lorem ipsum dolor sit amet '.repeat(600);
  const big = await llmr.complete({ messages: [{ role: 'user', content: long }] });
  console.log(`\na ~${Math.round(long.length / 4)}-token prompt went to ${big.llmr.deployment_id}`);

  // 3. Stopping early: leaving the loop cancels the request in the library.
  const early = llmr.stream({ messages: [{ role: 'user', content: 'Again, briefly.' }] });
  let words = '';
  for await (const chunk of early) {
    words += chunk.choices[0].delta.content ?? '';
    if (words.split(' ').length > 5) break;
  }
  console.log(`\nstopped after: "${words.trim()}"`);
  await early.result.catch((e) => console.log(`  result: ${e.name} ${e.status}`));

  // 4. Cancelling with an AbortSignal.
  try {
    const slow = llmr.stream({ messages: [{ role: 'user', content: 'Take your time.' }] }, { signal: AbortSignal.timeout(100) });
    for await (const chunk of slow) void chunk;
  } catch (e) {
    console.log(`\naborted: ${e.name}, status ${e.status} (code ${e.code})`);
  }

  // 5. Errors are LlmrErrors with the fields of the C error JSON.
  try {
    await llmr.complete({ messages: 'not a list' });
  } catch (e) {
    console.log(`\n${e.name}: status ${e.status}, code ${e.code}: ${e.message}`);
  }

  const totals = llmr.stats().totals;
  console.log(`\nstats: ${totals.requests} requests, ${totals.successes} successes, ${totals.failures} failures`);
  llmr.shutdown();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
