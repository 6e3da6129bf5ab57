//! HTTPS providers that speak HTTP/2: more requests in flight than one connection may carry.
//!
//! A server caps the streams of one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS), and
//! one reqwest client queues the requests past the cap instead of opening another connection.
//! llmr spreads the shared runtime's requests over clients of at most 100 each: every request
//! reaches the server at once. The server here is a real HTTP/2 server (the `h2` crate) over
//! TLS with ALPN, whose certificate llmr trusts through `SSL_CERT_FILE`.

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
    connections: AtomicUsize,
    /// Streams answered so far (each holds until all are or `HOLD` passed).
    opened: AtomicUsize,
    open_now: AtomicUsize,
    most_open: AtomicUsize,
}

/// An HTTP/2-only TLS server on 127.0.0.1 answering every request with an OpenAI-style SSE
/// stream: the first chunk at once, the rest when `hold_for` streams have been opened (or
/// after `HOLD`). Stopped when dropped.
fn http2_server(hold_for: usize) -> (common::tls::Server, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    let server = common::tls::serve(&[b"h2"], move |tls| {
        let c = c.clone();
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
                tokio::spawn(answer(respond, c.clone(), hold_for));
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

fn deployment(port: u16) -> serde_json::Value {
    common::openai("h2", &format!("https://127.0.0.1:{port}/v1"), json!({}))
}

#[test]
fn more_async_streams_than_one_connection_carries_all_reach_the_server_at_once() {
    trust_the_test_certificate();
    let _g = common::lock();
    let (server, counts) = http2_server(STREAMS);
    let port = server.port;
    common::init(
        vec![deployment(port)],
        common::settings(json!({"num_retries": 0, "timeout": 30})),
    );
    let (tx, rx) = channel();
    for i in 0..STREAMS {
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
    for _ in 0..STREAMS {
        let (r, chunks) = rx
            .recv_timeout(HOLD * 3)
            .expect("every stream ends in time");
        let resp: serde_json::Value =
            serde_json::from_str(&r.expect("the stream succeeds")).unwrap();
        assert_eq!(common::content(&resp), "one two");
        assert!(chunks >= 2, "chunks: {chunks}");
    }
    assert_eq!(
        counts.most_open.load(Ordering::SeqCst),
        STREAMS,
        "every stream was open at the server at once (HTTP/2 connections: {})",
        counts.connections.load(Ordering::SeqCst)
    );
    assert!(counts.connections.load(Ordering::SeqCst) >= 2);
    // Every request gave its place on its client back.
    assert!(common::eventually(
        Duration::from_secs(5),
        || llmr::global::http_client().pool().in_flight() == 0
    ));
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
