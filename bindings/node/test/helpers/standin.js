'use strict';
// Starts the loopback provider stand-in (`llmr-standin`, built by `make build`) as a child
// process and drives its control endpoints. Its stdin is a pipe: it exits when that closes,
// so it never outlives the test process.

// The library logs warnings (cooldowns, failovers) to stderr; the tests cause many on purpose.
process.env.LLMR_LOG ??= 'error';

const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');

const STANDIN =
  process.env.LLMR_STANDIN ??
  path.resolve(__dirname, '..', '..', '..', '..', 'target', 'release', 'llmr-standin');

async function startStandin() {
  const child = spawn(STANDIN, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = await new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error('llmr-standin did not start in 10 s')), 10_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${STANDIN} (run \`make build\` first): ${e.message}`));
    });
    lines.on('line', (line) => {
      const m = /^LISTENING (\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        lines.close();
        resolve(m[1]);
      }
    });
  });

  async function control(method, route, body) {
    const res = await fetch(`${url}/_${route}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`stand-in ${method} /_${route}: ${JSON.stringify(json)}`);
    return json;
  }

  return {
    url,
    /** OpenAI-style api_base of a tenant. */
    base: (tenant) => `${url}/${tenant}/v1`,
    /** Anthropic-style api_base of a tenant. */
    anthropicBase: (tenant) => `${url}/${tenant}`,
    count: async (tenant) => (await control('GET', `count/${tenant}`)).count,
    requests: (tenant) => control('GET', `requests/${tenant}`),
    reset: () => control('POST', 'reset'),
    script: (tenant, replies) => control('POST', `script/${tenant}`, replies),
    always: (tenant, reply) => control('POST', `always/${tenant}`, reply),
    async stop() {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** An OpenAI deployment served by a stand-in tenant. */
function openai(standin, id, tenant, extra = {}) {
  return {
    id,
    provider: 'OPENAI',
    model_name: 'gpt-4o-mini',
    api_key: 'sk-test',
    api_base: standin.base(tenant),
    ...extra,
  };
}

/** An Anthropic deployment served by a stand-in tenant. */
function anthropic(standin, id, tenant, extra = {}) {
  return {
    id,
    provider: 'ANTHROPIC',
    model_name: 'claude-3-5-haiku-latest',
    api_key: 'sk-ant-test',
    api_base: standin.anthropicBase(tenant),
    ...extra,
  };
}

/** A MOCK deployment (answers in-process) with these litellm_params. */
function mock(id, params = {}, extra = {}) {
  return { id, provider: 'MOCK', model_name: `mock-${id}`, litellm_params: params, ...extra };
}

/** A router config: the deployments, no retries by default (tests say what they need). */
function config(deployments, settings = {}) {
  return {
    global_llm_configs: deployments,
    router_settings: { num_retries: 0, allowed_fails: 3, cooldown_time: 30, timeout: 30, ...settings },
  };
}

/** shutdown() + init(cfg): the router is process-wide, so each test sets up its own. */
function reinit(llmr, cfg) {
  llmr.shutdown();
  llmr.init(cfg);
}

const hello = (content = 'hello') => ({ messages: [{ role: 'user', content }] });

/** Resolves once the relay has seen every on_done (the library has let go of every request). */
async function drained(llmr, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (llmr._internal.pendingCount() > 0) {
    if (Date.now() > deadline) {
      throw new Error(`${llmr._internal.pendingCount()} requests still pending after ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

module.exports = { startStandin, openai, anthropic, mock, config, reinit, hello, drained };
