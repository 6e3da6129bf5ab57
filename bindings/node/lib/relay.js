'use strict';
// The callback relay: how results come back from the library's callback thread to JS.
//
// - ONE pair of callbacks (on_chunk, on_done) is registered with koffi for the whole process
//   and never unregistered. Each request passes a small integer key as `user_data`; the key
//   maps to the request's JS handler in `pending` until its on_done has run. Nothing is
//   registered per request, so nothing can leak however many requests run (koffi has at most
//   8192 registered callbacks at a time).
// - The library calls them on its one callback thread ("llmr-callbacks"). koffi relays such a
//   call to the JS thread through a thread-safe function and makes the native thread wait until
//   the JS function has returned. So the JS functions below only look the handler up, copy the
//   string (koffi has already decoded it into a JS string) and queue the work as a microtask;
//   parsing and settling promises happen after the library thread has been let go.
// - Requests only ever use llmr_complete_async / llmr_stream_async / llmr_cancel, which return
//   at once: the JS thread never waits in C for something that needs a JS callback to run.
// - koffi's thread-safe function is unref'd (it does not keep Node alive), so while requests
//   are pending a ref'd timer keeps the event loop alive; when none are, it is unref'd again and
//   an idle process exits as usual.

const { koffi, fn, DoneCallback, ChunkCallback } = require('./native');

/** key -> handler `{ stopped: boolean, chunk(json), done(status, json) }`, until on_done ran. */
const pending = new Map();
let nextKey = 1;

let keepAlive = null;

function hold() {
  if (keepAlive === null) keepAlive = setInterval(() => {}, 0x7fffffff);
  else keepAlive.ref();
}

function release() {
  if (keepAlive !== null) keepAlive.unref();
}

/** Reports a bug in a handler without letting it reach the C caller (koffi would return 0). */
function report(e) {
  process.nextTick(() => {
    throw e;
  });
}

const onDone = koffi.register((status, json, key) => {
  try {
    const handler = pending.get(key);
    if (handler === undefined) return;
    pending.delete(key);
    if (pending.size === 0) release();
    queueMicrotask(() => {
      try {
        handler.done(status, json);
      } catch (e) {
        report(e);
      }
    });
  } catch (e) {
    report(e);
  }
}, koffi.pointer(DoneCallback));

const onChunk = koffi.register((json, key) => {
  try {
    const handler = pending.get(key);
    // Non-zero stops the stream in the library: the consumer has gone (break, abort).
    if (handler === undefined || handler.stopped) return 1;
    queueMicrotask(() => {
      try {
        handler.chunk(json);
      } catch (e) {
        report(e);
      }
    });
    return 0;
  } catch (e) {
    report(e);
    return 1;
  }
}, koffi.pointer(ChunkCallback));

function track(handler) {
  const key = nextKey++;
  pending.set(key, handler);
  if (pending.size === 1) hold();
  return key;
}

function untrack(key) {
  if (pending.delete(key) && pending.size === 0) release();
}

/**
 * Starts a completion; `handler.done(status, json)` runs once, later, on the JS thread.
 * Returns the library's request id (0 when it could not start: `done` then has the reason).
 */
function startComplete(requestJson, handler) {
  const key = track(handler);
  try {
    return fn.completeAsync(requestJson, onDone, key);
  } catch (e) {
    untrack(key);
    throw e;
  }
}

/** Starts a stream: `handler.chunk(json)` per chunk, in order, then `handler.done` once. */
function startStream(requestJson, handler) {
  const key = track(handler);
  try {
    return fn.streamAsync(requestJson, onChunk, onDone, key);
  } catch (e) {
    untrack(key);
    throw e;
  }
}

/** Cancels a request in the library (idempotent; a finished request keeps its result). */
function cancel(id) {
  if (id) fn.cancel(id);
}

module.exports = {
  startComplete,
  startStream,
  cancel,
  pendingCount: () => pending.size,
};
