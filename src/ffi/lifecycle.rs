//! Version, init/reload/shutdown and the small queries.

use std::ffi::c_char;

use super::{arg_str, clear, fail, ffi_boundary, llmr_status, LLMR_OK};
use crate::errors::Status;

/// The library's version, e.g. `"0.1.0"`. Static: never free it.
#[no_mangle]
pub extern "C" fn llmr_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Initialises the process-wide router from a config JSON (see the README for its shape).
///
/// On an initialised library it returns `LLMR_OK` and changes nothing. Entries that cannot be
/// used are skipped with a logged warning; `LLMR_ERR_CONFIG` only when none is usable or the JSON
/// is bad. Safe from any thread; concurrent calls initialise once.
///
/// `config_json`: UTF-8, NUL-terminated; borrowed for the call.
/// `error_out`: may be NULL; on failure receives an error JSON the caller frees with
/// `llmr_string_free`; set to NULL on success.
///
/// # Safety
/// Pointer arguments must be NULL or valid as described above (strings NUL-terminated, out
/// pointers writable); NULL ones are answered with `LLMR_ERR_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn llmr_init(
    config_json: *const c_char,
    error_out: *mut *mut c_char,
) -> llmr_status {
    ffi_boundary!(out = error_out, {
        clear(error_out);
        let r = arg_str(config_json, "config_json").and_then(crate::init);
        match r {
            Ok(()) => LLMR_OK,
            Err(e) => fail(error_out, e),
        }
    })
}

/// Replaces the deployments and settings of the running router with those of a new config
/// JSON (same shape as `llmr_init`'s), atomically.
///
/// Requests in flight finish on the config they started with; requests that start after the
/// call returns use the new one. A deployment whose `id` is in both configs keeps its live state
/// — usage this minute (its rpm/tpm window keeps counting, against the new limits), in-flight
/// count, recent failures, cooldown, latency history and counters — even when its provider,
/// model or api_base changed: the id is its identity (give it a new id to start afresh).
/// Deployments whose id is gone vanish from `llmr_router_info` and `llmr_stats`; new ids start
/// fresh. Entries that cannot be used are skipped with a logged warning, as by `llmr_init`.
///
/// Returns `LLMR_OK`; `LLMR_ERR_NOT_INITIALIZED` before `llmr_init` (or after `llmr_shutdown`);
/// `LLMR_ERR_CONFIG` when the JSON is bad or no entry is usable; `LLMR_ERR_INVALID_ARGUMENT`
/// for NULL or non-UTF-8. On any error nothing changes. Safe from any thread; concurrent
/// reloads (and init/shutdown) are serialised, requests never wait for them.
///
/// `config_json`: UTF-8, NUL-terminated; borrowed for the call.
/// `error_out`: may be NULL; on failure receives an error JSON the caller frees with
/// `llmr_string_free`; set to NULL on success.
///
/// # Safety
/// Pointer arguments must be NULL or valid as described above (strings NUL-terminated, out
/// pointers writable); NULL ones are answered with `LLMR_ERR_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn llmr_reload(
    config_json: *const c_char,
    error_out: *mut *mut c_char,
) -> llmr_status {
    ffi_boundary!(out = error_out, {
        clear(error_out);
        match arg_str(config_json, "config_json").and_then(crate::reload) {
            Ok(()) => LLMR_OK,
            Err(e) => fail(error_out, e),
        }
    })
}

/// Drops the router and cancels every request in flight: blocking calls return
/// `LLMR_ERR_CANCELLED`, and every async request's `on_done` still runs (on the callback thread)
/// with `LLMR_ERR_CANCELLED`. Returns at once without waiting for those callbacks, so it may be
/// called from a callback or from a thread that callbacks are relayed to. `llmr_init` works
/// again afterwards. Returns `LLMR_OK` (also when not initialised).
#[no_mangle]
pub extern "C" fn llmr_shutdown() -> llmr_status {
    ffi_boundary!(out = std::ptr::null_mut(), {
        crate::shutdown();
        LLMR_OK
    })
}

/// Whether `llmr_init` has succeeded (and no `llmr_shutdown` followed).
#[no_mangle]
pub extern "C" fn llmr_is_initialized() -> bool {
    ffi_boundary!(default = false, { crate::is_initialized() })
}

/// The number of deployments built from the config (not counting the `auto-large` copies);
/// 0 when not initialised.
#[no_mangle]
pub extern "C" fn llmr_model_count() -> usize {
    ffi_boundary!(default = 0, { crate::model_count() })
}

/// Whether an app's LLM config id means Auto mode (true for 0, the seed's `AUTO_MODE_ID`).
#[no_mangle]
pub extern "C" fn llmr_is_auto_mode(llm_config_id: i64) -> bool {
    crate::is_auto_mode(llm_config_id)
}

/// Frees a string the library returned through a `char **` out-parameter. NULL is ignored.
/// Only strings from llmr go here: never `free()` them, never pass other memory.
///
/// # Safety
/// Pointer arguments must be NULL or valid as described above (strings NUL-terminated, out
/// pointers writable); NULL ones are answered with `LLMR_ERR_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn llmr_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: per the contract, `s` came from `CString::into_raw` in `put_string` and is
        // freed once.
        drop(unsafe { std::ffi::CString::from_raw(s) });
    });
}

/// The snake_case name of a status without prefix (`"context_overflow"`); `"unknown"` for a
/// value that is not a status. Static: never free it.
#[no_mangle]
pub extern "C" fn llmr_status_name(status: llmr_status) -> *const c_char {
    match Status::from_code(status) {
        Some(s) => s.c_name().as_ptr(),
        None => c"unknown".as_ptr(),
    }
}
