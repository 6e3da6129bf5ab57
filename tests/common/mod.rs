//! Helpers shared by the integration tests (`tests/router_*.rs` and more; `provider` for the
//! provider end-to-end files).
//!
//! The router is a process-wide singleton, so every test of a binary takes [`lock`] first: it
//! serialises the tests, starts from an uninitialised library, and shuts the router down when
//! the test ends (even when it panics).

#![allow(dead_code)]

pub mod provider;
pub mod tls;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A distinctive API key: it must never appear in anything the library gives back.
pub const KEY: &str = "sk-SECRET-llmr-it-0123456789abcdef";

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the test lock; shuts the router down on drop.
pub struct Serial {
    _g: MutexGuard<'static, ()>,
}

impl Drop for Serial {
    fn drop(&mut self) {
        llmr::shutdown();
    }
}

/// Serialises the tests of one binary and starts each from an uninitialised library.
pub fn lock() -> Serial {
    let g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    llmr::shutdown();
    Serial { _g: g }
}

/// An OpenAI-compatible deployment entry at `api_base`, with `extra` merged over it.
pub fn openai(id: &str, api_base: &str, extra: Value) -> Value {
    let mut e = json!({
        "id": id,
        "provider": "OPENAI",
        "model_name": format!("standin-{id}"),
        "api_key": KEY,
        "api_base": api_base,
    });
    merge(&mut e, extra);
    e
}

/// Per-token prices in `litellm_params`: $1 and $2 per million prompt / completion tokens.
pub fn priced() -> Value {
    json!({"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002})
}

/// Two deployments for failover tests: `a` at `a_base`, first in simple-shuffle's draw by far,
/// and `b` at `b_base`, drawn last and priced ([`priced`]).
pub fn first_then_priced(a_base: &str, b_base: &str) -> Vec<Value> {
    vec![
        openai("a", a_base, json!({"weight": 1e6})),
        openai(
            "b",
            b_base,
            json!({"weight": 1e-3, "litellm_params": priced()}),
        ),
    ]
}

/// A MOCK deployment entry with `extra` merged over it.
pub fn mock(id: &str, extra: Value) -> Value {
    let mut e = json!({
        "id": id,
        "provider": "MOCK",
        "model_name": format!("mock-{id}"),
        "litellm_params": {"mock_response": format!("hello from {id}")},
    });
    merge(&mut e, extra);
    e
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, extra) {
        for (k, v) in b {
            match (a.get_mut(&k), v) {
                (Some(Value::Object(old)), Value::Object(new)) => {
                    for (k2, v2) in new {
                        old.insert(k2, v2);
                    }
                }
                (_, v) => {
                    a.insert(k, v);
                }
            }
        }
    }
}

/// Fast router settings for tests, with `extra` merged over them.
pub fn settings(extra: Value) -> Value {
    let mut s = json!({
        "routing_strategy": "simple-shuffle",
        "num_retries": 3,
        "allowed_fails": 3,
        "cooldown_time": 30,
        "retry_after": 0,
        "timeout": 10,
    });
    merge(&mut s, extra);
    s
}

pub fn config(entries: Vec<Value>, settings: Value) -> String {
    json!({"global_llm_configs": entries, "router_settings": settings}).to_string()
}

/// Initialises the router or fails the test with the error.
pub fn init(entries: Vec<Value>, settings: Value) {
    let cfg = config(entries, settings);
    if let Err(e) = llmr::init(&cfg) {
        panic!("init failed: {}", e.to_json());
    }
}

/// A request with one user message.
pub fn ask(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

/// A completion: the response JSON, or the error JSON (`{"error": {...}}`).
pub fn complete(req: &Value) -> Result<Value, Value> {
    match llmr::complete_json(&req.to_string()) {
        Ok(s) => Ok(serde_json::from_str(&s).expect("the response is JSON")),
        Err(e) => Err(error_json(&e)),
    }
}

/// Like [`complete`], but also the time it took.
pub fn timed_complete(req: &Value) -> (Result<Value, Value>, Duration) {
    let t = Instant::now();
    let r = complete(req);
    (r, t.elapsed())
}

pub fn error_json(e: &llmr::Error) -> Value {
    let s = e.to_json();
    assert!(!s.contains(KEY), "an error JSON holds the API key: {s}");
    serde_json::from_str(&s).expect("the error is JSON")
}

/// The `llmr` meta of a response.
pub fn served_by(resp: &Value) -> String {
    resp["llmr"]["deployment_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no llmr.deployment_id in {resp}"))
        .to_owned()
}

pub fn attempts(resp: &Value) -> u64 {
    resp["llmr"]["attempts"]
        .as_u64()
        .unwrap_or_else(|| panic!("no llmr.attempts in {resp}"))
}

pub fn content(resp: &Value) -> String {
    resp["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The error status name of an error JSON.
pub fn status(err: &Value) -> &str {
    err["error"]["status"].as_str().unwrap_or("?")
}

/// What a stream gave: the chunks delivered (in order) and the outcome.
pub struct Streamed {
    pub chunks: Vec<Value>,
    pub result: Result<Value, Value>,
    pub elapsed: Duration,
}

impl Streamed {
    /// The concatenated content deltas.
    pub fn text(&self) -> String {
        self.chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect()
    }
}

/// A stream; the callback returns false (stop) once `stop_after` chunks were seen.
pub fn stream(req: &Value, stop_after: Option<usize>) -> Streamed {
    let t = Instant::now();
    let mut chunks = Vec::new();
    let r = llmr::stream_json(&req.to_string(), |c| {
        assert!(!c.contains(KEY), "a chunk holds the API key");
        chunks.push(serde_json::from_str::<Value>(c).expect("a chunk is JSON"));
        match stop_after {
            Some(n) => chunks.len() < n,
            None => true,
        }
    });
    let result = match r {
        Ok(s) => Ok(serde_json::from_str(&s).expect("the result is JSON")),
        Err(e) => Err(error_json(&e)),
    };
    Streamed {
        chunks,
        result,
        elapsed: t.elapsed(),
    }
}

pub fn stats() -> Value {
    let s = llmr::stats().expect("stats");
    assert!(!s.contains(KEY), "stats hold the API key: {s}");
    serde_json::from_str(&s).expect("stats are JSON")
}

pub fn info() -> Value {
    let s = llmr::router_info().expect("router_info");
    assert!(!s.contains(KEY), "router_info holds the API key: {s}");
    serde_json::from_str(&s).expect("router_info is JSON")
}

/// The stats of one deployment.
pub fn stats_of(id: &str) -> Value {
    stats()["deployments"]
        .as_array()
        .expect("stats.deployments")
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("no deployment {id} in stats"))
        .clone()
}

/// Waits, when fewer than `need` seconds are left in the current wall-clock minute, until the
/// next one begins: rpm/tpm windows are calendar minutes.
pub fn fresh_minute(need: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = now.as_millis() as u64 % 60_000;
    if into + need * 1000 > 60_000 {
        std::thread::sleep(Duration::from_millis(60_000 - into + 50));
    }
}

/// Polls `cond` every 10 ms for up to `within`.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
