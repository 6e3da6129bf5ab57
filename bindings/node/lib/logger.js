'use strict';
// The logger: the library's log messages to a JS function (llmr_set_logger).
//
// - The library calls ONE registered koffi callback on its logger thread ("llmr-logger"), which
//   may block: koffi relays the call to the JS thread and makes that thread wait. The callback
//   only copies the message and queues the user's function as a microtask, so the logger thread
//   is let go at once. Logging itself never waits for it (the library drops messages when its
//   queue is full), and no call from JS waits for the logger thread, so nothing can deadlock.
// - The callback is registered on first use and never unregistered: after setLogger(null) the
//   library may still deliver the one message it was delivering, and an unregistered pointer
//   would crash the process. Replacing the JS function just swaps `current`.
// - koffi's relay does not keep Node alive, and neither does the logger: an idle process exits
//   as usual. But a call that reaches koffi while Node tears its environment down aborts the
//   process, so on 'exit' the binding hands the library back to stderr: messages still queued
//   then are written there (at LLMR_LOG's level) instead of reaching JS.

const { koffi, fn, LogCallback } = require('./native');
const { Status, LlmrError } = require('./errors');

const LEVELS = { error: 1, warn: 2, info: 3, debug: 4, trace: 5 };

/** The user's function, or null (logs go to stderr). */
let current = null;
let registered = null;

function report(e) {
  process.nextTick(() => {
    throw e;
  });
}

function onLog(level, json) {
  const f = current;
  if (f === null) return;
  queueMicrotask(() => {
    try {
      f(level, json);
    } catch (e) {
      report(e);
    }
  });
}

let exitHooked = false;

function unhookAtExit() {
  if (current !== null) {
    current = null;
    fn.setLogger(null, 0, 0);
  }
}

function levelNumber(maxLevel) {
  if (maxLevel === undefined || maxLevel === null) return 0;
  if (typeof maxLevel === 'string' && Object.hasOwn(LEVELS, maxLevel)) return LEVELS[maxLevel];
  if (Number.isInteger(maxLevel) && maxLevel >= 0 && maxLevel <= 5) return maxLevel;
  throw new TypeError(
    "the log level must be 'error', 'warn', 'info', 'debug', 'trace' or 1 to 5 (0: LLMR_LOG's level)",
  );
}

/**
 * Sends the library's log messages up to `maxLevel` to `f(level, messageJson)`, on the JS thread,
 * or with `f` null, back to stderr. Without `maxLevel`, the level LLMR_LOG names (warn).
 */
function setLogger(f, maxLevel) {
  if (f !== null && f !== undefined && typeof f !== 'function') {
    throw new TypeError('the logger must be a function (level, messageJson) or null');
  }
  const level = levelNumber(maxLevel);
  let status;
  if (f === null || f === undefined) {
    status = fn.setLogger(null, level, 0);
    if (status === Status.OK) current = null;
  } else {
    if (registered === null) registered = koffi.register(onLog, koffi.pointer(LogCallback));
    if (!exitHooked) {
      process.once('exit', unhookAtExit);
      exitHooked = true;
    }
    const previous = current;
    current = f; // before the call: the first message may come at once
    status = fn.setLogger(registered, level, 0);
    if (status !== Status.OK) current = previous;
  }
  if (status !== Status.OK) throw new LlmrError(status, 'llmr_set_logger refused the logger');
}

module.exports = { setLogger, LEVELS };
