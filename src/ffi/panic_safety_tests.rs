//! Panic safety through the C ABI, with the test-only fault injection of `crate::fault`: a
//! request that panics (on the calling thread, in the router, with a state lock held, mid-stream)
//! ends with `LLMR_ERR_INTERNAL` and an error JSON — sync, async (`on_done` exactly once) and
//! streamed —, while other requests at the same time and afterwards succeed, and nothing is
//! poisoned: stats, router info, shutdown and a new init all still work. No panic message, error
//! or stats output shows the deployments' keys.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

const KEY_1: &str = "sk-SECRET-panic-inline-6f2b9c1d8e7a";
const KEY_2: &str = "sk-SECRET-panic-params-3a8d5e0f1b4c";

/// The global router is one per process: these tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

/// Panic messages seen while the tests ran (the hook also prints them, as the default does).
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn capture_panic_messages() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| {
                    info.payload()
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                })
                .unwrap_or_default();
            PANICS.lock().unwrap_or_else(|p| p.into_inner()).push(msg);
            previous(info);
        }));
    });
}

fn config() -> CString {
    let entry = |id: &str, key: Value| {
        json!({"id": id, "provider": "MOCK", "model_name": format!("mock-{id}"), "api_key": key.clone(),
               "litellm_params": {"mock_response": "one two three", "api_key": key}})
    };
    let cfg = json!({"global_llm_configs": [entry("p1", json!(KEY_1)), entry("p2", json!(KEY_2))],
                     "router_settings": {"num_retries": 2, "timeout": 30}});
    CString::new(cfg.to_string()).unwrap()
}

fn request(point: Option<&str>) -> CString {
    let mut r = json!({"messages": [{"role": "user", "content": "hello"}]});
    if let Some(p) = point {
        r[crate::fault::FIELD] = json!(p);
    }
    CString::new(r.to_string()).unwrap()
}

/// Takes a string the library returned and frees it.
fn take(p: *mut c_char) -> String {
    assert!(!p.is_null(), "the out-parameter was not set");
    // SAFETY: a string from `put_string`, freed once here.
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned();
    unsafe { llmr_string_free(p) };
    s
}

fn no_key(s: &str, what: &str) {
    for k in [KEY_1, KEY_2] {
        assert!(!s.contains(k), "{what} holds a key: {s}");
    }
}

fn assert_internal(status: llmr_status, json: &str, what: &str) {
    assert_eq!(status, LLMR_ERR_INTERNAL, "{what}: {json}");
    let v: Value = serde_json::from_str(json).unwrap_or_else(|_| panic!("{what}: {json}"));
    assert_eq!(v["error"]["status"], "internal", "{what}");
    assert_eq!(v["error"]["code"], 12, "{what}");
    assert!(
        v["error"]["message"].as_str().unwrap_or("").contains("bug"),
        "{what}: {json}"
    );
    no_key(json, what);
}

fn complete(req: &CString) -> (llmr_status, String) {
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: valid strings and out-pointer.
    let st = unsafe { llmr_complete(req.as_ptr(), &mut out) };
    (st, take(out))
}

unsafe extern "C" fn count_chunk(chunk: *const c_char, ud: *mut c_void) -> i32 {
    let n = &*(ud as *const AtomicUsize);
    assert!(!chunk.is_null());
    n.fetch_add(1, Ordering::SeqCst);
    0
}

fn stream(req: &CString) -> (llmr_status, String, usize) {
    let chunks = AtomicUsize::new(0);
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: as above; `chunks` outlives the call.
    let st = unsafe {
        llmr_stream(
            req.as_ptr(),
            Some(count_chunk),
            &chunks as *const AtomicUsize as *mut c_void,
            &mut out,
        )
    };
    (st, take(out), chunks.load(Ordering::SeqCst))
}

/// What an async request's callbacks saw.
#[derive(Default)]
struct AsyncSeen {
    done: Mutex<Vec<(llmr_status, String)>>,
    chunks: AtomicUsize,
}

unsafe extern "C" fn on_done(status: llmr_status, json: *const c_char, ud: *mut c_void) {
    let seen = &*(ud as *const AsyncSeen);
    let json = CStr::from_ptr(json).to_str().unwrap().to_owned();
    seen.done.lock().unwrap().push((status, json));
}

unsafe extern "C" fn on_async_chunk(_chunk: *const c_char, ud: *mut c_void) -> i32 {
    let seen = &*(ud as *const AsyncSeen);
    seen.chunks.fetch_add(1, Ordering::SeqCst);
    0
}

/// Starts an async completion or stream and waits (bounded) for its `on_done`; checks it ran
/// exactly once.
fn run_async(req: &CString, streaming: bool) -> (u64, llmr_status, String, usize) {
    let seen = Arc::new(AsyncSeen::default());
    let ud = Arc::as_ptr(&seen) as *mut c_void;
    // SAFETY: `seen` is kept alive until after on_done ran (and a settle period after it).
    let id = unsafe {
        if streaming {
            llmr_stream_async(req.as_ptr(), Some(on_async_chunk), Some(on_done), ud)
        } else {
            llmr_complete_async(req.as_ptr(), Some(on_done), ud)
        }
    };
    let end = Instant::now() + Duration::from_secs(10);
    while seen.done.lock().unwrap().is_empty() {
        assert!(Instant::now() < end, "on_done did not run within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50)); // a second on_done would come by now
    let done = seen.done.lock().unwrap();
    assert_eq!(done.len(), 1, "on_done ran {} times", done.len());
    let (st, json) = done[0].clone();
    (id, st, json, seen.chunks.load(Ordering::SeqCst))
}

fn stats() -> Value {
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { llmr_stats(&mut out) }, LLMR_OK);
    let s = take(out);
    no_key(&s, "stats");
    serde_json::from_str(&s).unwrap()
}

fn init() {
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: valid strings and out-pointer.
    let st = unsafe { llmr_init(config().as_ptr(), &mut err) };
    assert_eq!(
        st,
        LLMR_OK,
        "{}",
        if err.is_null() {
            String::new()
        } else {
            take(err)
        }
    );
}

fn healthy(what: &str) {
    let (st, json) = complete(&request(None));
    assert_eq!(st, LLMR_OK, "{what}: {json}");
    let (st, json, chunks) = stream(&request(None));
    assert_eq!(st, LLMR_OK, "{what} (stream): {json}");
    assert_eq!(chunks, 3, "{what}");
    let (_, st, json, _) = run_async(&request(None), false);
    assert_eq!(st, LLMR_OK, "{what} (async): {json}");
    let (_, st, json, chunks) = run_async(&request(None), true);
    assert_eq!(st, LLMR_OK, "{what} (async stream): {json}");
    assert_eq!(chunks, 3, "{what}");
}

#[test]
fn a_panicking_request_ends_internal_and_poisons_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    capture_panic_messages();
    llmr_shutdown();
    init();

    // Other requests run all along, on their own threads.
    let stop = Arc::new(AtomicBool::new(false));
    let others: Vec<_> = (0..2)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut ok = 0;
                while !stop.load(Ordering::SeqCst) {
                    let (st, json) = if i == 0 {
                        complete(&request(None))
                    } else {
                        let (st, json, _) = stream(&request(None));
                        (st, json)
                    };
                    assert_eq!(st, LLMR_OK, "a request beside the faults: {json}");
                    ok += 1;
                }
                ok
            })
        })
        .collect();

    for point in ["caller", "router", "state"] {
        let (st, json) = complete(&request(Some(point)));
        assert_internal(st, &json, &format!("llmr_complete, panic at {point}"));
        // SAFETY: a NULL out-parameter is allowed: the status alone.
        let st = unsafe { llmr_complete(request(Some(point)).as_ptr(), std::ptr::null_mut()) };
        assert_eq!(st, LLMR_ERR_INTERNAL, "{point}, NULL out-parameter");

        let (id, st, json, chunks) = run_async(&request(Some(point)), false);
        assert_internal(st, &json, &format!("llmr_complete_async, panic at {point}"));
        assert_eq!(chunks, 0);
        // A panic while starting: id 0; later panics: the request had started.
        assert_eq!(id == 0, point == "caller", "{point}: id {id}");
    }
    for point in ["caller", "router", "state", "stream"] {
        let (st, json, chunks) = stream(&request(Some(point)));
        assert_internal(st, &json, &format!("llmr_stream, panic at {point}"));
        // Chunks delivered before the panic stay delivered: none before the attempt, the first
        // one mid-stream, all three when the state update after the stream panics.
        let want = match point {
            "stream" => 1,
            "state" => 3,
            _ => 0,
        };
        assert_eq!(chunks, want, "{point}");
        let (_, st, json, chunks) = run_async(&request(Some(point)), true);
        assert_internal(st, &json, &format!("llmr_stream_async, panic at {point}"));
        assert_eq!(chunks, want, "{point}");
        healthy(&format!("right after a panic at {point}"));
    }

    stop.store(true, Ordering::SeqCst);
    for t in others {
        let ok = t.join().expect("a thread beside the faults failed");
        assert!(ok > 0);
    }

    // Nothing is left counted in flight, and the state behind the poisoned lock still serves.
    let s = stats();
    for d in s["deployments"].as_array().unwrap() {
        assert_eq!(d["in_flight"], 0, "{d}");
        assert!(d["requests_this_minute"].as_u64().unwrap() > 0, "{d}");
    }
    assert_eq!(crate::global::in_flight(), 0);
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { llmr_router_info(&mut out) }, LLMR_OK);
    no_key(&take(out), "router_info");

    // The faults did fire, and not one message showed a key (the router's shows the
    // deployment's Debug form, keys and litellm_params included).
    let panics = PANICS.lock().unwrap().clone();
    for point in ["caller", "router", "state", "stream"] {
        assert!(
            panics
                .iter()
                .any(|m| m.contains(&format!("fault at {point}"))),
            "no panic at {point}: {panics:?}"
        );
    }
    assert!(panics.iter().any(|m| m.contains("DeploymentConfig")));
    for m in &panics {
        no_key(m, "a panic message");
    }

    // Shutdown and a new init work; so do requests after them.
    assert_eq!(llmr_shutdown(), LLMR_OK);
    assert!(!llmr_is_initialized());
    init();
    healthy("after shutdown and init");
    assert_eq!(llmr_shutdown(), LLMR_OK);
}
