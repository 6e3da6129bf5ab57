//! Cohere v2 chat (`POST /v2/chat`) wire bodies: flat `{"id","message"}`
//! errors, `message.content[]` answers, and the named SSE events from
//! `message-start` to `message-end`.

use serde_json::{json, Value};

use crate::format::{event, next_id, Sse};
use crate::prompt::{fragments, words, Answer, Prompt};

/// The id of the tool call in every tool-calling answer (Cohere names calls
/// after the tool plus a random suffix).
pub const TOOL_CALL_ID: &str = "get_weather_standin1";

fn generation_id() -> String {
    format!("00000000-0000-4000-8000-{:012}", next_id())
}

fn flat(message: &str) -> Value {
    json!({"id": generation_id(), "message": message})
}

pub(crate) fn error(status: u16) -> Value {
    // The texts of Cohere's errors page, one per status.
    flat(match status {
        400 => "invalid request: message must not be empty in a turn",
        401 => "invalid api token",
        402 => "Please add or update your payment method at https://dashboard.cohere.com/billing?tab=payment to continue",
        404 => "model 'standin' not found, make sure the correct model ID was used and that you have access to the model.",
        429 => "You are using a Trial key, which is limited to 20 API calls / minute. You can continue to use the Trial key for free or upgrade to a Production key with higher rate limits at 'https://dashboard.cohere.com/api-keys'.",
        498 => "invalid api token",
        499 => "request cancelled",
        500 => "internal server error",
        s if s >= 500 => "internal server error",
        _ => "invalid request",
    })
}

pub(crate) fn overflow(limit: u64, tokens: u64) -> Value {
    flat(&format!(
        "too many tokens: size limit exceeded by {} tokens. Try using shorter or fewer inputs, or setting prompt_truncation='AUTO'.",
        tokens.saturating_sub(limit).max(1)
    ))
}

/// A refusal under `safety_mode`. The stand-in's own wording: Cohere's
/// blocked generations are known only to say `blocked`.
pub(crate) fn policy() -> Value {
    flat("invalid request: the generation was blocked by the safety mode")
}

pub(crate) fn inline_error() -> Value {
    flat("internal server error")
}

/// The end of a stream that failed: `message-end` with an error.
pub(crate) fn stream_error() -> Vec<u8> {
    event(
        Some("message-end"),
        &json!({"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "internal server error"}}),
    )
}

fn finish_reason(answer: &Answer) -> &'static str {
    match answer {
        Answer::Text(_) => "COMPLETE",
        Answer::ToolCall { .. } => "TOOL_CALL",
    }
}

fn tool_plan(name: &str) -> String {
    format!("I will call {name}.")
}

fn usage(prompt: &Prompt, answer: &Answer) -> Value {
    // `tokens` counts the prompt template too; `billed_units` only what is billed.
    json!({
        "billed_units": {"input_tokens": prompt.tokens(), "output_tokens": answer.tokens()},
        "tokens": {"input_tokens": prompt.tokens() + 100, "output_tokens": answer.tokens()},
    })
}

pub(crate) fn response(prompt: &Prompt, answer: &Answer) -> Value {
    let message = match answer {
        Answer::Text(text) => json!({
            "role": "assistant",
            "content": [{"type": "text", "text": text}],
        }),
        Answer::ToolCall { name, arguments } => json!({
            "role": "assistant",
            "tool_plan": tool_plan(name),
            "tool_calls": [{
                "id": TOOL_CALL_ID,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }],
        }),
    };
    json!({
        "id": generation_id(),
        "message": message,
        "finish_reason": finish_reason(answer),
        "usage": usage(prompt, answer),
    })
}

pub(crate) fn stream(prompt: &Prompt, answer: &Answer) -> Sse {
    let mut sse = Sse::default();
    let ev = |name: &str, mut data: Value| {
        data["type"] = Value::from(name);
        event(Some(name), &data)
    };
    sse.head.push(ev(
        "message-start",
        json!({"id": generation_id(), "delta": {"message": {
            "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": [],
        }}}),
    ));
    match answer {
        Answer::Text(text) => {
            sse.head.push(ev(
                "content-start",
                json!({"index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
            ));
            for word in words(text) {
                sse.body.push(ev(
                    "content-delta",
                    json!({"index": 0, "delta": {"message": {"content": {"text": word}}}}),
                ));
            }
            sse.tail.push(ev("content-end", json!({"index": 0})));
        }
        Answer::ToolCall { name, arguments } => {
            sse.head.push(ev(
                "tool-plan-delta",
                json!({"delta": {"message": {"tool_plan": tool_plan(name)}}}),
            ));
            sse.head.push(ev(
                "tool-call-start",
                json!({"index": 0, "delta": {"message": {"tool_calls": {
                    "id": TOOL_CALL_ID, "type": "function",
                    "function": {"name": name, "arguments": ""},
                }}}}),
            ));
            for fragment in fragments(arguments) {
                sse.body.push(ev(
                    "tool-call-delta",
                    json!({"index": 0, "delta": {"message": {"tool_calls": {
                        "function": {"arguments": fragment},
                    }}}}),
                ));
            }
            sse.tail.push(ev("tool-call-end", json!({"index": 0})));
        }
    }
    sse.tail.push(ev(
        "message-end",
        json!({"delta": {"finish_reason": finish_reason(answer), "usage": usage(prompt, answer)}}),
    ));
    sse
}
