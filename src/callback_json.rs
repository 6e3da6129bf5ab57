//! JSON text as async callbacks and streams hand it over: each text followed by a NUL, so
//! that C gets a pointer to it rather than a copy of its own.
//!
//! The text is written on a worker and read, then freed, on the callback thread (or, for a
//! blocking stream, between two steps of it). glibc takes the allocating thread's arena lock to
//! free its memory, so every allocation freed on the other thread contends with the worker's own
//! (in a profile of `llmr_stream_async` at 64 in flight, ~16% of the samples waited on malloc's
//! arena locks): the chunks of one batch share one buffer ([`ChunkBatch`]), and an answer is
//! one [`JsonText`], not a `String` and then a `CString` copied from it.
//!
//! Why the texts can be handed to C as they are: every one is JSON written by `response_json`,
//! `chunk_json` or serde_json, then a NUL (`JsonText::of_response`, `ChunkBatch::push_with`).
//! Those write only UTF-8 and no NUL: a NUL in a string is escaped as `\u0000` (serde_json, and
//! `json_string::write`, which hands any string with a control character to serde_json), and
//! keys and numbers are ASCII.

use std::ffi::{CStr, CString};

use crate::chunk_json::ChunkHead;
use crate::types::{ChatChunk, ChatResponse};

/// A whole answer's (or error's) JSON and its NUL.
pub struct JsonText(Vec<u8>);

impl JsonText {
    /// An answer's JSON ([`crate::response_json`]) and a NUL.
    pub fn of_response(resp: &ChatResponse) -> JsonText {
        // Most answers fit: serde_json's own start (128 bytes) grew several times.
        let mut text = Vec::with_capacity(512);
        crate::response_json::write(resp, &mut text);
        text.push(0);
        JsonText(text)
    }

    pub fn as_str(&self) -> &str {
        ChunkJson { with_nul: &self.0 }.as_str()
    }

    pub fn as_c_str(&self) -> &CStr {
        ChunkJson { with_nul: &self.0 }.as_c_str()
    }

    /// The JSON as an owned C string, without a copy (what a blocking call hands C).
    pub fn into_c_string(self) -> CString {
        // SAFETY: `of_response` ended the text with its only NUL (module doc).
        unsafe { CString::from_vec_with_nul_unchecked(self.0) }
    }

    pub fn into_string(mut self) -> String {
        self.0.pop();
        // SAFETY: JSON text (UTF-8; module doc) without the NUL `of_response` added.
        unsafe { String::from_utf8_unchecked(self.0) }
    }
}

impl std::fmt::Debug for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// The most chunks one batch holds.
pub const BATCH: usize = 16;
/// What a sink's first batch reserves; later ones reserve what the last one used.
const FIRST_RESERVE: usize = 512;

/// The chunks a stream hands its callback at once, in one buffer.
pub struct ChunkBatch {
    /// The chunks' JSON, each followed by a NUL (written by `push_with`).
    text: Vec<u8>,
    /// Where each chunk ends (past its NUL).
    ends: [u32; BATCH],
    len: usize,
    /// What the first push reserves.
    reserve: usize,
    /// The stream's chunk opening, written once (handed on to the next batch by `take`).
    head: ChunkHead,
}

/// One chunk's JSON, valid while its batch is.
#[derive(Clone, Copy)]
pub struct ChunkJson<'a> {
    /// The JSON and its NUL.
    with_nul: &'a [u8],
}

impl<'a> ChunkJson<'a> {
    pub fn as_str(&self) -> &'a str {
        let json = &self.with_nul[..self.with_nul.len() - 1];
        // SAFETY: JSON text (only UTF-8) and a NUL (`push_with`, `of_response`; module doc).
        unsafe { std::str::from_utf8_unchecked(json) }
    }

    /// The JSON as a C string, without a copy.
    pub fn as_c_str(&self) -> &'a CStr {
        // SAFETY: every text ends with a NUL (`push_with`, `of_response`), and holds no other
        // (module doc).
        unsafe { CStr::from_bytes_with_nul_unchecked(self.with_nul) }
    }
}

impl Default for ChunkBatch {
    fn default() -> ChunkBatch {
        ChunkBatch {
            text: Vec::new(),
            ends: [0; BATCH],
            len: 0,
            reserve: FIRST_RESERVE,
            head: ChunkHead::default(),
        }
    }
}

impl ChunkBatch {
    /// Adds a stream chunk's JSON; true when the batch is full.
    pub fn push_chunk(&mut self, chunk: &ChatChunk) -> bool {
        self.push_with(|text, head| head.write(chunk, text))
    }

    /// Adds `value`'s JSON; true when the batch is full.
    #[cfg(test)]
    pub fn push(&mut self, value: &impl serde::Serialize) -> bool {
        self.push_with(|text, _| {
            serde_json::to_writer(text, value).expect("a response always serialises")
        })
    }

    fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>, &mut ChunkHead)) -> bool {
        debug_assert!(self.len < BATCH);
        if self.text.capacity() == 0 {
            self.text.reserve(self.reserve);
        }
        // JSON text holds no raw NUL (one in a string is escaped as `\u0000`).
        write(&mut self.text, &mut self.head);
        self.text.push(0);
        self.ends[self.len] = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        self.len += 1;
        self.len == BATCH
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The batch so far, leaving an empty one (nothing allocated until its first push, which
    /// reserves as much as this one used).
    pub fn take(&mut self) -> ChunkBatch {
        let next = ChunkBatch {
            reserve: self.text.len().max(FIRST_RESERVE),
            head: std::mem::take(&mut self.head),
            ..ChunkBatch::default()
        };
        std::mem::replace(self, next)
    }

    pub fn iter(&self) -> impl Iterator<Item = ChunkJson<'_>> {
        let mut start = 0;
        self.ends[..self.len].iter().map(move |&end| {
            let with_nul = &self.text[start..end as usize];
            start = end as usize;
            ChunkJson { with_nul }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_chunk_comes_back_whole_and_nul_terminated_in_order() {
        let mut b = ChunkBatch::default();
        let chunks = [
            json!({"a": 1}),
            json!({"text": "a NUL \u{0} inside, and ünïcode"}),
            json!([]),
        ];
        for c in &chunks {
            assert!(!b.push(c));
        }
        assert_eq!(b.len(), 3);
        let got: Vec<_> = b.iter().collect();
        for (c, j) in chunks.iter().zip(&got) {
            assert_eq!(j.as_str(), c.to_string());
            assert_eq!(j.as_c_str().to_str().unwrap(), c.to_string());
        }
        // The NUL inside a string is escaped: the C string is the whole JSON.
        assert!(got[1].as_str().contains("\\u0000"));
    }

    #[test]
    fn stream_chunks_across_batches_are_their_json() {
        let mut b = ChunkBatch::default();
        let mut got = Vec::new();
        let chunks: Vec<ChatChunk> = (0..40u64)
            .map(|i| {
                serde_json::from_value(json!({
                    "id": "c1", "created": 5 + i / 30, "model": "m",
                    "choices": [{"index": 0, "delta": {"content": format!("t{i}")}}]
                }))
                .unwrap()
            })
            .collect();
        for c in &chunks {
            if b.push_chunk(c) {
                got.extend(b.take().iter().map(|j| j.as_str().to_owned()));
            }
        }
        got.extend(b.take().iter().map(|j| j.as_str().to_owned()));
        let want: Vec<_> = chunks
            .iter()
            .map(|c| serde_json::to_string(c).unwrap())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_answer_is_its_json_as_a_string_and_as_a_c_string() {
        let mut r = ChatResponse::default();
        r.choices.push(crate::types::Choice {
            message: crate::types::ResponseMessage {
                content: Some("ünïcode and a NUL \u{0}".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        let want = serde_json::to_string(&r).unwrap();
        assert!(want.contains("\\u0000"));
        let t = JsonText::of_response(&r);
        assert_eq!(t.as_str(), want);
        assert_eq!(t.as_c_str().to_str().unwrap(), want);
        assert_eq!(t.into_string(), want);
    }

    #[test]
    fn a_batch_is_full_at_the_limit_and_take_leaves_an_empty_one() {
        let mut b = ChunkBatch::default();
        let full = (0..BATCH).map(|i| b.push(&i)).collect::<Vec<_>>();
        assert_eq!(full.iter().filter(|f| **f).count(), 1);
        assert!(full[BATCH - 1]);
        let used = b.text.len();
        let taken = b.take();
        assert_eq!(taken.len(), BATCH);
        assert_eq!(
            taken
                .iter()
                .map(|j| j.as_str().to_owned())
                .collect::<Vec<_>>(),
            (0..BATCH).map(|i| i.to_string()).collect::<Vec<_>>()
        );
        assert!(b.is_empty());
        assert_eq!(b.iter().count(), 0);
        assert_eq!(b.text.capacity(), 0, "nothing allocated before a push");
        b.push(&1);
        assert!(b.text.capacity() >= used);
    }
}
