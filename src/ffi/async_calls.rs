//! Asynchronous completions and streams: a request id now, callbacks later on the library's
//! callback thread (`llmr-callbacks`), and `llmr_cancel`.

use std::ffi::{c_char, c_void, CString};

use super::{
    arg_callback, arg_str, ffi_boundary, llmr_chunk_cb, llmr_done_cb, llmr_status, panic_error,
    LLMR_ERR_INVALID_ARGUMENT, LLMR_OK,
};
use crate::errors::Error;
use crate::{ChunkJson, JsonText};

/// The caller's `user_data`: llmr never dereferences it, only hands it back, so it may cross
/// to the callback thread.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: an opaque token passed back to the caller's callbacks; the caller chose to give it to
// a function whose callbacks run on another thread.
unsafe impl Send for UserData {}

type DoneC = unsafe extern "C" fn(llmr_status, *const c_char, *mut c_void);
type ChunkC = unsafe extern "C" fn(*const c_char, *mut c_void) -> i32;

/// The Rust `on_done` for a C `on_done`: hands over the status and the JSON (response or error),
/// valid for the duration of the call.
fn done_fn(cb: DoneC, user_data: UserData) -> impl FnOnce(Result<JsonText, Error>) + Send {
    move |r| {
        let ud = user_data;
        match r {
            // SAFETY: the caller's function with the caller's `user_data`; the JSON outlives
            // the call.
            Ok(json) => unsafe { cb(LLMR_OK, json.as_c_str().as_ptr(), ud.0) },
            Err(e) => {
                let json = CString::new(e.to_json()).unwrap_or_default();
                // SAFETY: as above.
                unsafe { cb(e.status.code(), json.as_ptr(), ud.0) }
            }
        }
    }
}

fn chunk_fn(cb: ChunkC, user_data: UserData) -> impl FnMut(ChunkJson<'_>) -> bool + Send {
    move |chunk| {
        let ud = user_data;
        // SAFETY: as in `done_fn` (the chunk lives for the call).
        unsafe { cb(chunk.as_c_str().as_ptr(), ud.0) == 0 }
    }
}

/// Starts an input check that failed: `on_done` is told, and the id is 0.
fn refuse(on_done: DoneC, user_data: UserData, e: Error) -> u64 {
    crate::callbacks::post(move || done_fn(on_done, user_data)(Err(e)));
    0
}

/// A chat completion, routed, without blocking: returns at once with a request id.
///
/// `on_done(status, json, user_data)` is called exactly once per call — also when the request
/// could not start — on the library's callback thread (named `llmr-callbacks`), never on the
/// calling thread and never on the runtime's worker threads. `json` is the `chat.completion`
/// on `LLMR_OK`, else the error JSON; it is valid only during the callback (copy it to keep it).
/// All async callbacks share that one thread and run one at a time: keep them short (hand work
/// off to your own threads); a slow callback delays other callbacks, not other requests.
/// A callback may call any llmr function, including `llmr_cancel` and the blocking ones.
///
/// Returns the request id (never 0) for `llmr_cancel`, or 0 when the request could not start
/// (NULL or invalid request, not initialised): `on_done` then still runs, with the reason.
/// If `on_done` is NULL nothing can be reported: the call returns 0 and does nothing.
///
/// # Safety
/// `request_json` must be NULL or a NUL-terminated string (read before the call returns).
/// `on_done` and `user_data` must stay valid until `on_done` has run.
#[no_mangle]
pub unsafe extern "C" fn llmr_complete_async(
    request_json: *const c_char,
    on_done: llmr_done_cb,
    user_data: *mut c_void,
) -> u64 {
    let Some(done) = on_done else { return 0 };
    let ud = UserData(user_data);
    let id = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match arg_str(request_json, "request_json") {
            Ok(req) => crate::complete_async_text(req, done_fn(done, ud)),
            Err(e) => refuse(done, ud, e),
        }
    }));
    id.unwrap_or_else(|_| refuse(done, ud, panic_error()))
}

/// A streamed chat completion, routed, without blocking: returns at once with a request id.
///
/// `on_chunk(chunk_json, user_data)` gets each `chat.completion.chunk` that carries content or
/// tool-call deltas, in order, never two at once; returning non-zero stops the stream (the
/// upstream request is dropped, chunks not yet delivered are discarded, and `on_done` gets
/// `LLMR_ERR_CANCELLED`). Then `on_done(status, json, user_data)` runs exactly once, after the
/// last `on_chunk`: `json` is the whole answer assembled as a `chat.completion` on `LLMR_OK`,
/// else the error JSON. Both run on the callback thread as described at `llmr_complete_async`;
/// strings are valid only during the call. A failure before the first chunk fails over like a
/// completion; a failure after it ends the stream with `LLMR_ERR_UPSTREAM`.
///
/// Returns the request id, or 0 when it could not start (then only `on_done` runs, with the
/// reason; a NULL `on_chunk` is such a case). If `on_done` is NULL the call returns 0 and does
/// nothing.
///
/// # Safety
/// As for `llmr_complete_async`; `on_chunk` too must stay valid until `on_done` has run.
#[no_mangle]
pub unsafe extern "C" fn llmr_stream_async(
    request_json: *const c_char,
    on_chunk: llmr_chunk_cb,
    on_done: llmr_done_cb,
    user_data: *mut c_void,
) -> u64 {
    let Some(done) = on_done else { return 0 };
    let ud = UserData(user_data);
    let id = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let args = arg_str(request_json, "request_json")
            .and_then(|req| Ok((req, arg_callback(on_chunk, "on_chunk")?)));
        match args {
            Ok((req, chunk)) => {
                crate::stream_chunks_async(req, chunk_fn(chunk, ud), done_fn(done, ud))
            }
            Err(e) => refuse(done, ud, e),
        }
    }));
    id.unwrap_or_else(|_| refuse(done, ud, panic_error()))
}

/// Cancels a request started by `llmr_complete_async` or `llmr_stream_async`: its upstream
/// call is dropped at once and its `on_done` runs with `LLMR_ERR_CANCELLED` (unless it had
/// already finished). Cancelling is idempotent and may race with completion: a request that
/// has already finished (or is finishing) keeps its result.
///
/// Returns `LLMR_OK` whether or not the request was still in flight, and
/// `LLMR_ERR_INVALID_ARGUMENT` for the id 0 (a request that never started).
#[no_mangle]
pub extern "C" fn llmr_cancel(request_id: u64) -> llmr_status {
    ffi_boundary!(default = super::LLMR_ERR_INTERNAL, {
        if request_id == 0 {
            LLMR_ERR_INVALID_ARGUMENT
        } else {
            crate::cancel(request_id);
            LLMR_OK
        }
    })
}
