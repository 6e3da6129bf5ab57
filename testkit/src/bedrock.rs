//! Amazon Bedrock Converse wire bodies: JSON answers at `/model/{id}/converse`, AWS
//! event-stream frames at `/model/{id}/converse-stream`, errors named by `x-amzn-ErrorType`.

use serde_json::{json, Value};

use crate::eventstream::{event, exception};
use crate::format::Sse;
use crate::prompt::{fragments, words, Answer, Prompt};

/// The id of the toolUse block in every tool-calling answer.
pub const TOOL_USE_ID: &str = "tooluse_standin_1";

/// The event-stream media type ConverseStream answers with.
pub(crate) const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

fn path_only(path: &str) -> &str {
    path.split(['?', '#'])
        .next()
        .unwrap_or("")
        .trim_end_matches('/')
}

/// `…/model/{id}/converse` or `…/model/{id}/converse-stream`.
pub(crate) fn is_converse_path(path: &str) -> bool {
    let p = path_only(path);
    p.contains("/model/") && (p.ends_with("/converse") || p.ends_with("/converse-stream"))
}

/// ConverseStream says "stream" in its path, not in its body.
pub(crate) fn is_stream_path(path: &str) -> bool {
    is_converse_path(path) && path_only(path).ends_with("/converse-stream")
}

/// The exception Bedrock names a status with, and its usual message.
fn exception_of(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => (
            "ValidationException",
            "Malformed input request, please reformat your input and try again.",
        ),
        401 => (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        403 => (
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        ),
        404 => (
            "ResourceNotFoundException",
            "Could not resolve the foundation model from the provided model identifier.",
        ),
        408 => (
            "ModelTimeoutException",
            "Model has timed out in processing the request. Try your request again.",
        ),
        424 => (
            "ModelErrorException",
            "The system encountered an unexpected error during processing. Try your request again.",
        ),
        429 => (
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        500 => (
            "InternalServerException",
            "The system encountered an unexpected error during processing. Try your request again.",
        ),
        503 => (
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        ),
        s if s >= 500 => (
            "InternalServerException",
            "The system encountered an unexpected error during processing. Try your request again.",
        ),
        _ => ("ValidationException", "The provided request is not valid."),
    }
}

/// The `x-amzn-ErrorType` header value of an error status.
pub(crate) fn error_type(status: u16) -> String {
    format!(
        "{}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        exception_of(status).0
    )
}

pub(crate) fn error(status: u16) -> Value {
    json!({"message": exception_of(status).1})
}

pub(crate) fn overflow(_limit: u64, _tokens: u64) -> Value {
    json!({"message": "The model returned the following errors: Input is too long for requested model."})
}

pub(crate) fn policy() -> Value {
    json!({"message": "The model returned the following errors: Output blocked by content filtering policy"})
}

/// What a 200 carries for the inline-error faults (real Bedrock answers such failures with an
/// HTTP error; an answer without `output` is what a client can still be handed).
pub(crate) fn inline_error() -> Value {
    json!({"__type": "ServiceUnavailableException", "message": "Bedrock is unable to process your request."})
}

/// The exception frame of a stream that fails.
pub(crate) fn stream_error() -> Vec<u8> {
    exception(
        "serviceUnavailableException",
        br#"{"message":"Bedrock is unable to process your request."}"#,
    )
}

fn stop_reason(answer: &Answer) -> &'static str {
    match answer {
        Answer::Text(_) => "end_turn",
        Answer::ToolCall { .. } => "tool_use",
    }
}

fn tool_input(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| json!({}))
}

fn usage(prompt: &Prompt, answer: &Answer) -> Value {
    let (input, output) = (prompt.tokens(), answer.tokens());
    json!({"inputTokens": input, "outputTokens": output, "totalTokens": input + output})
}

pub(crate) fn response(prompt: &Prompt, answer: &Answer) -> Value {
    let block = match answer {
        Answer::Text(text) => json!({"text": text}),
        Answer::ToolCall { name, arguments } => json!({"toolUse": {
            "toolUseId": TOOL_USE_ID, "name": name, "input": tool_input(arguments),
        }}),
    };
    json!({
        "output": {"message": {"role": "assistant", "content": [block]}},
        "stopReason": stop_reason(answer),
        "usage": usage(prompt, answer),
        "metrics": {"latencyMs": 1},
    })
}

fn frame(event_type: &str, payload: &Value) -> Vec<u8> {
    // Serialising a Value cannot fail.
    event(event_type, &serde_json::to_vec(payload).unwrap_or_default())
}

pub(crate) fn stream(prompt: &Prompt, answer: &Answer) -> Sse {
    let mut s = Sse::default();
    s.head
        .push(frame("messageStart", &json!({"role": "assistant"})));
    match answer {
        Answer::Text(text) => {
            for word in words(text) {
                s.body.push(frame(
                    "contentBlockDelta",
                    &json!({"contentBlockIndex": 0, "delta": {"text": word}, "p": "abcdefgh"}),
                ));
            }
        }
        Answer::ToolCall { name, arguments } => {
            s.head.push(frame(
                "contentBlockStart",
                &json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": TOOL_USE_ID, "name": name}}}),
            ));
            for fragment in fragments(arguments) {
                s.body.push(frame(
                    "contentBlockDelta",
                    &json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": fragment}}}),
                ));
            }
        }
    }
    s.tail
        .push(frame("contentBlockStop", &json!({"contentBlockIndex": 0})));
    s.tail.push(frame(
        "messageStop",
        &json!({"stopReason": stop_reason(answer)}),
    ));
    // Usage comes after messageStop.
    s.tail.push(frame(
        "metadata",
        &json!({"usage": usage(prompt, answer), "metrics": {"latencyMs": 1}}),
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventstream::Decoder;

    #[test]
    fn paths() {
        assert!(is_converse_path("/t/model/a.b-v1%3A0/converse"));
        assert!(is_stream_path("/t/model/a.b-v1%3A0/converse-stream?x=1"));
        assert!(!is_stream_path("/t/model/a/converse"));
        assert!(!is_converse_path("/t/v1/converse"));
        assert!(!is_converse_path("/t/v1/chat/completions"));
    }

    #[test]
    fn the_stream_is_valid_event_stream_frames_ending_in_metadata() {
        let p = Prompt {
            chars: 8,
            ..Prompt::default()
        };
        let bytes = stream(&p, &Answer::Text("one two".into())).all().concat();
        let mut d = Decoder::new();
        d.push(&bytes);
        let mut types = Vec::new();
        while let Some(m) = d.next_message().unwrap() {
            assert_eq!(m.header_str(":message-type"), Some("event"));
            types.push(m.header_str(":event-type").unwrap().to_owned());
        }
        d.finish().unwrap();
        assert_eq!(
            types,
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        let mut d = Decoder::new();
        d.push(&stream_error());
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(
            m.header_str(":exception-type"),
            Some("serviceUnavailableException")
        );
    }
}
