//! Error kinds, their stable status codes, and the error JSON of the ABI.

use std::fmt;
use std::sync::Arc;

/// The outcome of a call. The numbers are part of the C ABI and never change or get reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    InvalidArgument = 1,
    Config = 2,
    NotInitialized = 3,
    ContextOverflow = 4,
    RateLimited = 5,
    Auth = 6,
    BadRequest = 7,
    ContentPolicy = 8,
    Timeout = 9,
    Upstream = 10,
    Cancelled = 11,
    Internal = 12,
}

impl Status {
    pub const ALL: [Status; 13] = [
        Status::Ok,
        Status::InvalidArgument,
        Status::Config,
        Status::NotInitialized,
        Status::ContextOverflow,
        Status::RateLimited,
        Status::Auth,
        Status::BadRequest,
        Status::ContentPolicy,
        Status::Timeout,
        Status::Upstream,
        Status::Cancelled,
        Status::Internal,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// The snake_case name of the ABI (`"context_overflow"`).
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::InvalidArgument => "invalid_argument",
            Status::Config => "config",
            Status::NotInitialized => "not_initialized",
            Status::ContextOverflow => "context_overflow",
            Status::RateLimited => "rate_limited",
            Status::Auth => "auth",
            Status::BadRequest => "bad_request",
            Status::ContentPolicy => "content_policy",
            Status::Timeout => "timeout",
            Status::Upstream => "upstream",
            Status::Cancelled => "cancelled",
            Status::Internal => "internal",
        }
    }

    /// The same name, NUL-terminated, for the C ABI.
    pub fn c_name(self) -> &'static std::ffi::CStr {
        match self {
            Status::Ok => c"ok",
            Status::InvalidArgument => c"invalid_argument",
            Status::Config => c"config",
            Status::NotInitialized => c"not_initialized",
            Status::ContextOverflow => c"context_overflow",
            Status::RateLimited => c"rate_limited",
            Status::Auth => c"auth",
            Status::BadRequest => c"bad_request",
            Status::ContentPolicy => c"content_policy",
            Status::Timeout => c"timeout",
            Status::Upstream => c"upstream",
            Status::Cancelled => c"cancelled",
            Status::Internal => c"internal",
        }
    }
}

/// An error with everything the error JSON can carry. Fields that do not apply stay `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    pub status: Status,
    pub message: String,
    pub http_status: Option<u16>,
    /// The provider prefix of the deployment that raised it (`"openai"`, `"anthropic"`, …).
    pub provider: Option<Arc<str>>,
    pub deployment_id: Option<Arc<str>>,
    /// Seconds the caller should wait before trying again.
    pub retry_after: Option<f64>,
    pub attempts: Option<u32>,
    /// A quota or billing refusal: retrying the same deployment cannot help (never in the JSON).
    pub quota: bool,
}

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
            http_status: None,
            provider: None,
            deployment_id: None,
            retry_after: None,
            attempts: None,
            quota: false,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Status::InvalidArgument, message)
    }

    pub fn config(message: impl Into<String>) -> Error {
        Error::new(Status::Config, message)
    }

    pub fn upstream(message: impl Into<String>) -> Error {
        Error::new(Status::Upstream, message)
    }

    pub fn not_initialized() -> Error {
        Error::new(
            Status::NotInitialized,
            "llmr is not initialized: call llmr_init first",
        )
    }

    pub fn with_http_status(mut self, status: u16) -> Error {
        self.http_status = Some(status);
        self
    }

    pub fn with_provider(mut self, provider: &Arc<str>) -> Error {
        self.provider = Some(provider.clone());
        self
    }

    pub fn with_retry_after(mut self, seconds: Option<f64>) -> Error {
        self.retry_after = seconds;
        self
    }

    /// The error JSON of the ABI: `{"error": {"status", "code", "message", ...}}`.
    pub fn to_json(&self) -> String {
        use serde_json::{Map, Value};
        let mut e = Map::with_capacity(8);
        e.insert("status".into(), Value::from(self.status.name()));
        e.insert("code".into(), Value::from(self.status.code()));
        e.insert("message".into(), Value::from(self.message.as_str()));
        if let Some(s) = self.http_status {
            e.insert("http_status".into(), Value::from(s));
        }
        if let Some(p) = &self.provider {
            e.insert("provider".into(), Value::from(&**p));
        }
        if let Some(d) = &self.deployment_id {
            e.insert("deployment_id".into(), Value::from(&**d));
        }
        if let Some(r) = self.retry_after {
            // Rounded to milliseconds: more precision is noise.
            let r = (r * 1000.0).round() / 1000.0;
            e.insert("retry_after".into(), Value::from(r));
        }
        if let Some(a) = self.attempts {
            e.insert("attempts".into(), Value::from(a));
        }
        let mut root = Map::with_capacity(1);
        root.insert("error".into(), Value::Object(e));
        Value::Object(root).to_string()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.name(), self.message)
    }
}

impl std::error::Error for Error {}

/// Maps an upstream HTTP status (and what the provider's body said) to a status.
/// `overflow` and `policy` come from the provider's own classification of its body.
pub fn status_for_http(http_status: u16, overflow: bool, policy: bool) -> Status {
    if overflow {
        return Status::ContextOverflow;
    }
    if policy {
        return Status::ContentPolicy;
    }
    match http_status {
        401 | 403 => Status::Auth,
        408 => Status::Timeout,
        429 => Status::RateLimited,
        400..=499 => Status::BadRequest,
        _ => Status::Upstream,
    }
}

/// The longest piece of the caller's own input an error message quotes.
pub const MAX_QUOTED: usize = 200;

/// `s` cut to at most `max` bytes at a character boundary, with `…` when cut: error messages
/// quote the caller's input, which may be huge (a 100 MB string in the wrong field).
pub fn excerpt(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}… ({} bytes in all)", &s[..end], s.len()))
}

/// Removes every configured secret from a text before it leaves the library.
pub fn redact(text: &mut String, secrets: &[Arc<str>]) {
    for s in secrets {
        // Short "keys" (test placeholders) would shred ordinary words.
        if s.len() >= 8 && text.contains(&**s) {
            *text = text.replace(&**s, "[REDACTED]");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_the_abi_values() {
        let expected = [
            (0, "ok"),
            (1, "invalid_argument"),
            (2, "config"),
            (3, "not_initialized"),
            (4, "context_overflow"),
            (5, "rate_limited"),
            (6, "auth"),
            (7, "bad_request"),
            (8, "content_policy"),
            (9, "timeout"),
            (10, "upstream"),
            (11, "cancelled"),
            (12, "internal"),
        ];
        for (s, (code, name)) in Status::ALL.iter().zip(expected) {
            assert_eq!(s.code(), code);
            assert_eq!(s.name(), name);
            assert_eq!(s.c_name().to_str().unwrap(), name);
            assert_eq!(Status::from_code(code), Some(*s));
        }
        assert_eq!(Status::from_code(13), None);
        assert_eq!(Status::from_code(-1), None);
    }

    #[test]
    fn error_json_omits_fields_that_do_not_apply() {
        let e = Error::new(Status::RateLimited, "slow down").with_retry_after(Some(12.5004));
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["error"]["status"], "rate_limited");
        assert_eq!(v["error"]["code"], 5);
        assert_eq!(v["error"]["retry_after"], 12.5);
        assert!(v["error"].get("http_status").is_none());
        assert!(v["error"].get("provider").is_none());
    }

    #[test]
    fn http_statuses_map_to_abi_statuses() {
        assert_eq!(status_for_http(401, false, false), Status::Auth);
        assert_eq!(status_for_http(403, false, false), Status::Auth);
        assert_eq!(status_for_http(429, false, false), Status::RateLimited);
        assert_eq!(status_for_http(404, false, false), Status::BadRequest);
        assert_eq!(status_for_http(400, true, false), Status::ContextOverflow);
        assert_eq!(status_for_http(400, false, true), Status::ContentPolicy);
        assert_eq!(status_for_http(503, false, false), Status::Upstream);
        assert_eq!(status_for_http(408, false, false), Status::Timeout);
    }

    #[test]
    fn redact_removes_keys() {
        let mut t = String::from("bad key sk-secret-123456 given");
        redact(&mut t, &[Arc::from("sk-secret-123456")]);
        assert_eq!(t, "bad key [REDACTED] given");
    }
}
