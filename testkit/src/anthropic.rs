//! Anthropic messages wire bodies.

use serde_json::{json, Value};

use crate::format::{event, next_id, Sse};
use crate::prompt::{fragments, words, Answer, Prompt};

/// The id of the tool_use block in every tool-calling answer.
pub const TOOL_USE_ID: &str = "toolu_standin_1";

fn envelope(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

pub(crate) fn error(status: u16) -> Value {
    let (kind, message) = match status {
        400 => ("invalid_request_error", "Invalid request."),
        401 => ("authentication_error", "invalid x-api-key"),
        402 => ("billing_error", "Your credit balance is too low."),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => (
            "not_found_error",
            "The requested resource could not be found.",
        ),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        429 => (
            "rate_limit_error",
            "This request would exceed the rate limit for your organization.",
        ),
        500 => ("api_error", "Internal server error"),
        529 => ("overloaded_error", "Overloaded"),
        s if s >= 500 => ("api_error", "Upstream error"),
        _ => ("invalid_request_error", "Request failed."),
    };
    envelope(kind, message)
}

pub(crate) fn overflow(limit: u64, tokens: u64) -> Value {
    envelope(
        "invalid_request_error",
        &format!("prompt is too long: {tokens} tokens > {limit} maximum"),
    )
}

pub(crate) fn policy() -> Value {
    envelope(
        "invalid_request_error",
        "Output blocked by content filtering policy",
    )
}

pub(crate) fn inline_error() -> Value {
    envelope("overloaded_error", "Overloaded")
}

fn stop_reason(answer: &Answer) -> &'static str {
    match answer {
        Answer::Text(_) => "end_turn",
        Answer::ToolCall { .. } => "tool_use",
    }
}

fn tool_input(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}

pub(crate) fn response(prompt: &Prompt, answer: &Answer) -> Value {
    let block = match answer {
        Answer::Text(text) => json!({"type": "text", "text": text}),
        Answer::ToolCall { name, arguments } => json!({
            "type": "tool_use",
            "id": TOOL_USE_ID,
            "name": name,
            "input": tool_input(arguments),
        }),
    };
    json!({
        "id": format!("msg_standin_{}", next_id()),
        "type": "message",
        "role": "assistant",
        "model": prompt.model,
        "content": [block],
        "stop_reason": stop_reason(answer),
        "stop_sequence": null,
        "usage": {"input_tokens": prompt.tokens(), "output_tokens": answer.tokens()},
    })
}

pub(crate) fn stream(prompt: &Prompt, answer: &Answer) -> Sse {
    let mut sse = Sse::default();
    sse.head.push(event(
        Some("message_start"),
        &json!({"type": "message_start", "message": {
            "id": format!("msg_standin_{}", next_id()),
            "type": "message",
            "role": "assistant",
            "model": prompt.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": prompt.tokens(), "output_tokens": 1},
        }}),
    ));
    let block = match answer {
        Answer::Text(_) => json!({"type": "text", "text": ""}),
        Answer::ToolCall { name, .. } => {
            json!({"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": {}})
        }
    };
    sse.head.push(event(
        Some("content_block_start"),
        &json!({"type": "content_block_start", "index": 0, "content_block": block}),
    ));
    sse.head.push(event(Some("ping"), &json!({"type": "ping"})));
    let delta = |delta: Value| {
        event(
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        )
    };
    match answer {
        Answer::Text(text) => {
            for word in words(text) {
                sse.body
                    .push(delta(json!({"type": "text_delta", "text": word})));
            }
        }
        Answer::ToolCall { arguments, .. } => {
            for fragment in fragments(arguments) {
                sse.body.push(delta(
                    json!({"type": "input_json_delta", "partial_json": fragment}),
                ));
            }
        }
    }
    sse.tail.push(event(
        Some("content_block_stop"),
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    sse.tail.push(event(
        Some("message_delta"),
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(answer), "stop_sequence": null},
            "usage": {"output_tokens": answer.tokens()},
        }),
    ));
    sse.tail.push(event(
        Some("message_stop"),
        &json!({"type": "message_stop"}),
    ));
    sse
}
