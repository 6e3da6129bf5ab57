//! A loopback stand-in for LLM providers, for llmr's tests and benchmarks.
//!
//! [`StandIn`] is a small HTTP/1.1 server on `127.0.0.1` that speaks the
//! wire formats of the providers llmr supports (OpenAI chat completions,
//! Anthropic messages, Gemini `generateContent`, Cohere v2 chat, Ollama
//! `/api/chat`, Bedrock Converse, Replicate predictions, Vertex AI's Gemini
//! and Claude endpoints with an OAuth token endpoint) and can misbehave in the
//! ways real providers do.
//!
//! Each request's behaviour is chosen by the first segment of its path, the
//! *tenant*: point a client at [`StandIn::base`]`("e429")` (OpenAI style,
//! `…/e429/v1`), [`StandIn::anthropic_base`]`("e429")` (`…/e429`) or
//! [`StandIn::ollama_base`] and it gets rate-limited. The format comes from the
//! request path (see `Format`), streaming from `"stream": true` in the body,
//! or where the provider says it otherwise, as it does (Gemini's
//! `:streamGenerateContent` and Bedrock's `/converse-stream` paths; Ollama
//! streams unless `"stream": false`; Vertex's `:streamRawPredict`). Replicate's follow-up requests (poll,
//! stream, cancel at `…/predictions/{id}[/stream|/cancel]`) are answered from
//! the prediction the create request made.
//! Each format refuses content as its provider does: an error, a 200 that
//! says the prompt was blocked (Gemini), or a declining answer (Ollama, which
//! has no content filter).
//!
//! A tenant answers, in order of precedence: the replies [scripted](StandIn::script)
//! for it, one per request; its [`always`](StandIn::always) reply; the preset
//! its name selects (see [`Reply::parse_preset`]); `ok`.
//!
//! Presets: `ok`, `ctx-N`, `overflow`, `policy`, `slow-MS`, `e429` (with
//! `retry-after: 2`), `e429noretry`, `eNNN` for any 4xx/5xx status (`e400`,
//! `e401`, `e403`, `e404`, `e500`, `e502`, `e503`, `e504`, `e529`, …),
//! `trickle`, `hang`, `reset`, `resetmid`, `garbage`, `huge`, `truncated`,
//! `midstreamerror`, `errorfirst`, `resethead`, `midevent`, `nodone`, `earlyend`,
//! `stall`, `hugeerror`, `endless` (see [`Fault`]). The stream faults cut the generic
//! streams; Replicate's follow-up requests know only the first nine. A name may carry a label after `-` or `_`
//! (`e429-b`, `ok_primary`, `ctx-1000-x`) to count tenants apart; a name that
//! is not a preset behaves as `ok`. For Replicate, `poll-N` (a prediction that
//! answers `processing` to its first N polls) and `nostream` (no `urls.stream`)
//! may appear in any tenant name, alone or together (`poll-2-nostream`).
//!
//! ```no_run
//! use llmr_testkit::{Reply, StandIn};
//!
//! let standin = StandIn::start();
//! standin.script("primary", [Reply::status(429).header("retry-after", "1"), Reply::ok()]);
//! let api_base = standin.base("primary"); // http://127.0.0.1:PORT/primary/v1
//! // … drive the router at api_base …
//! assert_eq!(standin.count("primary"), 2);
//! let sent = &standin.requests("primary")[0];
//! assert_eq!(sent.header("authorization"), Some("Bearer sk-test"));
//! ```

mod anthropic;
mod bedrock;
mod behaviour;
mod cohere;
mod control;
/// llmr's own event-stream codec (checked against AWS's vectors there), shared as source so
/// that the stand-in frames Bedrock streams without depending on the library it tests.
#[allow(dead_code)]
#[path = "../../src/providers/eventstream.rs"]
mod eventstream;
mod format;
mod gemini;
mod http;
mod ollama;
mod openai;
mod prompt;
mod record;
mod replicate;
mod reply;
mod server;
mod vertex;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

pub use anthropic::TOOL_USE_ID;
pub use bedrock::TOOL_USE_ID as BEDROCK_TOOL_USE_ID;
pub use behaviour::{ENDLESS_PIECE, HUGE_PADDING};
pub use cohere::TOOL_CALL_ID as COHERE_TOOL_CALL_ID;
pub use openai::TOOL_CALL_ID;
pub use record::RecordedRequest;
pub use reply::{Fault, Reply, OVERFLOW_LIMIT, TOOL_ARGUMENTS};
pub use vertex::VERTEX_ACCESS_TOKEN;

use record::Registry;

/// How many requests per tenant [`StandIn::requests`] keeps by default.
pub const DEFAULT_RECORD_LIMIT: usize = 10_000;

/// A running stand-in server. Dropping it stops the server and closes its
/// connections.
pub struct StandIn {
    addr: SocketAddr,
    registry: Arc<Registry>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Options for a [`StandIn`]; start from [`StandIn::builder`].
#[derive(Clone, Debug)]
pub struct Builder {
    port: u16,
    threads: usize,
    record_limit: usize,
}

impl Builder {
    /// The port to listen on (default 0: any free port).
    pub fn port(mut self, port: u16) -> Builder {
        self.port = port;
        self
    }

    /// Worker threads of the server's runtime (default 2).
    pub fn threads(mut self, threads: usize) -> Builder {
        self.threads = threads.max(1);
        self
    }

    /// How many requests per tenant to keep for [`StandIn::requests`], the
    /// oldest dropped first (default [`DEFAULT_RECORD_LIMIT`]; 0 keeps none).
    /// Counts are exact whatever the limit.
    pub fn record_limit(mut self, limit: usize) -> Builder {
        self.record_limit = limit;
        self
    }

    /// Binds `127.0.0.1:port` and starts serving on a background thread with
    /// its own runtime (so it works from sync and async tests alike).
    pub fn start(self) -> io::Result<StandIn> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, self.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .thread_name("llmr-standin-worker")
            .enable_io()
            .enable_time()
            .build()?;
        let registry = Arc::new(Registry::new(self.record_limit));
        let (stop, stopped) = oneshot::channel::<()>();
        let shared = Arc::clone(&registry);
        let thread = std::thread::Builder::new()
            .name("llmr-standin".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(_) => return,
                    };
                    tokio::select! {
                        _ = server::serve(listener, shared) => {}
                        _ = stopped => {}
                    }
                });
                // Cancels the connection tasks, closing their sockets.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(StandIn {
            addr,
            registry,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl StandIn {
    /// Starts a stand-in on a free port.
    ///
    /// # Panics
    /// If it cannot bind or start (see [`Builder::start`] for the fallible form).
    pub fn start() -> StandIn {
        StandIn::builder()
            .start()
            .expect("llmr-testkit: cannot start the stand-in")
    }

    pub fn builder() -> Builder {
        Builder {
            port: 0,
            threads: 2,
            record_limit: DEFAULT_RECORD_LIMIT,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An OpenAI-style api_base for a tenant: `http://127.0.0.1:PORT/<tenant>/v1`.
    pub fn base(&self, tenant: &str) -> String {
        format!("http://{}/{tenant}/v1", self.addr)
    }

    /// An Anthropic-style api_base for a tenant: `http://127.0.0.1:PORT/<tenant>`.
    /// Cohere's is the same (its client appends `/v2/chat`).
    pub fn anthropic_base(&self, tenant: &str) -> String {
        format!("http://{}/{tenant}", self.addr)
    }

    /// An Ollama api_base for a tenant: `http://127.0.0.1:PORT/<tenant>` (the
    /// client appends `/api/chat`).
    pub fn ollama_base(&self, tenant: &str) -> String {
        format!("http://{}/{tenant}", self.addr)
    }

    /// A Bedrock api_base for a tenant: `http://127.0.0.1:PORT/<tenant>` (the client adds
    /// `/model/{id}/converse` or `/converse-stream`).
    pub fn bedrock_base(&self, tenant: &str) -> String {
        format!("http://{}/{tenant}", self.addr)
    }

    /// Queues replies for a tenant, used one per request before its
    /// `always` reply or preset.
    pub fn script(&self, tenant: &str, replies: impl IntoIterator<Item = Reply>) {
        self.registry.script(tenant, replies);
    }

    /// Sets what a tenant answers once its script is used up, in place of
    /// the preset its name selects.
    pub fn always(&self, tenant: &str, reply: Reply) {
        self.registry.set_always(tenant, Some(reply));
    }

    /// Goes back to the preset the tenant's name selects.
    pub fn clear_always(&self, tenant: &str) {
        self.registry.set_always(tenant, None);
    }

    /// Requests received by a tenant.
    pub fn count(&self, tenant: &str) -> usize {
        self.registry.count(tenant)
    }

    /// Response bytes the stand-in wrote to a tenant's clients (what their sockets took, so at
    /// most what a client read plus the socket buffers), added when an exchange ends (a client
    /// that went away ends it at the next write): shows whether a client stopped reading a body
    /// early.
    pub fn bytes_sent(&self, tenant: &str) -> u64 {
        self.registry.sent_bytes(tenant)
    }

    /// Requests received by all tenants (control endpoints not included).
    pub fn total(&self) -> usize {
        self.registry.total()
    }

    /// The requests a tenant received, oldest first (up to the record limit).
    pub fn requests(&self, tenant: &str) -> Vec<RecordedRequest> {
        self.registry.requests(tenant)
    }

    /// The last request a tenant received.
    pub fn last_request(&self, tenant: &str) -> Option<RecordedRequest> {
        self.registry.last(tenant)
    }

    /// Forgets counts, recorded requests, scripts and `always` replies.
    pub fn reset(&self) {
        self.registry.reset();
    }
}

/// An OpenAI-style api_base on `127.0.0.1` where nothing listens, so that connecting is refused:
/// a port the system handed out and that was closed again at once.
pub fn refusing_base() -> String {
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_or(1, |a| a.port());
    format!("http://127.0.0.1:{port}/v1")
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn").field("addr", &self.addr).finish()
    }
}
