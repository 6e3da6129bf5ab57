//! A small runtime per calling thread for the blocking calls (`llmr_complete`, `llmr_stream`).
//!
//! A blocking call polled on the shared runtime still had its connection driven by a worker:
//! the request crossed from the caller to a worker and the answer back, two thread wake-ups
//! that were most of what a blocking call added to the network's latency. On the caller's own
//! single-threaded runtime, with its own connections, the calling thread writes the request and
//! reads the answer itself.
//!
//! The rule that keeps this sound: a connection belongs to the runtime it was opened on. So
//! every HTTP request goes out through [`Http`], which picks the client of the runtime the
//! request runs on, and whatever must outlive the call (the Redis connection, a best-effort
//! cancel) runs on the shared runtime.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

thread_local! {
    static CALLER: RefCell<Option<Rc<CallerRuntime>>> = const { RefCell::new(None) };
    /// True while this thread runs a blocking call on its own runtime.
    static DRIVING: Cell<bool> = const { Cell::new(false) };
}

struct CallerRuntime {
    rt: Option<tokio::runtime::Runtime>,
    /// Only ever used on `rt`: its pooled connections are tasks of `rt`.
    http: reqwest::Client,
}

impl Drop for CallerRuntime {
    fn drop(&mut self) {
        // The thread is ending: its idle connections close; a DNS lookup still running on the
        // runtime's blocking pool is not waited for.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// This thread's runtime, made on first use.
fn this_thread() -> Rc<CallerRuntime> {
    CALLER.with(|c| {
        c.borrow_mut()
            .get_or_insert_with(|| {
                Rc::new(CallerRuntime {
                    rt: Some(
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("llmr: a caller-thread runtime could not start"),
                    ),
                    http: crate::global::new_http_client(),
                })
            })
            .clone()
    })
}

struct Driving(bool);

impl Drop for Driving {
    fn drop(&mut self) {
        DRIVING.with(|d| d.set(self.0));
    }
}

/// Runs `fut` to completion on this thread's runtime. Not reentrant (nothing here calls it from
/// inside a future it runs: callbacks run between two calls).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let caller = this_thread();
    let _restore = Driving(DRIVING.with(|d| d.replace(true)));
    let rt = caller.rt.as_ref().expect("present until the thread ends");
    rt.block_on(async {
        catch_up().await;
        let out = fut.await;
        // And the connections this call gave up (an answer cut off, a stream stopped) are closed
        // now, not at the thread's next call.
        catch_up().await;
        out
    })
}

/// Lets the runtime see what happened on its idle connections since its last call (a server
/// that closed one): the first yield has the scheduler poll the I/O driver, which wakes those
/// connections' tasks; the second makes sure they ran before the call takes a pooled connection
/// (without this, a request went out on a connection the server had closed, and failed).
async fn catch_up() {
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
}

/// Whether the current code runs on this thread's caller runtime (a blocking call).
pub fn is_driving() -> bool {
    DRIVING.with(Cell::get)
}

/// The HTTP client as providers hold it: each request goes out on the client of the runtime it
/// runs on — the calling thread's own during a blocking call, else the shared one.
#[derive(Clone, Debug)]
pub struct Http(reqwest::Client);

impl Http {
    pub fn new(shared: reqwest::Client) -> Http {
        Http(shared)
    }

    fn current(&self) -> reqwest::Client {
        if is_driving() {
            CALLER
                .with(|c| c.borrow().as_ref().map(|c| c.http.clone()))
                .unwrap_or_else(|| self.0.clone())
        } else {
            self.0.clone()
        }
    }

    pub fn post<U: reqwest::IntoUrl>(&self, url: U) -> reqwest::RequestBuilder {
        self.current().post(url)
    }

    pub fn get<U: reqwest::IntoUrl>(&self, url: U) -> reqwest::RequestBuilder {
        self.current().get(url)
    }

    pub fn execute(
        &self,
        request: reqwest::Request,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> {
        self.current().execute(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_call_uses_its_own_runtime_and_says_so() {
        assert!(!is_driving());
        let inside = block_on(async {
            (
                is_driving(),
                tokio::runtime::Handle::current().runtime_flavor(),
            )
        });
        assert_eq!(inside, (true, tokio::runtime::RuntimeFlavor::CurrentThread));
        assert!(!is_driving(), "reset after the call");
        // A panic inside resets it too.
        let r = std::panic::catch_unwind(|| block_on(async { panic!("boom") }));
        assert!(r.is_err());
        assert!(!is_driving());
        assert!(
            block_on(async { is_driving() }),
            "and the runtime still works"
        );
    }

    #[test]
    fn each_thread_has_its_own() {
        let id = || Rc::as_ptr(&this_thread()) as usize;
        let here = id();
        assert_eq!(here, id(), "made once per thread");
        let there = std::thread::spawn(id).join().unwrap();
        assert_ne!(here, there);
    }
}
