//! The llmr rows, through the C ABI: the `extern "C"` functions a C program links
//! (`llmr::ffi::*`), called as C calls them.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use llmr::ffi::{
    llmr_complete, llmr_complete_async, llmr_init, llmr_shutdown, llmr_status, llmr_stream,
    llmr_stream_async, llmr_string_free,
};
use serde_json::{json, Value};

use crate::measure;
use crate::modes::{Kind, Mode};
use crate::row::{request_value, Batch, Driver};

const OK: llmr_status = llmr::ffi::LLMR_OK;

/// The request as a C program hands it over: serialised from a value, per call.
fn request(stream: bool) -> CString {
    let mut v = request_value();
    if stream {
        v["stream"] = Value::Bool(true);
    }
    CString::new(serde_json::to_vec(&v).expect("json")).expect("no NUL")
}

pub fn init(config: &str) {
    let c = CString::new(config).expect("no NUL");
    let mut err: *mut c_char = ptr::null_mut();
    // SAFETY: valid strings and out-pointer.
    let st = unsafe { llmr_init(c.as_ptr(), &mut err) };
    if st != OK {
        // SAFETY: the library returned a string or NULL.
        let msg = unsafe { take(err) };
        panic!("llmr_init: {st}: {msg}");
    }
    // SAFETY: NULL or the library's string.
    unsafe { take(err) };
}

/// Copies and frees a string the library returned.
unsafe fn take(s: *mut c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    let out = CStr::from_ptr(s).to_string_lossy().into_owned();
    llmr_string_free(s);
    out
}

pub struct Calls {
    kind: Kind,
    concurrency: usize,
}

impl Calls {
    pub fn new(mode: &Mode) -> Calls {
        Calls {
            kind: mode.kind,
            concurrency: mode.concurrency,
        }
    }
}

extern "C" fn count_chunk(_chunk: *const c_char, user_data: *mut c_void) -> i32 {
    // SAFETY: user_data is the calling thread's counter, alive for the call.
    unsafe { (*(user_data as *const AtomicU64)).fetch_add(1, Ordering::Relaxed) };
    0
}

/// One blocking call on this thread: chunks received, or None on failure.
fn blocking_call(stream: bool) -> Option<u64> {
    let req = request(stream);
    let mut out: *mut c_char = ptr::null_mut();
    let chunks = AtomicU64::new(0);
    // SAFETY: valid strings, callback and out-pointer; `chunks` outlives the call.
    let st = unsafe {
        if stream {
            llmr_stream(
                req.as_ptr(),
                Some(count_chunk),
                &chunks as *const AtomicU64 as *mut c_void,
                &mut out,
            )
        } else {
            llmr_complete(req.as_ptr(), &mut out)
        }
    };
    // SAFETY: the library's string or NULL.
    unsafe { llmr_string_free(out) };
    (st == OK).then(|| chunks.load(Ordering::Relaxed))
}

impl Driver for Calls {
    fn batch(&mut self, n: usize) -> Batch {
        if matches!(self.kind, Kind::CompleteAsync | Kind::StreamAsync) {
            return async_batch(n, self.concurrency, self.kind == Kind::StreamAsync);
        }
        let stream = self.kind == Kind::Stream;
        let next = AtomicUsize::new(0);
        let per = n / self.concurrency.max(1) + 64;
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..self.concurrency.min(n))
                .map(|_| {
                    s.spawn(|| {
                        let mut b = Batch::with_capacity(per);
                        while next.fetch_add(1, Ordering::Relaxed) < n {
                            let t = Instant::now();
                            b.record(t, blocking_call(stream));
                        }
                        b
                    })
                })
                .collect();
            let mut all = Batch::with_capacity(n);
            for w in workers {
                all.absorb(w.join().expect("worker"));
            }
            all
        })
    }
}

/// The state of one async batch; `on_done` finds it through [`BATCH`] and the request's index
/// in `user_data`.
struct AsyncBatch {
    n: usize,
    stream: bool,
    chunks: AtomicU64,
    t0: Instant,
    started_ns: Vec<AtomicU64>,
    latency_ns: Vec<AtomicU64>,
    issued: AtomicUsize,
    failures: AtomicU64,
    done: Mutex<usize>,
    all_done: Condvar,
}

static BATCH: AtomicPtr<AsyncBatch> = AtomicPtr::new(ptr::null_mut());

fn issue(b: &AsyncBatch, i: usize) {
    b.started_ns[i].store(b.t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    let req = request(b.stream);
    // SAFETY: valid string and callbacks; the index is passed as the pointer's value.
    unsafe {
        if b.stream {
            llmr_stream_async(
                req.as_ptr(),
                Some(async_chunk),
                Some(async_done),
                i as *mut c_void,
            );
        } else {
            llmr_complete_async(req.as_ptr(), Some(async_done), i as *mut c_void);
        }
    }
}

extern "C" fn async_chunk(_chunk: *const c_char, _user_data: *mut c_void) -> i32 {
    // SAFETY: BATCH points at the batch in flight until its last on_done has run.
    let b = unsafe { &*BATCH.load(Ordering::Acquire) };
    b.chunks.fetch_add(1, Ordering::Relaxed);
    0
}

extern "C" fn async_done(status: llmr_status, _json: *const c_char, user_data: *mut c_void) {
    // SAFETY: BATCH points at the batch in flight until its last on_done has run.
    let b = unsafe { &*BATCH.load(Ordering::Acquire) };
    let i = user_data as usize;
    let now = b.t0.elapsed().as_nanos() as u64;
    b.latency_ns[i].store(
        now - b.started_ns[i].load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
    if status != OK {
        b.failures.fetch_add(1, Ordering::Relaxed);
    }
    let next = b.issued.fetch_add(1, Ordering::Relaxed);
    if next < b.n {
        issue(b, next);
    }
    let mut done = b.done.lock().expect("lock");
    *done += 1;
    if *done == b.n {
        b.all_done.notify_all();
    }
}

fn async_batch(n: usize, in_flight: usize, stream: bool) -> Batch {
    let first = in_flight.min(n);
    let b = Box::new(AsyncBatch {
        n,
        stream,
        chunks: AtomicU64::new(0),
        t0: Instant::now(),
        started_ns: (0..n).map(|_| AtomicU64::new(0)).collect(),
        latency_ns: (0..n).map(|_| AtomicU64::new(0)).collect(),
        issued: AtomicUsize::new(first),
        failures: AtomicU64::new(0),
        done: Mutex::new(0),
        all_done: Condvar::new(),
    });
    BATCH.store(
        &*b as *const AsyncBatch as *mut AsyncBatch,
        Ordering::Release,
    );
    for i in 0..first {
        issue(&b, i);
    }
    let mut done = b.done.lock().expect("lock");
    while *done < n {
        let (d, t) = b
            .all_done
            .wait_timeout(done, Duration::from_secs(120))
            .expect("lock");
        done = d;
        assert!(
            !t.timed_out() || *done == n,
            "async batch: {}/{n} done after 120 s",
            *done
        );
    }
    drop(done);
    let latencies_ns = b
        .latency_ns
        .iter()
        .map(|l| l.load(Ordering::Relaxed))
        .collect();
    Batch {
        latencies_ns,
        chunks: b.chunks.load(Ordering::Relaxed),
        failures: b.failures.load(Ordering::Relaxed),
    }
}

/// `llmr_init` with the mode's deployments, `requests()` times (shut down in between).
pub fn time_init(mode: &Mode, base: &str) -> Value {
    let config = mode.llmr_config(base);
    let mut ms: Vec<f64> = (0..mode.requests())
        .map(|_| {
            let t = Instant::now();
            init(&config);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            llmr_shutdown();
            ms
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    json!({"name": mode.name, "init_ms_median": ms[ms.len() / 2], "init_ms_min": ms[0],
           "init_ms_max": ms[ms.len() - 1], "peak_rss_kib": measure::peak_rss_kib(),
           "cpu_s": measure::cpu_micros() as f64 / 1e6})
}

static OPENED: AtomicUsize = AtomicUsize::new(0);
static HOLD_DONE: AtomicUsize = AtomicUsize::new(0);
static HOLD_FAILED: AtomicUsize = AtomicUsize::new(0);
static RSS_ALL_OPEN_KIB: AtomicU64 = AtomicU64::new(0);

extern "C" fn hold_chunk(_chunk: *const c_char, user_data: *mut c_void) -> i32 {
    // The first chunk of a stream: it is open. The last stream to open samples the RSS.
    if user_data.is_null() {
        return 0;
    }
    let target = user_data as usize;
    if OPENED.fetch_add(1, Ordering::SeqCst) + 1 == target {
        RSS_ALL_OPEN_KIB.store(measure::rss_now_kib(), Ordering::SeqCst);
    }
    0
}

extern "C" fn hold_done(status: llmr_status, _json: *const c_char, _user_data: *mut c_void) {
    if status != OK {
        HOLD_FAILED.fetch_add(1, Ordering::SeqCst);
    }
    HOLD_DONE.fetch_add(1, Ordering::SeqCst);
}

/// `concurrency` streams at once, each held open by the stand-in until all are open.
pub fn hold_streams(mode: &Mode) -> Value {
    let n = mode.concurrency;
    let rss_before = measure::rss_now_kib();
    let cpu0 = measure::cpu_micros();
    let t0 = Instant::now();
    let req = request(true);
    for _ in 0..n {
        // SAFETY: valid string and callbacks; user_data carries the target count. Every
        // chunk after the first of a stream also counts, which is fine: the stand-in sends the
        // rest only once all are open, so OPENED first reaches n with every stream open.
        unsafe {
            llmr_stream_async(
                req.as_ptr(),
                Some(hold_chunk),
                Some(hold_done),
                n as *mut c_void,
            )
        };
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while HOLD_DONE.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    json!({"name": mode.name, "streams": n, "secs": t0.elapsed().as_secs_f64(),
           "done": HOLD_DONE.load(Ordering::SeqCst), "failures": HOLD_FAILED.load(Ordering::SeqCst),
           "rss_before_kib": rss_before, "rss_all_open_kib": RSS_ALL_OPEN_KIB.load(Ordering::SeqCst),
           "peak_rss_kib": measure::peak_rss_kib(),
           "cpu_s": (measure::cpu_micros() - cpu0) as f64 / 1e6})
}
