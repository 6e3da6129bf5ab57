//! Context windows: the `auto-large` fallback, the pre-call check, the overflow error, and what
//! `router_info` shows of them.

mod common;

use common::*;
use llmr_testkit::{Reply, StandIn};
use serde_json::{json, Value};

const FIRST: f64 = 1e6;
const SECOND: f64 = 1e3;
const LAST: f64 = 1e-3;

/// About 750 tokens for the stand-in (characters / 4) and for llmr's estimate.
fn long_prompt() -> Value {
    ask(&"word ".repeat(600))
}

fn window(extra: Value, max_input_tokens: u64) -> Value {
    let mut e = extra;
    e["litellm_params"] = json!({"max_input_tokens": max_input_tokens});
    e
}

#[test]
fn an_overflow_falls_back_to_a_larger_window() {
    let _g = lock();
    let s = StandIn::start();
    // `a` claims 4000 tokens (so the pre-call check lets the prompt through) but overflows at 500.
    init(
        vec![
            openai(
                "a",
                &s.base("ctx-500"),
                window(json!({"weight": FIRST}), 4000),
            ),
            openai("b", &s.base("ok"), window(json!({"weight": LAST}), 100_000)),
        ],
        settings(json!({})),
    );
    let resp = complete(&long_prompt()).unwrap();
    assert_eq!(served_by(&resp), "b");
    assert_eq!(attempts(&resp), 2);
    assert_eq!(resp["llmr"]["fallbacks"], json!(["context_window:a"]));
    assert_eq!(s.count("ctx-500"), 1);
    assert_eq!(stats_of("a")["failures"]["context_overflow"], 1);
    assert_eq!(
        stats_of("a")["cooling_down"],
        false,
        "an overflow says nothing of the deployment's health"
    );

    // A short prompt still goes to `a`.
    let resp = complete(&ask("hi")).unwrap();
    assert_eq!(served_by(&resp), "a");

    // Streams fall back the same way.
    let st = stream(&long_prompt(), None);
    let resp = st.result.as_ref().unwrap();
    assert_eq!(served_by(resp), "b");
    assert_eq!(st.text(), content(resp));
    assert!(content(resp).starts_with("echo: word"));
}

#[test]
fn an_overflow_with_no_larger_window_left_is_context_overflow() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![
            openai(
                "a",
                &s.base("ctx-500-a"),
                window(json!({"weight": FIRST}), 4000),
            ),
            openai(
                "b",
                &s.base("ctx-600-b"),
                window(json!({"weight": SECOND}), 8000),
            ),
            openai("c", &s.base("ok-c"), window(json!({"weight": LAST}), 2000)),
        ],
        settings(json!({})),
    );
    let e = complete(&long_prompt()).unwrap_err();
    assert_eq!(status(&e), "context_overflow", "{e}");
    assert_eq!(e["error"]["code"], 4);
    assert_eq!(e["error"]["http_status"], 400);
    assert_eq!(e["error"]["attempts"], 2);
    assert_eq!(e["error"]["deployment_id"], "b");
    assert_eq!(s.count("ctx-500-a"), 1);
    assert_eq!(s.count("ctx-600-b"), 1);
    assert_eq!(
        s.count("ok-c"),
        0,
        "a smaller window is no fallback for an overflow"
    );
    llmr::shutdown();

    // The largest window overflowing first: nothing is larger, nothing else is tried.
    s.reset();
    init(
        vec![
            openai(
                "a",
                &s.base("ctx-500-a"),
                window(json!({"weight": LAST}), 4000),
            ),
            openai(
                "b",
                &s.base("ctx-600-b"),
                window(json!({"weight": FIRST}), 8000),
            ),
        ],
        settings(json!({})),
    );
    let e = complete(&long_prompt()).unwrap_err();
    assert_eq!(status(&e), "context_overflow", "{e}");
    assert_eq!(e["error"]["attempts"], 1);
    assert_eq!(s.count("ctx-500-a"), 0);
    llmr::shutdown();

    // A deployment of unknown window that overflows: the provider's word is final.
    s.reset();
    init(
        vec![openai("a", &s.base("overflow"), json!({}))],
        settings(json!({})),
    );
    let st = stream(&ask("hi"), None);
    let e = st.result.unwrap_err();
    assert_eq!(status(&e), "context_overflow", "{e}");
    assert!(st.chunks.is_empty());
    assert_eq!(s.count("overflow"), 1, "an overflow is never retried");
}

#[test]
fn the_pre_call_check_skips_windows_that_are_clearly_too_small() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![
            openai(
                "small",
                &s.base("small"),
                window(json!({"weight": FIRST}), 100),
            ),
            openai(
                "big",
                &s.base("big"),
                window(json!({"weight": LAST}), 100_000),
            ),
        ],
        settings(json!({})),
    );
    let resp = complete(&long_prompt()).unwrap();
    assert_eq!(served_by(&resp), "big");
    assert_eq!(attempts(&resp), 1);
    assert_eq!(
        s.count("small"),
        0,
        "the small deployment never saw the request"
    );

    // Tools count towards the prompt.
    let mut with_tools = ask("hi");
    with_tools["tools"] = json!([{"type": "function", "function": {
        "name": "lookup", "description": "x".repeat(2000), "parameters": {"type": "object"}}}]);
    let resp = complete(&with_tools).unwrap();
    assert_eq!(served_by(&resp), "big");
    assert_eq!(s.count("small"), 0);

    let resp = complete(&ask("hi")).unwrap();
    assert_eq!(served_by(&resp), "small");
    llmr::shutdown();

    // When no window looks large enough, the largest is tried and the provider decides.
    s.reset();
    init(
        vec![
            openai("s1", &s.base("s1"), window(json!({"weight": FIRST}), 100)),
            openai("s2", &s.base("s2"), window(json!({"weight": LAST}), 200)),
        ],
        settings(json!({})),
    );
    let resp = complete(&long_prompt()).unwrap();
    assert_eq!(served_by(&resp), "s2");
    assert_eq!(s.count("s1"), 0);
}

#[test]
fn auto_large_is_asked_for_by_name() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![
            openai(
                "small",
                &s.base("small"),
                window(json!({"weight": FIRST}), 1000),
            ),
            openai(
                "big",
                &s.base("big"),
                window(json!({"weight": LAST}), 100_000),
            ),
        ],
        settings(json!({})),
    );
    for _ in 0..5 {
        let mut r = ask("hi");
        r["model"] = json!("auto-large");
        assert_eq!(served_by(&complete(&r).unwrap()), "big");
    }
    assert_eq!(s.count("small"), 0);
    let mut r = ask("hi");
    r["model"] = json!("auto");
    assert_eq!(served_by(&complete(&r).unwrap()), "small");
    let mut r = ask("hi");
    r["model"] = json!("gpt-nope");
    let e = complete(&r).unwrap_err();
    assert_eq!(status(&e), "invalid_argument", "{e}");
}

fn groups_of(info: &Value, id: &str) -> Vec<String> {
    info["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {info}"))["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn router_info_shows_auto_large_only_when_windows_differ() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![
            openai("small", &s.base("small"), window(json!({}), 4000)),
            openai("big", &s.base("big"), window(json!({}), 100_000)),
            // From the model table: gpt-4o has 128000.
            openai("table", &s.base("t"), json!({"model_name": "gpt-4o"})),
            mock("unknown", json!({})),
        ],
        settings(json!({})),
    );
    assert_eq!(
        llmr::model_count(),
        4,
        "the auto-large copies are not counted"
    );
    let info = common::info();
    assert_eq!(groups_of(&info, "small"), ["auto"]);
    assert_eq!(groups_of(&info, "big"), ["auto", "auto-large"]);
    assert_eq!(groups_of(&info, "table"), ["auto", "auto-large"]);
    assert_eq!(groups_of(&info, "unknown"), ["auto"]);
    assert_eq!(
        info["context_window_fallbacks"],
        json!([{"auto": ["auto-large"]}])
    );
    assert_eq!(info["profile"]["max_input_tokens"], 4000);
    let table = info["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "table")
        .unwrap()
        .clone();
    assert_eq!(table["max_input_tokens"], 128_000, "{table}");
    assert_eq!(table["model"], "openai/gpt-4o");
    assert_eq!(table["api_base"], s.base("t"));
    llmr::shutdown();

    // Equal windows: no auto-large, no fallback.
    init(
        vec![
            openai("x", &s.base("x"), window(json!({}), 8000)),
            openai("y", &s.base("y"), window(json!({}), 8000)),
        ],
        settings(json!({})),
    );
    let info = common::info();
    assert_eq!(groups_of(&info, "x"), ["auto"]);
    assert_eq!(groups_of(&info, "y"), ["auto"]);
    assert_eq!(info["context_window_fallbacks"], json!([]));
    assert_eq!(info["profile"]["max_input_tokens"], 8000);
    let mut r = ask("hi");
    r["model"] = json!("auto-large");
    assert_eq!(
        status(&complete(&r).unwrap_err()),
        "invalid_argument",
        "no auto-large group"
    );
}

fn openai_overflow_body() -> String {
    json!({"error": {
        "message": "This model's maximum context length is 500 tokens. However, your messages resulted in 754 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
    .to_string()
}

#[test]
fn overflows_are_told_apart_by_status_and_body() {
    let _g = lock();
    let s = StandIn::start();
    let config = |s: &StandIn| {
        vec![
            openai("a", &s.base("a"), window(json!({"weight": FIRST}), 4000)),
            openai("b", &s.base("b"), window(json!({"weight": LAST}), 100_000)),
        ]
    };

    // A 413 with an overflow body is an overflow: fall back to the larger window.
    s.script("a", [Reply::body(413, openai_overflow_body())]);
    init(config(&s), settings(json!({})));
    let resp = complete(&ask("hi")).unwrap();
    assert_eq!(served_by(&resp), "b");
    assert_eq!(resp["llmr"]["fallbacks"], json!(["context_window:a"]));
    llmr::shutdown();

    // An overflow reported as an error event inside a 200 stream, before any content.
    s.reset();
    let event = format!("data: {}\n\n", openai_overflow_body());
    s.script(
        "a",
        [Reply::body(200, event).header("content-type", "text/event-stream")],
    );
    init(config(&s), settings(json!({})));
    let st = stream(&ask("hi"), None);
    let resp = st.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(served_by(resp), "b");
    assert_eq!(resp["llmr"]["fallbacks"], json!(["context_window:a"]));
    llmr::shutdown();

    // A 429 is never an overflow, whatever its text says.
    s.reset();
    s.script(
        "a",
        [Reply::body(429, openai_overflow_body()).header("retry-after", "10")],
    );
    init(config(&s), settings(json!({})));
    let resp = complete(&ask("hi")).unwrap();
    assert_eq!(served_by(&resp), "b");
    assert_eq!(resp["llmr"]["fallbacks"], json!(["retry:a"]));
    assert_eq!(stats_of("a")["cooldown"]["status"], "rate_limited");
    llmr::shutdown();

    // An output-token limit is a bad request, not an overflow: no fallback.
    s.reset();
    s.script(
        "a",
        [Reply::body(
            400,
            json!({"error": {"message": "max_tokens is too large: 100000. This model supports at most 16384 completion tokens, whereas you provided 100000.",
                             "type": "invalid_request_error", "param": "max_tokens", "code": "invalid_value"}})
            .to_string(),
        )],
    );
    init(config(&s), settings(json!({})));
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "bad_request", "{e}");
    assert_eq!(s.count("b"), 0);
}

/// A server that refuses every request with `answer` as soon as its head is in and closes the
/// connection without reading the body, as Go's net/http does past 256 KiB: its side shut, then
/// closed 500 ms later (so that the answer is not lost to the reset the unread body causes).
/// Returns its base URL and the requests it refused.
fn refusing_server(answer: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = refused.clone();
    std::thread::spawn(move || {
        // Bounded: the test makes two requests.
        for io in listener.incoming().take(4) {
            let Ok(mut io) = io else { return };
            let mut head = Vec::new();
            let mut chunk = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match io.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            r.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                io,
                "HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = io.shutdown(std::net::Shutdown::Write);
            std::thread::sleep(std::time::Duration::from_millis(500));
            // Dropped with the body unread: the kernel resets the connection.
        }
    });
    (base, refused)
}

#[test]
fn an_overflow_answered_before_the_prompt_was_read_still_falls_back() {
    let _g = lock();
    let s = StandIn::start();
    let (refusing, refused) = refusing_server(openai_overflow_body());
    // Windows large enough for the pre-call check to let a 12 MiB prompt through.
    init(
        vec![
            openai(
                "a",
                &refusing,
                window(json!({"weight": FIRST}), 100_000_000),
            ),
            openai(
                "b",
                &s.base("ok"),
                window(json!({"weight": LAST}), 200_000_000),
            ),
        ],
        settings(json!({})),
    );
    // More than loopback sockets buffer (~10 MB): the answer comes while it is being sent (and
    // `b` echoes it back in one stream event, under the 16 MiB an event may have).
    let prompt = ask(&"x".repeat(12 << 20));
    let resp = complete(&prompt).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(served_by(&resp), "b");
    assert_eq!(resp["llmr"]["fallbacks"], json!(["context_window:a"]));
    assert_eq!(stats_of("a")["failures"]["context_overflow"], 1);

    // The same from a stream.
    let st = stream(&prompt, None);
    let resp = st.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(served_by(resp), "b");
    assert_eq!(resp["llmr"]["fallbacks"], json!(["context_window:a"]));
    assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 2);
    llmr::shutdown();
}
