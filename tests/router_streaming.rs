//! Streaming: order and assembly, failover before the first chunk, no failover after it,
//! cancellation by the callback, idle timeouts, timings in the stats.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use llmr_testkit::{Reply, StandIn};
use serde_json::json;

const FIRST: f64 = 1e6;
const LAST: f64 = 1e-3;

#[test]
fn chunks_arrive_in_order_and_assemble_into_the_answer() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![openai("a", &s.base("ok"), json!({}))],
        settings(json!({})),
    );
    let st = stream(&ask("one two three four five"), None);
    let resp = st.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
    let pieces: Vec<&str> = st
        .chunks
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        pieces,
        ["echo: ", "one ", "two ", "three ", "four ", "five"],
        "in order, only chunks with content"
    );
    for c in &st.chunks {
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
    }
    assert_eq!(content(resp), "echo: one two three four five");
    assert_eq!(st.text(), content(resp));
    assert_eq!(resp["object"], "chat.completion");
    assert_eq!(resp["choices"][0]["message"]["role"], "assistant");
    assert_eq!(resp["choices"][0]["finish_reason"], "stop");
    assert!(
        resp["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
        "{resp}"
    );
    assert_eq!(resp["usage"]["completion_tokens"], 6, "{resp}");
    assert_eq!(served_by(resp), "a");
    assert_eq!(attempts(resp), 1);
    assert!(
        resp["llmr"]["time_to_first_chunk_ms"].as_f64().is_some(),
        "{resp}"
    );

    let sent = s.last_request("ok").unwrap();
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["stream_options"]["include_usage"], true);

    let a = stats_of("a");
    assert_eq!(a["successes"], 1, "{a}");
    assert!(
        a["time_to_first_chunk_ms"]["last"].as_f64().is_some(),
        "{a}"
    );
    assert!(a["time_to_first_chunk_ms"]["avg"].as_f64().is_some(), "{a}");
    assert!(a["connect_ms"]["last"].as_f64().is_some(), "{a}");
    assert!(a["latency_ms"]["last"].as_f64().is_some(), "{a}");
    assert_eq!(a["completion_tokens"], 6, "{a}");
}

#[test]
fn a_failure_before_the_first_chunk_fails_over() {
    let _g = lock();
    let s = StandIn::start();
    for tenant in [
        "errorfirst",
        "e500",
        "e429noretry",
        "reset",
        "resetmid",
        "garbage",
    ] {
        let ok = format!("ok-{tenant}");
        init(
            vec![
                openai("a", &s.base(tenant), json!({"weight": FIRST})),
                openai("b", &s.base(&ok), json!({"weight": LAST})),
            ],
            settings(json!({"retry_after": 5})),
        );
        let st = stream(&ask("hello world"), None);
        let resp = st
            .result
            .as_ref()
            .unwrap_or_else(|e| panic!("{tenant}: {e}"));
        assert_eq!(served_by(resp), "b", "{tenant}");
        assert_eq!(attempts(resp), 2, "{tenant}");
        assert_eq!(st.text(), "echo: hello world", "{tenant}");
        assert_eq!(content(resp), "echo: hello world", "{tenant}");
        assert_eq!(s.count(tenant), 1, "{tenant}");
        assert!(
            st.elapsed < Duration::from_secs(2),
            "{tenant}: {:?}",
            st.elapsed
        );
        llmr::shutdown();
    }
}

#[test]
fn a_failure_after_the_first_chunk_is_upstream_and_keeps_what_was_delivered() {
    let _g = lock();
    let s = StandIn::start();
    for (tenant, delivered) in [("midstreamerror", 1), ("truncated", 2)] {
        let ok = format!("ok-{tenant}");
        init(
            vec![
                openai("a", &s.base(tenant), json!({"weight": FIRST})),
                openai("b", &s.base(&ok), json!({"weight": LAST})),
            ],
            settings(json!({})),
        );
        let st = stream(&ask("alpha beta gamma"), None);
        let e = st.result.as_ref().unwrap_err();
        assert_eq!(status(e), "upstream", "{tenant}: {e}");
        assert_eq!(e["error"]["code"], 10, "{tenant}");
        assert_eq!(e["error"]["deployment_id"], "a", "{tenant}");
        assert_eq!(e["error"]["attempts"], 1, "{tenant}");
        assert_eq!(st.chunks.len(), delivered, "{tenant}");
        assert!(
            "echo: alpha beta gamma".starts_with(&st.text()),
            "{tenant}: {}",
            st.text()
        );
        assert_eq!(
            s.count(&ok),
            0,
            "{tenant}: no failover once chunks went out"
        );
        llmr::shutdown();
    }
}

#[test]
fn a_callback_that_stops_cancels_promptly() {
    let _g = lock();
    let s = StandIn::start();
    // 40 words, one every 100 ms: about 4 s when read to the end.
    let text: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    s.always(
        "slowstream",
        Reply::text(text.join(" ")).chunk_interval(Duration::from_millis(100)),
    );
    init(
        vec![openai("a", &s.base("slowstream"), json!({}))],
        settings(json!({})),
    );
    let st = stream(&ask("go"), Some(2));
    let e = st.result.as_ref().unwrap_err();
    assert_eq!(status(e), "cancelled", "{e}");
    assert_eq!(e["error"]["code"], 11);
    assert_eq!(st.chunks.len(), 2);
    assert!(st.elapsed < Duration::from_secs(1), "{:?}", st.elapsed);
    assert_eq!(
        s.count("slowstream"),
        1,
        "a cancelled stream is not retried"
    );
    assert_eq!(stats_of("a")["in_flight"], 0);
}

/// A provider that sends one chunk and then keeps the stream open, reporting when the client
/// closes the connection.
fn one_chunk_then_wait() -> (String, mpsc::Receiver<Instant>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/v1", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        // The request: head, then a Content-Length body.
        let mut buf = Vec::new();
        let mut b = [0u8; 4096];
        let body_start = loop {
            let n = c.read(&mut b).unwrap();
            assert!(n > 0, "the client went away before sending its request");
            buf.extend_from_slice(&b[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < body_start + len {
            let n = c.read(&mut b).unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&b[..n]);
        }
        let event = br#"data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"first "},"finish_reason":null}]}

"#;
        let mut out =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                .to_vec();
        out.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
        out.extend_from_slice(event);
        out.extend_from_slice(b"\r\n");
        c.write_all(&out).unwrap();
        // Wait (bounded) for the client to close.
        c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            match c.read(&mut b) {
                Ok(0) => {
                    let _ = tx.send(Instant::now());
                    return;
                }
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => {
                    let _ = tx.send(Instant::now());
                    return;
                }
            }
        }
    });
    (base, rx)
}

#[test]
fn a_cancelled_stream_drops_the_provider_connection() {
    let _g = lock();
    let (base, closed) = one_chunk_then_wait();
    init(vec![openai("a", &base, json!({}))], settings(json!({})));
    let st = stream(&ask("go"), Some(1));
    let stopped = Instant::now();
    assert_eq!(status(st.result.as_ref().unwrap_err()), "cancelled");
    assert_eq!(st.chunks.len(), 1);
    assert_eq!(st.text(), "first ");
    let at = closed
        .recv_timeout(Duration::from_secs(3))
        .expect("the provider connection stayed open after the cancel");
    assert!(
        at.saturating_duration_since(stopped) < Duration::from_millis(500),
        "closed {:?} after the cancel",
        at.saturating_duration_since(stopped)
    );
}

#[test]
fn timeouts_end_requests_and_streams() {
    let _g = lock();
    let s = StandIn::start();

    // The request's own timeout.
    init(
        vec![openai("a", &s.base("hang"), json!({}))],
        settings(json!({})),
    );
    let mut r = ask("hi");
    r["timeout"] = json!(0.5);
    let (res, took) = timed_complete(&r);
    let e = res.unwrap_err();
    assert_eq!(status(&e), "timeout", "{e}");
    assert_eq!(e["error"]["code"], 9);
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    let st = stream(&r, None);
    assert_eq!(status(st.result.as_ref().unwrap_err()), "timeout");
    assert!(st.elapsed < Duration::from_millis(1500), "{:?}", st.elapsed);
    llmr::shutdown();

    // The router's timeout.
    init(
        vec![openai("a", &s.base("hang"), json!({}))],
        settings(json!({"timeout": 0.5})),
    );
    let (res, took) = timed_complete(&ask("hi"));
    assert_eq!(status(&res.unwrap_err()), "timeout");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    llmr::shutdown();

    // A stream is bounded by its idle gaps, not by its length: gaps of 0.3 s under a 0.5 s
    // timeout, about 1.5 s in all.
    s.always(
        "gappy",
        Reply::text("a b").chunk_interval(Duration::from_millis(300)),
    );
    init(
        vec![openai(
            "a",
            &s.base("gappy"),
            json!({"litellm_params": {"timeout": 0.5}}),
        )],
        settings(json!({})),
    );
    let st = stream(&ask("hi"), None);
    let resp = st.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(content(resp), "a b");
    assert!(st.elapsed > Duration::from_millis(600), "{:?}", st.elapsed);
    llmr::shutdown();

    // A hanging deployment fails over.
    init(
        vec![
            openai(
                "a",
                &s.base("hang"),
                json!({"weight": FIRST, "litellm_params": {"timeout": 0.3}}),
            ),
            openai("b", &s.base("ok"), json!({"weight": LAST})),
        ],
        settings(json!({})),
    );
    let st = stream(&ask("hi"), None);
    assert_eq!(served_by(st.result.as_ref().unwrap()), "b");
    let (res, took) = timed_complete(&ask("hi"));
    assert_eq!(served_by(&res.unwrap()), "b");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn stream_timeout_bounds_streams_and_timeout_completions() {
    let _g = lock();
    let s = StandIn::start();
    // `stall`: two chunks, then silence; `hang`: no answer at all.
    let solo = |tenant: &str, params: serde_json::Value| {
        init(
            vec![openai(
                "a",
                &s.base(tenant),
                json!({"litellm_params": params}),
            )],
            settings(json!({"num_retries": 0})),
        );
    };

    // A stream's idle gap is `stream_timeout`, whatever `timeout` says.
    solo("stall-1", json!({"timeout": 30, "stream_timeout": 0.3}));
    let st = stream(&ask("one two three"), None);
    assert_eq!(status(st.result.as_ref().unwrap_err()), "timeout");
    assert_eq!(st.chunks.len(), 2);
    assert!(st.elapsed < Duration::from_secs(3), "{:?}", st.elapsed);
    llmr::shutdown();

    // A completion keeps `timeout`.
    solo("hang-2", json!({"timeout": 0.3, "stream_timeout": 30}));
    let (r, took) = timed_complete(&ask("hi"));
    assert_eq!(status(&r.unwrap_err()), "timeout");
    assert!(took < Duration::from_secs(3), "{took:?}");
    llmr::shutdown();

    // Without `stream_timeout`, a stream has `timeout`.
    solo("stall-3", json!({"timeout": 0.3}));
    let st = stream(&ask("one two three"), None);
    assert_eq!(status(st.result.as_ref().unwrap_err()), "timeout");
    assert!(st.elapsed < Duration::from_secs(3), "{:?}", st.elapsed);
}

#[test]
fn a_stream_that_outlasts_the_request_timeout_ends_as_a_timeout() {
    let _g = lock();
    let s = StandIn::start();
    // A chunk every 0.2 s for 30 words (6 s): no idle gap reaches `stream_timeout`, but the
    // whole stream outlasts the request's `timeout` of 1 s.
    s.always(
        "slow",
        Reply::text(["w"; 30].join(" ")).chunk_interval(Duration::from_millis(200)),
    );
    init(
        vec![openai(
            "a",
            &s.base("slow"),
            json!({"litellm_params": {"stream_timeout": 5}}),
        )],
        settings(json!({"timeout": 1})),
    );
    let st = stream(&ask("go"), None);
    let e = st.result.as_ref().unwrap_err();
    assert_eq!(status(e), "timeout", "{e}");
    assert!(!st.chunks.is_empty(), "chunks came before the deadline");
    assert!(st.chunks.len() < 30, "{} chunks", st.chunks.len());
    assert!(st.elapsed < Duration::from_secs(4), "{:?}", st.elapsed);
    assert_eq!(
        e["error"]["attempts"], 1,
        "no retry after chunks went out: {e}"
    );

    // A request's own `timeout` bounds its stream the same way.
    let mut req = ask("go");
    req["timeout"] = json!(0.6);
    llmr::shutdown();
    init(
        vec![openai(
            "a",
            &s.base("slow"),
            json!({"litellm_params": {"stream_timeout": 5}}),
        )],
        settings(json!({"timeout": 60})),
    );
    let st = stream(&req, None);
    assert_eq!(status(st.result.as_ref().unwrap_err()), "timeout");
    assert!(st.elapsed < Duration::from_secs(4), "{:?}", st.elapsed);
}

#[test]
fn an_idle_gap_after_the_first_chunk_is_a_timeout() {
    let _g = lock();
    let (base, closed) = one_chunk_then_wait();
    let s = StandIn::start();
    init(
        vec![
            openai(
                "a",
                &base,
                json!({"weight": FIRST, "litellm_params": {"timeout": 0.5}}),
            ),
            openai("b", &s.base("ok"), json!({"weight": LAST})),
        ],
        settings(json!({})),
    );
    let st = stream(&ask("go"), None);
    let e = st.result.as_ref().unwrap_err();
    assert_eq!(status(e), "timeout", "{e}");
    assert_eq!(e["error"]["attempts"], 1);
    assert_eq!(st.text(), "first ", "what was delivered stays delivered");
    assert!(
        st.elapsed >= Duration::from_millis(450) && st.elapsed < Duration::from_millis(1500),
        "{:?}",
        st.elapsed
    );
    assert_eq!(s.count("ok"), 0, "no failover once chunks went out");
    closed
        .recv_timeout(Duration::from_secs(3))
        .expect("the stalled connection was left open");
}

#[test]
fn usage_is_always_in_the_answer() {
    let _g = lock();
    let s = StandIn::start();
    // Cohere's compatible endpoint is not asked for stream usage, so the stand-in sends none.
    init(
        vec![openai(
            "a",
            &s.base("a"),
            json!({"provider": "COHERE", "model_name": "command-r"}),
        )],
        settings(json!({})),
    );
    let st = stream(&ask("one two three"), None);
    let resp = st.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert!(s
        .last_request("a")
        .unwrap()
        .body
        .get("stream_options")
        .is_none());
    assert_eq!(content(resp), "echo: one two three");
    let u = &resp["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap_or(0) > 0, "{resp}");
    assert!(u["completion_tokens"].as_u64().unwrap_or(0) > 0, "{resp}");
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );
    llmr::shutdown();

    // A completion without usage from a lax host.
    s.always(
        "lax",
        Reply::body(
            200,
            json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "four words of answer"},
                                "finish_reason": "stop"}]})
            .to_string(),
        ),
    );
    init(
        vec![openai("a", &s.base("lax"), json!({}))],
        settings(json!({})),
    );
    let resp = complete(&ask("one two three")).unwrap();
    assert!(
        resp["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0,
        "{resp}"
    );
    assert!(
        resp["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "{resp}"
    );
}
