//! A stream chunk's JSON for the callback, with the part every chunk of a stream repeats
//! written once.
//!
//! Every `chat.completion.chunk` of a stream starts with the same `id`, `object`, `created` and
//! `model`; escaping those strings again for each chunk was most of the work of writing it
//! (serde_json's `format_escaped_str` was 12% of a 64-stream run's instructions under
//! callgrind). [`ChunkHead`] keeps that opening, `{"id":…,"object":…,"created":…,"model":…`,
//! and copies it while they stay the same; each chunk's `choices` are written with their keys as
//! literals (serde_json escapes a struct's keys as it does string values) and their strings
//! copied whole when they need no escape ([`crate::json_string`]). The text is byte for byte
//! what `serde_json::to_writer(chunk)` writes (tests below).

use std::borrow::Cow;
use std::sync::Arc;

use crate::json_string;
use crate::response_json::{write_list, write_u64, write_usage};
use crate::types::{ChatChunk, ChunkChoice, Delta};

/// The opening of the last chunk written, and what it was written from.
#[derive(Default)]
pub struct ChunkHead {
    id: Arc<str>,
    object: Cow<'static, str>,
    created: u64,
    model: Arc<str>,
    /// `{"id":…,"object":…,"created":…,"model":…` — empty until the first chunk.
    json: Vec<u8>,
}

impl ChunkHead {
    /// Appends `chunk`'s JSON to `out`.
    pub fn write(&mut self, chunk: &ChatChunk, out: &mut Vec<u8>) {
        // Named field by field (no `..`): a field added to `ChatChunk` fails to compile here
        // rather than go missing from the callback's JSON.
        let ChatChunk {
            id,
            object,
            created,
            model,
            choices,
            usage,
        } = chunk;
        if self.json.is_empty()
            || self.created != *created
            // `Arc<str>`'s `==` compares pointers first: a stream's chunks share theirs.
            || self.id != *id
            || self.model != *model
            || self.object != *object
        {
            self.id = id.clone();
            self.object = object.clone();
            self.created = *created;
            self.model = model.clone();
            self.json.clear();
            self.json.extend_from_slice(b"{\"id\":");
            json_string::write(&mut self.json, id);
            self.json.extend_from_slice(b",\"object\":");
            json_string::write(&mut self.json, object);
            self.json.extend_from_slice(b",\"created\":");
            write_u64(&mut self.json, *created);
            self.json.extend_from_slice(b",\"model\":");
            json_string::write(&mut self.json, model);
        }
        out.extend_from_slice(&self.json);
        out.extend_from_slice(b",\"choices\":");
        write_list(out, choices, write_choice);
        // As the derive's `skip_serializing_if = "Option::is_none"`.
        if let Some(usage) = usage {
            out.extend_from_slice(b",\"usage\":");
            write_usage(out, usage);
        }
        out.push(b'}');
    }
}

/// A choice as the derive writes it, its keys written as they are: serde_json escapes every key
/// of a struct like a string value (a third of the writing left after the head).
fn write_choice(out: &mut Vec<u8>, choice: &ChunkChoice) {
    let ChunkChoice {
        index,
        delta,
        finish_reason,
    } = choice;
    let Delta {
        role,
        content,
        tool_calls,
        reasoning_content,
    } = delta;
    out.extend_from_slice(b"{\"index\":");
    write_u64(out, u64::from(*index));
    out.extend_from_slice(b",\"delta\":{");
    // As the derive's `skip_serializing_if = "Option::is_none"` on each.
    let mut first = true;
    let text = |out: &mut Vec<u8>, s: &String| json_string::write(out, s);
    optional_field(out, &mut first, b"\"role\":", role, text);
    optional_field(out, &mut first, b"\"content\":", content, text);
    optional_field(out, &mut first, b"\"tool_calls\":", tool_calls, write_json);
    optional_field(
        out,
        &mut first,
        b"\"reasoning_content\":",
        reasoning_content,
        text,
    );
    out.extend_from_slice(b"},\"finish_reason\":");
    json_string::write_optional(out, finish_reason);
    out.push(b'}');
}

/// `"key":value`, after a comma unless it is the first; nothing for `None`.
fn optional_field<T>(
    out: &mut Vec<u8>,
    first: &mut bool,
    key: &[u8],
    value: &Option<T>,
    write: impl Fn(&mut Vec<u8>, &T),
) {
    if let Some(value) = value {
        if !*first {
            out.push(b',');
        }
        *first = false;
        out.extend_from_slice(key);
        write(out, value);
    }
}

fn write_json(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    serde_json::to_writer(out, value).expect("a chunk always serialises");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{FunctionDelta, ToolCallDelta, Usage};

    fn chunk(id: &str, model: &str, created: u64, content: &str) -> ChatChunk {
        ChatChunk {
            id: id.into(),
            object: "chat.completion.chunk".into(),
            created,
            model: model.into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    content: Some(content.into()),
                    ..Delta::default()
                },
                finish_reason: None,
            }],
            usage: None,
        }
    }

    fn written(head: &mut ChunkHead, c: &ChatChunk) -> String {
        let mut out = Vec::new();
        head.write(c, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_chunk_is_written_as_serde_writes_it() {
        let mut head = ChunkHead::default();
        let mut with_usage = chunk("c1", "m", 7, "");
        with_usage.choices[0].finish_reason = Some("stop".into());
        with_usage.usage = Some(Usage::new(3, 4));
        let mut no_choices = chunk("c1", "m", 7, "");
        no_choices.choices.clear();
        let mut every_field = chunk("c1", "m", 7, "");
        every_field.choices[0].delta = Delta {
            role: Some("assistant".into()),
            content: None,
            tool_calls: Some(vec![ToolCallDelta {
                index: 1,
                id: Some("call_1".into()),
                kind: Some("function".into()),
                function: Some(FunctionDelta {
                    name: Some("get_weather".into()),
                    arguments: Some("{\"city\":\"Paris\"}".into()),
                }),
            }]),
            reasoning_content: Some("think".into()),
        };
        every_field.choices.push(ChunkChoice {
            index: 1,
            delta: Delta::default(),
            finish_reason: Some("length".into()),
        });
        let stream = [
            chunk("c1", "m", 7, "Hel"),
            chunk("c1", "m", 7, "lo \"quoted\" \u{0} ünï\n"),
            with_usage,
            no_choices,
            every_field,
            // The head changes: id, then model, then created, then object.
            chunk("c2 \"x\"", "m", 7, "a"),
            chunk("c2 \"x\"", "other/ü", 7, "b"),
            chunk("c2 \"x\"", "other/ü", 8, "c"),
            ChatChunk {
                object: "chat.completion".into(),
                ..chunk("c2 \"x\"", "other/ü", 8, "d")
            },
            ChatChunk::default(),
        ];
        for c in &stream {
            assert_eq!(written(&mut head, c), serde_json::to_string(c).unwrap());
        }
    }

    #[test]
    fn a_new_head_is_written_when_any_of_its_fields_changes() {
        let mut head = ChunkHead::default();
        written(&mut head, &chunk("a", "m", 1, "x"));
        let v: serde_json::Value =
            serde_json::from_str(&written(&mut head, &chunk("b", "n", 2, "y"))).unwrap();
        assert_eq!(
            (v["id"].as_str(), v["model"].as_str(), v["created"].as_u64()),
            (Some("b"), Some("n"), Some(2))
        );
    }
}
