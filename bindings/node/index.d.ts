// Type declarations of llmr, the Node binding of libllmr (an in-process LLM router).

// ---------------------------------------------------------------------------------------------
// Config

/** One deployment of the config (`global_llm_configs[]`). */
export interface DeploymentConfig {
  /** The app's id of this deployment (number or string); reported back as a string. */
  id: number | string;
  /** OPENAI, ANTHROPIC, GROQ, …, CUSTOM, or MOCK (answers in-process); case-insensitive. */
  provider: string;
  model_name: string;
  /** The key, or `os.environ/NAME` to read it from the environment. */
  api_key?: string | null;
  /** The provider's base URL (OpenAI-compatible: the part before `/chat/completions`). */
  api_base?: string | null;
  custom_provider?: string | null;
  litellm_params?: Record<string, unknown> & {
    temperature?: number;
    base_model?: string;
    /** MOCK: the answer text (streamed word by word). */
    mock_response?: string;
    /** MOCK: answer with these tool calls. */
    mock_tool_calls?: Array<{ name: string; arguments?: string | Record<string, unknown> }>;
    /** MOCK: fail every call with this status name, or an HTTP error classified as a provider's. */
    mock_error?: StatusName | { http_status: number; message?: string; code?: string; retry_after?: number };
    /** MOCK: latency before the answer, in milliseconds. */
    mock_delay_ms?: number;
    /** MOCK: latency between stream chunks, in milliseconds. */
    mock_chunk_delay_ms?: number;
  };
  rpm?: number | null;
  tpm?: number | null;
  max_input_tokens?: number | null;
  [key: string]: unknown;
}

export interface RouterSettings {
  routing_strategy?: string;
  num_retries?: number;
  allowed_fails?: number;
  /** Seconds. */
  cooldown_time?: number;
  /** Seconds. */
  retry_after?: number;
  /** Seconds. */
  timeout?: number;
  /** Seconds a request may wait when every deployment cools down (default 0: fail at once). */
  max_wait_when_cooling?: number;
  redis_url?: string | null;
  /** Lets trace-level logs carry messages and answers (default false). */
  log_content?: boolean;
  [key: string]: unknown;
}

export interface Config {
  global_llm_configs: DeploymentConfig[];
  router_settings?: RouterSettings;
  [key: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Requests and responses (OpenAI chat completions)

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; /** A JSON string. */ arguments: string };
}

export type ContentPart =
  | { type: 'text'; text: string }
  | { type: 'image_url'; image_url: { url: string; detail?: string } }
  | { type: string; [key: string]: unknown };

export type Message =
  | { role: 'system' | 'developer'; content: string | ContentPart[]; name?: string }
  | { role: 'user'; content: string | ContentPart[]; name?: string }
  | { role: 'assistant'; content?: string | ContentPart[] | null; tool_calls?: ToolCall[]; name?: string }
  | { role: 'tool'; content: string | ContentPart[]; tool_call_id: string };

export interface Tool {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
}

export interface ChatRequest {
  messages: Message[];
  /** `'auto'` (the default) or `'auto-large'`. */
  model?: string;
  tools?: Tool[];
  tool_choice?: 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };
  stop?: string | string[];
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
  response_format?: { type: string; [key: string]: unknown };
  /** Seconds; overrides the router's timeout for this request. Never sent upstream. */
  timeout?: number;
  [key: string]: unknown;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  [key: string]: unknown;
}

/** llmr's own report on how the request was served. */
export interface LlmrMeta {
  deployment_id: string;
  provider: string;
  attempts: number;
  latency_ms: number;
  /** Streams: milliseconds to the first chunk. */
  time_to_first_chunk_ms?: number;
  /** `kind:deployment_id` of each retry or fallback taken (`retry`, `failover`, `context_window`). */
  fallbacks?: string[];
  /** What the answer cost in US dollars; absent when the model's prices are unknown. */
  cost_usd?: number;
  [key: string]: unknown;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string | null; tool_calls?: ToolCall[]; [key: string]: unknown };
    finish_reason: string | null;
  }>;
  usage?: Usage;
  llmr?: LlmrMeta;
  [key: string]: unknown;
}

export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: string; content?: string | null; tool_calls?: ToolCallDelta[]; [key: string]: unknown };
    finish_reason: string | null;
  }>;
  usage?: Usage | null;
  [key: string]: unknown;
}

export interface RequestOptions {
  /** Aborting it cancels the request in the library; the call rejects with an AbortError-named LlmrError. */
  signal?: AbortSignal;
}

// ---------------------------------------------------------------------------------------------
// Errors

export type StatusName =
  | 'ok'
  | 'invalid_argument'
  | 'config'
  | 'not_initialized'
  | 'context_overflow'
  | 'rate_limited'
  | 'auth'
  | 'bad_request'
  | 'content_policy'
  | 'timeout'
  | 'upstream'
  | 'cancelled'
  | 'internal';

/** The status codes of the C ABI (values fixed, never reused). */
export declare const Status: Readonly<{
  OK: 0;
  INVALID_ARGUMENT: 1;
  CONFIG: 2;
  NOT_INITIALIZED: 3;
  CONTEXT_OVERFLOW: 4;
  RATE_LIMITED: 5;
  AUTH: 6;
  BAD_REQUEST: 7;
  CONTENT_POLICY: 8;
  TIMEOUT: 9;
  UPSTREAM: 10;
  CANCELLED: 11;
  INTERNAL: 12;
}>;

/** The snake_case name of a status code; `'unknown'` for a number that is not one. */
export declare function statusName(code: number): StatusName | 'unknown';

/** Every failure of llmr. Fields that do not apply are undefined. */
export declare class LlmrError extends Error {
  constructor(
    status: StatusName | number,
    message: string,
    fields?: {
      httpStatus?: number;
      provider?: string;
      deploymentId?: string;
      retryAfter?: number;
      attempts?: number;
    },
    options?: { cause?: unknown },
  );
  /** `'LlmrError'`, or `'AbortError'` when an AbortSignal cancelled the request. */
  name: 'LlmrError' | 'AbortError';
  /** E.g. `'context_overflow'`. */
  status: StatusName;
  /** E.g. 4 (see `Status`). */
  code: number;
  /** The upstream HTTP status, when there was one. */
  httpStatus?: number;
  /** The provider of the deployment that failed last (e.g. `'openai'`). */
  provider?: string;
  /** The id of the deployment that failed last. */
  deploymentId?: string;
  /** Seconds to wait before trying again (rate limits, cooldowns). */
  retryAfter?: number;
  /** How many upstream attempts were made. */
  attempts?: number;
}

// ---------------------------------------------------------------------------------------------
// The router

/** The app's LLM config id that means Auto mode (0). */
export declare const AUTO_MODE_ID: 0;

/** Where the native library was loaded from ($LLMR_LIB, the checkout's target/release, or the system's). */
export declare const libraryPath: string;

/**
 * Initialises the process-wide router. On an initialised router it changes nothing.
 * @throws {LlmrError} status `'config'` (unusable config) or `'invalid_argument'`.
 */
export declare function init(config: Config | string): void;

/**
 * Replaces the running router's deployments and settings atomically. Requests in flight finish
 * on the config they started with; deployments whose `id` is in both configs keep their usage
 * this minute, cooldowns, latency history and counters. On an error nothing changes.
 * @throws {LlmrError} status `'not_initialized'` (before init), `'config'` or `'invalid_argument'`.
 */
export declare function reload(config: Config | string): void;

/** Drops the router; requests in flight reject with status `'cancelled'`. init() works again after. */
export declare function shutdown(): void;

export declare function isInitialized(): boolean;

/** Deployments built from the config (not counting auto-large copies); 0 before init. */
export declare function modelCount(): number;

/** Whether an app's LLM config id means Auto mode (true for 0). */
export declare function isAutoMode(id: number | bigint): boolean;

export interface RouterInfo {
  deployments: Array<{
    id: string;
    provider: string;
    model: string;
    api_base: string | null;
    rpm: number | null;
    tpm: number | null;
    max_input_tokens: number | null;
    groups: string[];
    [key: string]: unknown;
  }>;
  routing_strategy: string;
  router_settings: RouterSettings;
  context_window_fallbacks: Array<Record<string, string[]>>;
  profile: { max_input_tokens: number | null; [key: string]: unknown };
  [key: string]: unknown;
}

export interface DeploymentStats {
  id: string;
  provider: string;
  model: string;
  requests: number;
  successes: number;
  failures: Partial<Record<StatusName, number>>;
  in_flight: number;
  requests_this_minute: number;
  tokens_this_minute: number;
  cooling_down: boolean;
  cooldown: null | { status: StatusName; reason: string; remaining_s: number; until_unix_ms: number; [key: string]: unknown };
  [key: string]: unknown;
}

export interface Stats {
  deployments: DeploymentStats[];
  totals: { requests: number; successes: number; failures: number; [key: string]: unknown };
  [key: string]: unknown;
}

/** The static view: deployments, groups, settings, fallbacks. Never holds an API key. */
export declare function routerInfo(): RouterInfo;

/** The live view: per-deployment counters, latency, cooldowns. Never holds an API key. */
export declare function stats(): Stats;

/**
 * The router's metrics in the Prometheus text exposition format: requests by deployment and
 * status, retries, fallbacks, cooldowns, in flight, tokens, cost, latency and time-to-first-chunk
 * histograms (OpenTelemetry GenAI names where they exist). Works before `init()` too.
 */
export declare function metrics(): string;

/** Log levels: 1 error, 2 warn, 3 info, 4 debug, 5 trace. */
export type LogLevel = 1 | 2 | 3 | 4 | 5;
export type LogLevelName = 'error' | 'warn' | 'info' | 'debug' | 'trace';

/**
 * Sends the library's log messages up to `maxLevel` (default: the level `LLMR_LOG` names, warn
 * when unset) to `logger`, called on the JS thread with the level and the message as a JSON
 * string (`{"ts_ms", "level", "msg", ...fields}`; never an API key or message content). Every
 * request's outcome is a debug message. `setLogger(null)` sends logs back to stderr. The logger
 * does not keep Node alive; messages still queued when the process exits go to stderr.
 */
export declare function setLogger(
  logger: ((level: LogLevel, messageJson: string) => void) | null,
  maxLevel?: LogLevel | LogLevelName | 0,
): void;

/** The native library's version, e.g. `'0.1.0'`. */
export declare function version(): string;

/** A chat completion, routed. Rejects with an LlmrError. */
export declare function complete(request: ChatRequest | string, options?: RequestOptions): Promise<ChatCompletion>;

/**
 * A streamed chat completion: iterate the chunks with `for await`, then `await s.result` for the
 * assembled completion. Leaving the loop early cancels the request.
 */
export declare class LlmrStream implements AsyncIterableIterator<ChatCompletionChunk> {
  private constructor();
  /** The assembled `chat.completion`; rejects with what iteration throws. */
  readonly result: Promise<ChatCompletion>;
  /** The library's request id (0 if the request did not start). */
  readonly id: number | bigint;
  [Symbol.asyncIterator](): LlmrStream;
  next(): Promise<IteratorResult<ChatCompletionChunk, undefined>>;
  /** Stops the stream and cancels the request (what `break` in a `for await` loop does). */
  return(value?: unknown): Promise<IteratorResult<ChatCompletionChunk, undefined>>;
  /** Stops the stream and cancels the request; `result` rejects with status 'cancelled'. */
  cancel(): void;
}

/** Starts a streamed chat completion at once (see LlmrStream). */
export declare function stream(request: ChatRequest | string, options?: RequestOptions): LlmrStream;

declare const llmr: {
  init: typeof init;
  reload: typeof reload;
  shutdown: typeof shutdown;
  isInitialized: typeof isInitialized;
  modelCount: typeof modelCount;
  isAutoMode: typeof isAutoMode;
  routerInfo: typeof routerInfo;
  stats: typeof stats;
  metrics: typeof metrics;
  setLogger: typeof setLogger;
  version: typeof version;
  complete: typeof complete;
  stream: typeof stream;
  LlmrStream: typeof LlmrStream;
  LlmrError: typeof LlmrError;
  Status: typeof Status;
  statusName: typeof statusName;
  AUTO_MODE_ID: typeof AUTO_MODE_ID;
  libraryPath: typeof libraryPath;
};
export default llmr;
