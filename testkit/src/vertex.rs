//! Vertex AI wire bodies: Gemini's `generateContent` answers, SSE of
//! `GenerateContentResponse` chunks and Google's error envelope; Google's
//! front door around Claude's `rawPredict` errors; and an OAuth token endpoint
//! (`…/token`) for the service-account flow.
//!
//! Requests reach these by their path: `…/publishers/google/models/M:generateContent`
//! (`:streamGenerateContent` streams), `…/publishers/anthropic/models/M:rawPredict`
//! (`:streamRawPredict`, `"stream": true`), and any path ending in `/token`.

use serde_json::{json, Map, Value};

use crate::format::{event, next_id, Sse};
use crate::prompt::{words, Answer, Prompt};

/// The access token the stand-in's token endpoint hands out.
pub const VERTEX_ACCESS_TOKEN: &str = "ya29.standin-access-token";

/// Whether a Vertex path asks for a stream (Gemini says so in the method, not the body).
pub(crate) fn streams(path: &str) -> bool {
    path.contains(":streamGenerateContent") || path.contains(":streamRawPredict")
}

/// The model named by `…/models/M:method`.
pub(crate) fn model_of(path: &str) -> Option<String> {
    let after = path.split("/models/").nth(1)?;
    let model = after.split([':', '?']).next()?;
    (!model.is_empty()).then(|| model.to_owned())
}

/// A Gemini-shaped request (`contents`, `systemInstruction`, `tools[].functionDeclarations`)
/// as a [`Prompt`]; `None` when the body is not one.
pub(crate) fn prompt(path: &str, body: &Value) -> Option<Prompt> {
    let contents = body["contents"].as_array()?;
    let text_of = |parts: &Value| -> Option<String> {
        let texts: Vec<&str> = parts
            .as_array()?
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect();
        (!texts.is_empty()).then(|| texts.concat())
    };
    let chars = |parts: &Value| text_of(parts).map_or(0, |t| t.chars().count());
    let mut total = chars(&body["systemInstruction"]["parts"]);
    for c in contents {
        total += chars(&c["parts"]);
    }
    let last_user_text = contents
        .iter()
        .rev()
        .filter(|c| c["role"] == "user")
        .find_map(|c| text_of(&c["parts"]));
    let ends_with_user = contents.last().is_some_and(|c| {
        c["role"] == "user"
            && !c["parts"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p.get("functionResponse").is_some()))
    });
    let first_tool = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|t| t["functionDeclarations"][0]["name"].as_str())
        .map(str::to_owned);
    Some(Prompt {
        model: model_of(path).unwrap_or_else(|| "standin".to_owned()),
        stream: streams(path),
        include_usage: true,
        chars: total,
        last_user_text,
        first_tool,
        ends_with_user,
    })
}

/// Google's canonical status names by HTTP status.
fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s >= 500 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

fn envelope(status: u16, message: &str) -> Value {
    json!({"error": {"code": status, "message": message, "status": status_name(status)}})
}

/// Vertex's error bodies, in the wording Vertex uses.
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
    envelope(status, message)
}

pub(crate) fn overflow(limit: u64, tokens: u64) -> Value {
    envelope(
        400,
        &format!(
            "The input token count ({tokens}) exceeds the maximum number of tokens allowed ({limit})."
        ),
    )
}

/// A prompt Gemini refuses: a 200 with `promptFeedback.blockReason` and no candidates.
pub(crate) fn policy() -> Value {
    json!({
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT",
                           "blockReasonMessage": "The prompt was blocked due to prohibited content."},
        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5, "trafficType": "ON_DEMAND"},
        "modelVersion": "standin",
        "responseId": format!("standin-{}", next_id()),
    })
}

/// An overloaded model: the error a 200 body or a stream event carries.
pub(crate) fn inline_error() -> Value {
    envelope(503, "The model is overloaded. Please try again later.")
}

fn usage(prompt: &Prompt, answer: Option<&Answer>) -> Value {
    let p = prompt.tokens();
    let c = answer.map_or(0, Answer::tokens);
    json!({"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c,
           "trafficType": "ON_DEMAND"})
}

fn part(answer: &Answer) -> Value {
    match answer {
        Answer::Text(text) => json!({"text": text}),
        Answer::ToolCall { name, arguments } => {
            let args: Value =
                serde_json::from_str(arguments).unwrap_or_else(|_| json!({"arguments": arguments}));
            json!({"functionCall": {"name": name, "args": args}})
        }
    }
}

fn chunk(prompt: &Prompt, id: &str, parts: Vec<Value>, finish: bool, usage: Value) -> Value {
    let mut candidate = Map::new();
    candidate.insert("content".into(), json!({"role": "model", "parts": parts}));
    if finish {
        candidate.insert("finishReason".into(), "STOP".into());
    }
    json!({"candidates": [candidate], "usageMetadata": usage,
           "modelVersion": prompt.model, "createTime": "2025-01-01T00:00:00.000000Z",
           "responseId": id})
}

pub(crate) fn response(prompt: &Prompt, answer: &Answer) -> Value {
    let id = format!("standin-{}", next_id());
    let mut body = chunk(
        prompt,
        &id,
        vec![part(answer)],
        true,
        usage(prompt, Some(answer)),
    );
    body["candidates"][0]["index"] = 0.into();
    body
}

/// One event per word (a function call comes whole, in one event), then an event with the
/// finish reason and the final usage. No terminal event: the stream ends with the body.
pub(crate) fn stream(prompt: &Prompt, answer: &Answer) -> Sse {
    let id = format!("standin-{}", next_id());
    let mut sse = Sse::default();
    let running = json!({"promptTokenCount": prompt.tokens(), "trafficType": "ON_DEMAND"});
    let data = |parts: Vec<Value>| event(None, &chunk(prompt, &id, parts, false, running.clone()));
    match answer {
        Answer::Text(text) => {
            for word in words(text) {
                sse.body.push(data(vec![json!({"text": word})]));
            }
        }
        Answer::ToolCall { .. } => sse.body.push(data(vec![part(answer)])),
    }
    sse.tail.push(event(
        None,
        &chunk(
            prompt,
            &id,
            vec![json!({"text": ""})],
            true,
            usage(prompt, Some(answer)),
        ),
    ));
    sse
}

/// Claude's errors as Vertex's front door returns them: Google's envelope whose `message` is
/// Anthropic's error JSON, as a string.
pub(crate) fn wrap_anthropic(status: u16, anthropic: &Value) -> Value {
    let mut inner = anthropic.clone();
    inner["request_id"] = format!("req_vrtx_standin{}", next_id()).into();
    envelope(status, &inner.to_string())
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
    fn gemini_prompt() {
        let path = "/t/v1/projects/p/locations/l/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
        let p = prompt(
            path,
            &json!({
                "systemInstruction": {"parts": [{"text": "abcd"}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "hi "}, {"text": "there"}]},
                ],
                "tools": [{"functionDeclarations": [{"name": "weather"}]}],
            }),
        )
        .unwrap();
        assert_eq!(p.model, "gemini-2.5-flash");
        assert!(p.stream && p.ends_with_user);
        assert_eq!(p.chars, 12);
        assert_eq!(p.last_user_text.as_deref(), Some("hi there"));
        assert_eq!(p.first_tool.as_deref(), Some("weather"));

        let p = prompt(
            "/t/v1/x/models/m:generateContent",
            &json!({"contents": [
                {"role": "user", "parts": [{"text": "weather?"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "w", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "w", "response": {}}}]},
            ]}),
        )
        .unwrap();
        assert!(!p.stream && !p.ends_with_user);
        assert_eq!(Answer::auto(&p, "t"), Answer::Text("echo: weather?".into()));
        assert!(super::prompt("/x", &json!({"messages": []})).is_none());
    }

    #[test]
    fn bodies() {
        let p = Prompt {
            model: "m".into(),
            chars: 8,
            ..Prompt::default()
        };
        let r = response(&p, &Answer::Text("a b".into()));
        assert_eq!(r["candidates"][0]["content"]["parts"][0]["text"], "a b");
        assert_eq!(r["candidates"][0]["finishReason"], "STOP");
        assert_eq!(r["usageMetadata"]["candidatesTokenCount"], 2);
        let s = stream(&p, &Answer::Text("a b".into()));
        assert_eq!(s.body.len(), 2);
        let last = String::from_utf8(s.tail[0].clone()).unwrap();
        assert!(last.starts_with("data: {") && last.contains("\"finishReason\":\"STOP\""));
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
