//! Blocking calls run on the calling thread's own runtime, with its own connections: those
//! connections must behave like the shared ones — an idle one the server closed is replaced,
//! not handed a request that then fails.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;

const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;

/// An OpenAI-compatible server that keeps a connection alive for only `idle` between
/// requests, then closes it (as uvicorn does after 5 s). Counts connections and requests.
struct ShortKeepAlive {
    port: u16,
    connections: Arc<AtomicUsize>,
    /// Connections accepted and not yet closed (by either side).
    open: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl ShortKeepAlive {
    fn start(idle: Duration) -> ShortKeepAlive {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (c, o, r) = (connections.clone(), open.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                c.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let (o, r) = (o.clone(), r.clone());
                std::thread::spawn(move || {
                    serve(conn, idle, &r);
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        ShortKeepAlive {
            port,
            connections,
            open,
            requests,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

fn serve(conn: TcpStream, idle: Duration, requests: &AtomicUsize) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        // The first line of the next request, within `idle` of the last answer.
        out.set_read_timeout(Some(idle)).unwrap();
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(n) if n > 0 => {}
            _ => return, // idle too long, or the client left: close
        }
        out.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut length = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            ANSWER.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(ANSWER.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn an_idle_connection_the_server_closed_is_replaced_not_failed() {
    let _g = lock();
    let server = ShortKeepAlive::start(Duration::from_millis(100));
    init(
        vec![openai("a", &server.base(), json!({}))],
        settings(json!({"num_retries": 0})),
    );
    for round in 0..3 {
        let resp = complete(&ask("hi")).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(content(&resp), "hi there");
        assert_eq!(attempts(&resp), 1, "round {round}: {resp}");
        // Twice the server's keep-alive: it has closed the connection by the next round.
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        3,
        "a fresh connection each round"
    );
    let a = stats_of("a");
    let failures = a["failures"].as_object().unwrap();
    assert!(failures.values().all(|n| n == 0), "no attempt failed: {a}");

    // Back to back, within the keep-alive, the connection is reused.
    let before = server.connections.load(Ordering::SeqCst);
    for _ in 0..5 {
        complete(&ask("hi")).unwrap();
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), before + 1);
}

/// `threads` threads each making `calls` blocking calls, every one answered.
fn calls_from_threads(threads: usize, calls: usize) {
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..calls {
                    let resp = complete(&ask("hi")).unwrap();
                    assert_eq!(content(&resp), "hi there");
                }
            });
        }
    });
}

#[test]
fn blocking_calls_from_many_threads_each_get_their_answer() {
    let _g = lock();
    let server = ShortKeepAlive::start(Duration::from_secs(5));
    init(
        vec![openai("a", &server.base(), json!({}))],
        settings(json!({"num_retries": 0})),
    );
    calls_from_threads(8, 25);
    assert_eq!(server.requests.load(Ordering::SeqCst), 200);
    // One connection per calling thread (each has its own runtime and pool), reused.
    assert!(
        server.connections.load(Ordering::SeqCst) <= 8,
        "{} connections",
        server.connections.load(Ordering::SeqCst)
    );
}

#[test]
fn llmr_shutdown_closes_the_connections_blocking_calls_left_open() {
    let _g = lock();
    // A long keep-alive: only llmr can close these connections within the test.
    let server = ShortKeepAlive::start(Duration::from_secs(60));
    init(
        vec![openai("a", &server.base(), json!({}))],
        settings(json!({"num_retries": 0})),
    );
    calls_from_threads(4, 5);
    let open = server.open.load(Ordering::SeqCst);
    assert!(open >= 1, "the calls' connections stay open between calls");
    llmr::shutdown();
    // The server sees each one closed (it reads EOF) soon after; bounded wait.
    let mut waited = 0;
    while server.open.load(Ordering::SeqCst) > 0 && waited < 100 {
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    assert_eq!(
        server.open.load(Ordering::SeqCst),
        0,
        "{open} connections were open; llmr_shutdown left some"
    );
}
