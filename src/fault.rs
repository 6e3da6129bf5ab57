//! Fault injection for the panic-safety tests (`ffi::panic_safety_tests`). Compiled only into
//! the library's own unit-test binary (`cfg(test)`): the library users link has none of it.
//!
//! A request carrying `"llmr_test_panic": "<point>"` panics at that point:
//! - `caller`: right after it is parsed, on the calling thread (inside the C boundary's catch);
//! - `router`: in the router, just before an attempt, on a runtime worker; the message holds the
//!   deployment's `Debug` form, which must show no key;
//! - `state`: inside the deployment's usage window with its lock held (poisoning that mutex);
//! - `stream`: in the MOCK stream, after its first chunk was delivered.

use std::cell::Cell;
use std::fmt::Debug;

use serde_json::Value;

use crate::types::ChatRequest;

/// The request field that selects the point.
pub const FIELD: &str = "llmr_test_panic";

/// Whether `req` asks for a panic at `point`.
pub fn at(req: &ChatRequest, point: &str) -> bool {
    req.extra.get(FIELD).and_then(Value::as_str) == Some(point)
}

/// Panics when `req` asks for it at `point`, with `context` in the message.
pub fn inject(req: &ChatRequest, point: &str, context: &dyn Debug) {
    if at(req, point) {
        panic!("llmr test fault at {point}: {context:?}");
    }
}

thread_local! {
    static STATE_ARMED: Cell<bool> = const { Cell::new(false) };
}

/// Arms [`state_point`] on this thread when `req` asks for the `state` point. The router calls
/// it right before the (synchronous) state update that calls `state_point`.
pub fn arm_state(req: &ChatRequest) {
    STATE_ARMED.with(|a| a.set(at(req, "state")));
}

/// Called by the usage window with its lock held.
pub fn state_point() {
    if STATE_ARMED.with(|a| a.replace(false)) {
        panic!("llmr test fault at state (a usage-window lock is held)");
    }
}
