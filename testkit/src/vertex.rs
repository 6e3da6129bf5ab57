//! Vertex AI's own parts: Google's front door around Claude's `rawPredict` errors, and an
//! OAuth token endpoint (`…/token`) for the service-account flow, and Vertex's wording of
//! Google's errors. Gemini on Vertex (`…/publishers/google/models/M:generateContent`) is
//! otherwise the Gemini format of [`crate::gemini`].
//!
//! Requests reach these by their path: `…/publishers/anthropic/models/M:rawPredict`
//! (`:streamRawPredict` streams) and any path ending in `/token`.

use serde_json::{json, Value};

use crate::format::next_id;
use crate::gemini;

/// The access token the stand-in's token endpoint hands out.
pub const VERTEX_ACCESS_TOKEN: &str = "ya29.standin-access-token";

/// Whether a Claude-on-Vertex path asks for a stream.
pub(crate) fn streams(path: &str) -> bool {
    path.contains(":streamRawPredict")
}

/// The model named by `…/models/M:method`.
pub(crate) fn model_of(path: &str) -> Option<String> {
    let after = path.split("/models/").nth(1)?;
    let model = after.split([':', '?']).next()?;
    (!model.is_empty()).then(|| model.to_owned())
}

/// Vertex's own wording of Google's errors (Gemini on Vertex; bodies otherwise as
/// [`crate::gemini`]): no `RetryInfo` on a 429, which is a shared-quota "Resource exhausted".
pub(crate) fn error(status: u16) -> Value {
    let message = match status {
        400 => "Request contains an invalid argument.",
        401 => "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        403 => "Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/projects/standin/locations/us-central1/publishers/google/models/standin' (or it may not exist).",
        404 => "Publisher Model `projects/standin/locations/us-central1/publishers/google/models/standin` not found.",
        429 => "Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
        503 => "The service is currently unavailable.",
        504 => "The request timed out. Please try again.",
        s if s >= 500 => "Internal error encountered.",
        _ => "Precondition check failed.",
    };
    gemini::envelope(status, message, json!([]))
}

/// Claude's errors as Vertex's front door returns them: Google's envelope whose `message` is
/// Anthropic's error JSON, as a string.
pub(crate) fn wrap_anthropic(status: u16, anthropic: &Value) -> Value {
    let mut inner = anthropic.clone();
    inner["request_id"] = format!("req_vrtx_standin{}", next_id()).into();
    gemini::envelope(status, &inner.to_string(), json!([]))
}

/// Rate limits, auth and missing models are answered by Google before Claude sees the request.
pub(crate) fn anthropic_error(status: u16, anthropic: Value) -> Value {
    match status {
        401 | 403 | 404 | 429 => error(status),
        _ => wrap_anthropic(status, &anthropic),
    }
}

/// The token endpoint's answer to a good assertion.
pub(crate) fn token() -> Value {
    json!({"access_token": VERTEX_ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"})
}

/// The token endpoint's refusals (RFC 6749 §5.2 bodies, as Google words them).
pub(crate) fn token_error(status: u16) -> Value {
    match status {
        400 | 401 | 403 => {
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        }
        429 => json!({"error": "rate_limit_exceeded", "error_description": "Too many requests."}),
        _ => json!({"error": "internal_failure", "error_description": "Backend Error"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_wrapped_errors() {
        let path = "/t/v1/projects/p/locations/l/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict";
        assert!(streams(path));
        assert_eq!(model_of(path).as_deref(), Some("claude-sonnet-4@20250514"));
        assert!(!streams("/t/v1/x/models/m:rawPredict"));
        let wrapped = wrap_anthropic(
            400,
            &json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 9 tokens > 8 maximum"}}),
        );
        let inner: Value =
            serde_json::from_str(wrapped["error"]["message"].as_str().unwrap()).unwrap();
        assert_eq!(inner["error"]["type"], "invalid_request_error");
        assert_eq!(wrapped["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(
            anthropic_error(429, json!({}))["error"]["status"],
            "RESOURCE_EXHAUSTED"
        );
    }
}
