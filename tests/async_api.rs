//! The asynchronous API: request ids, `on_done` exactly once on the callback thread, ordered
//! chunks, cancellation (by id, by the callback, by shutdown) and many requests in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use llmr::{Error, Status};
use llmr_testkit::{Reply, StandIn};

/// The router is process-wide: tests of this file take turns.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn init(config: serde_json::Value) {
    llmr::shutdown();
    llmr::init(&config.to_string()).expect("init");
}

fn mock(params: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "global_llm_configs": [{"id": 1, "provider": "MOCK", "model_name": "mock-1", "litellm_params": params}],
        "router_settings": {"retry_after": 0, "num_retries": 0}
    })
}

const HELLO: &str = r#"{"messages":[{"role":"user","content":"hello"}]}"#;

type Done = (Result<String, Error>, Option<String>);
type OnDone = Box<dyn FnOnce(Result<String, Error>) + Send>;

/// An `on_done` that reports its result and the name of the thread it ran on.
fn done_channel() -> (impl Fn() -> OnDone, Receiver<Done>) {
    let (tx, rx) = channel::<Done>();
    let tx = Mutex::new(tx);
    let make = move || {
        let tx = tx.lock().unwrap().clone();
        Box::new(move |r: Result<String, Error>| {
            let name = std::thread::current().name().map(str::to_owned);
            tx.send((r, name)).unwrap();
        }) as OnDone
    };
    (make, rx)
}

fn recv(rx: &Receiver<Done>) -> Done {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("on_done did not run in time")
}

#[test]
fn completion_runs_on_done_once_on_the_callback_thread() {
    let _s = serial();
    init(mock(serde_json::json!({"mock_response": "hi there"})));
    let (make, rx) = done_channel();
    let id = llmr::complete_async(HELLO, make());
    assert_ne!(id, 0);
    let (r, thread) = recv(&rx);
    let body: serde_json::Value = serde_json::from_str(&r.unwrap()).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "hi there");
    assert_eq!(thread.as_deref(), Some(llmr::callbacks::THREAD_NAME));
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "on_done ran twice"
    );
    assert!(
        !llmr::cancel(id),
        "a finished request is no longer in flight"
    );
}

#[test]
fn a_request_that_cannot_start_gets_id_0_and_one_on_done() {
    let _s = serial();
    init(mock(serde_json::json!({"mock_response": "x"})));
    let (make, rx) = done_channel();
    for bad in ["{", r#"{"messages": 3}"#, "[]"] {
        assert_eq!(llmr::complete_async(bad, make()), 0, "{bad}");
        let (r, thread) = recv(&rx);
        assert_eq!(r.unwrap_err().status, Status::InvalidArgument, "{bad}");
        assert_eq!(thread.as_deref(), Some(llmr::callbacks::THREAD_NAME));
        assert_eq!(llmr::stream_async(bad, |_| true, make()), 0);
        assert_eq!(recv(&rx).0.unwrap_err().status, Status::InvalidArgument);
    }
    llmr::shutdown();
    assert_eq!(llmr::complete_async(HELLO, make()), 0);
    assert_eq!(recv(&rx).0.unwrap_err().status, Status::NotInitialized);
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
}

#[test]
fn stream_chunks_arrive_in_order_then_on_done() {
    let _s = serial();
    let text = (0..200)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    init(mock(serde_json::json!({"mock_response": text})));
    let (make, rx) = done_channel();
    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    let active = Arc::new(AtomicUsize::new(0));
    let mut ids = vec![];
    for _ in 0..20 {
        let events = events.clone();
        let active = active.clone();
        ids.push(llmr::stream_async(
            HELLO,
            move |chunk| {
                // Never two callbacks at once.
                assert_eq!(active.fetch_add(1, Ordering::SeqCst), 0);
                let v: serde_json::Value = serde_json::from_str(chunk).unwrap();
                if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                    events.lock().unwrap().push(c.to_owned());
                }
                active.fetch_sub(1, Ordering::SeqCst);
                true
            },
            make(),
        ));
    }
    assert!(ids.iter().all(|&id| id != 0));
    for _ in 0..20 {
        let body: serde_json::Value = serde_json::from_str(&recv(&rx).0.unwrap()).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], text.as_str());
        assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    }
    // One request alone: its chunks concatenate to the text, in order.
    events.lock().unwrap().clear();
    let ev = events.clone();
    llmr::stream_async(
        HELLO,
        move |chunk| {
            let v: serde_json::Value = serde_json::from_str(chunk).unwrap();
            ev.lock().unwrap().push(
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            );
            true
        },
        make(),
    );
    recv(&rx).0.unwrap();
    assert_eq!(events.lock().unwrap().concat(), text);
}

#[test]
fn callback_returning_stop_cancels_and_nothing_follows() {
    let _s = serial();
    let text = (0..100)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    init(mock(
        serde_json::json!({"mock_response": text, "mock_chunk_delay_ms": 2}),
    ));
    let (make, rx) = done_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    let id = llmr::stream_async(
        HELLO,
        move |_| s2.fetch_add(1, Ordering::SeqCst) + 1 < 3,
        make(),
    );
    assert_ne!(id, 0);
    let e = recv(&rx).0.unwrap_err();
    assert_eq!(e.status, Status::Cancelled);
    assert!(e.message.contains("callback"), "{}", e.message);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(seen.load(Ordering::SeqCst), 3, "no chunk after the stop");
}

#[test]
fn a_stop_is_honoured_even_when_the_stream_ended_before_the_callback_ran() {
    let _s = serial();
    // No chunk delay: the whole stream is read before the callback thread sees the first chunk.
    init(mock(serde_json::json!({"mock_response": "alpha beta gamma delta"})));
    let (make, rx) = done_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    for _ in 0..50 {
        let seen = seen.clone();
        llmr::stream_async(
            HELLO,
            move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
                false
            },
            make(),
        );
    }
    for _ in 0..50 {
        assert_eq!(recv(&rx).0.unwrap_err().status, Status::Cancelled);
    }
    assert_eq!(seen.load(Ordering::SeqCst), 50, "one chunk each, none after the stop");
}

#[test]
fn a_thousand_in_flight_from_one_thread_half_cancelled() {
    let _s = serial();
    init(mock(
        serde_json::json!({"mock_response": "slow answer", "mock_delay_ms": 1500}),
    ));
    let (make, rx) = done_channel();
    let start = Instant::now();
    let ids: Vec<u64> = (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                llmr::complete_async(HELLO, make())
            } else {
                llmr::stream_async(HELLO, |_| true, make())
            }
        })
        .collect();
    assert!(ids.iter().all(|&id| id != 0));
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        1000,
        "ids are unique"
    );
    assert!(
        llmr::global::in_flight() >= 900,
        "they are all in flight at once"
    );
    for id in ids.iter().step_by(2) {
        assert!(llmr::cancel(*id));
    }
    let (mut ok, mut cancelled) = (0, 0);
    for _ in 0..1000 {
        match recv(&rx).0 {
            Ok(_) => ok += 1,
            Err(e) if e.status == Status::Cancelled => {
                cancelled += 1;
                assert!(
                    start.elapsed() < Duration::from_millis(1400) || ok > 0,
                    "cancelled requests end at once, before the answers"
                );
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, cancelled), (500, 500));
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    assert_eq!(llmr::global::in_flight(), 0);
}

#[test]
fn cancel_ends_a_request_waiting_on_the_provider_at_once() {
    let _s = serial();
    let standin = StandIn::start();
    standin.always("slow", Reply::ok().delay(Duration::from_secs(30)));
    init(serde_json::json!({
        "global_llm_configs": [{"id": 1, "provider": "OPENAI", "model_name": "gpt-4o",
                                 "api_key": "sk-test", "api_base": standin.base("slow")}],
        "router_settings": {"retry_after": 0}
    }));
    let (make, rx) = done_channel();
    let id = llmr::complete_async(HELLO, make());
    let deadline = Instant::now() + Duration::from_secs(10);
    while standin.count("slow") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(standin.count("slow"), 1, "the request reached the provider");
    let t = Instant::now();
    assert!(llmr::cancel(id));
    let e = recv(&rx).0.unwrap_err();
    assert_eq!(e.status, Status::Cancelled);
    assert!(e.message.contains("llmr_cancel"), "{}", e.message);
    assert!(t.elapsed() < Duration::from_secs(5));
    llmr::shutdown();
}

#[test]
fn shutdown_cancels_in_flight_and_every_on_done_runs() {
    let _s = serial();
    init(mock(
        serde_json::json!({"mock_response": "late", "mock_delay_ms": 10_000}),
    ));
    let (make, rx) = done_channel();
    for _ in 0..50 {
        assert_ne!(llmr::complete_async(HELLO, make()), 0);
        assert_ne!(llmr::stream_async(HELLO, |_| true, make()), 0);
    }
    let t = Instant::now();
    llmr::shutdown();
    for _ in 0..100 {
        let e = recv(&rx).0.unwrap_err();
        assert_eq!(e.status, Status::Cancelled);
        assert!(e.message.contains("llmr_shutdown"), "{}", e.message);
    }
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_blocked_callback_does_not_stall_other_requests() {
    let _s = serial();
    let standin = StandIn::start();
    init(serde_json::json!({
        "global_llm_configs": [{"id": 1, "provider": "OPENAI", "model_name": "gpt-4o",
                                 "api_key": "sk-test", "api_base": standin.base("ok")}],
        "router_settings": {"retry_after": 0}
    }));
    let (release_tx, release_rx) = channel::<()>();
    let (make, rx) = done_channel();
    // The first request's on_done blocks the callback thread until released.
    let blocker = make();
    llmr::complete_async(HELLO, move |r| {
        release_rx.recv_timeout(Duration::from_secs(20)).ok();
        blocker(r)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while standin.count("ok") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..50 {
        llmr::complete_async(HELLO, make());
    }
    // Every request still reaches the provider and completes there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while standin.count("ok") < 51 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(standin.count("ok"), 51);
    assert!(
        rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "callbacks wait their turn"
    );
    release_tx.send(()).unwrap();
    for _ in 0..51 {
        recv(&rx).0.unwrap();
    }
    llmr::shutdown();
}

#[test]
fn a_callback_may_call_the_library() {
    let _s = serial();
    init(mock(serde_json::json!({"mock_response": "nested"})));
    let (tx, rx) = channel();
    llmr::complete_async(HELLO, move |r| {
        r.unwrap();
        // A blocking call from the callback thread neither deadlocks nor fails.
        let inner = llmr::complete_json(HELLO);
        tx.send(inner.map(|_| ())).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(20)).unwrap().unwrap();
}
