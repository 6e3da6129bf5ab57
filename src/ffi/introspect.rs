//! The router's static and live views.

use std::ffi::c_char;

use super::{clear, ffi_boundary, llmr_status, respond};

/// The static view of the router as JSON: deployments (id, provider, model, api_base, rpm, tpm,
/// max_input_tokens, groups), routing_strategy, router_settings, context_window_fallbacks and
/// the profile (smallest `max_input_tokens`). Never holds an API key.
/// `info_out`: may be NULL; the caller frees it with `llmr_string_free`.
///
/// # Safety
/// Pointer arguments must be NULL or valid as described above (strings NUL-terminated, out
/// pointers writable); NULL ones are answered with `LLMR_ERR_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn llmr_router_info(info_out: *mut *mut c_char) -> llmr_status {
    ffi_boundary!(out = info_out, {
        clear(info_out);
        respond(info_out, crate::router_info())
    })
}

/// The live view as JSON: per deployment, requests, successes, failures by status, in flight,
/// requests and tokens this minute, latency, time to first chunk, cooldown (until when, why).
/// Never holds an API key. `stats_out`: may be NULL; free it with `llmr_string_free`.
///
/// # Safety
/// Pointer arguments must be NULL or valid as described above (strings NUL-terminated, out
/// pointers writable); NULL ones are answered with `LLMR_ERR_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn llmr_stats(stats_out: *mut *mut c_char) -> llmr_status {
    ffi_boundary!(out = stats_out, {
        clear(stats_out);
        respond(stats_out, crate::stats())
    })
}
