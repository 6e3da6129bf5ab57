//! Completions and streams.

use std::ffi::{c_char, c_void};

use super::{arg_callback, arg_str, clear, ffi_boundary, llmr_chunk_cb, llmr_status, respond_text};
use crate::JsonText;

/// A chat completion, routed; blocks the calling thread until it is done.
///
/// `request_json`: the OpenAI chat-completions body (`messages` required; `model` is `"auto"`
/// by default, `"auto-large"` also accepted; `timeout` in seconds overrides the router's).
/// `response_out`: may be NULL; receives the `chat.completion` JSON on success or the error JSON
/// on failure; the caller frees it with `llmr_string_free`.
///
/// Must not be called from a thread that drives an async runtime (use the async functions).
///
/// # Safety
/// Pointer arguments must be NULL or valid as described above (strings NUL-terminated, out
/// pointers writable); NULL ones are answered with `LLMR_ERR_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn llmr_complete(
    request_json: *const c_char,
    response_out: *mut *mut c_char,
) -> llmr_status {
    ffi_boundary!(out = response_out, {
        clear(response_out);
        respond_text(
            response_out,
            arg_str(request_json, "request_json")
                .and_then(crate::complete_text)
                .map(JsonText::into_c_string),
        )
    })
}

/// A streamed chat completion, routed; blocks until the stream ends.
///
/// `on_chunk` runs on the calling thread, once per `chat.completion.chunk` that carries content
/// or tool-call deltas, in order; the chunk string is valid only during the call. It may call
/// other llmr functions. Returning non-zero stops the stream at once (the upstream request is
/// dropped) and the call returns `LLMR_ERR_CANCELLED`.
/// `user_data` is passed to `on_chunk` untouched.
/// `result_out`: may be NULL; receives the whole answer assembled as a `chat.completion` (with
/// `finish_reason` and `usage`) on success, or the error JSON; free it with `llmr_string_free`.
///
/// A failure before the first chunk fails over like a completion; a failure after it ends the
/// stream with `LLMR_ERR_UPSTREAM` (or `LLMR_ERR_TIMEOUT` for an idle gap).
///
/// # Safety
/// Pointer arguments must be NULL or valid as described above (strings NUL-terminated, out
/// pointers writable); NULL ones are answered with `LLMR_ERR_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn llmr_stream(
    request_json: *const c_char,
    on_chunk: llmr_chunk_cb,
    user_data: *mut c_void,
    result_out: *mut *mut c_char,
) -> llmr_status {
    ffi_boundary!(out = result_out, {
        clear(result_out);
        let r = arg_str(request_json, "request_json").and_then(|req| {
            let cb = arg_callback(on_chunk, "on_chunk")?;
            crate::stream_chunks(req, |chunk| {
                // SAFETY: `cb` is the caller's function; the chunk lives for the call.
                unsafe { cb(chunk.as_c_str().as_ptr(), user_data) == 0 }
            })
        });
        respond_text(result_out, r.map(JsonText::into_c_string))
    })
}
