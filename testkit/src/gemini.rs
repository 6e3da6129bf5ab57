//! Gemini API wire bodies (`generateContent`, `streamGenerateContent?alt=sse`).

use serde_json::{json, Value};

use crate::format::{event, next_id, Sse};
use crate::prompt::{words, Answer, Prompt};

/// Google's canonical status name of an HTTP status.
fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s >= 500 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

/// Google's error envelope (`{"error": {"code", "message", "status", "details"}}`).
pub(crate) fn envelope(status: u16, message: &str, details: Value) -> Value {
    let mut error = json!({"code": status, "message": message, "status": status_name(status)});
    if details.as_array().is_some_and(|d| !d.is_empty()) {
        error["details"] = details;
    }
    json!({ "error": error })
}

pub(crate) fn error(status: u16) -> Value {
    match status {
        400 => envelope(400, "Request contains an invalid argument.", json!([])),
        // Gemini answers a bad key with 400 and an ErrorInfo; 401 is for OAuth tokens.
        401 => envelope(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            json!([]),
        ),
        403 => envelope(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            json!([]),
        ),
        404 => envelope(
            404,
            "models/standin is not found for API version v1beta, or is not supported for generateContent.",
            json!([]),
        ),
        429 => envelope(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}]),
        ),
        500 => envelope(
            500,
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            json!([]),
        ),
        503 => envelope(
            503,
            "The model is overloaded. Please try again later.",
            json!([]),
        ),
        s => envelope(s, "Request failed.", json!([])),
    }
}

pub(crate) fn overflow(limit: u64, tokens: u64) -> Value {
    envelope(
        400,
        &format!(
            "The input token count ({tokens}) exceeds the maximum number of tokens allowed ({limit})."
        ),
        json!([]),
    )
}

/// Gemini refuses a prompt with a 200 whose `promptFeedback` names the block.
pub(crate) fn policy() -> Value {
    json!({
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        "modelVersion": "standin"
    })
}

pub(crate) fn inline_error() -> Value {
    envelope(
        503,
        "The model is overloaded. Please try again later.",
        json!([]),
    )
}

fn usage(prompt: &Prompt, answer: &Answer) -> Value {
    json!({
        "promptTokenCount": prompt.tokens(),
        "candidatesTokenCount": answer.tokens(),
        "totalTokenCount": prompt.tokens() + answer.tokens(),
    })
}

fn tool_args(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| json!({}))
}

pub(crate) fn response(prompt: &Prompt, answer: &Answer) -> Value {
    let part = match answer {
        Answer::Text(text) => json!({"text": text}),
        Answer::ToolCall { name, arguments } => {
            json!({"functionCall": {"name": name, "args": tool_args(arguments)}})
        }
    };
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [part]},
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": usage(prompt, answer),
        "modelVersion": prompt.model,
        "responseId": format!("standin-{}", next_id()),
    })
}

/// Every event is a whole `GenerateContentResponse`; function calls come whole; the last one
/// carries `finishReason` and the usage. There is no terminal event.
pub(crate) fn stream(prompt: &Prompt, answer: &Answer) -> Sse {
    let id = format!("standin-{}", next_id());
    let piece = |parts: Value| {
        event(
            None,
            &json!({
                "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
                "usageMetadata": {"promptTokenCount": prompt.tokens()},
                "modelVersion": prompt.model,
                "responseId": id,
            }),
        )
    };
    let mut sse = Sse::default();
    match answer {
        Answer::Text(text) => {
            for word in words(text) {
                sse.body.push(piece(json!([{ "text": word }])));
            }
        }
        Answer::ToolCall { name, arguments } => {
            sse.body.push(piece(json!([
                {"functionCall": {"name": name, "args": tool_args(arguments)}}
            ])));
        }
    }
    sse.tail.push(event(
        None,
        &json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage(prompt, answer),
            "modelVersion": prompt.model,
            "responseId": id,
        }),
    ));
    sse
}

/// The prompt of a `generateContent` body: `contents` of `parts`, `systemInstruction`,
/// `tools[].functionDeclarations`; streaming is in the path.
pub(crate) fn prompt(body: &Value, path: &str) -> Prompt {
    let contents = body["contents"].as_array().map_or(&[][..], Vec::as_slice);
    let text_of = |c: &Value| -> Option<String> {
        let texts: Vec<&str> = c["parts"]
            .as_array()?
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect();
        (!texts.is_empty()).then(|| texts.concat())
    };
    let chars_of = |c: &Value| -> usize {
        c["parts"].as_array().map_or(0, |parts| {
            parts
                .iter()
                .map(|p| {
                    p["text"].as_str().map_or_else(
                        || {
                            let r = &p["functionResponse"]["response"];
                            if r.is_null() {
                                0
                            } else {
                                r.to_string().chars().count()
                            }
                        },
                        |t| t.chars().count(),
                    )
                })
                .sum()
        })
    };
    let mut chars = chars_of(&body["systemInstruction"]);
    for c in contents {
        chars += chars_of(c);
    }
    let is_response = |c: &Value| {
        c["parts"]
            .as_array()
            .is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()))
    };
    let model = path
        .rsplit('/')
        .next()
        .and_then(|last| last.split(':').next())
        .unwrap_or("standin");
    Prompt {
        model: model.to_owned(),
        stream: path.contains(":streamGenerateContent"),
        include_usage: false,
        chars,
        last_user_text: contents
            .iter()
            .rev()
            .filter(|c| c["role"] == "user")
            .find_map(text_of),
        first_tool: body["tools"][0]["functionDeclarations"][0]["name"]
            .as_str()
            .map(str::to_owned),
        ends_with_user: contents
            .last()
            .is_some_and(|c| c["role"] == "user" && !is_response(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_of_a_generate_content_body() {
        let p = prompt(
            &json!({
                "systemInstruction": {"parts": [{"text": "abcd"}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "hi "}, {"text": "there"}]},
                ],
                "tools": [{"functionDeclarations": [{"name": "weather"}]}],
            }),
            "/t/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        );
        assert_eq!(p.model, "gemini-2.5-flash");
        assert!(p.stream && p.ends_with_user);
        assert_eq!(p.chars, 12);
        assert_eq!(p.last_user_text.as_deref(), Some("hi there"));
        assert_eq!(p.first_tool.as_deref(), Some("weather"));
        let p = prompt(
            &json!({"contents": [
                {"role": "user", "parts": [{"text": "w?"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "w", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "w", "response": {"t": 1}}}]},
            ]}),
            "/t/v1beta/models/m:generateContent",
        );
        assert!(!p.stream && !p.ends_with_user);
    }
}
