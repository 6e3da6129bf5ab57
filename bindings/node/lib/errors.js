'use strict';
// LlmrError and the status codes of the C ABI (values fixed by ABI.md, never reused).

/** Status codes of `llmr_status`, by their C name without the `LLMR_`/`LLMR_ERR_` prefix. */
const Status = Object.freeze({
  OK: 0,
  INVALID_ARGUMENT: 1,
  CONFIG: 2,
  NOT_INITIALIZED: 3,
  CONTEXT_OVERFLOW: 4,
  RATE_LIMITED: 5,
  AUTH: 6,
  BAD_REQUEST: 7,
  CONTENT_POLICY: 8,
  TIMEOUT: 9,
  UPSTREAM: 10,
  CANCELLED: 11,
  INTERNAL: 12,
});

/** The snake_case name of each code, as the error JSON's `status` carries it. */
const STATUS_NAMES = Object.freeze(
  Object.fromEntries(Object.entries(Status).map(([k, v]) => [v, k.toLowerCase()])),
);

/** `'context_overflow'` for 4; `'unknown'` for a number that is not a status. */
function statusName(code) {
  return STATUS_NAMES[code] ?? 'unknown';
}

/**
 * Every failure of llmr: the fields of the C error JSON, camel-cased.
 *
 * `status` is the snake_case name (`'rate_limited'`), `code` its number (5). Fields that do
 * not apply are `undefined`. A cancellation caused by an AbortSignal has `name === 'AbortError'`
 * (so code that checks for aborts by name works) and the signal's reason as `cause`.
 */
class LlmrError extends Error {
  constructor(status, message, fields = {}, options = undefined) {
    super(message, options);
    const code = typeof status === 'number' ? status : Status[String(status).toUpperCase()];
    this.name = 'LlmrError';
    this.status = typeof status === 'number' ? statusName(status) : String(status);
    this.code = code ?? Status.INTERNAL;
    this.httpStatus = fields.httpStatus;
    this.provider = fields.provider;
    this.deploymentId = fields.deploymentId;
    this.retryAfter = fields.retryAfter;
    this.attempts = fields.attempts;
  }

  /** Builds the error from the library's status and error JSON (`{"error": {...}}`). */
  static fromNative(code, json) {
    let e = {};
    try {
      e = (json && JSON.parse(json).error) || {};
    } catch {
      e = { message: `llmr returned an unreadable error: ${json}` };
    }
    const status = code !== undefined && code !== Status.OK ? code : e.code ?? Status.INTERNAL;
    return new LlmrError(status, e.message ?? statusName(status), {
      httpStatus: e.http_status,
      provider: e.provider,
      deploymentId: e.deployment_id,
      retryAfter: e.retry_after,
      attempts: e.attempts,
    });
  }
}

/** The error a request gets when its AbortSignal fires. */
function abortError(signal) {
  const err = new LlmrError(Status.CANCELLED, 'the request was aborted by its AbortSignal', {}, {
    cause: signal.reason,
  });
  err.name = 'AbortError';
  return err;
}

module.exports = { Status, statusName, LlmrError, abortError };
