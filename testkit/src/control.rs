//! The control endpoints under `/_`, for tests that cannot use the Rust API:
//!
//! - `GET /_health` → `{"ok":true}`
//! - `GET /_count` → `{"count":N}`, requests received by all tenants
//! - `GET /_count/<tenant>` → `{"count":N}`
//! - `GET /_requests/<tenant>` → `[{"method","path","headers":{..},"body"}, ..]`
//! - `POST /_reset` → forgets counts, recorded requests, scripts and `always` replies
//! - `POST /_script/<tenant>` with a reply or an array of replies (see
//!   [`Reply::from_json`]) → queues them
//! - `POST /_always/<tenant>` with a reply, or `null` to clear → the
//!   tenant's behaviour once its script is used up
//!
//! Control requests are not counted or recorded.

use serde_json::{json, Value};

use crate::http::Request;
use crate::record::Registry;
use crate::reply::Reply;

/// Answers a control request: a status and a JSON body.
pub(crate) fn handle(registry: &Registry, req: &Request) -> (u16, Value) {
    let path = req.path.split(['?', '#']).next().unwrap_or("");
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let what = parts.next().unwrap_or("");
    let tenant = parts.next().map(|t| t.trim_end_matches('/'));
    match (req.method.as_str(), what, tenant) {
        ("GET", "_health", None) => (200, json!({"ok": true})),
        ("GET", "_count", None) => (200, json!({"count": registry.total()})),
        ("GET", "_count", Some(t)) => (200, json!({"count": registry.count(t)})),
        ("GET", "_requests", Some(t)) => {
            let list: Vec<Value> = registry.requests(t).iter().map(|r| r.to_json()).collect();
            (200, Value::Array(list))
        }
        ("POST", "_reset", None) => {
            registry.reset();
            (200, json!({"ok": true}))
        }
        ("POST", "_script", Some(t)) => match replies(&req.body) {
            Ok(list) => {
                let queued = list.len();
                registry.script(t, list);
                (200, json!({"ok": true, "queued": queued}))
            }
            Err(e) => bad(&e),
        },
        ("POST" | "PUT", "_always", Some(t)) => match parse(&req.body) {
            Ok(Value::Null) => {
                registry.set_always(t, None);
                (200, json!({"ok": true}))
            }
            Ok(spec) => match Reply::from_json(&spec) {
                Ok(reply) => {
                    registry.set_always(t, Some(reply));
                    (200, json!({"ok": true}))
                }
                Err(e) => bad(&e),
            },
            Err(e) => bad(&e),
        },
        _ => (
            404,
            json!({"error": {"message": format!("no control endpoint {} {}", req.method, path)}}),
        ),
    }
}

fn bad(message: &str) -> (u16, Value) {
    (400, json!({"error": {"message": message}}))
}

fn parse(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))
}

fn replies(body: &[u8]) -> Result<Vec<Reply>, String> {
    match parse(body)? {
        Value::Array(items) => items.iter().map(Reply::from_json).collect(),
        Value::Null => Err("expected a reply or an array of replies".into()),
        one => Ok(vec![Reply::from_json(&one)?]),
    }
}
