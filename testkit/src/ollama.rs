//! Ollama's native `/api/chat` wire bodies: one JSON object per answer, NDJSON streams (one
//! object per line, the last `"done": true` with the counts), errors as `{"error": "text"}`.

use serde_json::{json, Value};

use crate::format::Sse;
use crate::prompt::{words, Answer, Prompt};

/// What a streamed Ollama answer is sent as.
pub(crate) const NDJSON: &str = "application/x-ndjson";

/// Ollama's fixed timestamp shape; the value does not matter to clients.
const CREATED_AT: &str = "2025-01-01T00:00:00.000000Z";

fn envelope(message: &str) -> Value {
    json!({ "error": message })
}

pub(crate) fn error(status: u16) -> Value {
    let message = match status {
        400 => "invalid request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "model \"standin\" not found, try pulling it first",
        // Ollama Cloud's session (hours) usage limit.
        429 => "you (standin) have reached your session usage limit, upgrade for higher limits: https://ollama.com/upgrade",
        500 => "llama runner process has terminated: exit status 2",
        // OLLAMA_MAX_QUEUE reached.
        503 => "server busy, please try again.  maximum pending requests exceeded",
        _ => "unexpected server error",
    };
    envelope(message)
}

/// Ollama Cloud's (and newer builds') refusal of a prompt beyond the window.
pub(crate) fn overflow(limit: u64, tokens: u64) -> Value {
    envelope(&format!(
        "The prompt is too long: {tokens}, model maximum context length: {limit}"
    ))
}

/// Ollama has no content filter: a model that refuses says so in its answer.
pub(crate) const REFUSAL: &str = "I'm sorry, but I can't help with that.";

/// The error a model run that dies halfway reports.
pub(crate) fn inline_error() -> Value {
    envelope("an error was encountered while running the model: unexpected EOF")
}

pub(crate) fn line(value: &Value) -> Vec<u8> {
    // Serialising a Value into a Vec cannot fail.
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    out
}

fn tool_calls(answer: &Answer) -> Option<Value> {
    match answer {
        Answer::Text(_) => None,
        Answer::ToolCall { name, arguments } => {
            let arguments: Value = serde_json::from_str(arguments)
                .unwrap_or_else(|_| Value::String(arguments.clone()));
            Some(json!([{"function": {"name": name, "arguments": arguments}}]))
        }
    }
}

/// The `done: true` fields: reason and counts (durations in nanoseconds).
fn done_fields(out: &mut Value, prompt: &Prompt, answer: &Answer) {
    out["done"] = json!(true);
    out["done_reason"] = json!("stop");
    out["total_duration"] = json!(1_000_000);
    out["load_duration"] = json!(1_000);
    out["prompt_eval_count"] = json!(prompt.tokens());
    out["prompt_eval_duration"] = json!(100_000);
    out["eval_count"] = json!(answer.tokens());
    out["eval_duration"] = json!(500_000);
}

pub(crate) fn response(prompt: &Prompt, answer: &Answer) -> Value {
    let mut message = json!({"role": "assistant", "content": ""});
    match answer {
        Answer::Text(text) => message["content"] = json!(text),
        Answer::ToolCall { .. } => message["tool_calls"] = tool_calls(answer).into(),
    }
    let mut out = json!({"model": prompt.model, "created_at": CREATED_AT, "message": message});
    done_fields(&mut out, prompt, answer);
    out
}

pub(crate) fn stream(prompt: &Prompt, answer: &Answer) -> Sse {
    let chunk = |message: Value| {
        line(
            &json!({"model": prompt.model, "created_at": CREATED_AT, "message": message, "done": false}),
        )
    };
    let mut sse = Sse::default();
    match answer {
        Answer::Text(text) => {
            for word in words(text) {
                sse.body
                    .push(chunk(json!({"role": "assistant", "content": word})));
            }
        }
        // Ollama sends each tool call whole, in one line.
        Answer::ToolCall { .. } => sse.body.push(chunk(
            json!({"role": "assistant", "content": "", "tool_calls": tool_calls(answer)}),
        )),
    }
    let mut last = json!({"model": prompt.model, "created_at": CREATED_AT,
                          "message": {"role": "assistant", "content": ""}});
    done_fields(&mut last, prompt, answer);
    sse.tail.push(line(&last));
    sse
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_ndjson_ending_done() {
        let p = Prompt {
            model: "llama3.1".into(),
            chars: 8,
            ..Prompt::default()
        };
        let s = stream(&p, &Answer::Text("one two".into())).all();
        assert_eq!(s.len(), 3);
        let lines: Vec<Value> = s
            .iter()
            .map(|l| {
                assert_eq!(l.iter().filter(|&&b| b == b'\n').count(), 1);
                assert!(l.ends_with(b"\n"));
                serde_json::from_slice(l).unwrap()
            })
            .collect();
        assert_eq!(lines[0]["message"]["content"], "one ");
        assert_eq!(lines[0]["done"], false);
        assert_eq!(lines[2]["done"], true);
        assert_eq!(lines[2]["done_reason"], "stop");
        assert_eq!(
            (
                lines[2]["prompt_eval_count"].clone(),
                lines[2]["eval_count"].clone()
            ),
            (json!(2), json!(2))
        );

        let call = Answer::ToolCall {
            name: "w".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        };
        let r = response(&p, &call);
        assert_eq!(
            r["message"]["tool_calls"],
            json!([{"function": {"name": "w", "arguments": {"city": "Paris"}}}]),
            "arguments are an object"
        );
        assert_eq!(
            error(404)["error"],
            "model \"standin\" not found, try pulling it first"
        );
    }
}
