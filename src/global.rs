//! The process-wide singletons: the async runtime, the HTTP client, the router.
//!
//! The router sits behind an atomic pointer: a request takes a reference-counted snapshot and
//! finishes on it, whatever `shutdown` or a later `init` does meanwhile.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::cancel::CancelToken;
use crate::config;
use crate::errors::{Error, Status};
use crate::providers::BoxFuture;
use crate::router::{ChunkSink, Router};
use crate::types::{ChatChunk, ChatRequest};

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
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

pub fn http_client() -> &'static reqwest::Client {
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            // Provider APIs do not redirect chat calls; following one could carry keys to another host.
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .user_agent(concat!("llmr/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("llmr: the HTTP client could not be built")
    })
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

pub fn shutdown() {
    let _g = lifecycle();
    ROUTER.store(None);
}

pub fn current() -> Result<Arc<Router>, Error> {
    ROUTER.load_full().ok_or_else(Error::not_initialized)
}

pub fn is_initialized() -> bool {
    ROUTER.load().is_some()
}

/// Waits for a spawned request on the calling thread. A panic inside the request is caught by
/// the runtime and comes back as `internal`; nothing else is affected.
fn wait<T>(rx: std::sync::mpsc::Receiver<T>) -> Result<T, Error> {
    rx.recv().map_err(|_| {
        Error::new(
            Status::Internal,
            "internal error: the request failed unexpectedly (a bug in llmr; please report it)",
        )
    })
}

fn not_in_runtime(what: &str) -> Result<(), Error> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::invalid(format!(
            "{what} blocks and cannot be called from a thread that drives an async runtime; use the asynchronous functions"
        )));
    }
    Ok(())
}

/// A completion, blocking the calling thread; returns the response JSON.
pub fn complete_blocking(request_json: &str) -> Result<String, Error> {
    not_in_runtime("llmr_complete")?;
    let router = current()?;
    let req = ChatRequest::from_json(request_json)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let r = router
            .complete(&req)
            .await
            .map(|resp| serde_json::to_string(&resp).expect("a response always serialises"));
        let _ = tx.send(r);
    });
    wait(rx)?
}

/// Sends chunk JSON to the thread that runs the caller's callback. Bounded: a slow callback
/// slows the upstream read instead of buffering without end.
struct ChannelSink {
    tx: tokio::sync::mpsc::Sender<String>,
}

impl ChunkSink for ChannelSink {
    fn deliver<'a>(&'a mut self, chunk: &'a ChatChunk) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let json = serde_json::to_string(chunk).expect("a chunk always serialises");
            self.tx.send(json).await.is_ok()
        })
    }
}

/// A stream, blocking the calling thread, which runs `on_chunk` for each chunk in order;
/// `on_chunk` returning false cancels. Returns the assembled response JSON.
pub fn stream_blocking(
    request_json: &str,
    mut on_chunk: impl FnMut(&str) -> bool,
) -> Result<String, Error> {
    not_in_runtime("llmr_stream")?;
    let router = current()?;
    let req = ChatRequest::from_json(request_json)?;
    let (chunk_tx, mut chunk_rx) = tokio::sync::mpsc::channel::<String>(32);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    let cancel = CancelToken::new();
    let stop = cancel.clone();
    runtime().spawn(async move {
        let mut sink = ChannelSink { tx: chunk_tx };
        let r = tokio::select! {
            r = router.stream(&req, &mut sink) => r,
            () = stop.cancelled() => Err(Error::new(Status::Cancelled, "the stream was cancelled by its callback")),
        };
        drop(sink);
        let _ = done_tx.send(r.map(|resp| serde_json::to_string(&resp).expect("a response always serialises")));
    });
    let mut stopped = false;
    while let Some(json) = chunk_rx.blocking_recv() {
        if !on_chunk(&json) {
            stopped = true;
            cancel.cancel();
            break;
        }
    }
    drop(chunk_rx);
    let r = wait(done_rx)?;
    if stopped {
        return Err(Error::new(
            Status::Cancelled,
            "the stream was cancelled by its callback",
        ));
    }
    r
}
