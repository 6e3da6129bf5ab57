//! HTTPS providers that speak HTTP/2: more requests in flight than one connection may carry,
//! and a burst of them to an origin llmr has not talked to yet.
//!
//! A server caps the streams of one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS), and
//! one reqwest client queues the requests past the cap instead of opening another connection.
//! llmr spreads the shared runtime's requests over clients of at most 100 each: every request
//! reaches the server at once. And since a client knows a server speaks HTTP/2 only after a
//! handshake, llmr asks each HTTPS origin once (src/http2_origins.rs) so that a burst does not
//! open a connection per request. The server here is a real HTTP/2 server (the `h2` crate)
//! over TLS with ALPN, whose certificate llmr trusts through `SSL_CERT_FILE`; origins that
//! speak HTTP/1.1 only are served by a small HTTP/1.1 server over the same TLS.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

/// What the server allows on one connection: the smallest limit RFC 9113 recommends, and the
/// most llmr puts on one client.
const SERVER_STREAM_LIMIT: u32 = 100;
/// Streams held open together, past one connection's limit.
const STREAMS: usize = 150;
/// How long the server holds a stream waiting for all of them to be open.
const HOLD: Duration = Duration::from_secs(10);

/// Set before the library builds its first HTTP client (the file is read once): every test of
/// this binary calls it first.
fn trust_the_test_certificate() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        std::env::set_var(
            "SSL_CERT_FILE",
            common::tls::dir().join("selfsigned-cert.pem"),
        )
    });
}

#[derive(Default)]
struct Counts {
    /// TLS handshakes completed (llmr's probe included).
    handshakes: AtomicUsize,
    /// HTTP/2 connections (a completed HTTP/2 handshake after the TLS one).
    connections: AtomicUsize,
    /// Streams answered so far (each holds until all are or `HOLD` passed).
    opened: AtomicUsize,
    open_now: AtomicUsize,
    most_open: AtomicUsize,
    /// Streams the client reset while the server held them (a request given up).
    resets: AtomicUsize,
}

/// How the server answers.
#[derive(Clone, Copy)]
enum Answer {
    /// An OpenAI-style SSE stream: the first chunk at once, the rest after the hold.
    Sse,
    /// One `chat.completion` JSON after the hold.
    Json,
}

/// An HTTP/2-only TLS server on 127.0.0.1 answering every request with an OpenAI-style SSE
/// stream: the first chunk at once, the rest when `hold_for` streams have been opened (or
/// after `HOLD`). Stopped when dropped.
fn http2_server(hold_for: usize) -> (common::tls::Server, Arc<Counts>) {
    http2_server_answering(hold_for, Answer::Sse)
}

fn http2_server_answering(hold_for: usize, kind: Answer) -> (common::tls::Server, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    let server = common::tls::serve(&[b"h2"], move |tls| {
        let c = c.clone();
        c.handshakes.fetch_add(1, Ordering::SeqCst);
        async move {
            let Ok(mut conn) = h2::server::Builder::new()
                .max_concurrent_streams(SERVER_STREAM_LIMIT)
                .handshake::<_, Bytes>(tls)
                .await
            else {
                return;
            };
            c.connections.fetch_add(1, Ordering::SeqCst);
            while let Some(Ok((_req, respond))) = conn.accept().await {
                match kind {
                    Answer::Sse => tokio::spawn(answer(respond, c.clone(), hold_for)),
                    Answer::Json => tokio::spawn(answer_json(respond, c.clone(), hold_for)),
                };
            }
        }
    });
    (server, counts)
}

fn sse(delta: serde_json::Value, finish: Option<&str>) -> String {
    let c = json!({"id": "chatcmpl-h2", "object": "chat.completion.chunk", "created": 1,
                   "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

async fn answer(mut respond: h2::server::SendResponse<Bytes>, c: Arc<Counts>, hold_for: usize) {
    let head = http::Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(())
        .unwrap();
    let Ok(mut body) = respond.send_response(head, false) else {
        return;
    };
    let first = sse(json!({"role": "assistant", "content": "one "}), None);
    if body.send_data(Bytes::from(first), false).is_err() {
        return;
    }
    let now = c.open_now.fetch_add(1, Ordering::SeqCst) + 1;
    c.most_open.fetch_max(now, Ordering::SeqCst);
    c.opened.fetch_add(1, Ordering::SeqCst);
    let until = Instant::now() + HOLD;
    while c.opened.load(Ordering::SeqCst) < hold_for && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rest = format!(
        "{}{}data: [DONE]\n\n",
        sse(json!({"content": "two"}), None),
        sse(json!({}), Some("stop"))
    );
    let _ = body.send_data(Bytes::from(rest), true);
    c.open_now.fetch_sub(1, Ordering::SeqCst);
}

/// One `chat.completion` once `hold_for` streams have been opened (or after `HOLD`; a stream
/// past the first `hold_for` is held that long); a stream the client resets meanwhile is
/// counted and not answered.
async fn answer_json(
    mut respond: h2::server::SendResponse<Bytes>,
    c: Arc<Counts>,
    hold_for: usize,
) {
    let now = c.open_now.fetch_add(1, Ordering::SeqCst) + 1;
    c.most_open.fetch_max(now, Ordering::SeqCst);
    let number = c.opened.fetch_add(1, Ordering::SeqCst) + 1;
    let until = Instant::now() + HOLD;
    while (number > hold_for || c.opened.load(Ordering::SeqCst) < hold_for)
        && Instant::now() < until
    {
        let reset = std::future::poll_fn(|cx| respond.poll_reset(cx));
        if tokio::time::timeout(Duration::from_millis(5), reset)
            .await
            .is_ok()
        {
            c.resets.fetch_add(1, Ordering::SeqCst);
            c.open_now.fetch_sub(1, Ordering::SeqCst);
            return;
        }
    }
    let answer = json!({"id": "chatcmpl-h2", "object": "chat.completion", "created": 1,
        "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "one two"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
    let head = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    if let Ok(mut body) = respond.send_response(head, false) {
        let _ = body.send_data(Bytes::from(answer.to_string()), true);
    }
    c.open_now.fetch_sub(1, Ordering::SeqCst);
}

fn deployment(port: u16) -> serde_json::Value {
    common::openai("h2", &format!("https://127.0.0.1:{port}/v1"), json!({}))
}

/// Starts `n` async streams at once against a fresh HTTP/2 server that holds each until all
/// are open; checks each ends with the whole answer and every place on a client is given back.
fn streams_held_open_together(n: usize) -> Arc<Counts> {
    let (server, counts) = http2_server(n);
    let port = server.port;
    common::init(
        vec![deployment(port)],
        common::settings(json!({"num_retries": 0, "timeout": 30})),
    );
    let (tx, rx) = channel();
    for i in 0..n {
        let tx = tx.clone();
        let chunks = Arc::new(AtomicUsize::new(0));
        let seen = chunks.clone();
        let id = llmr::stream_async(
            &common::ask(&format!("stream {i}")).to_string(),
            move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
                true
            },
            move |r| {
                let _ = tx.send((r, chunks.load(Ordering::SeqCst)));
            },
        );
        assert_ne!(id, 0);
    }
    for _ in 0..n {
        let (r, chunks) = rx
            .recv_timeout(HOLD * 3)
            .expect("every stream ends in time");
        let resp: serde_json::Value =
            serde_json::from_str(&r.expect("the stream succeeds")).unwrap();
        assert_eq!(common::content(&resp), "one two");
        assert!(chunks >= 2, "chunks: {chunks}");
    }
    // Every request gave its place on its client back.
    assert!(common::eventually(
        Duration::from_secs(5),
        || llmr::global::http_client().in_flight() == 0
    ));
    counts
}

#[test]
fn more_async_streams_than_one_connection_carries_all_reach_the_server_at_once() {
    trust_the_test_certificate();
    let _g = common::lock();
    let counts = streams_held_open_together(STREAMS);
    assert_eq!(
        counts.most_open.load(Ordering::SeqCst),
        STREAMS,
        "every stream was open at the server at once (HTTP/2 connections: {})",
        counts.connections.load(Ordering::SeqCst)
    );
    assert!(counts.connections.load(Ordering::SeqCst) >= 2);
}

/// A burst to an origin llmr has not talked to yet: the streams share as few connections as
/// the server's stream limit allows, instead of one connection each (what a client that has
/// not finished a first handshake does). The first request goes out before llmr knows the
/// protocol, on a connection of its own; the others wait for the probe's answer and then
/// share HTTP/2 connections of at most 100 streams.
#[test]
fn a_burst_to_a_new_https_origin_shares_a_few_http2_connections() {
    trust_the_test_certificate();
    let _g = common::lock();
    const BURST: usize = 400;
    let counts = streams_held_open_together(BURST);
    assert_eq!(counts.most_open.load(Ordering::SeqCst), BURST);
    let fewest = 1 + (BURST - 1).div_ceil(SERVER_STREAM_LIMIT as usize);
    let connections = counts.connections.load(Ordering::SeqCst);
    assert!(
        connections <= fewest,
        "{BURST} streams opened {connections} HTTP/2 connections (at most {fewest} needed)"
    );
    // The probe's handshake is the only other one.
    assert!(counts.handshakes.load(Ordering::SeqCst) <= connections + 1);
}

/// An HTTP/1.1 server over TLS (ALPN `alpn`) answering every request with a completion, over
/// keep-alive connections. Stopped when dropped.
fn http1_server(alpn: &[&[u8]]) -> common::tls::Server {
    common::tls::serve(alpn, |tls| {
        common::tls::answer_completions(tls, "over HTTP/1.1", || async {})
    })
}

/// Origins that pick HTTP/1.1, or offer no ALPN at all, are served as before: a burst of
/// async requests (the ones after the first wait for the probe's answer) and a blocking one.
#[test]
fn https_origins_that_speak_only_http1_are_served_as_before() {
    trust_the_test_certificate();
    let _g = common::lock();
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let server = http1_server(alpn);
        common::init(
            vec![deployment(server.port)],
            common::settings(json!({"num_retries": 0, "timeout": 20})),
        );
        let (tx, rx) = channel();
        for i in 0..20 {
            let tx = tx.clone();
            let id =
                llmr::complete_async(&common::ask(&format!("ask {i}")).to_string(), move |r| {
                    let _ = tx.send(r);
                });
            assert_ne!(id, 0);
        }
        for _ in 0..20 {
            let r = rx.recv_timeout(Duration::from_secs(30)).expect("in time");
            let resp: serde_json::Value = serde_json::from_str(&r.expect("answered")).unwrap();
            assert_eq!(common::content(&resp), "over HTTP/1.1", "ALPN {alpn:?}");
        }
        let resp = common::complete(&common::ask("blocking")).expect("answered");
        assert_eq!(common::content(&resp), "over HTTP/1.1");
        llmr::shutdown();
    }
}

#[test]
fn a_blocking_call_trusts_the_certificates_of_ssl_cert_file_too() {
    trust_the_test_certificate();
    let _g = common::lock();
    let (server, _counts) = http2_server(1);
    let port = server.port;
    common::init(
        vec![deployment(port)],
        common::settings(json!({"num_retries": 0})),
    );
    let s = common::stream(&common::ask("hi"), None);
    assert!(s.result.is_ok(), "{:?}", s.result);
    assert_eq!(s.text(), "one two");
}

/// Blocking calls to an HTTPS origin that speaks HTTP/2 join the shared runtime's connections
/// once the probe (which the first call starts) has answered, instead of each calling thread's
/// runtime opening a connection of its own: 20 calls in flight at once, 2 connections (the
/// first call's own and the shared one), not 20.
#[test]
fn blocking_calls_to_an_http2_origin_share_its_connections() {
    const CALLS: usize = 20;
    trust_the_test_certificate();
    let _g = common::lock();
    let (server, counts) = http2_server(CALLS);
    common::init(
        vec![deployment(server.port)],
        common::settings(json!({"num_retries": 0, "timeout": 30})),
    );
    in_flight_together_on_few_connections(
        CALLS,
        &counts,
        |i| common::stream(&common::ask(&format!("{i}")), None),
        |s| {
            assert!(s.result.is_ok(), "{:?}", s.result);
            assert_eq!(s.text(), "one two");
        },
    );
    llmr::shutdown();
}

/// Runs `calls` blocking calls from as many threads against a server that holds each until all
/// are open: the first alone, until the probe it starts has answered, then the rest. Checks
/// each outcome with `check`, that all were in flight at once, and that they opened at most 3
/// HTTP/2 connections (the first call's own and the shared one), not one per thread.
fn in_flight_together_on_few_connections<T: Send + 'static>(
    calls: usize,
    counts: &Counts,
    call: impl Fn(usize) -> T + Send + Copy + 'static,
    check: impl Fn(T),
) {
    let start = |i: usize| std::thread::spawn(move || call(i));
    let mut running = vec![start(0)];
    assert!(common::eventually(Duration::from_secs(10), || counts
        .handshakes
        .load(Ordering::SeqCst)
        >= 2));
    std::thread::sleep(Duration::from_millis(200));
    running.extend((1..calls).map(start));
    for r in running {
        check(r.join().unwrap());
    }
    assert_eq!(
        counts.most_open.load(Ordering::SeqCst),
        calls,
        "all in flight at once"
    );
    let connections = counts.connections.load(Ordering::SeqCst);
    assert!(
        connections <= 3,
        "{calls} blocking calls opened {connections} HTTP/2 connections"
    );
}

/// Blocking completions to an HTTP/2 origin run whole on the shared runtime, where its
/// connection is: 20 in flight at once from 20 threads share it. One given up (its timeout)
/// resets its stream and gives its place on the client back, instead of holding one of the
/// connection's 100 streams until the server answers.
#[test]
fn blocking_completions_to_an_http2_origin_share_it_and_one_timed_out_lets_go() {
    const CALLS: usize = 20;
    trust_the_test_certificate();
    let _g = common::lock();
    let (server, counts) = http2_server_answering(CALLS, Answer::Json);
    common::init(
        vec![deployment(server.port)],
        common::settings(json!({"num_retries": 0, "timeout": 30})),
    );
    in_flight_together_on_few_connections(
        CALLS,
        &counts,
        |i| common::complete(&common::ask(&format!("{i}"))),
        |r| {
            let resp = r.expect("the completion succeeds");
            assert_eq!(common::content(&resp), "one two");
        },
    );

    // Held past its timeout (the server waits for more streams than will come).
    let mut held = common::ask("held");
    held["timeout"] = json!(1);
    let t = Instant::now();
    let e = common::complete(&held).expect_err("the server holds it past the timeout");
    assert_eq!(common::status(&e), "timeout", "{e}");
    assert!(t.elapsed() < HOLD, "{:?}", t.elapsed());
    assert!(
        common::eventually(Duration::from_secs(5), || counts
            .resets
            .load(Ordering::SeqCst)
            == 1),
        "the timed-out request's stream is reset"
    );
    assert!(common::eventually(
        Duration::from_secs(5),
        || llmr::global::http_client().in_flight() == 0
    ));
    llmr::shutdown();
}
