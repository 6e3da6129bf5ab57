//! OpenAI chat-completions wire bodies.

use serde_json::{json, Value};

use crate::format::{event, next_id, now, Sse};
use crate::prompt::{fragments, words, Answer, Prompt};

/// The id of the tool call in every tool-calling answer.
pub const TOOL_CALL_ID: &str = "call_standin_1";

fn envelope(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

pub(crate) fn error(status: u16) -> Value {
    let (message, kind, code) = match status {
        400 => ("Invalid request.", "invalid_request_error", None),
        401 => (
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        403 => (
            "You are not allowed to access this resource.",
            "invalid_request_error",
            Some("permission_denied"),
        ),
        404 => (
            "The model does not exist or you do not have access to it.",
            "invalid_request_error",
            Some("model_not_found"),
        ),
        429 => (
            "Rate limit reached for requests. Please try again in 2s.",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        500 => (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        502 => ("Bad gateway.", "server_error", None),
        503 => (
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
        ),
        504 => ("Gateway timeout.", "server_error", None),
        529 => ("Overloaded", "server_error", None),
        s if s >= 500 => ("The server had an error.", "server_error", None),
        _ => ("Request failed.", "invalid_request_error", None),
    };
    envelope(message, kind, code)
}

pub(crate) fn overflow(limit: u64, tokens: u64) -> Value {
    json!({"error": {
        "message": format!(
            "This model's maximum context length is {limit} tokens. However, your messages resulted in {tokens} tokens. Please reduce the length of the messages."
        ),
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }})
}

pub(crate) fn policy() -> Value {
    envelope(
        "Invalid prompt: your prompt was flagged as potentially violating our usage policy.",
        "invalid_request_error",
        Some("invalid_prompt"),
    )
}

pub(crate) fn inline_error() -> Value {
    json!({"error": {"message": "Overloaded", "type": "server_error"}})
}

fn usage(prompt: &Prompt, answer: &Answer) -> Value {
    let (p, c) = (prompt.tokens(), answer.tokens());
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

fn finish_reason(answer: &Answer) -> &'static str {
    match answer {
        Answer::Text(_) => "stop",
        Answer::ToolCall { .. } => "tool_calls",
    }
}

pub(crate) fn response(prompt: &Prompt, answer: &Answer) -> Value {
    let message = match answer {
        Answer::Text(text) => json!({"role": "assistant", "content": text, "refusal": null}),
        Answer::ToolCall { name, arguments } => json!({
            "role": "assistant",
            "content": null,
            "refusal": null,
            "tool_calls": [{
                "id": TOOL_CALL_ID,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }],
        }),
    };
    json!({
        "id": format!("chatcmpl-standin-{}", next_id()),
        "object": "chat.completion",
        "created": now(),
        "model": prompt.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(answer),
        }],
        "usage": usage(prompt, answer),
        "system_fingerprint": null,
    })
}

pub(crate) fn stream(prompt: &Prompt, answer: &Answer) -> Sse {
    let id = format!("chatcmpl-standin-{}", next_id());
    let created = now();
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": prompt.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if prompt.include_usage {
            c["usage"] = Value::Null;
        }
        event(None, &c)
    };

    let mut sse = Sse::default();
    match answer {
        Answer::Text(text) => {
            sse.head.push(chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ));
            for word in words(text) {
                sse.body.push(chunk(json!({"content": word}), None));
            }
        }
        Answer::ToolCall { name, arguments } => {
            for (i, fragment) in fragments(arguments).into_iter().enumerate() {
                let delta = if i == 0 {
                    json!({
                        "role": "assistant",
                        "content": null,
                        "tool_calls": [{
                            "index": 0,
                            "id": TOOL_CALL_ID,
                            "type": "function",
                            "function": {"name": name, "arguments": fragment},
                        }],
                    })
                } else {
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
                };
                sse.body.push(chunk(delta, None));
            }
        }
    }
    sse.tail.push(chunk(json!({}), Some(finish_reason(answer))));
    if prompt.include_usage {
        sse.tail.push(event(
            None,
            &json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": prompt.model,
                "system_fingerprint": null,
                "choices": [],
                "usage": usage(prompt, answer),
            }),
        ));
    }
    sse.tail.push(b"data: [DONE]\n\n".to_vec());
    sse
}
