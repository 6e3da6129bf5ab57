//! The common OpenAI stream chunk, read without serde.
//!
//! serde's derived reading of a chunk was a third of a stream's instructions (callgrind,
//! llmr-stream-async-64: ~4,600 per ~200-byte chunk; bench/README.md, session 18). Nearly every
//! chunk has one shape — `id`, `object`, `created`, `model`, `choices` of `index`, `delta`
//! (`role`, `content`, `reasoning_content`) and `finish_reason`, the last one's token counts —
//! and this reads that shape in one pass. Anything else (tool-call deltas, usage `*_details`,
//! `\u` escapes, an unknown field holding an object or array, invalid JSON) gives `None`, and
//! the caller reads the event with serde as before. So a chunk this reads is the chunk serde
//! would read, never a different one; [`same_as_serde`] checks that (every debug build, so the
//! fuzz targets, and the tests below).

use std::borrow::Cow;
use std::sync::Arc;

use crate::json_string;
use crate::types::{chunk_object_of, share, ChatChunk, ChunkChoice, Delta, Usage, CHUNK_OBJECT};

/// Reads `data` (one event's JSON) when it has the common shape; `None` otherwise. `id` and
/// `model` are the stream's shared copies ([`share`]).
pub(crate) fn read(data: &str, id: &mut Arc<str>, model: &mut Arc<str>) -> Option<ChatChunk> {
    let mut s = Scan { s: data, i: 0 };
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
                s.array(|s| {
                    choices.push(choice(s)?);
                    Some(())
                })?;
            }
            "usage" => {
                seen.first(5)?;
                if !s.null() {
                    usage = Some(read_usage(s)?);
                }
            }
            _ => s.skip_scalar()?,
        }
        Some(())
    })?;
    s.ws();
    (s.i == data.len()).then_some(())?;
    Some(ChatChunk {
        id: share(id, &chunk_id),
        object,
        created,
        model: share(model, &chunk_model),
        choices,
        usage,
    })
}

/// The last chunk's token counts (their `*_details` objects go to serde).
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
            _ => s.skip_scalar()?,
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
                c.index = u32::try_from(s.uint()?).ok()?;
            }
            "delta" => {
                seen.first(1)?;
                c.delta = delta(s)?;
            }
            "finish_reason" => {
                seen.first(2)?;
                c.finish_reason = s.nullable_string()?.map(Cow::into_owned);
            }
            _ => s.skip_scalar()?,
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
                d.role = s.nullable_string()?.map(Cow::into_owned);
            }
            "content" => {
                seen.first(1)?;
                d.content = s.nullable_string()?.map(Cow::into_owned);
            }
            "reasoning_content" => {
                seen.first(2)?;
                d.reasoning_content = s.nullable_string()?.map(Cow::into_owned);
            }
            "tool_calls" => {
                seen.first(3)?;
                s.null().then_some(())?;
            }
            _ => s.skip_scalar()?,
        }
        Some(())
    })?;
    Some(d)
}

/// The known fields met so far: serde's derive refuses a field given twice, so this does too.
#[derive(Default)]
struct Seen(u8);

impl Seen {
    fn first(&mut self, bit: u8) -> Option<()> {
        let had = self.0 & (1 << bit) != 0;
        self.0 |= 1 << bit;
        (!had).then_some(())
    }
}

/// A cursor over JSON text. Every method returns `None` for what it does not read (the whole
/// chunk then goes to serde), so none needs to tell invalid JSON from an unhandled shape.
struct Scan<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    fn literal(&mut self, word: &str) -> bool {
        self.ws();
        let hit = self.s.as_bytes()[self.i..].starts_with(word.as_bytes());
        if hit {
            self.i += word.len();
        }
        hit
    }

    fn null(&mut self) -> bool {
        self.literal("null")
    }

    /// `{ "key": value, … }`, `field` reading each value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &str) -> Option<()>) -> Option<()> {
        self.eat(b'{').then_some(())?;
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.ws();
            // A key with an escape is rare enough to leave to serde.
            let key = self.plain_string()?;
            self.eat(b':').then_some(())?;
            field(self, key)?;
            if self.eat(b',') {
                continue;
            }
            return self.eat(b'}').then_some(());
        }
    }

    /// `[ item, … ]`.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[').then_some(())?;
        if self.eat(b']') {
            return Some(());
        }
        loop {
            item(self)?;
            if self.eat(b',') {
                continue;
            }
            return self.eat(b']').then_some(());
        }
    }

    fn nullable_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null() {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A string without escapes, borrowed: what nearly every key and value is. `None` at an
    /// escape or a control character (and past the end).
    #[inline]
    fn plain_string(&mut self) -> Option<&'a str> {
        self.eat(b'"').then_some(())?;
        let start = self.i;
        let end = json_string::plain_end(self.s.as_bytes(), start);
        (self.s.as_bytes().get(end) == Some(&b'"')).then_some(())?;
        self.i = end + 1;
        // `start` follows and `end` is an ASCII quote: both are char boundaries.
        self.s.get(start..end)
    }

    /// A string, borrowed unless it has escapes.
    #[inline]
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let at = self.i;
        if let Some(s) = self.plain_string() {
            return Some(Cow::Borrowed(s));
        }
        self.i = at;
        self.escaped_string().map(Cow::Owned)
    }

    /// A string with escapes. `\u` escapes go to serde (surrogate pairs and their errors are
    /// serde's to get right).
    #[cold]
    fn escaped_string(&mut self) -> Option<String> {
        self.eat(b'"').then_some(())?;
        let b = self.s.as_bytes();
        let mut owned = String::new();
        let mut from = self.i;
        loop {
            self.i = json_string::plain_end(b, self.i);
            match *b.get(self.i)? {
                b'"' => {
                    owned.push_str(&self.s[from..self.i]);
                    self.i += 1;
                    return Some(owned);
                }
                b'\\' => {
                    owned.push_str(&self.s[from..self.i]);
                    owned.push(match *b.get(self.i + 1)? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        _ => return None,
                    });
                    self.i += 2;
                    from = self.i;
                }
                // JSON forbids raw control characters in strings; serde says so.
                _ => return None,
            }
        }
    }

    /// A non-negative integer without fraction or exponent (anything else goes to serde).
    fn uint(&mut self) -> Option<u64> {
        self.ws();
        let b = self.s.as_bytes();
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(d @ b'0'..=b'9') = b.get(self.i).copied() {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        let leading_zero = digits > 1 && b[start] == b'0';
        let more = matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        (digits > 0 && !leading_zero && !more).then_some(n)
    }

    /// An unknown field's value, when it is a string, number, `true`, `false` or `null`; an
    /// object or array goes to serde (which ignores them, but checking them is its job).
    fn skip_scalar(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'-' | b'0'..=b'9' => self.number(),
            _ => (self.null() || self.literal("true") || self.literal("false")).then_some(()),
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, checked, not converted.
    fn number(&mut self) -> Option<()> {
        let b = self.s.as_bytes();
        let digits = |i: &mut usize| {
            let start = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - start
        };
        let mut i = self.i;
        i += usize::from(b.get(i) == Some(&b'-'));
        let int_start = i;
        let n = digits(&mut i);
        if n == 0 || (n > 1 && b[int_start] == b'0') {
            return None;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            (digits(&mut i) > 0).then_some(())?;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            i += usize::from(matches!(b.get(i), Some(b'+' | b'-')));
            (digits(&mut i) > 0).then_some(())?;
        }
        self.i = i;
        Some(())
    }
}

/// Checks that a chunk [`read`] gave is the chunk serde reads from the same `data`: panics
/// when not. Run on every fast reading in debug builds (so in the fuzz targets).
#[cfg(any(test, debug_assertions))]
pub(crate) fn same_as_serde(data: &str, fast: &ChatChunk) {
    let serde = super::openai::read_chunk_with_serde(data);
    let fast = serde_json::to_value(fast).expect("a chunk serializes");
    match serde {
        Ok(c) => assert_eq!(
            serde_json::to_value(&c).expect("a chunk serializes"),
            fast,
            "the chunk scan read {data:?} differently from serde"
        ),
        Err(e) => panic!("the chunk scan read {data:?}, which serde refuses: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(data: &str) -> Option<ChatChunk> {
        let (mut id, mut model) = (Arc::default(), Arc::default());
        let c = read(data, &mut id, &mut model);
        if let Some(c) = &c {
            same_as_serde(data, c);
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
    }

    /// What the scan leaves to serde (serde reads these, or refuses them).
    #[test]
    fn other_shapes_go_to_serde() {
        for data in [
            r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"id":"x","choices":[],"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":0}}}"#,
            r#"{"id":"x","choices":[],"usage":{"prompt_tokens":null}}"#,
            r#"{"id":"x","choices":[],"usage":{"prompt_tokens":1.0}}"#,
            r#"{"id":"x","choices":[],"usage":{"total_tokens":1,"total_tokens":2}}"#,
            r#"{"id":"x","choices":[{"index":0,"delta":{"content":"caf\u00e9"}}]}"#,
            r#"{"id":"x","created":1.5e9,"choices":[]}"#,
            r#"{"id":"x","created":"1700000000","choices":[]}"#,
            r#"{"id":"x","extra":{"a":1},"choices":[]}"#,
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

    /// Every prefix, and every one-byte change, of the common chunks: whatever the scan reads,
    /// serde reads the same (`fast` checks), and invalid JSON is never read.
    #[test]
    fn damaged_chunks_are_never_read_differently_from_serde() {
        let alphabet = b" \"\\{}[]:,0123456789.-eEnulltruefalse\n\tabc/";
        let mut read = 0;
        for data in COMMON {
            for end in 0..data.len() {
                if data.is_char_boundary(end) && fast(&data[..end]).is_some() {
                    read += 1;
                }
            }
            let bytes = data.as_bytes();
            for at in 0..bytes.len() {
                for &c in alphabet {
                    let mut m = bytes.to_vec();
                    m[at] = c;
                    if let Ok(s) = std::str::from_utf8(&m) {
                        read += usize::from(fast(s).is_some());
                    }
                    let mut m = bytes.to_vec();
                    m.insert(at, c);
                    if let Ok(s) = std::str::from_utf8(&m) {
                        read += usize::from(fast(s).is_some());
                    }
                }
                let mut m = bytes.to_vec();
                m.remove(at);
                if let Ok(s) = std::str::from_utf8(&m) {
                    read += usize::from(fast(s).is_some());
                }
            }
        }
        // Many changes keep the chunk valid (a letter in a string): those were compared.
        assert!(read > 1000, "only {read} changed chunks were read");
    }
}
