//! An answer's JSON for the caller, written by hand: byte for byte what
//! `serde_json::to_writer(response)` writes (tests below), with its keys as literals and its
//! strings copied whole when they need no escape.
//!
//! serde_json escapes every key of a struct as it does a string value, a byte at a time; for an
//! answer that was ~6,000 instructions, a twentieth of a request's at 64 in flight (callgrind,
//! llmr-async-64; bench/README.md, session 18). Tool calls and floats are still written by
//! serde.

use crate::json_string;
use crate::types::{ChatResponse, Choice, LlmrMeta, ResponseMessage, Usage};

/// Appends `resp`'s JSON to `out`.
pub fn write(resp: &ChatResponse, out: &mut Vec<u8>) {
    // Named field by field (no `..`): a field added to a type fails to compile here rather than
    // go missing from the caller's JSON.
    let ChatResponse {
        id,
        object,
        created,
        model,
        choices,
        usage,
        llmr,
    } = resp;
    out.extend_from_slice(b"{\"id\":");
    json_string::write(out, id);
    out.extend_from_slice(b",\"object\":");
    json_string::write(out, object);
    out.extend_from_slice(b",\"created\":");
    write_u64(out, *created);
    out.extend_from_slice(b",\"model\":");
    json_string::write(out, model);
    out.extend_from_slice(b",\"choices\":");
    write_list(out, choices, write_choice);
    // As the derive's `skip_serializing_if = "Option::is_none"`.
    if let Some(usage) = usage {
        out.extend_from_slice(b",\"usage\":");
        write_usage(out, usage);
    }
    if let Some(meta) = llmr {
        out.extend_from_slice(b",\"llmr\":");
        write_meta(out, meta);
    }
    out.push(b'}');
}

fn write_choice(out: &mut Vec<u8>, choice: &Choice) {
    let Choice {
        index,
        message,
        finish_reason,
    } = choice;
    let ResponseMessage {
        role,
        content,
        tool_calls,
        refusal,
        reasoning_content,
    } = message;
    out.extend_from_slice(b"{\"index\":");
    write_u64(out, u64::from(*index));
    out.extend_from_slice(b",\"message\":{\"role\":");
    json_string::write(out, role);
    out.extend_from_slice(b",\"content\":");
    json_string::write_optional(out, content);
    // As the derive's `skip_serializing_if = "Option::is_none"` on each.
    if let Some(calls) = tool_calls {
        out.extend_from_slice(b",\"tool_calls\":");
        serde(out, calls);
    }
    if let Some(refusal) = refusal {
        out.extend_from_slice(b",\"refusal\":");
        json_string::write(out, refusal);
    }
    if let Some(reasoning) = reasoning_content {
        out.extend_from_slice(b",\"reasoning_content\":");
        json_string::write(out, reasoning);
    }
    out.extend_from_slice(b"},\"finish_reason\":");
    json_string::write_optional(out, finish_reason);
    out.push(b'}');
}

fn write_meta(out: &mut Vec<u8>, meta: &LlmrMeta) {
    let LlmrMeta {
        deployment_id,
        provider,
        attempts,
        latency_ms,
        time_to_first_chunk_ms,
        fallbacks,
        cost_usd,
    } = meta;
    out.extend_from_slice(b"{\"deployment_id\":");
    json_string::write(out, deployment_id);
    out.extend_from_slice(b",\"provider\":");
    json_string::write(out, provider);
    out.extend_from_slice(b",\"attempts\":");
    write_u64(out, u64::from(*attempts));
    out.extend_from_slice(b",\"latency_ms\":");
    serde(out, latency_ms);
    // As the derive's `skip_serializing_if`s.
    if let Some(t) = time_to_first_chunk_ms {
        out.extend_from_slice(b",\"time_to_first_chunk_ms\":");
        serde(out, t);
    }
    if !fallbacks.is_empty() {
        out.extend_from_slice(b",\"fallbacks\":");
        write_list(out, fallbacks, |out, f| json_string::write(out, f));
    }
    if let Some(cost) = cost_usd {
        out.extend_from_slice(b",\"cost_usd\":");
        serde(out, cost);
    }
    out.push(b'}');
}

/// Token counts as the derive writes them (a stream's last chunk has them too).
pub(crate) fn write_usage(out: &mut Vec<u8>, usage: &Usage) {
    let Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens,
    } = usage;
    out.extend_from_slice(b"{\"prompt_tokens\":");
    write_u64(out, *prompt_tokens);
    out.extend_from_slice(b",\"completion_tokens\":");
    write_u64(out, *completion_tokens);
    out.extend_from_slice(b",\"total_tokens\":");
    write_u64(out, *total_tokens);
    out.push(b'}');
}

/// `[a,b,…]`, each item written by `item`.
pub(crate) fn write_list<T>(out: &mut Vec<u8>, items: &[T], item: impl Fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(out, x);
    }
    out.push(b']');
}

pub(crate) fn write_u64(out: &mut Vec<u8>, n: u64) {
    // serde_json writes integers with itoa too.
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Floats (serde_json's shortest form, `null` for NaN and infinities) and the rare parts.
fn serde(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    serde_json::to_writer(out, value).expect("an answer always serialises");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{FunctionCall, ToolCall};

    fn written(r: &ChatResponse) -> String {
        let mut out = b"[".to_vec();
        write(r, &mut out);
        String::from_utf8(out[1..].to_vec()).unwrap()
    }

    fn answer(content: Option<&str>) -> ChatResponse {
        ChatResponse {
            id: "chatcmpl-1".into(),
            object: "chat.completion".into(),
            created: 1_700_000_000,
            model: "gpt-4o-mini".into(),
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    content: content.map(str::to_owned),
                    ..ResponseMessage::default()
                },
                finish_reason: Some("stop".into()),
            }],
            usage: Some(Usage::new(9, 12)),
            llmr: Some(LlmrMeta {
                deployment_id: "dep-1".into(),
                provider: "openai".into(),
                attempts: 1,
                latency_ms: 12.345,
                ..LlmrMeta::default()
            }),
        }
    }

    #[test]
    fn answers_are_written_as_serde_writes_them() {
        let mut every_field = answer(None);
        every_field.choices[0].message = ResponseMessage {
            role: "assistant".into(),
            content: None,
            tool_calls: Some(vec![ToolCall {
                id: "call_1".into(),
                kind: "function".into(),
                function: FunctionCall {
                    name: "get_weather".into(),
                    arguments: "{\"city\":\"Paris\"}".into(),
                },
            }]),
            refusal: Some("no \"thanks\"".into()),
            reasoning_content: Some("think\n".into()),
        };
        every_field.choices.push(Choice {
            index: 1,
            message: ResponseMessage::default(),
            finish_reason: None,
        });
        every_field.llmr = Some(LlmrMeta {
            deployment_id: "dep \"q\"".into(),
            provider: "anthropic".into(),
            attempts: u32::MAX,
            latency_ms: f64::NAN,
            time_to_first_chunk_ms: Some(0.5),
            fallbacks: vec!["a".into(), "b\\c".into()],
            cost_usd: Some(1e-7),
        });
        let mut bare = answer(Some(""));
        bare.usage = None;
        bare.llmr = None;
        bare.choices.clear();
        bare.created = u64::MAX;
        for r in [
            answer(Some("Hello! How can I help you today?")),
            answer(Some("quoted \"x\", \u{0} ünï\n日本")),
            answer(None),
            every_field,
            bare,
            ChatResponse::default(),
        ] {
            assert_eq!(written(&r), serde_json::to_string(&r).unwrap());
        }
    }
}
