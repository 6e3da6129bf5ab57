//! The C boundary, and nothing else: argument checks, panic containment, string ownership.
//! Every exported function runs its body inside [`ffi_boundary!`]; every pointer argument goes
//! through [`arg_str`] or [`arg_callback`]. Routing logic lives elsewhere.

#![allow(non_camel_case_types)]

mod async_calls;
mod calls;
mod introspect;
mod lifecycle;
mod operability;
#[cfg(test)]
mod panic_safety_tests;

use std::ffi::{c_char, CStr, CString};

use crate::errors::{Error, Status};

pub use async_calls::*;
pub use calls::*;
pub use introspect::*;
pub use lifecycle::*;
pub use operability::*;

/// The outcome of a call: one of the `LLMR_*` values below. Values are stable and never reused.
pub type llmr_status = i32;

/// Success.
pub const LLMR_OK: llmr_status = 0;
/// A NULL where a value is required, a string that is not UTF-8, malformed JSON, or a request
/// that breaks the schema (no `messages`, a field of the wrong type).
pub const LLMR_ERR_INVALID_ARGUMENT: llmr_status = 1;
/// `llmr_init` / `llmr_reload`: the config is unusable (bad JSON, no valid deployment).
pub const LLMR_ERR_CONFIG: llmr_status = 2;
/// Called before `llmr_init` succeeded, or after `llmr_shutdown`.
pub const LLMR_ERR_NOT_INITIALIZED: llmr_status = 3;
/// The prompt does not fit the context window, after every context-window fallback was tried.
pub const LLMR_ERR_CONTEXT_OVERFLOW: llmr_status = 4;
/// Upstream 429 after retries, or every deployment is cooling down or at its rpm/tpm limit
/// (`retry_after` in the error JSON says when to come back).
pub const LLMR_ERR_RATE_LIMITED: llmr_status = 5;
/// Upstream 401/403: the key was refused.
pub const LLMR_ERR_AUTH: llmr_status = 6;
/// Any other upstream 4xx.
pub const LLMR_ERR_BAD_REQUEST: llmr_status = 7;
/// The provider refused the content.
pub const LLMR_ERR_CONTENT_POLICY: llmr_status = 8;
/// The request (or a stream's idle gap) ran past its timeout.
pub const LLMR_ERR_TIMEOUT: llmr_status = 9;
/// 5xx, connection failure, malformed or truncated upstream response, after retries and failover.
pub const LLMR_ERR_UPSTREAM: llmr_status = 10;
/// A stream callback returned non-zero, or the request was cancelled.
pub const LLMR_ERR_CANCELLED: llmr_status = 11;
/// A bug in llmr (a caught panic). The library stays usable.
pub const LLMR_ERR_INTERNAL: llmr_status = 12;

/// The app's LLM config id that means Auto mode (the seed's `AUTO_MODE_ID`).
pub const LLMR_AUTO_MODE_ID: i64 = 0;

/// Major version of the library this header belongs to.
pub const LLMR_VERSION_MAJOR: u32 = 0;
/// Minor version of the library this header belongs to.
pub const LLMR_VERSION_MINOR: u32 = 1;
/// Patch version of the library this header belongs to.
pub const LLMR_VERSION_PATCH: u32 = 0;

/// Stream callback: gets one `chat.completion.chunk` JSON (valid only during the call) and the
/// `user_data` given with it. Return 0 to go on, non-zero to stop the stream (the call then
/// ends with `LLMR_ERR_CANCELLED`).
pub type llmr_chunk_cb = Option<
    unsafe extern "C" fn(chunk_json: *const c_char, user_data: *mut std::ffi::c_void) -> i32,
>;

/// Completion callback of the asynchronous calls: the final status, the response JSON (on
/// `LLMR_OK`) or error JSON (valid only during the call), and the `user_data` given with the
/// request. Runs exactly once per request, on the library's callback thread.
pub type llmr_done_cb = Option<
    unsafe extern "C" fn(
        status: llmr_status,
        json: *const c_char,
        user_data: *mut std::ffi::c_void,
    ),
>;

/// Runs an exported function's body, turning a panic into `LLMR_ERR_INTERNAL` (with an error
/// JSON in `$out` when given) — a panic must never unwind into the caller's frames.
macro_rules! ffi_boundary {
    (out = $out:expr, $body:block) => {{
        let out: *mut *mut std::ffi::c_char = $out;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(
            || -> $crate::ffi::llmr_status { $body },
        )) {
            Ok(status) => status,
            Err(_) => $crate::ffi::fail(out, $crate::ffi::panic_error()),
        }
    }};
    (default = $default:expr, $body:block) => {{
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| $body)) {
            Ok(v) => v,
            Err(_) => $default,
        }
    }};
}
pub(crate) use ffi_boundary;

pub(crate) fn panic_error() -> Error {
    Error::new(
        Status::Internal,
        "internal error: a panic was caught at the C boundary (a bug in llmr; please report it)",
    )
}

/// Borrows a required string argument: NULL and non-UTF-8 are `INVALID_ARGUMENT` errors.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the returned borrow.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::invalid(format!("`{name}` is NULL")));
    }
    CStr::from_ptr(p).to_str().map_err(|e| {
        Error::invalid(format!(
            "`{name}` is not valid UTF-8 (byte {})",
            e.valid_up_to()
        ))
    })
}

/// A required callback: NULL is an `INVALID_ARGUMENT` error.
pub(crate) fn arg_callback<T>(cb: Option<T>, name: &str) -> Result<T, Error> {
    cb.ok_or_else(|| Error::invalid(format!("`{name}` is NULL")))
}

/// Hands a string to the caller through an out-parameter (which may be NULL: then nothing is
/// returned). The caller frees it with `llmr_string_free`.
pub(crate) fn put_string(out: *mut *mut c_char, s: String) {
    if !out.is_null() {
        put_c_string(out, c_string(s));
    }
}

/// JSON never holds a raw NUL; a message that somehow does is cut there rather than lost.
fn c_string(s: String) -> CString {
    CString::new(s).unwrap_or_else(|e| {
        let pos = e.nul_position();
        let mut v = e.into_vec();
        v.truncate(pos);
        CString::new(v).unwrap_or_default()
    })
}

/// Hands a C string to the caller through an out-parameter (which may be NULL).
fn put_c_string(out: *mut *mut c_char, c: CString) {
    if !out.is_null() {
        // SAFETY: `out` is non-NULL and, per the contract, points to writable storage for a
        // pointer.
        unsafe { *out = c.into_raw() };
    }
}

/// Clears an out-parameter before work starts, so that it is never left holding garbage.
pub(crate) fn clear(out: *mut *mut c_char) {
    if !out.is_null() {
        // SAFETY: as in `put_string`.
        unsafe { *out = std::ptr::null_mut() };
    }
}

/// Writes the error JSON to `out` and returns the error's status.
pub(crate) fn fail(out: *mut *mut c_char, e: Error) -> llmr_status {
    put_string(out, e.to_json());
    e.status.code()
}

/// Writes a result or its error to `out`.
pub(crate) fn respond(out: *mut *mut c_char, r: Result<String, Error>) -> llmr_status {
    respond_text(out, r.map(c_string))
}

/// Writes an answer's JSON (a `JsonText`'s, NUL-terminated already: no copy) or its error to
/// `out`.
pub(crate) fn respond_text(out: *mut *mut c_char, r: Result<CString, Error>) -> llmr_status {
    match r {
        Ok(c) => {
            put_c_string(out, c);
            LLMR_OK
        }
        Err(e) => fail(out, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_constants_are_the_abi_values() {
        for s in Status::ALL {
            let c = match s {
                Status::Ok => LLMR_OK,
                Status::InvalidArgument => LLMR_ERR_INVALID_ARGUMENT,
                Status::Config => LLMR_ERR_CONFIG,
                Status::NotInitialized => LLMR_ERR_NOT_INITIALIZED,
                Status::ContextOverflow => LLMR_ERR_CONTEXT_OVERFLOW,
                Status::RateLimited => LLMR_ERR_RATE_LIMITED,
                Status::Auth => LLMR_ERR_AUTH,
                Status::BadRequest => LLMR_ERR_BAD_REQUEST,
                Status::ContentPolicy => LLMR_ERR_CONTENT_POLICY,
                Status::Timeout => LLMR_ERR_TIMEOUT,
                Status::Upstream => LLMR_ERR_UPSTREAM,
                Status::Cancelled => LLMR_ERR_CANCELLED,
                Status::Internal => LLMR_ERR_INTERNAL,
            };
            assert_eq!(c, s.code());
        }
    }

    #[test]
    fn auto_mode_id_is_the_seeds() {
        assert_eq!(LLMR_AUTO_MODE_ID, crate::AUTO_MODE_ID);
    }

    #[test]
    fn version_macros_match_the_crate() {
        assert_eq!(
            LLMR_VERSION_MAJOR.to_string(),
            env!("CARGO_PKG_VERSION_MAJOR")
        );
        assert_eq!(
            LLMR_VERSION_MINOR.to_string(),
            env!("CARGO_PKG_VERSION_MINOR")
        );
        assert_eq!(
            LLMR_VERSION_PATCH.to_string(),
            env!("CARGO_PKG_VERSION_PATCH")
        );
    }

    /// The checked-in header is what cbindgen makes of the current source.
    #[test]
    fn checked_in_header_is_current() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/llmr.h"));
        let checked_in =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/llmr.h"))
                .expect("include/llmr.h is missing");
        assert!(
            generated == checked_in,
            "include/llmr.h is stale: run `make header` and commit it"
        );
    }

    #[test]
    fn every_public_name_in_the_header_is_prefixed() {
        // An unprefixed macro or function would clash with names in users' own C code.
        let header = include_str!(concat!(env!("OUT_DIR"), "/llmr.h"));
        for line in header
            .lines()
            .filter(|l| !l.starts_with(" *") && !l.starts_with("/*"))
        {
            let name = if let Some(rest) = line.strip_prefix("#define ") {
                rest.split_whitespace().next().unwrap_or("")
            } else if let Some(rest) = line.strip_prefix("typedef ") {
                // `typedef int32_t llmr_status;` or `typedef void (*llmr_done_cb)(...);`
                rest.split(['(', ')', ';', ' ', '*'])
                    .find(|w| w.starts_with("llmr_"))
                    .unwrap_or(rest)
            } else if line.ends_with(");") {
                let head = line.split('(').next().unwrap_or("");
                head.rsplit([' ', '*']).next().unwrap_or("")
            } else {
                continue;
            };
            assert!(
                name.starts_with("LLMR_") || name.starts_with("llmr_"),
                "unprefixed public name in the header: {line:?} (exclude it in cbindgen.toml)"
            );
        }
    }
}
