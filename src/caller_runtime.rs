//! Small runtimes for the blocking calls (`llmr_complete`, `llmr_stream`), driven by the
//! calling thread.
//!
//! A blocking call polled on the shared runtime still had its connection driven by a worker:
//! the request crossed from the caller to a worker and the answer back, two thread wake-ups
//! that were most of what a blocking call added to the network's latency. On a single-threaded
//! runtime of its own, with its own connections, the calling thread writes the request and
//! reads the answer itself.
//!
//! The runtimes are leased from a pool for one call and given back (any thread may drive one,
//! one at a time), so that connections outlive the thread that opened them: a program with a
//! thread per request still reuses them. The rule that keeps this sound: a connection belongs
//! to the runtime it was opened on. So every HTTP request goes out through [`Http`], which picks
//! the client of the runtime the request runs on, and whatever must outlive the call (the Redis
//! connection, a best-effort cancel) runs on the shared runtime.
//!
//! One exception: a request to an HTTPS origin known to speak HTTP/2 goes to the shared
//! runtime's connection, where up to 100 requests share one. A connection per caller runtime
//! cost each of 64 calling threads its own TLS connection: ~70-110 µs of CPU per request
//! against ~55 µs shared (`llmr-complete-64t-h2` in bench/README.md). A non-streaming exchange
//! with such an origin runs whole (request, answer read and parsed) as a task of the shared
//! runtime ([`on_shared`]): handing over only the request and reading the answer's body on the
//! calling thread woke that thread again for the body (~12% more completions per second from
//! 64 threads, bench/README.md session 23).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::client_pool::ClientPool;
use crate::http1::Http1;
use crate::http2_origins::Origins;

struct CallerRuntime {
    rt: tokio::runtime::Runtime,
    /// Only ever used on `rt`: its pooled connections are tasks of `rt`.
    http: reqwest::Client,
    /// The same for plain-HTTP origins (`http1`): its idle connections are registered with `rt`.
    plain: Http1,
    /// When it was last given back.
    idle_since: Instant,
}

/// Idle runtimes, the last given back first (a thread calling again gets its own back), so the
/// one idle longest is at the front.
static POOL: Mutex<Vec<CallerRuntime>> = Mutex::new(Vec::new());
/// Idle runtimes kept beyond this are dropped (with their connections) when given back.
const MAX_IDLE: usize = 256;
/// A runtime idle this long is dropped (with its connections) the next time any is given back:
/// after a burst of blocking calls from many threads, the runtimes no call needs any more do
/// not keep their sockets (the HTTP clients' own idle timeout, which an idle runtime never
/// gets to run).
const IDLE_LIMIT: Duration = Duration::from_secs(90);

thread_local! {
    /// The clients of the runtime this thread is driving right now, if any.
    static DRIVING: RefCell<Option<Driving>> = const { RefCell::new(None) };
}

/// A caller runtime's clients, as the thread driving it sees them.
#[derive(Clone)]
struct Driving {
    http: reqwest::Client,
    plain: Http1,
}

fn pool() -> std::sync::MutexGuard<'static, Vec<CallerRuntime>> {
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// One runtime, leased for one blocking call; given back when dropped.
pub struct Lease {
    runtime: Option<CallerRuntime>,
    /// A panic went through it: not given back.
    poisoned: Cell<bool>,
    /// It sat idle for [`CATCH_UP_AFTER`] or more and no call has run on it in this lease yet:
    /// the first one catches up on its idle connections (a blocking stream calls `block_on`
    /// once per batch of chunks).
    catch_up_first: Cell<bool>,
}

/// How long a runtime must have sat idle for its next call to catch up on its connections
/// first. A runtime given back less than this ago was driven until then: a close that reached
/// it in between is the race every HTTP client has (a request crossing the server's FIN),
/// which the router's retries answer. Under load the last runtime given back is taken again
/// within microseconds, and the catch-up's two turns of the scheduler were two `epoll_wait`s
/// of the four per call (`llmr-complete-64t`).
const CATCH_UP_AFTER: Duration = Duration::from_millis(1);

impl Lease {
    pub fn take() -> Lease {
        let runtime = pool().pop().unwrap_or_else(|| CallerRuntime {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("llmr: a caller runtime could not start"),
            http: crate::global::new_http_client(),
            plain: Http1::alone(),
            // New: no connections to catch up on.
            idle_since: Instant::now(),
        });
        Lease::of(runtime)
    }

    fn of(runtime: CallerRuntime) -> Lease {
        let catch_up_first = runtime.idle_since.elapsed() >= CATCH_UP_AFTER;
        Lease {
            runtime: Some(runtime),
            poisoned: Cell::new(false),
            catch_up_first: Cell::new(catch_up_first),
        }
    }

    /// Runs `fut` to completion on this runtime, on the calling thread; a panic inside comes
    /// back as `Err` (and the runtime is not given back).
    pub fn block_on<F: Future>(&self, fut: F) -> std::thread::Result<F::Output> {
        let c = self.runtime.as_ref().expect("present until dropped");
        let previous = DRIVING.with(|d| {
            d.replace(Some(Driving {
                http: c.http.clone(),
                plain: c.plain.clone(),
            }))
        });
        let _restore = Restore(Some(previous));
        let first = self.catch_up_first.replace(false);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.rt.block_on(async {
                if first {
                    catch_up().await;
                }
                fut.await
            })
        }));
        if r.is_err() {
            self.poisoned.set(true);
        }
        r
    }

    /// After a call that gave up a connection (an answer cut off, a stream stopped): lets the
    /// runtime close it now, not at its next call.
    pub fn close_abandoned(&self) {
        // `block_on` catches up by itself on a lease still due to.
        let _ = if self.catch_up_first.get() {
            self.block_on(async {})
        } else {
            self.block_on(catch_up())
        };
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut c) = self.runtime.take() else {
            return;
        };
        let now = Instant::now();
        let mut idle = pool();
        let mut gone = take_expired(&mut idle, now, IDLE_LIMIT);
        if self.poisoned.get() || idle.len() >= MAX_IDLE {
            gone.push(c);
        } else {
            c.idle_since = now;
            idle.push(c);
        }
        drop(idle);
        close(gone);
    }
}

/// The runtimes at the front of `idle` that have been idle for `limit` or more.
fn take_expired(
    idle: &mut Vec<CallerRuntime>,
    now: Instant,
    limit: Duration,
) -> Vec<CallerRuntime> {
    let n = idle
        .iter()
        .take_while(|c| now.saturating_duration_since(c.idle_since) >= limit)
        .count();
    idle.drain(..n).collect()
}

/// Drops runtimes and their idle connections, outside the pool's lock. `shutdown_background`:
/// a DNS lookup still running is not waited for, and it may run inside another runtime.
fn close(runtimes: Vec<CallerRuntime>) {
    for c in runtimes {
        c.rt.shutdown_background();
    }
}

/// At `llmr_shutdown`: every idle runtime goes, with its connections. (A blocking call still
/// running keeps its own and gives it back when it ends.)
pub fn close_idle() {
    let all = std::mem::take(&mut *pool());
    close(all);
}

struct Restore(Option<Option<Driving>>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            let _ = DRIVING.try_with(|d| *d.borrow_mut() = previous);
        }
    }
}

/// Lets the runtime see what happened on its idle connections since its last call (a server
/// that closed one): the first yield has the scheduler poll the I/O driver, which wakes those
/// connections' tasks; the second makes sure they ran before the call takes a pooled connection
/// (without this, a request went out on a connection the server had closed, and failed).
async fn catch_up() {
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
}

/// A task of the shared runtime that a blocking call waits for: aborted if the call gives up
/// on it (a timeout, a cancel), as the request would have been on the caller runtime.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `fut` as a task of the shared runtime and waits for it; aborted if the wait is given up
/// (a timeout, a cancel), as it would have been on the caller runtime.
pub async fn on_shared<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    match AbortOnDrop(crate::global::runtime().spawn(fut)).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels it; the shared one never does.
        Err(_) => panic!("llmr: the shared runtime dropped a request"),
    }
}

/// Whether the current code runs on a caller runtime (a blocking call).
pub fn is_driving() -> bool {
    DRIVING.try_with(|d| d.borrow().is_some()).unwrap_or(false)
}

/// The HTTP client as providers hold it: each request goes out on the client of the runtime it
/// runs on — the caller runtime's own during a blocking call (one request at a time), else one
/// of the shared runtime's clients with room for it ([`ClientPool`]): an HTTP/2-only one for an
/// HTTPS origin known to speak HTTP/2 ([`Origins`]), so that requests waiting for a connection
/// share the one being opened. Cloning it is cheap and shares the clients.
#[derive(Clone)]
pub struct Http(Arc<Clients>);

struct Clients {
    /// Every request whose origin is not known to speak HTTP/2 (ALPN picks the protocol).
    any: ClientPool,
    /// HTTP/2 only (prior knowledge); built at the first request that needs one.
    http2: OnceLock<ClientPool>,
    /// None: a proxy is configured (the probe would not go through it).
    origins: Option<Origins>,
    /// Requests to plain-HTTP origins ([`crate::http1`]).
    plain: Http1,
}

impl Http {
    /// Requests on the shared runtime go out on `shared`, and on more clients like it as the
    /// number in flight grows.
    pub fn new(shared: reqwest::Client) -> Http {
        Http(Arc::new(Clients {
            any: ClientPool::new(shared, crate::global::new_http_client),
            http2: OnceLock::new(),
            origins: (!crate::global::https_proxy_set()).then(Origins::default),
            plain: Http1::default(),
        }))
    }

    /// The HTTP/1.1 client for a chat request to `url`, if it goes out there (plain HTTP, no
    /// proxy; see [`crate::http1`]): the caller runtime's own during a blocking call, else the
    /// shared runtime's.
    pub fn plain_http1(&self, url: &reqwest::Url) -> Option<Http1> {
        if !crate::http1::serves(url) {
            return None;
        }
        let own = DRIVING
            .try_with(|d| d.borrow().as_ref().map(|d| d.plain.clone()))
            .ok()
            .flatten();
        Some(own.unwrap_or_else(|| self.0.plain.clone()))
    }

    /// A request to build; send it with [`Http::send`] (which picks the client).
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.0.any.any().request(method, url)
    }

    /// Sends a request built with [`Http::request`].
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        self.execute(request.build()?).await
    }

    /// Sends `request`. The response carries the request's place on its client (see
    /// [`crate::providers::http::Body`], which keeps it until the body has been read).
    pub fn execute(
        &self,
        request: reqwest::Request,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> + '_ {
        let own = DRIVING
            .try_with(|d| d.borrow().as_ref().map(|d| d.http.clone()))
            .ok()
            .flatten();
        async move {
            if let Some(own) = own {
                if !self.shared_speaks_http2(request.url()) {
                    return own.execute(request).await;
                }
                // An HTTP/2 origin: the request joins the shared runtime's connection (one for
                // up to 100 requests) instead of opening one per caller runtime.
                let http = self.clone();
                return on_shared(async move { http.execute_shared(request).await }).await;
            }
            self.execute_shared(request).await
        }
    }

    /// Whether this is a blocking call and `url`'s origin is known to speak HTTP/2: then a
    /// whole exchange (request, answer read and parsed) is best run [`on_shared`], where the
    /// connection is, instead of handing the request over and the answer back piece by piece.
    pub fn blocking_to_http2(&self, url: &reqwest::Url) -> bool {
        is_driving() && self.shared_speaks_http2(url)
    }

    /// Whether `url`'s origin is known to speak HTTP/2; when nobody has asked yet, the probe
    /// starts on the shared runtime (the caller runtime is not driven after the call).
    fn shared_speaks_http2(&self, url: &reqwest::Url) -> bool {
        let Some(o) = &self.0.origins else {
            return false;
        };
        match o.known_http2(url) {
            Some(h2) => h2,
            None => {
                let (http, url) = (self.clone(), url.clone());
                crate::global::runtime().spawn(async move {
                    if let Some(o) = &http.0.origins {
                        o.speaks_http2(&url).await;
                    }
                });
                false
            }
        }
    }

    /// [`Http::execute`] on the shared runtime's clients.
    async fn execute_shared(
        &self,
        request: reqwest::Request,
    ) -> reqwest::Result<reqwest::Response> {
        {
            let http2 = match &self.0.origins {
                Some(o) => o.speaks_http2(request.url()).await,
                None => false,
            };
            let pool = if http2 {
                self.0.http2.get_or_init(|| {
                    ClientPool::new(
                        crate::global::new_http2_client(),
                        crate::global::new_http2_client,
                    )
                })
            } else {
                &self.0.any
            };
            let (client, slot) = pool.take();
            match client.execute(request).await {
                Ok(mut resp) => {
                    resp.extensions_mut().insert(slot);
                    Ok(resp)
                }
                Err(e) => {
                    if let (true, Some(o), Some(url)) = (http2, &self.0.origins, e.url()) {
                        if !e.is_timeout() {
                            o.forget(url);
                        }
                    }
                    Err(e)
                }
            }
        }
    }

    /// Requests in flight on the shared runtime's clients.
    pub fn in_flight(&self) -> usize {
        self.0.any.in_flight() + self.0.http2.get().map_or(0, ClientPool::in_flight)
    }

    /// The shared runtime's clients: (ALPN, HTTP/2 only).
    pub fn clients(&self) -> (usize, usize) {
        (
            self.0.any.clients(),
            self.0.http2.get().map_or(0, ClientPool::clients),
        )
    }
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("clients", &self.clients())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_call_runs_on_a_leased_runtime_and_says_so() {
        assert!(!is_driving());
        let lease = Lease::take();
        let inside = lease
            .block_on(async {
                (
                    is_driving(),
                    tokio::runtime::Handle::current().runtime_flavor(),
                )
            })
            .unwrap();
        assert_eq!(inside, (true, tokio::runtime::RuntimeFlavor::CurrentThread));
        assert!(!is_driving(), "reset after the call");
        // A panic inside comes back as an error, and resets it too.
        assert!(lease.block_on(async { panic!("boom") }).is_err());
        assert!(!is_driving());
        assert!(lease.poisoned.get(), "not given back");
    }

    #[test]
    fn runtimes_idle_past_the_limit_are_taken_oldest_first() {
        let now = Instant::now();
        let made = |idle_for: u64| {
            let mut c = Lease::take().runtime.take().unwrap();
            c.idle_since = now - Duration::from_secs(idle_for);
            c
        };
        // Given back oldest first, as the pool holds them.
        let mut idle = vec![made(300), made(100), made(30), made(1)];
        let gone = take_expired(&mut idle, now, Duration::from_secs(90));
        assert_eq!(gone.len(), 2);
        assert_eq!(idle.len(), 2);
        assert!(idle
            .iter()
            .all(|c| now - c.idle_since < Duration::from_secs(90)));
        assert!(take_expired(&mut idle, now, Duration::from_secs(90)).is_empty());
        close(gone);
        close(idle);
    }

    #[test]
    fn only_a_runtime_idle_for_a_while_catches_up_first() {
        let idle_for = |d: Duration| {
            let mut c = Lease::take().runtime.take().unwrap();
            c.idle_since = Instant::now() - d;
            Lease::of(c)
        };
        // Taken again straight after it was given back: straight to the call.
        let recent = idle_for(Duration::ZERO);
        assert!(!recent.catch_up_first.get());
        // Idle longer: the first call catches up, the next ones of the lease do not.
        let idle = idle_for(CATCH_UP_AFTER * 5);
        assert!(idle.catch_up_first.get());
        idle.block_on(async {}).unwrap();
        assert!(!idle.catch_up_first.get());
    }

    #[test]
    fn calls_at_once_get_runtimes_of_their_own_and_any_thread_may_drive_one() {
        let id = |l: &Lease| l.runtime.as_ref().map(|c| &c.rt as *const _ as usize);
        let a = Lease::take();
        let b = Lease::take();
        assert_ne!(id(&a), id(&b), "two calls at once, two runtimes");
        // A lease taken on one thread and driven on another (the pool hands runtimes around).
        let driven = std::thread::spawn(move || a.block_on(async { is_driving() }).unwrap())
            .join()
            .unwrap();
        assert!(driven);
    }
}
