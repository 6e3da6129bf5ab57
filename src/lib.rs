//! llmr — an LLM router with a C ABI.
//!
//! One process-wide router, initialised once from a JSON config, load-balances OpenAI-shaped
//! chat completions over many provider deployments: usage-based (or shuffle, least-busy,
//! latency) routing, rpm/tpm limits reserved before sending, cooldowns, retries, failover,
//! context-window fallback, streaming, and an error taxonomy that tells a context overflow apart
//! from everything else. The C ABI is in [`ffi`]; this module is the Rust face of the same.
//!
//! Module map:
//! - [`config`]: config JSON → deployments and settings;
//! - [`router`]: groups, selection, state, the retry/failover/fallback loop;
//! - [`providers`]: wire formats (OpenAI-compatible, Anthropic, MOCK) and the HTTP driver;
//! - [`http1`]: llmr's own HTTP/1.1 client for plain-HTTP origins (HTTPS goes through reqwest);
//! - [`types`]: the OpenAI-shaped request/response/chunk types;
//! - [`errors`], [`overflow`]: statuses and context-overflow classification;
//! - [`model_info`]: the embedded model table (windows, output caps, prices);
//! - [`ffi`]: the C boundary; [`global`]: the singletons behind it.

pub mod callback_json;
pub mod callbacks;
pub mod caller_runtime;
pub mod cancel;
pub mod chunk_json;
pub mod client_pool;
pub mod config;
pub mod errors;
#[cfg(test)]
mod fault;
pub mod ffi;
pub mod global;
pub mod http1;
pub mod http2_origins;
pub mod inflight;
pub(crate) mod json_scan;
pub mod json_string;
pub mod log;
pub mod logger;
pub mod metrics;
pub mod model_info;
pub mod overflow;
pub mod providers;
pub mod response_json;
pub mod router;
pub mod secret;
pub mod sse;
pub mod tls_config;
pub mod tls_roots;
pub mod types;

pub use callback_json::{ChunkJson, JsonText};
pub use errors::{Error, Status};

/// Parser entry points that are not public API, for the fuzz targets (`fuzz/`) and the replay
/// of their corpora (`tests/fuzz_corpus.rs`). Every other parser is reachable through its module.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::http1::fuzzing as http1;
    pub use crate::providers::replicate::fuzzing as replicate;
}

/// The special config id of Auto mode (the seed's `AUTO_MODE_ID`).
pub const AUTO_MODE_ID: i64 = 0;

/// Initialises the process-wide router (no-op when already initialised).
pub fn init(config_json: &str) -> Result<(), Error> {
    global::init(config_json)
}

/// Swaps the running router's config in place: requests in flight finish on the old one,
/// deployments whose id survives keep their usage, cooldowns and latency history; on error
/// nothing changes. `Status::NotInitialized` before `init`.
pub fn reload(config_json: &str) -> Result<(), Error> {
    global::reload(config_json)
}

/// Drops the router and cancels every request in flight (they end with `Status::Cancelled`);
/// `init` works again afterwards.
pub fn shutdown() {
    global::shutdown();
}

pub fn is_initialized() -> bool {
    global::is_initialized()
}

/// Deployments built from the config (not counting the `auto-large` copies).
pub fn model_count() -> usize {
    global::current().map_or(0, |r| r.deployments.len())
}

pub fn is_auto_mode(llm_config_id: i64) -> bool {
    llm_config_id == AUTO_MODE_ID
}

/// A chat completion (blocking); request and response are JSON.
pub fn complete_json(request_json: &str) -> Result<String, Error> {
    complete_text(request_json).map(JsonText::into_string)
}

/// [`complete_json`] handing the answer as a [`JsonText`], which is also a C string (what
/// `llmr_complete` passes to C without a copy).
pub fn complete_text(request_json: &str) -> Result<JsonText, Error> {
    global::complete_blocking(request_json)
}

/// A streamed chat completion (blocking): `on_chunk` gets each chunk's JSON in order and
/// returns false to stop. Returns the assembled response JSON.
pub fn stream_json(
    request_json: &str,
    mut on_chunk: impl FnMut(&str) -> bool,
) -> Result<String, Error> {
    global::stream_blocking(request_json, |c| on_chunk(c.as_str())).map(JsonText::into_string)
}

/// [`stream_json`] handing each chunk as a [`ChunkJson`] and the answer as a [`JsonText`], both
/// also C strings (what `llmr_stream` passes to C without a copy).
pub fn stream_chunks(
    request_json: &str,
    on_chunk: impl FnMut(ChunkJson<'_>) -> bool,
) -> Result<JsonText, Error> {
    global::stream_blocking(request_json, on_chunk)
}

pub fn router_info() -> Result<String, Error> {
    Ok(global::current()?.info_json())
}

pub fn stats() -> Result<String, Error> {
    Ok(global::current()?.stats_json())
}

/// Starts a chat completion without blocking. `on_done` runs exactly once, on the library's
/// callback thread, with the response JSON or the error. Returns the request id for [`cancel`],
/// or 0 when the request could not start (`on_done` then carries the reason).
pub fn complete_async(
    request_json: &str,
    on_done: impl FnOnce(Result<String, Error>) + Send + 'static,
) -> u64 {
    complete_async_text(request_json, move |r| on_done(r.map(JsonText::into_string)))
}

/// [`complete_async`] handing the answer as a [`JsonText`], which is also a C string (what
/// `llmr_complete_async` passes to C without a copy).
pub fn complete_async_text(
    request_json: &str,
    on_done: impl FnOnce(Result<JsonText, Error>) + Send + 'static,
) -> u64 {
    global::complete_async(request_json, Box::new(on_done))
}

/// Starts a streamed chat completion without blocking. `on_chunk` gets each chunk's JSON in
/// order (false stops the stream) and `on_done` the assembled response or the error, all on
/// the callback thread. Returns the request id, or 0 when it could not start.
pub fn stream_async(
    request_json: &str,
    mut on_chunk: impl FnMut(&str) -> bool + Send + 'static,
    on_done: impl FnOnce(Result<String, Error>) + Send + 'static,
) -> u64 {
    stream_chunks_async(
        request_json,
        move |c| on_chunk(c.as_str()),
        move |r| on_done(r.map(JsonText::into_string)),
    )
}

/// [`stream_async`] handing each chunk as a [`ChunkJson`] and the answer as a [`JsonText`]
/// (see [`stream_chunks`]).
pub fn stream_chunks_async(
    request_json: &str,
    on_chunk: impl FnMut(ChunkJson<'_>) -> bool + Send + 'static,
    on_done: impl FnOnce(Result<JsonText, Error>) + Send + 'static,
) -> u64 {
    global::stream_async(request_json, Box::new(on_chunk), Box::new(on_done))
}

/// Cancels a request in flight: its upstream call stops at once and it ends with
/// `Status::Cancelled`. False when no such request is in flight.
pub fn cancel(request_id: u64) -> bool {
    global::cancel(request_id)
}

/// The router's metrics in the Prometheus text exposition format (see [`metrics`]). Works
/// without a router too: the per-deployment families are then empty.
pub fn metrics_text() -> String {
    let router = global::current().ok();
    metrics::render(router.as_deref(), global::in_flight())
}

/// Sends log messages up to `max_level` (`None`: the level `LLMR_LOG` names, default warn) to
/// `on_log`, called on the logger thread `llmr-logger` with the level and one JSON object; with
/// `on_log` `None`, logs go back to stderr. Never waits for the logger thread: a message being
/// delivered when it returns still goes to the previous function.
pub fn set_logger(
    on_log: Option<impl Fn(log::Level, &str) + Send + Sync + 'static>,
    max_level: Option<log::Level>,
) {
    log::set_logger(on_log.map(|f| Box::new(f) as logger::LogFn), max_level);
}
