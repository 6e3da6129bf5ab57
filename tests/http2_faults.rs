//! An HTTPS provider that speaks HTTP/2 failing the ways HTTP/2 lets it: a stream refused
//! (RST_STREAM REFUSED_STREAM, "not processed, send it again"), a stream reset after its answer
//! began, a graceful shutdown (GOAWAY, as every front end does when it is redeployed), a
//! connection dropped with streams open. Each is an upstream failure the router retries and
//! fails over, never a hang or a crash, and the requests after it go out on a new connection.
//! The server is a real HTTP/2 server (the `h2` crate) over TLS, its certificate trusted
//! through `SSL_CERT_FILE`; what it does to each stream is scripted by the stream's number.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

/// Set before the library builds its first HTTP client (the file is read once).
fn trust_the_test_certificate() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        std::env::set_var(
            "SSL_CERT_FILE",
            common::tls::dir().join("selfsigned-cert.pem"),
        )
    });
}

/// What the server does to one stream.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Answers it: a completion, or an SSE stream of "one " "two" when it asked to stream.
    None,
    /// Resets it unanswered with REFUSED_STREAM.
    Refuse,
    /// Sends the answer's head (and, to a stream, its first chunk), then resets it with
    /// INTERNAL_ERROR.
    ResetAfterHead,
    /// Answers it, then shuts its connection down gracefully (GOAWAY; the connection closes
    /// once its open streams are answered).
    AnswerThenGoAway,
    /// Drops the whole connection (TCP close, no GOAWAY) without answering.
    DropConnection,
}

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    streams: AtomicUsize,
}

/// An HTTP/2-only TLS server doing `script(n)` to its n-th stream (from 1, over all its
/// connections). Stopped when dropped.
fn server(script: fn(usize) -> Fault) -> (common::tls::Server, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    let server = common::tls::serve(&[b"h2"], move |tls| {
        let c = c.clone();
        async move {
            let Ok(mut conn) = h2::server::handshake(tls).await else {
                return;
            };
            c.connections.fetch_add(1, Ordering::SeqCst);
            let mut shutting_down = false;
            while let Some(Ok((req, respond))) = conn.accept().await {
                let n = c.streams.fetch_add(1, Ordering::SeqCst) + 1;
                match script(n) {
                    Fault::DropConnection => return,
                    Fault::AnswerThenGoAway => {
                        tokio::spawn(answer(req, respond, Fault::None));
                        if !shutting_down {
                            conn.graceful_shutdown();
                            shutting_down = true;
                        }
                    }
                    fault => {
                        tokio::spawn(answer(req, respond, fault));
                    }
                }
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

async fn answer(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    fault: Fault,
) {
    let mut body = req.into_body();
    let mut request = Vec::new();
    while let Some(Ok(data)) = body.data().await {
        let _ = body.flow_control().release_capacity(data.len());
        request.extend_from_slice(&data);
    }
    if fault == Fault::Refuse {
        respond.send_reset(h2::Reason::REFUSED_STREAM);
        return;
    }
    let stream = serde_json::from_slice::<serde_json::Value>(&request)
        .map(|r| r["stream"] == true)
        .unwrap_or(false);
    let head = http::Response::builder()
        .status(200)
        .header(
            "content-type",
            if stream {
                "text/event-stream"
            } else {
                "application/json"
            },
        )
        .body(())
        .unwrap();
    let Ok(mut out) = respond.send_response(head, false) else {
        return;
    };
    let (first, rest) = if stream {
        (
            sse(json!({"role": "assistant", "content": "one "}), None),
            format!(
                "{}{}data: [DONE]\n\n",
                sse(json!({"content": "two"}), None),
                sse(json!({}), Some("stop"))
            ),
        )
    } else {
        let whole = json!({"id": "chatcmpl-h2", "object": "chat.completion", "created": 1,
            "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "one two"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
        (String::new(), whole.to_string())
    };
    if !first.is_empty() && out.send_data(Bytes::from(first), false).is_err() {
        return;
    }
    if fault == Fault::ResetAfterHead {
        // Let the head (and first chunk) reach the client before the reset.
        tokio::time::sleep(Duration::from_millis(50)).await;
        out.send_reset(h2::Reason::INTERNAL_ERROR);
        return;
    }
    let _ = out.send_data(Bytes::from(rest), true);
}

fn deployment(id: &str, port: u16) -> serde_json::Value {
    common::openai(id, &format!("https://127.0.0.1:{port}/v1"), json!({}))
}

/// A completion through `llmr_complete_async`, waited for.
fn complete_async(req: &serde_json::Value) -> Result<serde_json::Value, serde_json::Value> {
    let (tx, rx) = channel();
    let id = llmr::complete_async(&req.to_string(), move |r| {
        let _ = tx.send(r);
    });
    assert_ne!(id, 0);
    match rx
        .recv_timeout(Duration::from_secs(20))
        .expect("on_done runs")
    {
        Ok(s) => Ok(serde_json::from_str(&s).unwrap()),
        Err(e) => Err(serde_json::from_str(&e.to_json()).unwrap()),
    }
}

/// A completion, answered or failed (the error JSON).
type Complete = fn(&serde_json::Value) -> Result<serde_json::Value, serde_json::Value>;

/// Both ways of completing: blocking (whose exchange with an HTTP/2 origin runs on the shared
/// runtime once the origin is known) and async.
fn both_ways() -> [(&'static str, Complete); 2] {
    [("blocking", common::complete), ("async", complete_async)]
}

/// A refused stream was not processed: it is sent again (the HTTP/2 client does it on its own,
/// within the router's one attempt) and the caller sees only the answer.
#[test]
fn a_refused_stream_is_sent_again() {
    trust_the_test_certificate();
    let _g = common::lock();
    // Every odd stream refused: each call's first request.
    let (s, counts) = server(|n| {
        if n % 2 == 1 {
            Fault::Refuse
        } else {
            Fault::None
        }
    });
    common::init(
        vec![deployment("a", s.port)],
        common::settings(json!({"num_retries": 0})),
    );
    for (how, complete) in both_ways() {
        for i in 0..3 {
            let before = counts.streams.load(Ordering::SeqCst);
            let resp = complete(&common::ask(how)).unwrap_or_else(|e| panic!("{how} {i}: {e}"));
            assert_eq!(common::content(&resp), "one two", "{how}");
            let sent = counts.streams.load(Ordering::SeqCst) - before;
            assert_eq!(sent, 2, "{how} {i}: refused, then answered");
        }
    }
    llmr::shutdown();
}

/// A stream reset after its answer began is an upstream failure: a completion fails over to
/// the other deployment; a stream that already delivered a chunk ends with an `upstream` error
/// (its chunks cannot be taken back), blocking and async alike.
#[test]
fn a_stream_reset_after_its_head_fails_over_or_ends_the_stream_with_an_error() {
    trust_the_test_certificate();
    let _g = common::lock();
    let (bad, _) = server(|_| Fault::ResetAfterHead);
    let (good, _) = server(|_| Fault::None);
    // `a` (the resetting one) drawn first.
    common::init(
        common::first_then_priced(
            &format!("https://127.0.0.1:{}/v1", bad.port),
            &format!("https://127.0.0.1:{}/v1", good.port),
        ),
        common::settings(json!({"num_retries": 1, "allowed_fails": 100})),
    );
    for (how, complete) in both_ways() {
        let resp = complete(&common::ask(how)).unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_eq!(common::content(&resp), "one two", "{how}");
        assert_eq!(common::served_by(&resp), "b", "{how}: {resp}");
    }

    llmr::shutdown();
    common::init(
        vec![deployment("a", bad.port)],
        common::settings(json!({"num_retries": 0, "allowed_fails": 100})),
    );
    let solo = common::ask("reset mid-stream");
    let streamed = common::stream(&solo, None);
    assert_eq!(
        streamed.text(),
        "one ",
        "the chunk before the reset was delivered"
    );
    let e = streamed.result.expect_err("the stream was reset");
    assert_eq!(common::status(&e), "upstream", "{e}");

    let (tx, rx) = channel();
    let chunks = Arc::new(AtomicUsize::new(0));
    let seen = chunks.clone();
    let id = llmr::stream_async(
        &solo.to_string(),
        move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            true
        },
        move |r| {
            let _ = tx.send(r);
        },
    );
    assert_ne!(id, 0);
    let e = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("on_done runs")
        .expect_err("the stream was reset");
    assert_eq!(e.status.name(), "upstream", "{}", e.to_json());
    assert!(chunks.load(Ordering::SeqCst) >= 1);
    llmr::shutdown();
}

/// A server shutting its connections down gracefully after each answer (GOAWAY): every call
/// succeeds at its first attempt, each on a connection the server still serves.
#[test]
fn a_graceful_shutdown_moves_the_next_requests_to_a_new_connection() {
    trust_the_test_certificate();
    let _g = common::lock();
    let (s, counts) = server(|_| Fault::AnswerThenGoAway);
    common::init(
        vec![deployment("a", s.port)],
        common::settings(json!({"num_retries": 0})),
    );
    const CALLS: usize = 6;
    for (how, complete) in both_ways() {
        for i in 0..CALLS {
            let resp = complete(&common::ask(how)).unwrap_or_else(|e| panic!("{how} {i}: {e}"));
            assert_eq!(common::content(&resp), "one two");
        }
        let s = common::stream(&common::ask(how), None);
        assert!(s.result.is_ok(), "{how}: {:?}", s.result);
        assert_eq!(s.text(), "one two");
    }
    let connections = counts.connections.load(Ordering::SeqCst);
    assert!(
        connections > CALLS,
        "{connections} connections for {} calls, each connection shut down after its answer",
        2 * (CALLS + 1)
    );
    llmr::shutdown();
}

/// A connection dropped with a request on it is an upstream failure the router retries, and
/// the retry (and every call after) goes out on a new connection.
#[test]
fn a_dropped_connection_is_retried_on_a_new_one() {
    trust_the_test_certificate();
    let _g = common::lock();
    // Every other stream's connection dropped.
    let (s, counts) = server(|n| {
        if n % 2 == 1 {
            Fault::DropConnection
        } else {
            Fault::None
        }
    });
    common::init(
        vec![deployment("a", s.port)],
        common::settings(json!({"num_retries": 2, "allowed_fails": 100})),
    );
    for (how, complete) in both_ways() {
        for i in 0..3 {
            let resp = complete(&common::ask(how)).unwrap_or_else(|e| panic!("{how} {i}: {e}"));
            assert_eq!(common::content(&resp), "one two");
        }
    }
    assert!(counts.connections.load(Ordering::SeqCst) >= 6);
    llmr::shutdown();
}

/// With no retries left, a dropped connection is an `upstream` error that says what happened.
#[test]
fn a_dropped_connection_with_no_retry_left_says_so() {
    trust_the_test_certificate();
    let _g = common::lock();
    let (s, _) = server(|_| Fault::DropConnection);
    common::init(
        vec![deployment("a", s.port)],
        common::settings(json!({"num_retries": 0, "allowed_fails": 100})),
    );
    for (how, complete) in both_ways() {
        let e = complete(&common::ask(how)).expect_err("the server drops every connection");
        assert_eq!(common::status(&e), "upstream", "{how}: {e}");
        let message = e["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("connection"), "{how}: {e}");
        assert!(!message.contains(common::KEY), "{how}: {e}");
    }
    llmr::shutdown();
}
