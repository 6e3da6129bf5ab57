'use strict';
// llmr for Node: the process-wide LLM router of libllmr, through koffi.

const { fn, withOutString, LIBRARY_PATH } = require('./lib/native');
const { Status, statusName, LlmrError } = require('./lib/errors');
const { complete, stream, LlmrStream } = require('./lib/requests');
const relay = require('./lib/relay');
const { setLogger } = require('./lib/logger');

/** The app's LLM config id that means Auto mode. */
const AUTO_MODE_ID = 0;

/**
 * Initialises the process-wide router from a config (an object, or its JSON string).
 * On an initialised router it changes nothing (call shutdown() first to apply another
 * config). Throws an LlmrError (status 'config' or 'invalid_argument') when it is unusable.
 */
function init(config) {
  const [status, error] = withOutString(fn.init, configJson(config));
  if (status !== Status.OK) throw LlmrError.fromNative(status, error);
}

/**
 * Replaces the running router's deployments and settings with a new config (an object, or its
 * JSON string), atomically: requests in flight finish on the config they started with;
 * deployments whose id is in both keep their usage this minute, cooldowns, latency history and
 * counters. Throws an LlmrError and changes nothing when the config is unusable ('config',
 * 'invalid_argument') or before init() ('not_initialized').
 */
function reload(config) {
  const [status, error] = withOutString(fn.reload, configJson(config));
  if (status !== Status.OK) throw LlmrError.fromNative(status, error);
}

/** The config as the JSON text the library takes; throws 'invalid_argument' for anything else. */
function configJson(config) {
  let json;
  if (typeof config === 'string') {
    json = config;
  } else if (config !== null && typeof config === 'object' && !Array.isArray(config)) {
    try {
      json = JSON.stringify(config);
    } catch (e) {
      throw new LlmrError(Status.INVALID_ARGUMENT, `the config cannot be serialised: ${e.message}`);
    }
  } else {
    throw new LlmrError(Status.INVALID_ARGUMENT, 'the config must be an object or a JSON string');
  }
  if (json.includes('\0')) {
    throw new LlmrError(Status.INVALID_ARGUMENT, 'the config JSON contains a NUL character');
  }
  return json;
}

/**
 * Drops the router. Requests in flight are cancelled: their promises reject (and streams end)
 * with status 'cancelled', shortly after. init() works again afterwards.
 */
function shutdown() {
  const status = fn.shutdown();
  if (status !== Status.OK) throw new LlmrError(status, `llmr_shutdown failed: ${statusName(status)}`);
}

function isInitialized() {
  return fn.isInitialized();
}

/** Deployments built from the config (not counting the auto-large copies); 0 before init. */
function modelCount() {
  return Number(fn.modelCount());
}

/** Whether an app's LLM config id (a number or a bigint) means Auto mode (0). */
function isAutoMode(id) {
  if (typeof id === 'number') {
    if (!Number.isSafeInteger(id)) throw new TypeError('the config id must be an integer');
  } else if (typeof id !== 'bigint') {
    throw new TypeError('the config id must be a number or a bigint');
  } else if (id < -(2n ** 63n) || id >= 2n ** 63n) {
    return false; // not an int64, so not 0
  }
  return fn.isAutoMode(id);
}

function jsonQuery(f, what) {
  const [status, json] = withOutString(f);
  if (status !== Status.OK) throw LlmrError.fromNative(status, json);
  if (json === null) throw new LlmrError(Status.INTERNAL, `${what} returned nothing`);
  return JSON.parse(json);
}

/** The static view of the router: deployments, groups, settings, fallbacks, profile. */
function routerInfo() {
  return jsonQuery(fn.routerInfo, 'llmr_router_info');
}

/** The live view: per-deployment counters, latency, cooldowns, and totals. */
function stats() {
  return jsonQuery(fn.stats, 'llmr_stats');
}

/**
 * The router's metrics in the Prometheus text exposition format (a string to serve on a
 * /metrics endpoint): requests by deployment and status, retries, fallbacks, cooldowns, in
 * flight, tokens, cost, latency and time-to-first-chunk histograms. Works before init() too.
 */
function metrics() {
  const [status, text] = withOutString(fn.metrics);
  if (status !== Status.OK) throw LlmrError.fromNative(status, text);
  if (text === null) throw new LlmrError(Status.INTERNAL, 'llmr_metrics returned nothing');
  return text;
}

/** The native library's version, e.g. '0.1.0'. */
function version() {
  return fn.version();
}

module.exports = {
  init,
  reload,
  shutdown,
  isInitialized,
  modelCount,
  isAutoMode,
  routerInfo,
  stats,
  metrics,
  setLogger,
  version,
  complete,
  stream,
  LlmrStream,
  LlmrError,
  Status,
  statusName,
  AUTO_MODE_ID,
  /** Where the native library was loaded from. */
  libraryPath: LIBRARY_PATH,
};

// `import llmr from 'llmr'` in TypeScript compiled to CommonJS reads `.default`.
Object.defineProperty(module.exports, 'default', { enumerable: false, value: module.exports });

// For the tests (not part of the API): the relay's requests whose on_done has not yet run.
Object.defineProperty(module.exports, '_internal', {
  enumerable: false,
  value: Object.freeze({ pendingCount: relay.pendingCount }),
});
