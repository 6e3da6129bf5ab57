//! Secrets: API keys never leave the library except as the credential sent to their own
//! provider. Not in error JSON, not in logs at any level, not in `router_info` or `stats` —
//! also when a provider echoes the key back in its error body, and for keys read from
//! `os.environ/NAME`. Certificate verification is always on for https, and a redirect is never
//! followed (so an Authorization header cannot be carried to another host).
//!
//! The log check runs the scenario in a child process (this same test binary, re-run with
//! `LLMR_LOG=trace`): logs go to stderr, and the parent reads all of it.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use llmr_testkit::{Reply, StandIn};
use serde_json::{json, Value};

const KEY_OPENAI: &str = "sk-SECRET-openai-inline-7c1e9a4b2d";
const KEY_ANTHROPIC: &str = "sk-SECRET-anthropic-inline-5f8b3c0e6a";
const KEY_ENV_CUSTOM: &str = "sk-SECRET-custom-env-2b7d4e9f1c";
const KEY_ENV_MISTRAL: &str = "sk-SECRET-mistral-env-9e3a6c2f8b";
const ENV_CUSTOM: &str = "LLMR_SECRETS_TEST_CUSTOM_KEY";
const ENV_MISTRAL: &str = "LLMR_SECRETS_TEST_MISTRAL_KEY";
const ALL_KEYS: [&str; 4] = [KEY_OPENAI, KEY_ANTHROPIC, KEY_ENV_CUSTOM, KEY_ENV_MISTRAL];

/// Set in the child process that runs the scenario.
const CHILD: &str = "LLMR_SECRETS_TEST_CHILD";

/// One provider of the scenario: its config entry's shape and the key it must send.
struct Provider {
    name: &'static str,
    key_json: &'static str,
    key: &'static str,
    anthropic: bool,
}

const PROVIDERS: [Provider; 4] = [
    Provider {
        name: "OPENAI",
        key_json: KEY_OPENAI,
        key: KEY_OPENAI,
        anthropic: false,
    },
    Provider {
        name: "ANTHROPIC",
        key_json: KEY_ANTHROPIC,
        key: KEY_ANTHROPIC,
        anthropic: true,
    },
    Provider {
        name: "CUSTOM",
        key_json: "os.environ/LLMR_SECRETS_TEST_CUSTOM_KEY",
        key: KEY_ENV_CUSTOM,
        anthropic: false,
    },
    Provider {
        name: "MISTRAL",
        key_json: "os.environ/LLMR_SECRETS_TEST_MISTRAL_KEY",
        key: KEY_ENV_MISTRAL,
        anthropic: false,
    },
];

fn entry(p: &Provider, standin: &StandIn, tenant: &str) -> Value {
    let base = if p.anthropic {
        standin.anthropic_base(tenant)
    } else {
        standin.base(tenant)
    };
    json!({"id": format!("{}-{tenant}", p.name.to_lowercase()), "provider": p.name,
           "model_name": "standin-model", "api_key": p.key_json, "api_base": base})
}

/// Replies that echo the key back, in the provider's error shape or as plain text.
fn echoing_replies(p: &Provider) -> Vec<(&'static str, Reply)> {
    let k = p.key;
    let shaped = |status: u16, kind: &str| {
        let body = if p.anthropic {
            json!({"type": "error", "error": {"type": kind, "message": format!("invalid x-api-key: {k}")}})
        } else {
            json!({"error": {"message": format!("Incorrect API key provided: {k}."), "type": kind, "code": kind}})
        };
        Reply::body(status, body.to_string())
    };
    vec![
        ("echo401", shaped(401, "authentication_error")),
        ("echo403", shaped(403, "permission_error")),
        ("echo400", shaped(400, "invalid_request_error")),
        ("echo404", shaped(404, "not_found_error")),
        ("echo429", shaped(429, "rate_limit_error")),
        (
            "echo500",
            Reply::body(500, format!("internal error for key {k}"))
                .header("content-type", "text/plain"),
        ),
        (
            "echo200",
            Reply::body(200, format!("<html>your key {k} is not valid here</html>"))
                .header("content-type", "text/html"),
        ),
    ]
}

/// Prints one output of the library for the parent to scan.
fn out(what: &str, s: &str) {
    println!("OUT {what}: {s}");
}

fn run_both(what: &str) -> (Result<String, llmr::Error>, Result<String, llmr::Error>) {
    let req = json!({"messages": [{"role": "user", "content": "hi"}], "timeout": 1}).to_string();
    let c = llmr::complete_json(&req);
    match &c {
        Ok(s) => out(&format!("{what} complete"), s),
        Err(e) => out(&format!("{what} complete error"), &e.to_json()),
    }
    let s = llmr::stream_json(&req, |chunk| {
        out(&format!("{what} chunk"), chunk);
        true
    });
    match &s {
        Ok(r) => out(&format!("{what} stream"), r),
        Err(e) => out(&format!("{what} stream error"), &e.to_json()),
    }
    for (name, view) in [("info", llmr::router_info()), ("stats", llmr::stats())] {
        out(&format!("{what} {name}"), &view.expect("initialised"));
    }
    (c, s)
}

/// Retries only where there is another deployment to fail over to: a retry of the only one
/// waits out a backoff and shows nothing new.
fn init(entries: Vec<Value>) {
    let retries = u32::from(entries.len() > 1);
    let cfg = json!({"global_llm_configs": entries,
                     "router_settings": {"num_retries": retries, "retry_after": 0, "cooldown_time": 1, "allowed_fails": 0}});
    llmr::init(&cfg.to_string()).unwrap_or_else(|e| panic!("init: {}", e.to_json()));
}

/// The scenario, in the child: every failure path of every provider, each output printed.
fn scenario() {
    let _g = common::lock();
    let standin = StandIn::start();
    for p in &PROVIDERS {
        // A success, to prove the key is really in use on the wire.
        init(vec![entry(p, &standin, "ok")]);
        let (c, s) = run_both(&format!("{} ok", p.name));
        assert!(
            c.is_ok() && s.is_ok(),
            "{}: the success case failed",
            p.name
        );
        let sent = standin.last_request("ok").expect("the stand-in was called");
        let header = if p.anthropic {
            "x-api-key"
        } else {
            "authorization"
        };
        let want = if p.anthropic {
            p.key.to_owned()
        } else {
            format!("Bearer {}", p.key)
        };
        assert!(
            sent.header(header) == Some(want.as_str()),
            "{}: the key did not reach the provider as {header}",
            p.name
        );
        llmr::shutdown();

        for (tenant, reply) in echoing_replies(p) {
            standin.always(tenant, reply);
            init(vec![entry(p, &standin, tenant)]);
            let (c, s) = run_both(&format!("{} {tenant}", p.name));
            assert!(c.is_err() && s.is_err(), "{} {tenant}: accepted", p.name);
            llmr::shutdown();
        }
        for tenant in [
            "e503",
            "garbage",
            "truncated",
            "midstreamerror",
            "reset",
            "hang",
        ] {
            init(vec![entry(p, &standin, tenant)]);
            let (c, _) = run_both(&format!("{} {tenant}", p.name));
            assert!(c.is_err(), "{} {tenant}: accepted", p.name);
            llmr::shutdown();
        }
    }

    // All at once: failover and cooldowns across providers (warn logs), then the views.
    let mut entries = Vec::new();
    for p in &PROVIDERS {
        standin.always("echo429", echoing_replies(p).remove(4).1);
        entries.push(entry(p, &standin, "echo429"));
        entries.push(entry(p, &standin, "echo401"));
        entries.push(entry(p, &standin, "ok"));
    }
    // An entry that is skipped (a warning) though it carries a key.
    entries.push(json!({"provider": "NOPE", "model_name": "x", "api_key": KEY_OPENAI}));
    init(entries);
    for i in 0..6 {
        let _ = run_both(&format!("mixed {i}")); // outputs for the scan; outcomes vary
    }
    llmr::shutdown();

    // Config errors that involve keys name the field or the variable, never the key.
    for cfg in [
        json!({"global_llm_configs": [{"provider": "NOPE", "model_name": "x", "api_key": KEY_OPENAI}]}),
        json!({"global_llm_configs": [{"provider": "OPENAI", "model_name": "x", "api_key": KEY_OPENAI, "rpm": "many"}]}),
        json!({"global_llm_configs": [{"provider": "OPENAI", "model_name": "x", "api_key": "os.environ/LLMR_SECRETS_TEST_UNSET"}]}),
    ] {
        let e = llmr::init(&cfg.to_string()).expect_err("an unusable config");
        out("config error", &e.to_json());
    }
    println!("SCENARIO DONE");
}

#[test]
fn no_key_in_errors_logs_info_or_stats_at_trace_level() {
    if std::env::var_os(CHILD).is_some() {
        scenario();
        return;
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "no_key_in_errors_logs_info_or_stats_at_trace_level",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("LLMR_LOG", "trace")
        .env(ENV_CUSTOM, KEY_ENV_CUSTOM)
        .env(ENV_MISTRAL, KEY_ENV_MISTRAL)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child");
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let end = std::time::Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            panic!("the scenario ran past 240 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let all = format!("{stdout}\n{stderr}");
    for k in ALL_KEYS {
        // Said without the key, so that a failure does not print it either.
        let n = all.matches(k).count();
        assert!(
            n == 0,
            "a key appears {n} time(s) in the scenario's output or logs"
        );
    }
    assert!(
        status.success() && stdout.contains("SCENARIO DONE"),
        "the scenario failed:\n{}\n{}",
        tail(&stdout),
        tail(&stderr)
    );
    // The logs were on and were read: every level the library writes appears.
    for level in ["warn", "info", "debug"] {
        let tag = format!("\"level\":\"{level}\"");
        assert!(
            stderr.contains(&tag),
            "no {level} log line in:\n{}",
            tail(&stderr)
        );
    }
    // Echoed keys were redacted, not dropped with their message.
    assert!(all.contains("[REDACTED]"), "no redaction seen");
    for want in [
        "\"status\":\"auth\"",
        "\"status\":\"rate_limited\"",
        "\"status\":\"upstream\"",
        "\"status\":\"bad_request\"",
        "\"status\":\"timeout\"",
    ] {
        assert!(stdout.contains(want), "no {want} error in the scenario");
    }
}

fn tail(s: &str) -> &str {
    let mut start = s.len().saturating_sub(8000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

// ---------------------------------------------------------------------------------------------
// Redirects

#[test]
fn a_redirect_is_not_followed_and_the_key_goes_nowhere_else() {
    let _g = common::lock();
    let provider = StandIn::start();
    let elsewhere = StandIn::start();
    for code in [301, 302, 303, 307, 308] {
        let target = format!("{}/chat/completions", elsewhere.base("sink"));
        provider.always(
            "moved",
            Reply::body(code, "").header("location", target.as_str()),
        );
        let cfg = json!({"global_llm_configs": [{"id": "r", "provider": "OPENAI", "model_name": "m",
                         "api_key": KEY_OPENAI, "api_base": provider.base("moved")}],
                         "router_settings": {"num_retries": 0}});
        llmr::init(&cfg.to_string()).unwrap();
        let req = common::ask("hi").to_string();
        for r in [llmr::complete_json(&req), llmr::stream_json(&req, |_| true)] {
            let e = r.expect_err("a redirect is an error");
            assert_eq!(e.status, llmr::Status::Upstream, "{code}: {}", e.message);
            assert_eq!(e.http_status, Some(code));
            assert!(
                e.message.contains("redirect") && e.message.contains("127.0.0.1"),
                "{code}: {}",
                e.message
            );
        }
        llmr::shutdown();
        assert!(
            provider.count("moved") >= 2,
            "{code}: the provider was not called"
        );
    }
    assert_eq!(elsewhere.total(), 0, "a redirect was followed");
}

// ---------------------------------------------------------------------------------------------
// TLS

/// A TLS server on 127.0.0.1 with a self-signed certificate (tests/data/tls): it counts the
/// handshakes that complete and the bytes received after them.
struct SelfSignedServer {
    tls: common::tls::Server,
    handshakes: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
}

fn self_signed_server() -> SelfSignedServer {
    let handshakes = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let (h, r) = (handshakes.clone(), received.clone());
    let tls = common::tls::serve(&[], move |mut tls| {
        let (h, r) = (h.clone(), r.clone());
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            use tokio::io::AsyncReadExt;
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await
            {
                r.fetch_add(n, Ordering::SeqCst);
            }
        }
    });
    SelfSignedServer {
        tls,
        handshakes,
        received,
    }
}

#[test]
fn https_with_an_untrusted_certificate_is_refused_before_anything_is_sent() {
    let _g = common::lock();
    let server = self_signed_server();
    let cfg = json!({"global_llm_configs": [{"id": "tls", "provider": "OPENAI", "model_name": "m",
                     "api_key": KEY_OPENAI, "api_base": format!("https://127.0.0.1:{}/v1", server.tls.port)}],
                     "router_settings": {"num_retries": 0, "timeout": 10}});
    llmr::init(&cfg.to_string()).unwrap();
    let req = common::ask("hi").to_string();
    // Async requests too: the first one starts a probe of the origin for HTTP/2
    // (src/http2_origins.rs), which must refuse the certificate as well; the second waits for
    // the probe's answer.
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..2 {
        let tx = tx.clone();
        let id = llmr::complete_async(&req, move |r| {
            let _ = tx.send(r);
        });
        assert_ne!(id, 0);
    }
    let mut answers: Vec<_> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(20)).expect("in time"))
        .collect();
    for r in [
        answers.pop().unwrap(),
        answers.pop().unwrap(),
        llmr::complete_json(&req),
        llmr::stream_json(&req, |_| true),
    ] {
        let e = r.expect_err("an untrusted certificate is refused");
        assert_eq!(e.status, llmr::Status::Upstream, "{}", e.message);
        assert!(!e.message.contains(KEY_OPENAI));
    }
    llmr::shutdown();
    assert_eq!(server.handshakes.load(Ordering::SeqCst), 0);
    assert_eq!(
        server.received.load(Ordering::SeqCst),
        0,
        "bytes reached the server"
    );

    // The server itself works: a client that trusts its certificate completes the handshake
    // (so the refusal above was the certificate check, nothing else).
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots
        .add(
            std::fs::read(common::tls::dir().join("selfsigned-cert.der"))
                .unwrap()
                .into(),
        )
        .unwrap();
    let client = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.tls.port))
            .await
            .unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .expect("a client that trusts the certificate connects");
        use tokio::io::AsyncWriteExt;
        tls.write_all(b"ping").await.unwrap();
        tls.flush().await.unwrap();
    });
    assert!(common::eventually(Duration::from_secs(5), || server
        .handshakes
        .load(Ordering::SeqCst)
        == 1));
}

/// No code path can switch certificate checks off: the source holds none of reqwest's or
/// rustls's switches for it.
#[test]
fn no_switch_to_skip_certificate_checks_is_in_the_source() {
    fn scan(dir: &std::path::Path, hits: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                scan(&p, hits);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for bad in [
                    "danger_accept_invalid_certs",
                    "danger_accept_invalid_hostnames",
                    "dangerous()",
                    "ServerCertVerifier",
                    "tls_built_in_root_certs(false)",
                ] {
                    if text.contains(bad) {
                        hits.push(format!("{}: {bad}", p.display()));
                    }
                }
            }
        }
    }
    let mut hits = Vec::new();
    scan(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut hits,
    );
    assert!(hits.is_empty(), "{hits:?}");
}
