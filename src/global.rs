//! The process-wide singletons: the async runtime, the HTTP client, the router.
//!
//! The router sits behind an atomic pointer: a request takes a reference-counted snapshot and
//! finishes on it, whatever `shutdown` or a later `init` does meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::callback_json::{ChunkBatch, ChunkJson, JsonText, BATCH};
use crate::callbacks;
use crate::caller_runtime::{self, Http};
use crate::config;
use crate::errors::{Error, Status};
use crate::inflight;
use crate::providers::BoxFuture;
use crate::router::{ChunkSink, Router};
use crate::types::{ChatChunk, ChatRequest};

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
static HTTP: OnceLock<Http> = OnceLock::new();
static ROUTER: ArcSwapOption<Router> = ArcSwapOption::const_empty();
/// Serialises init, reload and shutdown; requests never take it.
static LIFECYCLE: Mutex<()> = Mutex::new(());

pub fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("llmr-worker")
            .build()
            .expect("llmr: the async runtime could not start")
    })
}

/// The shared runtime's HTTP clients.
pub fn http_client() -> &'static Http {
    HTTP.get_or_init(|| Http::new(new_http_client()))
}

/// The HTTP client settings of every runtime's client (the shared one and each caller's).
pub fn new_http_client() -> reqwest::Client {
    client_builder()
        .use_preconfigured_tls(crate::tls_config::h2_or_http1())
        .build()
        .expect("llmr: the HTTP client could not be built")
}

/// The same, speaking HTTP/2 only: for HTTPS origins known to speak it (see
/// [`crate::http2_origins`]).
pub fn new_http2_client() -> reqwest::Client {
    client_builder()
        .use_preconfigured_tls(crate::tls_config::h2_only())
        .http2_prior_knowledge()
        .build()
        .expect("llmr: the HTTP client could not be built")
}

/// The connection settings of both HTTP clients: reqwest's ([`client_builder`]) and llmr's own
/// HTTP/1.1 one for plain-HTTP origins ([`crate::http1`]).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
pub const POOL_MAX_IDLE_PER_ORIGIN: usize = 1024;
pub const USER_AGENT: &str = concat!("llmr/", env!("CARGO_PKG_VERSION"));

/// Everything but TLS, whose settings every client shares (`tls_config`).
fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        // Provider APIs do not redirect chat calls; following one could carry keys to another host.
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_ORIGIN)
        .user_agent(USER_AGENT)
}

/// Whether HTTPS requests go through a proxy: then whether an origin speaks HTTP/2 is not
/// probed (the probe would connect directly).
pub fn https_proxy_set() -> bool {
    proxy_set("https")
}

/// Whether reqwest sends requests of `scheme` ("http" or "https") through a proxy: it reads
/// these variables.
pub fn proxy_set(scheme: &str) -> bool {
    let own = if scheme == "https" {
        ["HTTPS_PROXY", "https_proxy"]
    } else {
        ["HTTP_PROXY", "http_proxy"]
    };
    own.iter()
        .chain(&["ALL_PROXY", "all_proxy"])
        .any(|v| std::env::var_os(v).is_some_and(|p| !p.is_empty()))
}

fn lifecycle() -> std::sync::MutexGuard<'static, ()> {
    LIFECYCLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Initialises the router once; on an initialised library it changes nothing.
pub fn init(config_json: &str) -> Result<(), Error> {
    let _g = lifecycle();
    if ROUTER.load().is_some() {
        crate::log::debug("llmr_init: already initialized, config ignored", &[]);
        return Ok(());
    }
    let cfg = config::parse(config_json)?;
    let router = {
        let _rt = runtime().enter();
        Router::build(cfg, http_client(), None)?
    };
    ROUTER.store(Some(Arc::new(router)));
    Ok(())
}

/// Replaces the running router's deployments and settings at once. Requests in flight keep the
/// snapshot they started on; deployments whose id survives carry their live state (usage this
/// minute, in-flight count, failures, cooldown, latency) and counters into the new router, as
/// one shared object, so that both routers count against the same windows while old requests
/// finish. The id is a deployment's identity: the state stays with it even when its provider,
/// model or api_base changed (give it a new id to start afresh). On any error nothing changes.
pub fn reload(config_json: &str) -> Result<(), Error> {
    let _g = lifecycle();
    let old = current()?;
    let cfg = config::parse(config_json)?;
    let router = {
        let _rt = runtime().enter();
        Router::build(cfg, http_client(), Some(&old))?
    };
    let kept = router
        .deployments
        .iter()
        .filter(|d| old.deployments.iter().any(|o| o.id() == d.id()))
        .count();
    crate::log::info(
        "router reloaded",
        &[
            ("deployments", router.deployments.len().into()),
            ("kept", kept.into()),
            ("added", (router.deployments.len() - kept).into()),
            ("removed", (old.deployments.len() - kept).into()),
        ],
    );
    ROUTER.store(Some(Arc::new(router)));
    Ok(())
}

/// Drops the router and cancels every request in flight (their callbacks still run, with
/// `LLMR_ERR_CANCELLED`). Does not wait for them: a caller that must see every `on_done` first
/// (a JS thread that koffi relays callbacks to) would otherwise deadlock.
pub fn shutdown() {
    let _g = lifecycle();
    ROUTER.store(None);
    inflight::cancel_all(BY_SHUTDOWN);
    caller_runtime::close_idle();
}

pub fn current() -> Result<Arc<Router>, Error> {
    ROUTER.load_full().ok_or_else(Error::not_initialized)
}

pub fn is_initialized() -> bool {
    ROUTER.load().is_some()
}

const BY_CALLBACK: &str = "the stream was cancelled by its callback";
const BY_CANCEL: &str = "the request was cancelled by llmr_cancel";
const BY_SHUTDOWN: &str = "the request was cancelled by llmr_shutdown";

fn bug() -> Error {
    Error::new(
        Status::Internal,
        "internal error: the request failed unexpectedly (a bug in llmr; please report it)",
    )
}

fn not_in_runtime(what: &str) -> Result<(), Error> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::invalid(format!(
            "{what} blocks and cannot be called from a thread that drives an async runtime; use the asynchronous functions"
        )));
    }
    Ok(())
}

/// Parses a request and takes the router snapshot it will run on: everything that can fail
/// before a request starts.
fn prepare(request_json: &str) -> Result<(Arc<Router>, ChatRequest), Error> {
    let router = current()?;
    let req = ChatRequest::from_json(request_json)?;
    #[cfg(test)]
    crate::fault::inject(&req, "caller", &router.deployments[0].cfg);
    Ok((router, req))
}

/// A completion, blocking the calling thread; returns the response JSON.
pub fn complete_blocking(request_json: &str) -> Result<JsonText, Error> {
    not_in_runtime("llmr_complete")?;
    let (router, req) = prepare(request_json)?;
    let reg = inflight::register();
    let cancel = &reg.cancel;
    // On a runtime of its own, driven by the calling thread, which drives its connections too:
    // no hand-off to a worker and back. A panic inside stays here, as `internal`.
    let lease = caller_runtime::Lease::take();
    // Boxed: moved by pointer through block_on's layers, not as ~2 KB copied into each.
    let r = lease
        .block_on(Box::pin(async {
            tokio::select! {
                r = router.complete(&req) => r.map(|resp| JsonText::of_response(&resp)),
                () = cancel.cancelled() => Err(cancel.error()),
            }
        }))
        .unwrap_or_else(|_| Err(bug()));
    if r.is_err() {
        lease.close_abandoned();
    }
    drop(reg);
    r
}

/// Sends chunk JSON to the thread that runs the caller's callback, the chunks of one read
/// together (one wake-up of that thread for all of them). Bounded: a slow callback slows the
/// upstream read instead of buffering without end.
struct ChannelSink {
    tx: tokio::sync::mpsc::Sender<ChunkBatch>,
    held: ChunkBatch,
}

impl ChunkSink for ChannelSink {
    fn deliver<'a>(&'a mut self, chunk: &'a ChatChunk) -> BoxFuture<'a, bool> {
        Box::pin(async move { !self.held.push_chunk(chunk) || self.flush().await })
    }

    fn flush(&mut self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            if self.held.is_empty() {
                return true;
            }
            let batch = self.held.take();
            self.tx.send(batch).await.is_ok()
        })
    }
}

/// A stream, blocking the calling thread, which runs `on_chunk` for each chunk in order;
/// `on_chunk` returning false cancels. Returns the assembled response JSON.
///
/// The stream runs on a caller runtime driven by the calling thread, in steps: each step
/// drives it until a batch of chunks is ready, and the callback runs between steps, outside any runtime, so that
/// it may call llmr (even a blocking call) itself.
pub fn stream_blocking(
    request_json: &str,
    mut on_chunk: impl FnMut(ChunkJson<'_>) -> bool,
) -> Result<JsonText, Error> {
    not_in_runtime("llmr_stream")?;
    let (router, req) = prepare(request_json)?;
    let reg = inflight::register();
    let (chunk_tx, mut chunk_rx) = tokio::sync::mpsc::channel::<ChunkBatch>(8);
    let stop = reg.cancel.clone();
    let mut sink = ChannelSink {
        tx: chunk_tx,
        held: ChunkBatch::default(),
    };
    let run = async {
        let r = tokio::select! {
            r = router.stream(&req, &mut sink) => r.map(|resp| JsonText::of_response(&resp)),
            () = stop.cancelled() => Err(stop.error()),
        };
        drop(sink);
        r
    };
    let mut run = std::pin::pin!(run);
    let mut result: Option<Result<JsonText, Error>> = None;
    let mut delivering = true;
    // The callback, for one batch; false once nothing more is to be delivered.
    let mut deliver = |batch: ChunkBatch| {
        for json in batch.iter() {
            if reg.cancel.is_cancelled() {
                return false; // llmr_cancel or llmr_shutdown: deliver nothing more
            }
            if !on_chunk(json) {
                reg.cancel.cancel_because(BY_CALLBACK);
                return false;
            }
        }
        true
    };
    // One runtime for the whole stream: its connection is a task of that runtime.
    let lease = caller_runtime::Lease::take();
    while result.is_none() || delivering {
        let step = lease.block_on(async {
            tokio::select! {
                biased;
                batch = chunk_rx.recv(), if delivering => Step::Chunks(batch),
                r = &mut run, if result.is_none() => Step::Done(r),
            }
        });
        match step {
            Ok(Step::Done(r)) => result = Some(r),
            Ok(Step::Chunks(Some(batch))) => {
                if !deliver(batch) {
                    // The stream sees the closed channel (or the cancel) and ends.
                    delivering = false;
                    chunk_rx.close();
                }
            }
            Ok(Step::Chunks(None)) => delivering = false,
            Err(_) => {
                // A panic inside the stream: it is `internal`; what it sent before still goes
                // to the callback.
                result = Some(Err(bug()));
                while delivering {
                    match chunk_rx.try_recv() {
                        Ok(batch) => delivering = deliver(batch),
                        Err(_) => delivering = false,
                    }
                }
            }
        }
    }
    let r = result.unwrap_or_else(|| Err(bug()));
    if r.is_err() {
        lease.close_abandoned();
    }
    if reg.cancel.is_cancelled() {
        return Err(reg.cancel.error());
    }
    r
}

/// One step of a blocking stream: chunks for the callback, or the end.
enum Step {
    Chunks(Option<ChunkBatch>),
    Done(Result<JsonText, Error>),
}

/// The completion callback of an asynchronous request: called exactly once, on the callback
/// thread — with the result, or, should the request's task die in a bug, with `internal`.
pub type DoneFn = Box<dyn FnOnce(Result<JsonText, Error>) + Send>;

struct Done(Option<DoneFn>);

impl Done {
    fn finish(self, r: Result<JsonText, Error>) {
        self.finish_dropping(r, ());
    }

    /// Finishes and drops `request` on the callback thread, after `on_done`: a request that a
    /// callback started (the usual way to chain requests) was parsed there, and memory freed on
    /// another thread than the one that allocated it contends for glibc's arena lock.
    fn finish_dropping(mut self, r: Result<JsonText, Error>, request: impl Send + 'static) {
        if let Some(f) = self.0.take() {
            callbacks::post(move || {
                f(r);
                drop(request);
            });
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            callbacks::post(move || f(Err(bug())));
        }
    }
}

/// Reports a request that could not start: `on_done` still runs once, on the callback thread.
fn not_started(on_done: DoneFn, e: Error) -> u64 {
    Done(Some(on_done)).finish(Err(e));
    0
}

/// Starts a completion; `on_done` gets the response JSON or the error, on the callback thread.
/// Returns the request id, or 0 when it could not start (`on_done` has the reason).
pub fn complete_async(request_json: &str, on_done: DoneFn) -> u64 {
    let (router, req) = match prepare(request_json) {
        Ok(p) => p,
        Err(e) => return not_started(on_done, e),
    };
    let reg = inflight::register();
    let id = reg.id;
    let done = Done(Some(on_done));
    runtime().spawn(async move {
        let cancel = reg.cancel.clone();
        let r = tokio::select! {
            r = router.complete(&req) => r.map(|resp| JsonText::of_response(&resp)),
            () = cancel.cancelled() => Err(cancel.error()),
        };
        drop(reg);
        done.finish_dropping(r, req);
    });
    id
}

/// How many chunks of one stream may wait for the callback thread before the stream stops
/// reading upstream.
const CHUNKS_AHEAD: usize = 64;
const _: () = assert!(BATCH < CHUNKS_AHEAD);

/// The chunk callback of an asynchronous stream; false stops the stream.
pub type ChunkFn = Box<dyn FnMut(ChunkJson<'_>) -> bool + Send>;

struct CallbackSink {
    on_chunk: Arc<Mutex<ChunkFn>>,
    stopped: Arc<AtomicBool>,
    credits: Arc<tokio::sync::Semaphore>,
    cancel: crate::cancel::CancelToken,
    /// Chunks not yet posted to the callback thread.
    held: ChunkBatch,
    /// Their credits, merged into one: given back together once the batch has been delivered
    /// (one release per batch, not one per chunk).
    held_credits: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl ChunkSink for CallbackSink {
    fn deliver<'a>(&'a mut self, chunk: &'a ChatChunk) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if self.cancel.is_cancelled() {
                return false;
            }
            // A batch holds fewer credits than there are: those held here never starve this wait.
            let Ok(permit) = self.credits.clone().acquire_owned().await else {
                return false;
            };
            let full = self.held.push_chunk(chunk);
            match &mut self.held_credits {
                Some(all) => all.merge(permit),
                None => self.held_credits = Some(permit),
            }
            !full || self.flush().await
        })
    }

    fn flush(&mut self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            if self.held.is_empty() {
                return true;
            }
            let batch = self.held.take();
            let credits = self.held_credits.take();
            let on_chunk = self.on_chunk.clone();
            let stopped = self.stopped.clone();
            let cancel = self.cancel.clone();
            callbacks::post(move || {
                for json in batch.iter() {
                    // Chunks already queued when the request was stopped or cancelled are dropped.
                    if !stopped.load(Ordering::Acquire) && !cancel.is_cancelled() {
                        let mut f = on_chunk.lock().unwrap_or_else(|p| p.into_inner());
                        if !f(json) {
                            stopped.store(true, Ordering::Release);
                            cancel.cancel_because(BY_CALLBACK);
                        }
                    }
                }
                drop(credits);
            });
            true
        })
    }
}

/// Starts a stream; `on_chunk` gets each chunk's JSON in order and `on_done` the assembled
/// response or the error, all on the callback thread. Returns the request id, or 0 when it
/// could not start (`on_done` has the reason).
pub fn stream_async(request_json: &str, on_chunk: ChunkFn, on_done: DoneFn) -> u64 {
    let (router, req) = match prepare(request_json) {
        Ok(p) => p,
        Err(e) => return not_started(on_done, e),
    };
    let reg = inflight::register();
    let id = reg.id;
    let stopped = Arc::new(AtomicBool::new(false));
    // Whether the callback stopped the stream is known for sure only on the callback thread,
    // once every chunk queued before `on_done` has run: decide the final status there.
    let done = {
        let stopped = stopped.clone();
        let cancel = reg.cancel.clone();
        Done(Some(Box::new(move |r: Result<JsonText, Error>| {
            let r = if stopped.load(Ordering::Acquire) {
                Err(cancel.error())
            } else {
                r
            };
            on_done(r)
        })))
    };
    let mut sink = CallbackSink {
        on_chunk: Arc::new(Mutex::new(on_chunk)),
        stopped,
        credits: Arc::new(tokio::sync::Semaphore::new(CHUNKS_AHEAD)),
        cancel: reg.cancel.clone(),
        held: ChunkBatch::default(),
        held_credits: None,
    };
    runtime().spawn(async move {
        let cancel = reg.cancel.clone();
        let r = tokio::select! {
            r = router.stream(&req, &mut sink) => r.map(|resp| JsonText::of_response(&resp)),
            () = cancel.cancelled() => Err(cancel.error()),
        };
        drop(reg);
        done.finish_dropping(r, req);
    });
    id
}

/// Cancels a request started by `complete_async` / `stream_async` (or a blocking call running
/// on another thread). False when it is not in flight: finished already, or never started.
pub fn cancel(request_id: u64) -> bool {
    inflight::cancel(request_id, BY_CANCEL)
}

/// How many requests are in flight right now.
pub fn in_flight() -> usize {
    inflight::count()
}
