'use strict';
// complete() and stream(): requests as a Promise and as an async iterable.

const relay = require('./relay');
const { Status, LlmrError, abortError } = require('./errors');
const { onAbort } = require('./abort');

function invalid(message) {
  return new LlmrError(Status.INVALID_ARGUMENT, message);
}

/** The request as the JSON string the library takes (an object is serialised). */
function requestJson(request) {
  if (typeof request === 'string') {
    if (request.includes('\0')) throw invalid('the request JSON contains a NUL character');
    return request;
  }
  if (request === null || typeof request !== 'object' || Array.isArray(request)) {
    throw invalid('the request must be an object or a JSON string');
  }
  try {
    return JSON.stringify(request);
  } catch (e) {
    throw invalid(`the request cannot be serialised to JSON: ${e.message}`);
  }
}

function checkSignal(options) {
  if (options === undefined || options === null) return undefined;
  if (typeof options !== 'object') throw new TypeError('options must be an object');
  const { signal } = options;
  if (signal === undefined || signal === null) return undefined;
  if (typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function') {
    throw new TypeError('options.signal must be an AbortSignal');
  }
  return signal;
}

function parseResponse(json) {
  try {
    return JSON.parse(json);
  } catch (e) {
    throw new LlmrError(Status.INTERNAL, `llmr returned unreadable JSON: ${e.message}`);
  }
}

/**
 * A chat completion, routed. Resolves with the `chat.completion` object; rejects with an
 * LlmrError. An AbortSignal cancels the request in the library; an already-aborted signal
 * rejects at once (nothing is sent).
 */
function complete(request, options) {
  return new Promise((resolve, reject) => {
    const signal = checkSignal(options);
    const json = requestJson(request);
    if (signal?.aborted) throw abortError(signal);

    let settled = false;
    let id = 0;
    let unsubscribe = null;
    const handler = {
      stopped: false,
      chunk() {},
      done(status, body) {
        unsubscribe?.();
        if (settled) return;
        settled = true;
        if (status === Status.OK) {
          try {
            resolve(parseResponse(body));
          } catch (e) {
            reject(e);
          }
        } else {
          reject(LlmrError.fromNative(status, body));
        }
      },
    };
    id = relay.startComplete(json, handler);
    if (signal) {
      unsubscribe = onAbort(signal, () => {
        if (settled) return;
        settled = true;
        relay.cancel(id);
        reject(abortError(signal));
      });
    }
  });
}

/**
 * A streamed chat completion: an async iterable of `chat.completion.chunk` objects, with the
 * assembled `chat.completion` in `result` (a Promise). The request starts at once, whether or
 * not anyone iterates; chunks not yet taken are buffered. Iteration throws what `result`
 * rejects with. Leaving a `for await` loop early (break, return, throw) cancels the request in
 * the library; `result` then rejects with status 'cancelled'. Single consumer.
 */
class LlmrStream {
  #chunks = []; // chunk JSON strings received, not yet taken
  #waiters = []; // next() calls waiting for a chunk: { resolve, reject }
  #end = null; // { error } once finished: by the library, an abort, or the consumer
  #errorSeen = false; // iteration has thrown the error (or the consumer left): later next() → done
  #handler;
  #unsubscribe = null;
  #result;
  #resolveResult;
  #rejectResult;
  #id = 0;

  constructor(request, options) {
    const signal = checkSignal(options);
    this.#result = new Promise((resolve, reject) => {
      this.#resolveResult = resolve;
      this.#rejectResult = reject;
    });
    // Whoever only iterates need not also catch `result`: no unhandled rejection.
    this.#result.catch(() => {});

    let json;
    try {
      json = requestJson(request);
    } catch (e) {
      this.#finish(e);
      return;
    }
    if (signal?.aborted) {
      this.#finish(abortError(signal));
      return;
    }
    this.#handler = {
      stopped: false,
      chunk: (chunk) => this.#onChunk(chunk),
      done: (status, body) => this.#onDone(status, body),
    };
    this.#id = relay.startStream(json, this.#handler);
    if (signal) this.#unsubscribe = onAbort(signal, () => this.#stop(abortError(signal)));
  }

  /** The assembled `chat.completion`; rejects with what iteration throws. */
  get result() {
    return this.#result;
  }

  /** The library's request id (0 if the request did not start). */
  get id() {
    return this.#id;
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  next() {
    if (this.#chunks.length > 0) {
      try {
        return Promise.resolve({ value: parseResponse(this.#chunks.shift()), done: false });
      } catch (e) {
        return Promise.reject(e);
      }
    }
    if (this.#end !== null) return this.#endOfIteration();
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Called when a `for await` loop is left early: cancels the request. */
  return(value) {
    this.#stop(new LlmrError(Status.CANCELLED, 'the stream was stopped by its consumer'));
    this.#errorSeen = true;
    this.#chunks.length = 0;
    return Promise.resolve({ value, done: true });
  }

  /** Stops the stream and cancels the request in the library (as leaving the loop does). */
  cancel() {
    this.return();
  }

  #endOfIteration() {
    if (this.#end.error && !this.#errorSeen) {
      this.#errorSeen = true;
      return Promise.reject(this.#end.error);
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  #onChunk(json) {
    if (this.#end !== null) return;
    const waiter = this.#waiters.shift();
    if (waiter === undefined) {
      this.#chunks.push(json);
      return;
    }
    try {
      waiter.resolve({ value: parseResponse(json), done: false });
    } catch (e) {
      waiter.reject(e);
    }
  }

  #onDone(status, body) {
    if (this.#end !== null) return;
    if (status !== Status.OK) {
      this.#finish(LlmrError.fromNative(status, body));
      return;
    }
    let response;
    try {
      response = parseResponse(body);
    } catch (e) {
      this.#finish(e);
      return;
    }
    this.#finish(null, response);
  }

  /** Ends the stream from this side: the library stops delivering and cancels the request. */
  #stop(error) {
    if (this.#end !== null) return;
    if (this.#handler) this.#handler.stopped = true;
    relay.cancel(this.#id);
    this.#chunks.length = 0;
    this.#finish(error);
  }

  #finish(error, response) {
    if (this.#end !== null) return;
    this.#end = { error };
    this.#unsubscribe?.();
    if (error) this.#rejectResult(error);
    else this.#resolveResult(response);
    // Waiters exist only while no chunk is buffered: they all get the end.
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) this.#endOfIteration().then(w.resolve, w.reject);
  }
}

function stream(request, options) {
  return new LlmrStream(request, options);
}

module.exports = { complete, stream, LlmrStream };
