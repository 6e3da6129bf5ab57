//! With an HTTP proxy configured, plain-HTTP requests are not sent by llmr's own HTTP/1.1 client
//! (which speaks to origins directly) but by reqwest, which sends them through the proxy. Its
//! own test binary: the proxy variables are read once, before the first request.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::json;

#[test]
fn plain_http_requests_go_through_the_configured_proxy() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let lines = seen.clone();
    // The proxy: answers every request itself, noting its request line.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let lines = lines.clone();
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                loop {
                    let mut first = String::new();
                    if r.read_line(&mut first).unwrap_or(0) == 0 {
                        return;
                    }
                    lines.lock().unwrap().push(first.trim_end().to_owned());
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    r.read_exact(&mut body).unwrap();
                    let answer = json!({"id": "chatcmpl-p", "object": "chat.completion",
                        "created": 1, "model": "m", "choices": [{"index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "via the proxy"}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})
                    .to_string();
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                }
            });
        }
    });
    std::env::set_var("HTTP_PROXY", format!("http://127.0.0.1:{port}"));
    let _g = common::lock();
    // A host that does not resolve: only the proxy can reach it.
    common::init(
        vec![common::openai(
            "behind-proxy",
            "http://model-server.invalid:11434/v1",
            json!({}),
        )],
        common::settings(json!({"num_retries": 0, "timeout": 10})),
    );
    let blocking = common::complete(&common::ask("hi")).expect("answered by the proxy");
    assert_eq!(common::content(&blocking), "via the proxy");
    // The async call: the shared runtime's clients, the blocking one a caller runtime's.
    let (tx, rx) = std::sync::mpsc::channel();
    let id = llmr::complete_async(&common::ask("hi").to_string(), move |r| {
        let _ = tx.send(r);
    });
    assert_ne!(id, 0);
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("answered in time")
        .expect("answered by the proxy");
    let r: serde_json::Value = serde_json::from_str(&r).unwrap();
    assert_eq!(common::content(&r), "via the proxy");
    llmr::shutdown();
    let lines = seen.lock().unwrap().clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in &lines {
        assert_eq!(
            l, "POST http://model-server.invalid:11434/v1/chat/completions HTTP/1.1",
            "the proxy gets the request in absolute form"
        );
    }
}
