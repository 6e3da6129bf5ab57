//! Logs to the caller's function, and metrics.

use std::ffi::{c_char, c_void};

use super::{clear, ffi_boundary, llmr_status, put_string, LLMR_ERR_INVALID_ARGUMENT, LLMR_OK};
use crate::log::Level;

/// Log callback: the level (1 error, 2 warn, 3 info, 4 debug, 5 trace), one JSON object
/// (`{"ts_ms", "level", "msg", …fields}`, valid only during the call) and the `user_data`
/// given to `llmr_set_logger`.
pub type llmr_log_cb =
    Option<unsafe extern "C" fn(level: i32, message_json: *const c_char, user_data: *mut c_void)>;

/// The caller's `user_data`, handed back on the logger thread and never dereferenced.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: an opaque token passed back to the caller's callback; the caller gave it to a function
// documented to call back on another thread.
unsafe impl Send for UserData {}
// SAFETY: as above; llmr only copies it.
unsafe impl Sync for UserData {}

/// Sends llmr's log messages to `on_log` instead of stderr; with `on_log` NULL, back to stderr
/// (at the level of the environment variable `LLMR_LOG`). May be called at any time, also before
/// `llmr_init`; the logger stays set across `llmr_shutdown`.
///
/// `max_level`: the most detailed level delivered, 1 (error) to 5 (trace); 0 means the level
/// `LLMR_LOG` names (warn when unset). Any other value is `LLMR_ERR_INVALID_ARGUMENT`.
///
/// Messages are JSON objects with `ts_ms` (Unix milliseconds), `level`, `msg` and fields; they
/// never hold an API key or message content (content only at trace, and only with
/// `router_settings.log_content: true`). Every request's outcome is logged at debug: deployment,
/// attempts, fallbacks, status, latency, time to first chunk, tokens and cost.
///
/// Threads: `on_log` runs on the library's logger thread (named `llmr-logger`), one message at a
/// time and in order — never on the calling thread, never on a runtime worker, never while llmr
/// holds a lock. It may block (a slow callback delays only later log messages) and may call any
/// llmr function, `llmr_set_logger` included. Logging never waits for it: up to 4096 messages
/// queue up, then new ones are dropped and counted (the next message delivered says how many,
/// and `llmr_metrics` has `llmr_log_messages_dropped_total`).
///
/// This function never waits for the logger thread either: a message being delivered while it
/// runs may still reach the previous `on_log`, at most that one message. Keep a replaced
/// callback and its `user_data` valid until then (simplest: for the life of the process).
///
/// # Safety
/// `on_log` must be NULL or a function with the signature above; `user_data` is passed to it
/// as is, from another thread.
#[no_mangle]
pub unsafe extern "C" fn llmr_set_logger(
    on_log: llmr_log_cb,
    max_level: i32,
    user_data: *mut c_void,
) -> llmr_status {
    ffi_boundary!(out = std::ptr::null_mut(), {
        let level = match max_level {
            0 => None,
            n => match Level::from_number(n) {
                Some(l) => Some(l),
                None => return LLMR_ERR_INVALID_ARGUMENT,
            },
        };
        let ud = UserData(user_data);
        let f = on_log.map(|cb| {
            move |level: Level, line: &str| {
                // JSON never holds a raw NUL.
                let Ok(c) = std::ffi::CString::new(line) else {
                    return;
                };
                let ud = ud;
                // SAFETY: the caller's function with the caller's `user_data`; `c` outlives the call.
                unsafe { cb(level as i32, c.as_ptr(), ud.0) };
            }
        });
        crate::set_logger(f, level);
        LLMR_OK
    })
}

/// The router's metrics in the Prometheus text exposition format (version 0.0.4): requests by
/// deployment and final status, attempts, retries, fallbacks by kind, cooldowns, in flight,
/// cost, and histograms of tokens per answer, attempt duration and time to first chunk — named
/// after the OpenTelemetry GenAI semantic conventions where they have a name
/// (`gen_ai_client_token_usage`, `gen_ai_client_operation_duration_seconds`, …), `llmr_*`
/// otherwise. Never holds an API key.
///
/// Works before `llmr_init` and after `llmr_shutdown` too (`llmr_initialized 0`, no
/// per-deployment series). `text_out`: may be NULL (then nothing is returned, as for every
/// out-parameter); the caller frees the text with `llmr_string_free`.
///
/// # Safety
/// `text_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llmr_metrics(text_out: *mut *mut c_char) -> llmr_status {
    ffi_boundary!(out = text_out, {
        if text_out.is_null() {
            return LLMR_OK; // Nothing asked for: nothing rendered.
        }
        clear(text_out);
        put_string(text_out, crate::metrics_text());
        LLMR_OK
    })
}
