//! Per-tenant state: request counts, recorded requests and scripted replies.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Map, Value};

use crate::reply::Reply;

/// One request as the stand-in received it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target as sent, query string included.
    pub path: String,
    /// Header names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `Null` when empty, a JSON string holding the
    /// text when it is not JSON.
    pub body: Value,
    /// The body's bytes as received (to check a signature over them).
    pub raw_body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// As `GET /_requests/<tenant>` shows it: `{"method", "path", "headers":
    /// {name: value}, "body"}` (a repeated header keeps its last value).
    pub fn to_json(&self) -> Value {
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "method": self.method,
            "path": self.path,
            "headers": headers,
            "body": self.body,
        })
    }
}

/// The tenant of a request path: its first segment.
pub(crate) fn tenant_of(path: &str) -> &str {
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.trim_start_matches('/').split('/').next().unwrap_or("")
}

struct Tenant {
    count: usize,
    /// Response bytes written to this tenant's clients.
    sent_bytes: u64,
    records: VecDeque<RecordedRequest>,
    script: VecDeque<Reply>,
    always: Option<Reply>,
    /// The behaviour the tenant's name selects.
    preset: Reply,
}

impl Tenant {
    fn new(name: &str) -> Tenant {
        Tenant {
            count: 0,
            sent_bytes: 0,
            records: VecDeque::new(),
            script: VecDeque::new(),
            always: None,
            preset: Reply::parse_preset(name).unwrap_or_default(),
        }
    }
}

/// Everything the server remembers, shared by its connections.
pub(crate) struct Registry {
    tenants: Mutex<HashMap<String, Tenant>>,
    total: AtomicUsize,
    record_limit: usize,
    /// Replicate predictions awaiting their follow-up requests.
    pub replicate: crate::replicate::Store,
}

impl Registry {
    pub fn new(record_limit: usize) -> Registry {
        Registry {
            tenants: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            record_limit,
            replicate: crate::replicate::Store::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Tenant>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_tenant<R>(&self, name: &str, f: impl FnOnce(&mut Tenant) -> R) -> R {
        let mut tenants = self.lock();
        if let Some(t) = tenants.get_mut(name) {
            return f(t);
        }
        f(tenants
            .entry(name.to_owned())
            .or_insert_with(|| Tenant::new(name)))
    }

    /// Counts and records a request that takes no reply of its own (a follow-up of a
    /// Replicate prediction, answered as its creation decided).
    pub fn record(&self, request: RecordedRequest) {
        let _ = self.take(request, false);
    }

    /// Counts and records a request; returns the reply it gets.
    pub fn arrive(&self, request: RecordedRequest) -> Reply {
        self.take(request, true).unwrap_or_default()
    }

    fn take(&self, request: RecordedRequest, reply: bool) -> Option<Reply> {
        self.total.fetch_add(1, Ordering::Relaxed);
        let limit = self.record_limit;
        let mut tenants = self.lock();
        let name = tenant_of(&request.path);
        if !tenants.contains_key(name) {
            tenants.insert(name.to_owned(), Tenant::new(name));
        }
        let t = tenants.get_mut(name).expect("just inserted");
        t.count += 1;
        if limit > 0 {
            if t.records.len() >= limit {
                t.records.pop_front();
            }
            t.records.push_back(request);
        }
        if !reply {
            return None;
        }
        Some(
            t.script
                .pop_front()
                .or_else(|| t.always.clone())
                .unwrap_or_else(|| t.preset.clone()),
        )
    }

    pub fn script(&self, tenant: &str, replies: impl IntoIterator<Item = Reply>) {
        self.with_tenant(tenant, |t| t.script.extend(replies));
    }

    pub fn set_always(&self, tenant: &str, reply: Option<Reply>) {
        self.with_tenant(tenant, |t| t.always = reply);
    }

    pub fn count(&self, tenant: &str) -> usize {
        self.lock().get(tenant).map_or(0, |t| t.count)
    }

    /// Adds to the response bytes a tenant's clients were sent.
    pub fn add_sent(&self, tenant: &str, bytes: u64) {
        if bytes > 0 {
            self.with_tenant(tenant, |t| t.sent_bytes += bytes);
        }
    }

    pub fn sent_bytes(&self, tenant: &str) -> u64 {
        self.lock().get(tenant).map_or(0, |t| t.sent_bytes)
    }

    pub fn requests(&self, tenant: &str) -> Vec<RecordedRequest> {
        self.lock()
            .get(tenant)
            .map_or_else(Vec::new, |t| t.records.iter().cloned().collect())
    }

    pub fn last(&self, tenant: &str) -> Option<RecordedRequest> {
        self.lock()
            .get(tenant)
            .and_then(|t| t.records.back().cloned())
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Forgets counts, recorded requests, scripts and `always` replies.
    pub fn reset(&self) {
        let mut tenants = self.lock();
        tenants.clear();
        self.total.store(0, Ordering::Relaxed);
        self.replicate.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants() {
        assert_eq!(tenant_of("/ok/v1/chat/completions"), "ok");
        assert_eq!(tenant_of("/e429/v1/messages?beta=true"), "e429");
        assert_eq!(tenant_of("/solo?x=1"), "solo");
        assert_eq!(tenant_of("/"), "");
        assert_eq!(tenant_of("noslash/x"), "noslash");
    }

    #[test]
    fn scripts_then_always_then_preset() {
        let reg = Registry::new(2);
        let req = |path: &str| RecordedRequest {
            method: "POST".into(),
            path: path.into(),
            headers: vec![],
            body: Value::Null,
            raw_body: Vec::new(),
        };
        reg.script("e500", [Reply::text("a"), Reply::text("b")]);
        assert_eq!(reg.arrive(req("/e500/x")), Reply::text("a"));
        assert_eq!(reg.arrive(req("/e500/x")), Reply::text("b"));
        assert_eq!(reg.arrive(req("/e500/x")), Reply::status(500));
        reg.set_always("e500", Some(Reply::policy()));
        assert_eq!(reg.arrive(req("/e500/x")), Reply::policy());
        assert_eq!(reg.arrive(req("/other/x")), Reply::ok());
        assert_eq!(reg.count("e500"), 4);
        assert_eq!(reg.requests("e500").len(), 2, "record limit");
        assert_eq!(reg.total(), 5);
        reg.reset();
        assert_eq!(reg.count("e500"), 0);
        assert_eq!(reg.total(), 0);
        assert_eq!(reg.arrive(req("/e500/x")), Reply::status(500));
    }
}
