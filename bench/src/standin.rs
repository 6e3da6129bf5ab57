//! The provider stand-in the rows talk to: a minimal hyper HTTP/1.1 server on 127.0.0.1 that
//! answers every chat-completion call with a precomputed OpenAI body, or an SSE stream of
//! [`CHUNKS`] chunks when the request says `"stream": true`, as fast as it can.
//!
//! A path whose first segment is `hold-N` streams its first chunk and then holds the stream
//! open until N such streams are open at once, and a second more (or 60 s): the 10,000-streams row.
//! A connection that opens with a TLS handshake is served over TLS with HTTP/2 only (ALPN
//! `h2`, the certificate of tests/data/tls, at most 100 streams per connection as the big API
//! fronts allow): the `-h2` rows, as providers are reached over HTTPS.
//! `GET /__cpu` answers this process's CPU microseconds (user + system), so that the driver can
//! print what the stand-in spent on each row.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Notify;

/// Content chunks in each streamed answer (plus a final one with `finish_reason` and usage).
pub const CHUNKS: usize = 20;

struct Canned {
    completion: Bytes,
    stream_head: Bytes,
    stream_rest: Bytes,
    holding: AtomicUsize,
    released: Notify,
}

fn completion_body() -> String {
    serde_json::json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000,
        "model": "bench-model",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hello! How can I help you today?"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}
    })
    .to_string()
}

fn sse_event(delta: serde_json::Value, finish: Option<&str>, usage: bool) -> String {
    let mut c = serde_json::json!({
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    if usage {
        c["usage"] = serde_json::json!({"prompt_tokens": 9, "completion_tokens": CHUNKS, "total_tokens": 9 + CHUNKS});
    }
    format!("data: {c}\n\n")
}

fn canned() -> Canned {
    let head = sse_event(
        serde_json::json!({"role": "assistant", "content": "w0 "}),
        None,
        false,
    );
    let mut rest = String::new();
    for i in 1..CHUNKS {
        rest += &sse_event(
            serde_json::json!({"content": format!("w{i} ")}),
            None,
            false,
        );
    }
    rest += &sse_event(serde_json::json!({}), Some("stop"), true);
    rest += "data: [DONE]\n\n";
    Canned {
        completion: Bytes::from(completion_body()),
        stream_head: Bytes::from(head),
        stream_rest: Bytes::from(rest),
        holding: AtomicUsize::new(0),
        released: Notify::new(),
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(b: Bytes, content_type: &'static str) -> Response<Body> {
    Response::builder()
        .header("content-type", content_type)
        .body(Full::new(b).boxed())
        .expect("static response")
}

fn wants_stream(body: &[u8]) -> bool {
    let find = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    find(b"\"stream\":true") || find(b"\"stream\": true")
}

/// `hold-N` as the first path segment: the number of streams to hold open together (each N-th
/// one releases the N before it, so that one stand-in serves several such rows).
fn hold_target(path: &str) -> Option<usize> {
    path.trim_start_matches('/')
        .split('/')
        .next()?
        .strip_prefix("hold-")?
        .parse()
        .ok()
        .filter(|&n| n > 0)
}

async fn held_stream(c: Arc<Canned>, target: usize) -> Response<Body> {
    let frames = futures_util::stream::unfold(0u8, move |step| {
        let c = c.clone();
        async move {
            match step {
                0 => Some((Ok(Frame::data(c.stream_head.clone())), 1)),
                1 => {
                    let released = c.released.notified();
                    if (c.holding.fetch_add(1, Ordering::SeqCst) + 1) % target == 0 {
                        // All open: hold them a second more, so that the client's RSS with
                        // every stream open can be read before they all end together.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        c.released.notify_waiters();
                    } else {
                        let _ = tokio::time::timeout(Duration::from_secs(60), released).await;
                    }
                    Some((Ok(Frame::data(c.stream_rest.clone())), 2))
                }
                _ => None,
            }
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .expect("static response")
}

async fn answer(c: Arc<Canned>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/__cpu" {
        return Ok(full(
            Bytes::from(crate::measure::cpu_micros().to_string()),
            "text/plain",
        ));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if !wants_stream(&body) {
        return Ok(full(c.completion.clone(), "application/json"));
    }
    if let Some(target) = hold_target(&path) {
        return Ok(held_stream(c, target).await);
    }
    let mut all = Vec::with_capacity(c.stream_head.len() + c.stream_rest.len());
    all.extend_from_slice(&c.stream_head);
    all.extend_from_slice(&c.stream_rest);
    Ok(full(Bytes::from(all), "text/event-stream"))
}

/// The certificate of the test suite's TLS server (tests/data/tls): a client trusts it through
/// `SSL_CERT_FILE` ([`CERT_PEM`]).
fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/tls");
    let cert = std::fs::read(dir.join("selfsigned-cert.der")).expect("tests/data/tls");
    let key = std::fs::read(dir.join("selfsigned-key.der")).expect("tests/data/tls");
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.into()],
        tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
    )
    .expect("the test certificate");
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// The PEM of the stand-in's certificate, for `SSL_CERT_FILE`.
pub const CERT_PEM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/tls/selfsigned-cert.pem"
);

/// Serves until killed; prints the port on stdout first.
pub fn serve() {
    crate::measure::raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr").port());
        let c = Arc::new(canned());
        let tls = tls_acceptor();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (c, tls) = (c.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| answer(c.clone(), req));
                let mut first = [0u8; 1];
                // 0x16: a TLS record of type handshake (a ClientHello).
                if matches!(tcp.peek(&mut first).await, Ok(1) if first[0] == 0x16) {
                    let Ok(stream) = tls.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .max_concurrent_streams(100)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                }
            });
        }
    });
}
