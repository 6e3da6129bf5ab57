//! OpenAI's answers and stream chunks of the common shape, read without serde.
//!
//! serde's derived reading of a chunk was a third of a stream's instructions (callgrind,
//! llmr-stream-async-64: ~4,600 per ~200-byte chunk), and of an answer ~9,000 of a request's
//! ~100,000 (bench/README.md, session 18). Nearly every chunk and answer has one shape — `id`,
//! `object`, `created`, `model`, `choices` (a chunk's `index`, `delta` of `role`, `content`,
//! `reasoning_content`, `tool_calls`, and `finish_reason`; an answer's `message` of `role`,
//! `content`, `tool_calls`, `refusal`, `reasoning_content`), token counts, and fields llmr does
//! not read (skipped, checked) — and this reads that shape in one pass. Anything else (content
//! as a list of parts, tool-call arguments given as an object, `\u` escapes, invalid JSON, …:
//! see [`crate::json_scan`]) gives `None`, and
//! the caller reads the text with serde as before. So what this reads is what serde would
//! read, never something else; [`chunk_same_as_serde`] and [`response_same_as_serde`] check
//! that (every debug build, so the fuzz targets, and the tests below).

use std::borrow::Cow;
use std::sync::Arc;

use crate::json_scan::{Scan, Seen};
use crate::types::{
    chunk_object_of, function_type, share, ChatChunk, ChatResponse, Choice, ChunkChoice, Delta,
    FunctionCall, FunctionDelta, ResponseMessage, ToolCall, ToolCallDelta, Usage, CHUNK_OBJECT,
};

/// Reads `data` (one stream event's JSON) when it is a chunk of the common shape; `None`
/// otherwise. `id` and `model` are the stream's shared copies ([`share`]).
pub(crate) fn read_chunk(data: &str, id: &mut Arc<str>, model: &mut Arc<str>) -> Option<ChatChunk> {
    let mut s = Scan::new(data);
    // Each field as serde's reading has it when absent (`WireChunk`, `OpenAiStream::chunk`).
    let (mut chunk_id, mut chunk_model) = (Cow::Borrowed(""), Cow::Borrowed(""));
    let mut object = Cow::Borrowed(CHUNK_OBJECT);
    let (mut created, mut choices, mut usage) = (0, Vec::new(), None);
    let mut seen = Seen::default();
    s.object(|s, key| {
        match key {
            "id" => {
                seen.first(0)?;
                chunk_id = s.string()?;
            }
            "object" => {
                seen.first(1)?;
                if let Some(o) = s.nullable_string()? {
                    object = chunk_object_of(&o);
                }
            }
            "created" => {
                seen.first(2)?;
                // `lenient_u64`: null is 0 (a float or a string go to serde).
                created = if s.null() { 0 } else { s.uint()? };
            }
            "model" => {
                seen.first(3)?;
                chunk_model = s.string()?;
            }
            "choices" => {
                seen.first(4)?;
                choices = list(s, choice)?;
            }
            "usage" => {
                seen.first(5)?;
                if !s.null() {
                    usage = Some(read_usage(s)?);
                }
            }
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    s.at_end().then_some(())?;
    Some(ChatChunk {
        id: share(id, &chunk_id),
        object,
        created,
        model: share(model, &chunk_model),
        choices,
        usage,
    })
}

/// Reads `body` when it is an answer (`chat.completion`) of the common shape; `None` otherwise.
pub(crate) fn read_response(body: &str) -> Option<ChatResponse> {
    let mut s = Scan::new(body);
    let mut r = ChatResponse::default();
    let mut object = None;
    let mut seen = Seen::default();
    s.object(|s, key| {
        match key {
            "id" => {
                seen.first(0)?;
                r.id = s.string()?.into_owned();
            }
            "object" => {
                seen.first(1)?;
                object = Some(s.string()?);
            }
            "created" => {
                seen.first(2)?;
                r.created = if s.null() { 0 } else { s.uint()? };
            }
            "model" => {
                seen.first(3)?;
                r.model = s.string()?.into_owned();
            }
            "choices" => {
                seen.first(4)?;
                r.choices = list(s, response_choice)?;
            }
            "usage" => {
                seen.first(5)?;
                if !s.null() {
                    r.usage = Some(read_usage(s)?);
                }
            }
            // What llmr adds itself: a provider's own goes to serde.
            "llmr" => {
                seen.first(6)?;
                s.null().then_some(())?;
            }
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    s.at_end().then_some(())?;
    // As the derive has it when absent (`ChatResponse`).
    r.object = object.map_or_else(|| "chat.completion".to_owned(), Cow::into_owned);
    Some(r)
}

fn response_choice(s: &mut Scan<'_>) -> Option<Choice> {
    let (mut index, mut msg, mut finish_reason) = (0, None, None);
    let mut seen = Seen::default();
    s.object(|s, key| {
        match key {
            "index" => {
                seen.first(0)?;
                index = s.u32()?;
            }
            "message" => {
                seen.first(1)?;
                msg = Some(message(s)?);
            }
            "finish_reason" => {
                seen.first(2)?;
                finish_reason = s.optional_string()?;
            }
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    Some(Choice {
        index,
        message: msg.unwrap_or_default(),
        finish_reason,
    })
}

fn message(s: &mut Scan<'_>) -> Option<ResponseMessage> {
    // `role` kept borrowed until the end: the default's own `String` only when it is absent.
    let mut role = None;
    let mut m = ResponseMessage {
        role: String::new(),
        content: None,
        tool_calls: None,
        refusal: None,
        reasoning_content: None,
    };
    let mut seen = Seen::default();
    s.object(|s, key| {
        match key {
            "role" => {
                seen.first(0)?;
                role = Some(s.string()?);
            }
            "content" => {
                seen.first(1)?;
                m.content = s.optional_string()?;
            }
            "tool_calls" => {
                seen.first(2)?;
                if !s.null() {
                    m.tool_calls = Some(list(s, tool_call)?);
                }
            }
            "refusal" => {
                seen.first(3)?;
                m.refusal = s.optional_string()?;
            }
            "reasoning_content" => {
                seen.first(4)?;
                m.reasoning_content = s.optional_string()?;
            }
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    m.role = role.map_or_else(|| ResponseMessage::default().role, Cow::into_owned);
    Some(m)
}

/// Token counts; their `*_details` are skipped. (their `*_details` objects go to serde).
fn read_usage(s: &mut Scan<'_>) -> Option<Usage> {
    let mut u = Usage::default();
    let mut seen = Seen::default();
    s.object(|s, key| {
        match key {
            "prompt_tokens" => {
                seen.first(0)?;
                u.prompt_tokens = s.uint()?;
            }
            "completion_tokens" => {
                seen.first(1)?;
                u.completion_tokens = s.uint()?;
            }
            "total_tokens" => {
                seen.first(2)?;
                u.total_tokens = s.uint()?;
            }
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    Some(u)
}

fn choice(s: &mut Scan<'_>) -> Option<ChunkChoice> {
    let mut c = ChunkChoice::default();
    let mut seen = Seen::default();
    s.object(|s, key| {
        match key {
            "index" => {
                seen.first(0)?;
                c.index = s.u32()?;
            }
            "delta" => {
                seen.first(1)?;
                c.delta = delta(s)?;
            }
            "finish_reason" => {
                seen.first(2)?;
                c.finish_reason = s.optional_string()?;
            }
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    Some(c)
}

fn delta(s: &mut Scan<'_>) -> Option<Delta> {
    let mut d = Delta::default();
    let mut seen = Seen::default();
    s.object(|s, key| {
        match key {
            "role" => {
                seen.first(0)?;
                d.role = s.optional_string()?;
            }
            "content" => {
                seen.first(1)?;
                d.content = s.optional_string()?;
            }
            "reasoning_content" => {
                seen.first(2)?;
                d.reasoning_content = s.optional_string()?;
            }
            "tool_calls" => {
                seen.first(3)?;
                if !s.null() {
                    d.tool_calls = Some(list(s, tool_call_delta)?);
                }
            }
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    Some(d)
}

/// `[ item, … ]`, each read by `item`.
fn list<'a, T>(s: &mut Scan<'a>, item: impl Fn(&mut Scan<'a>) -> Option<T>) -> Option<Vec<T>> {
    let mut out = Vec::new();
    s.array(|s| {
        out.push(item(s)?);
        Some(())
    })?;
    Some(out)
}

/// One tool call of an answer (`ToolCall`): `function` must be there; `arguments` given as
/// anything but a string or null (serde writes such a value out as text) goes to serde.
fn tool_call(s: &mut Scan<'_>) -> Option<ToolCall> {
    let (mut id, mut kind, mut function) = (None, None, None);
    let mut seen = Seen::default();
    s.object(|s, key| {
        match key {
            "id" => {
                seen.first(0)?;
                id = Some(s.string()?);
            }
            "type" => {
                seen.first(1)?;
                kind = Some(s.string()?);
            }
            "function" => {
                seen.first(2)?;
                function = Some(function_call(s)?);
            }
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    Some(ToolCall {
        id: id.map(Cow::into_owned).unwrap_or_default(),
        kind: kind.map_or_else(function_type, Cow::into_owned),
        function: function?,
    })
}

fn function_call(s: &mut Scan<'_>) -> Option<FunctionCall> {
    let mut f = FunctionCall::default();
    let mut seen = Seen::default();
    s.object(|s, key| {
        match key {
            "name" => {
                seen.first(0)?;
                f.name = s.string()?.into_owned();
            }
            "arguments" => {
                seen.first(1)?;
                f.arguments = s
                    .nullable_string()?
                    .map(Cow::into_owned)
                    .unwrap_or_default();
            }
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    Some(f)
}

/// One tool call's part in a chunk (`ToolCallDelta`).
fn tool_call_delta(s: &mut Scan<'_>) -> Option<ToolCallDelta> {
    let mut t = ToolCallDelta::default();
    let mut seen = Seen::default();
    s.object(|s, key| {
        match key {
            "index" => {
                seen.first(0)?;
                t.index = s.u32()?;
            }
            "id" => {
                seen.first(1)?;
                t.id = s.optional_string()?;
            }
            "type" => {
                seen.first(2)?;
                t.kind = s.optional_string()?;
            }
            "function" => {
                seen.first(3)?;
                if !s.null() {
                    t.function = Some(function_delta(s)?);
                }
            }
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    Some(t)
}

fn function_delta(s: &mut Scan<'_>) -> Option<FunctionDelta> {
    let mut f = FunctionDelta::default();
    let mut seen = Seen::default();
    s.object(|s, key| {
        match key {
            "name" => {
                seen.first(0)?;
                f.name = s.optional_string()?;
            }
            "arguments" => {
                seen.first(1)?;
                f.arguments = s.optional_string()?;
            }
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    Some(f)
}

/// Checks that a chunk [`read_chunk`] gave is the chunk serde reads from the same `data`:
/// panics when not. Run on every fast reading in debug builds (so in the fuzz targets).
#[cfg(any(test, debug_assertions))]
pub(crate) fn chunk_same_as_serde(data: &str, fast: &ChatChunk) {
    same(data, fast, super::openai::read_chunk_with_serde(data));
}

/// [`chunk_same_as_serde`] for an answer [`read_response`] gave.
#[cfg(any(test, debug_assertions))]
pub(crate) fn response_same_as_serde(body: &str, fast: &ChatResponse) {
    same(body, fast, serde_json::from_str::<ChatResponse>(body));
}

#[cfg(any(test, debug_assertions))]
fn same<T: serde::Serialize>(text: &str, fast: &T, serde: Result<T, serde_json::Error>) {
    let fast = serde_json::to_value(fast).expect("serializes");
    match serde {
        Ok(v) => assert_eq!(
            serde_json::to_value(&v).expect("serializes"),
            fast,
            "the scan read {text:?} differently from serde"
        ),
        Err(e) => panic!("the scan read {text:?}, which serde refuses: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(data: &str) -> Option<ChatChunk> {
        let (mut id, mut model) = (Arc::default(), Arc::default());
        let c = read_chunk(data, &mut id, &mut model);
        if let Some(c) = &c {
            chunk_same_as_serde(data, c);
        }
        c
    }

    /// Chunks as providers send them: each must be read here (else the scan buys nothing),
    /// and as serde reads it.
    const COMMON: &[&str] = &[
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"abc"}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","service_tier":"default","choices":[{"index":0,"delta":{"content":"Hello \"world\"\n\tand \\ / more"},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"delta":{"content":"w0 ","role":"assistant"},"finish_reason":null,"index":0}],"created":1700000000,"id":"chatcmpl-bench","model":"bench-model","object":"chat.completion.chunk"}"#,
        r#"{"id":"1","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"Let me think"},"finish_reason":null}]}"#,
        r#"{"id":"x","choices":[{"index":0,"delta":{"content":"ü 日本 🙂"},"finish_reason":null}],"x_groq":null}"#,
        " { \"id\" : \"a\" ,\n \"choices\" : [ { \"delta\" : { \"content\" : \"b\" } , \"index\" : 1 } ] } ",
        r#"{"id":"cmpl","object":"chat.completion.chunk","created":null,"model":"m","choices":[],"usage":null}"#,
        r#"{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"hi","tool_calls":null},"finish_reason":null,"score":-1.5e-3,"ok":true,"bad":false}]}"#,
        r#"{}"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":20,"total_tokens":29,"queue_time":0.01}}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{}}"#,
        r#"{"id":"c","model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"accepted_prediction_tokens":0}}}"#,
        r#"{"id":"g","object":"chat.completion.chunk","created":1,"model":"llama","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"x_groq":{"id":"req_1","usage":{"queue_time":0.1,"prompt_tokens":18}}}"#,
        // A streamed tool call: its head, its arguments in pieces, parallel calls, one whole.
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"f","arguments":null}},{"index":2,"function":null,"id":null}]}}]}"#,
        r#"{"id":"m","object":"chat.completion.chunk","created":1,"model":"mistral-small","choices":[{"index":0,"delta":{"tool_calls":[{"id":"abc123XYZ","function":{"name":"f","arguments":"{\"a\": 1}"},"index":0}]},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{"content":"","tool_calls":[]}}]}"#,
    ];

    #[test]
    fn common_chunks_are_read_as_serde_reads_them() {
        for data in COMMON {
            assert!(fast(data).is_some(), "not read: {data}");
        }
        let c = fast(COMMON[1]).unwrap();
        assert_eq!(
            c.choices[0].delta.content.as_deref(),
            Some("Hello \"world\"\n\tand \\ / more")
        );
        assert_eq!(&*c.model, "gpt-4o-mini");
        assert_eq!(c.object, CHUNK_OBJECT);
        let c = fast(COMMON[15]).unwrap();
        let call = &c.choices[0].delta.tool_calls.as_ref().unwrap()[0];
        assert_eq!(
            call.function.as_ref().unwrap().arguments.as_deref(),
            Some("{\"ci")
        );
    }

    /// What the scan leaves to serde (serde reads these, or refuses them).
    #[test]
    fn other_shapes_go_to_serde() {
        for data in [
            r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"index":null}]}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":"f"}]}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":{"a":1}}}]}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\u007b"}}]}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"index":1}]}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":{"index":0}}}]}"#,
            r#"{"id":"x","choices":[],"usage":{"prompt_tokens":null}}"#,
            r#"{"id":"x","choices":[],"usage":{"prompt_tokens":1.0}}"#,
            r#"{"id":"x","choices":[],"usage":{"total_tokens":1,"total_tokens":2}}"#,
            r#"{"id":"x","choices":[{"index":0,"delta":{"content":"caf\u00e9"}}]}"#,
            r#"{"id":"x","created":1.5e9,"choices":[]}"#,
            r#"{"id":"x","created":"1700000000","choices":[]}"#,
            r#"{"id":"x","extra":{"a":"caf\u00e9"},"choices":[]}"#,
            r#"{"id":"x","extra":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]],"choices":[]}"#,
            r#"{"id":"x","extra":{"a":1,},"choices":[]}"#,
            r#"{"id":"x","extra":[1 2],"choices":[]}"#,
            r#"{"id":"x","id":"y"}"#,
            r#"{"id":null}"#,
            r#"{"id":"x",}"#,
            r#"{"id":"x"} trailing"#,
            r#"{"id":"x","choices":[{"index":-1,"delta":{}}]}"#,
            r#"{"id":"x","choices":[{"index":4294967296,"delta":{}}]}"#,
            r#"{"id":"x","choices":[{"index":01,"delta":{}}]}"#,
            r#"{"id":"x","n":01}"#,
            r#"{"id":"x","n":1.}"#,
            "{\"id\":\"a\u{1}b\"}",
            r#"{"\u0069d":"x"}"#,
            r#"["not an object"]"#,
            r#"{"id":"x","choices":[{"index":0,"delta":null}]}"#,
        ] {
            assert!(
                fast(data).is_none(),
                "read, but it should go to serde: {data}"
            );
        }
    }

    /// Every prefix, and every one-byte change, of each text, through `read` (which checks
    /// what it reads against serde): how many were read.
    fn read_damaged(texts: &[&str], read: impl Fn(&str) -> bool) -> usize {
        let alphabet = b" \"\\{}[]:,0123456789.-eEnulltruefalse\n\tabc/";
        let mut count = 0;
        let mut try_bytes = |m: &[u8]| {
            if let Ok(s) = std::str::from_utf8(m) {
                count += usize::from(read(s));
            }
        };
        for data in texts {
            let bytes = data.as_bytes();
            for end in 0..bytes.len() {
                try_bytes(&bytes[..end]);
            }
            for at in 0..bytes.len() {
                for &c in alphabet {
                    let mut m = bytes.to_vec();
                    m[at] = c;
                    try_bytes(&m);
                    let mut m = bytes.to_vec();
                    m.insert(at, c);
                    try_bytes(&m);
                }
                let mut m = bytes.to_vec();
                m.remove(at);
                try_bytes(&m);
            }
        }
        count
    }

    /// Whatever the scan reads of a damaged chunk, serde reads the same (`fast` checks), and
    /// invalid JSON is never read.
    #[test]
    fn damaged_chunks_are_never_read_differently_from_serde() {
        let read = read_damaged(COMMON, |s| fast(s).is_some());
        // Many changes keep the chunk valid (a letter in a string): those were compared.
        assert!(read > 1000, "only {read} changed chunks were read");
    }

    fn fast_answer(body: &str) -> Option<ChatResponse> {
        let r = read_response(body);
        if let Some(r) = &r {
            response_same_as_serde(body, r);
        }
        r
    }

    /// Answers as providers send them: each must be read here, and as serde reads it.
    const ANSWERS: &[&str] = &[
        r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_1"}"#,
        r#"{"id":"1","object":"chat.completion","created":1,"model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant","content":"4","reasoning_content":"2+2\nis 4"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12,"prompt_cache_hit_tokens":0}}"#,
        r#"{"id":"r","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#,
        r#"{"id":"g","object":"chat.completion","created":1,"model":"llama","choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"there\""},"logprobs":null,"finish_reason":"length"}],"usage":{"queue_time":0.02,"prompt_tokens":10,"prompt_time":0.001,"completion_tokens":5,"completion_time":0.01,"total_tokens":15,"total_time":0.011},"x_groq":{"id":"req_1"}}"#,
        r#"{"id":"m","object":"chat.completion","model":"mistral-small","created":1,"choices":[{"index":0,"message":{"role":"assistant","tool_calls":null,"content":"ü 日本 🙂"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"total_tokens":2,"completion_tokens":1}}"#,
        r#"{"choices":[{"message":{}}]}"#,
        r#"{"id":"x","choices":[],"llmr":null}"#,
        r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}],"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":80,"completion_tokens":17,"total_tokens":97}}"#,
        r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"{}"}},{"type":"function","function":{"arguments":null}},{"function":{}}]},"finish_reason":"tool_calls"}]}"#,
        // vLLM: an empty list of tool calls.
        r#"{"id":"chatcmpl-v","object":"chat.completion","created":1,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"message":{"role":"assistant","reasoning_content":null,"content":"Hi!","tool_calls":[]},"logprobs":null,"finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":10,"total_tokens":13,"completion_tokens":3,"prompt_tokens_details":null},"prompt_logprobs":null}"#,
    ];

    #[test]
    fn common_answers_are_read_as_serde_reads_them() {
        for body in ANSWERS {
            assert!(fast_answer(body).is_some(), "not read: {body}");
        }
        let r = fast_answer(ANSWERS[0]).unwrap();
        assert_eq!(
            r.choices[0].message.content.as_deref(),
            Some("Hello! How can I help you today?")
        );
        assert_eq!(r.usage, Some(Usage::new(9, 9)));
        let r = fast_answer(ANSWERS[5]).unwrap();
        assert_eq!(
            (r.object.as_str(), r.choices[0].message.role.as_str()),
            ("chat.completion", "assistant")
        );
        let r = fast_answer(ANSWERS[7]).unwrap();
        let call = &r.choices[0].message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(
            (call.kind.as_str(), call.function.arguments.as_str()),
            ("function", "{\"city\":\"Paris\"}")
        );
        // Absent `type` is "function", null `arguments` is "", as serde's reading has them.
        let r = fast_answer(ANSWERS[8]).unwrap();
        let calls = r.choices[0].message.tool_calls.as_ref().unwrap();
        assert_eq!(calls[0].kind, "function");
        assert_eq!(calls[1].function.arguments, "");
    }

    #[test]
    fn other_answers_go_to_serde() {
        for body in [
            // serde writes arguments given as an object out as text; a call needs `function`.
            r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":{"a":1}}}]},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"x","choices":[{"index":0,"message":{"tool_calls":[{"id":"c","type":"function"}]}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"message":{"tool_calls":[{"id":null,"function":{}}]}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"message":{"tool_calls":[{"function":{"name":null}}]}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"message":{"tool_calls":[{"function":[]}]}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":[{"type":"text","text":"hi"}]}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"message":null}]}"#,
            r#"{"id":"x","choices":[{"index":0,"message":{"role":null}}]}"#,
            r#"{"id":"x","object":null,"choices":[]}"#,
            r#"{"id":"x","choices":[],"llmr":{"deployment_id":"d","provider":"p","attempts":1,"latency_ms":1.0}}"#,
            r#"{"id":"x","choices":[{"index":0,"message":{"content":"caf\u00e9"}}]}"#,
            r#"{"id":"x","choices":[{"message":{"content":"a"},"message":{"content":"b"}}]}"#,
        ] {
            assert!(
                fast_answer(body).is_none(),
                "read, but it should go to serde: {body}"
            );
        }
    }

    #[test]
    fn damaged_answers_are_never_read_differently_from_serde() {
        let read = read_damaged(ANSWERS, |s| fast_answer(s).is_some());
        assert!(read > 1000, "only {read} changed answers were read");
    }
}
