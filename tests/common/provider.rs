//! Helpers shared by the provider end-to-end tests (`tests/*_provider.rs`): one router per test
//! on a fresh loopback stand-in, requests through the library's Rust API, and the usual
//! request bodies.

use llmr::Error;
use llmr_testkit::StandIn;
use serde_json::{json, Value};

use super::{lock, Serial};

/// One test's router and stand-in. Holds the test lock; the router is shut down when it goes
/// (before the stand-in stops: fields drop in order).
pub struct Session {
    _serial: Serial,
    pub standin: StandIn,
}

/// Starts a stand-in and a router whose deployments `entries` builds from it.
pub fn start_session(entries: impl FnOnce(&StandIn) -> Vec<Value>, settings: Value) -> Session {
    let serial = lock();
    let standin = StandIn::start();
    let config = json!({"global_llm_configs": entries(&standin), "router_settings": settings});
    llmr::init(&config.to_string()).expect("init");
    Session {
        _serial: serial,
        standin,
    }
}

pub fn complete(req: Value) -> Result<Value, Error> {
    llmr::complete_json(&req.to_string()).map(|s| serde_json::from_str(&s).unwrap())
}

/// Streams; returns the chunks delivered and the assembled answer.
pub fn stream(req: Value) -> (Vec<Value>, Result<Value, Error>) {
    let mut chunks = Vec::new();
    let r = llmr::stream_json(&req.to_string(), |c| {
        chunks.push(serde_json::from_str(c).unwrap());
        true
    });
    (chunks, r.map(|s| serde_json::from_str(&s).unwrap()))
}

/// The error's JSON, checked to carry none of `secrets`.
pub fn error_json_without(e: &Error, secrets: &[&str]) -> Value {
    let text = e.to_json();
    for secret in secrets {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
    serde_json::from_str(&text).unwrap()
}

/// The text the chunks of a stream carried, in order.
pub fn text_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

pub fn hello() -> Value {
    json!({"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello"}
    ]})
}

pub fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}
