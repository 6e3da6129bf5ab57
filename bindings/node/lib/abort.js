'use strict';
// AbortSignal subscriptions: one 'abort' listener per signal, however many requests share it
// (a signal shared by thousands of requests would otherwise carry thousands of listeners and
// make Node warn about a leak). A request unsubscribes when it ends.

/** signal -> Set of callbacks of the requests it may still abort. */
const subscribers = new WeakMap();

function dispatch(event) {
  const signal = event.target;
  const set = subscribers.get(signal);
  if (set === undefined) return;
  subscribers.delete(signal);
  for (const cb of set) cb();
}

/** Calls `cb` once when `signal` aborts; returns the function that unsubscribes. */
function onAbort(signal, cb) {
  let set = subscribers.get(signal);
  if (set === undefined) {
    set = new Set();
    subscribers.set(signal, set);
    signal.addEventListener('abort', dispatch, { once: true });
  }
  set.add(cb);
  return () => {
    const current = subscribers.get(signal);
    if (current === undefined || !current.delete(cb) || current.size > 0) return;
    subscribers.delete(signal);
    signal.removeEventListener('abort', dispatch);
  };
}

module.exports = { onAbort };
