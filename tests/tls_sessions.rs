//! TLS sessions are shared by every HTTP client llmr makes (src/tls_config.rs): a connection
//! opened by a new client — here a second caller runtime, made because the first one is busy
//! with another blocking call — resumes the session an earlier connection got, instead of a
//! full handshake with the certificate chain verified again.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_rustls::rustls::HandshakeKind;

#[test]
fn a_new_client_resumes_the_tls_session_of_an_earlier_connection() {
    // Before the library builds its first HTTP client (the file is read once).
    std::env::set_var(
        "SSL_CERT_FILE",
        common::tls::dir().join("selfsigned-cert.pem"),
    );
    let _g = common::lock();
    let handshakes: Arc<Mutex<Vec<Option<HandshakeKind>>>> = Arc::default();
    let requests = Arc::new(AtomicUsize::new(0));
    let (seen, asked) = (handshakes.clone(), requests.clone());
    let server = common::tls::serve(&[b"http/1.1"], move |tls| {
        // Counted when the connection carries its first request: llmr also asks a new HTTPS
        // origin whether it speaks HTTP/2, on a connection of its own (a handshake, no request).
        let mut kind = Some(tls.get_ref().1.handshake_kind());
        let (seen, asked) = (seen.clone(), asked.clone());
        // Answers are held until the third request has come (or 10 s passed): the second and
        // third are two blocking calls in flight together, so the second needs a caller
        // runtime (and a client, and a connection) of its own.
        common::tls::answer_completions(tls, "over TLS", move || {
            if let Some(k) = kind.take() {
                seen.lock().unwrap().push(k);
            }
            let asked = asked.clone();
            async move {
                let until = Instant::now() + Duration::from_secs(10);
                if asked.fetch_add(1, Ordering::SeqCst) + 1 >= 2 {
                    while asked.load(Ordering::SeqCst) < 3 && Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        })
    });
    let base = format!("https://127.0.0.1:{}/v1", server.port);
    common::init(
        vec![common::openai("tls", &base, json!({}))],
        common::settings(json!({"num_retries": 0, "timeout": 30})),
    );

    // One call: a caller runtime, its client and a connection with a full handshake, whose
    // session the client keeps.
    let first = common::complete(&common::ask("first")).expect("answered");
    assert_eq!(common::content(&first), "over TLS");
    // Two at once: one takes that runtime and its open connection back, the other a new one.
    let calls: Vec<_> = (0..2)
        .map(|i| std::thread::spawn(move || common::complete(&common::ask(&format!("{i}")))))
        .collect();
    for c in calls {
        let resp = c.join().unwrap().expect("answered");
        assert_eq!(common::content(&resp), "over TLS");
    }
    llmr::shutdown();
    drop(server);

    assert_eq!(requests.load(Ordering::SeqCst), 3);
    // Only the first connection paid for a full handshake (the pooled one is normally reused,
    // so there are two; a third would have resumed as well). The first may itself resume the
    // session of the probe's connection, when that one was quicker.
    let kinds = handshakes.lock().unwrap().clone();
    assert!(kinds.len() >= 2, "handshakes: {kinds:?}");
    assert!(
        kinds[1..]
            .iter()
            .all(|k| *k == Some(HandshakeKind::Resumed)),
        "every later connection resumes the session: {kinds:?}"
    );
}
