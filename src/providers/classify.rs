//! From what a provider's error said (HTTP status, code, type, message) to an ABI status.
//! Each wire format extracts the parts from its own body shape and calls [`classify`].

use crate::errors::{status_for_http, Error, Status};
use crate::overflow::is_context_overflow;

/// The parts of an error body that matter, whatever its shape.
#[derive(Debug, Default)]
pub struct ErrorParts {
    /// The structured code (`context_length_exceeded`, `"1261"`), if any.
    pub code: Option<String>,
    /// The error type / class (`invalid_request_error`, `rate_limit_error`), if any.
    pub kind: Option<String>,
    pub message: String,
}

/// Codes that say "out of credit": retrying the same deployment cannot help.
const QUOTA_CODES: &[&str] = &[
    "insufficient_quota",
    "exceeded_current_quota_error",
    "billing_error",
    "1113",
    "Arrearage",
];

/// Codes and types that are rate limits whatever the HTTP status (Groq's 413 TPM, Zhipu 1302-1305).
const RATE_LIMIT_CODES: &[&str] = &[
    "rate_limit_exceeded",
    "rate_limit_error",
    "rate_limit_reached_error",
    "RateLimitReached",
    "Throttling.RateQuota",
    "Throttling.AllocationQuota",
    "ThrottlingException",
    "RESOURCE_EXHAUSTED",
    "1302",
    "1303",
    "1304",
    "1305",
];

/// Codes and types of a provider refusing the content.
const POLICY_CODES: &[&str] = &[
    "invalid_prompt",
    "content_filter",
    "content_policy_violation",
    "data_inspection_failed",
    "ResponsibleAIPolicyViolation",
    "1301",
];

/// Overload / server-side trouble reported inside a 200 stream: retryable like a 5xx.
const SERVER_KINDS: &[&str] = &[
    "overloaded_error",
    "api_error",
    "server_error",
    "internal_error",
];

fn is_one_of(v: Option<&str>, list: &[&str]) -> bool {
    v.is_some_and(|v| list.iter().any(|c| c.eq_ignore_ascii_case(v)))
}

fn is_content_policy(parts: &ErrorParts) -> bool {
    if is_one_of(parts.code.as_deref(), POLICY_CODES)
        || is_one_of(parts.kind.as_deref(), POLICY_CODES)
    {
        return true;
    }
    let m = &parts.message;
    // Wordings from OpenAI, Azure and Anthropic (PROVIDERS.md §15).
    m.contains("flagged as potentially violating")
        || m.contains("content management policy")
        || m.contains("content filtering policy")
        || m.contains("Output blocked by content filtering")
}

/// Classifies an error. `http_status` is `None` for an error event inside a 200 stream or body.
pub fn classify(http_status: Option<u16>, parts: ErrorParts) -> Error {
    let code = parts.code.as_deref();
    let kind = parts.kind.as_deref();
    let overflow = is_context_overflow(http_status, code.or(kind), &parts.message)
        || (code.is_some()
            && kind.is_some()
            && is_context_overflow(http_status, kind, &parts.message));
    let quota =
        is_one_of(code, QUOTA_CODES) || is_one_of(kind, QUOTA_CODES) || http_status == Some(402);
    let status = if overflow {
        Status::ContextOverflow
    } else if is_content_policy(&parts) {
        Status::ContentPolicy
    } else if is_one_of(code, RATE_LIMIT_CODES) || is_one_of(kind, RATE_LIMIT_CODES) {
        Status::RateLimited
    } else {
        match http_status {
            Some(s) => status_for_http(s, false, false),
            None if is_one_of(kind, SERVER_KINDS) || is_one_of(code, SERVER_KINDS) => {
                Status::Upstream
            }
            None if kind.is_some_and(|k| k.contains("invalid_request")) => Status::BadRequest,
            None if kind
                .is_some_and(|k| k.contains("authentication") || k.contains("permission")) =>
            {
                Status::Auth
            }
            None => Status::Upstream,
        }
    };
    let mut message = parts.message;
    if message.is_empty() {
        message = match http_status {
            Some(s) => format!("upstream answered HTTP {s} with no error message"),
            None => "upstream reported an error with no message".to_owned(),
        };
    }
    let mut e = Error::new(status, message);
    e.http_status = http_status;
    e.quota = quota;
    e
}

/// Cuts a raw body to a readable error message.
pub fn body_excerpt(body: &[u8]) -> String {
    const MAX: usize = 2048;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let t = text.trim();
    if body.len() > MAX {
        format!("{t}…")
    } else {
        t.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(code: Option<&str>, kind: Option<&str>, message: &str) -> ErrorParts {
        ErrorParts {
            code: code.map(str::to_owned),
            kind: kind.map(str::to_owned),
            message: message.to_owned(),
        }
    }

    #[test]
    fn overflow_policy_rate_limit_and_plain_statuses() {
        let e = classify(
            Some(400),
            parts(
                Some("context_length_exceeded"),
                Some("invalid_request_error"),
                "This model's maximum context length is 8192 tokens.",
            ),
        );
        assert_eq!(e.status, Status::ContextOverflow);
        let e = classify(Some(400), parts(Some("invalid_prompt"), None, "Invalid prompt: your prompt was flagged as potentially violating our usage policy."));
        assert_eq!(e.status, Status::ContentPolicy);
        let e = classify(Some(413), parts(Some("rate_limit_exceeded"), Some("tokens"), "Request too large for model `llama` on tokens per minute (TPM): Limit 6000, Requested 9000"));
        assert_eq!(
            e.status,
            Status::RateLimited,
            "Groq's 413 TPM is a rate limit, not an overflow"
        );
        let e = classify(
            Some(429),
            parts(
                Some("insufficient_quota"),
                None,
                "You exceeded your current quota",
            ),
        );
        assert_eq!(e.status, Status::RateLimited);
        assert!(e.quota);
        assert_eq!(
            classify(Some(401), parts(None, None, "bad key")).status,
            Status::Auth
        );
        assert_eq!(
            classify(
                Some(404),
                parts(Some("model_not_found"), None, "no such model")
            )
            .status,
            Status::BadRequest
        );
        assert_eq!(
            classify(Some(503), parts(None, None, "")).status,
            Status::Upstream
        );
        assert_eq!(
            classify(None, parts(None, Some("overloaded_error"), "Overloaded")).status,
            Status::Upstream
        );
        assert_eq!(
            classify(None, parts(None, Some("rate_limit_error"), "slow")).status,
            Status::RateLimited
        );
        assert_eq!(
            classify(
                None,
                parts(
                    None,
                    Some("invalid_request_error"),
                    "prompt is too long: 300000 tokens > 200000 maximum"
                )
            )
            .status,
            Status::ContextOverflow
        );
    }
}
