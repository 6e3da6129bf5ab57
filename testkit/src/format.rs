//! The wire format of an exchange, chosen by the request path, and the
//! bodies each format gives a behaviour.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::prompt::{Answer, Prompt};
use crate::{anthropic, openai, replicate};

/// Which provider API a request speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `.../chat/completions`, and any path that is not Anthropic's.
    OpenAi,
    /// `.../v1/messages`.
    Anthropic,
    /// Replicate's `.../predictions` and the URLs of one prediction.
    Replicate,
}

/// A streamed response, in three parts so faults can cut it: events before
/// the content, one event per content piece, events after the content.
/// Each event is complete SSE text (ending with a blank line).
#[derive(Clone, Debug, Default)]
pub(crate) struct Sse {
    pub head: Vec<Vec<u8>>,
    pub body: Vec<Vec<u8>>,
    pub tail: Vec<Vec<u8>>,
}

impl Sse {
    pub fn all(self) -> Vec<Vec<u8>> {
        let mut events = self.head;
        events.extend(self.body);
        events.extend(self.tail);
        events
    }
}

/// A named SSE event (`event:` line, when named, then one `data:` line).
pub(crate) fn event(name: Option<&str>, data: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    // Serialising a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b"\n\n");
    out
}

/// A fresh number for response ids.
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Format {
    pub fn from_path(path: &str) -> Format {
        let path = path.split(['?', '#']).next().unwrap_or("");
        if path.trim_end_matches('/').ends_with("/messages") {
            Format::Anthropic
        } else if path.split('/').any(|s| s == "predictions") {
            Format::Replicate
        } else {
            Format::OpenAi
        }
    }

    /// The error body for a status.
    pub fn error(self, status: u16) -> Value {
        match self {
            Format::OpenAi => openai::error(status),
            Format::Anthropic => anthropic::error(status),
            Format::Replicate => replicate::error(status),
        }
    }

    /// The 400 body for a prompt of `tokens` beyond a window of `limit`.
    pub fn overflow(self, limit: u64, tokens: u64) -> Value {
        match self {
            Format::OpenAi => openai::overflow(limit, tokens),
            Format::Anthropic => anthropic::overflow(limit, tokens),
            Format::Replicate => replicate::overflow(limit, tokens),
        }
    }

    /// The 400 body of a content-policy refusal.
    pub fn policy(self) -> Value {
        match self {
            Format::OpenAi => openai::policy(),
            Format::Anthropic => anthropic::policy(),
            Format::Replicate => replicate::policy(),
        }
    }

    /// The overloaded error a 200 response can carry in its body.
    pub fn inline_error(self) -> Value {
        match self {
            Format::OpenAi => openai::inline_error(),
            Format::Anthropic => anthropic::inline_error(),
            Format::Replicate => replicate::inline_error(),
        }
    }

    /// The overloaded error as an SSE event.
    pub fn stream_error(self) -> Vec<u8> {
        match self {
            Format::OpenAi => event(None, &openai::inline_error()),
            Format::Anthropic => event(Some("error"), &anthropic::inline_error()),
            Format::Replicate => replicate::stream_error(),
        }
    }

    /// A complete non-streaming success body.
    pub fn response(self, prompt: &Prompt, answer: &Answer) -> Value {
        match self {
            Format::OpenAi => openai::response(prompt, answer),
            Format::Anthropic => anthropic::response(prompt, answer),
            Format::Replicate => replicate::response(prompt, answer),
        }
    }

    /// A streamed success.
    pub fn stream(self, prompt: &Prompt, answer: &Answer) -> Sse {
        match self {
            Format::OpenAi => openai::stream(prompt, answer),
            Format::Anthropic => anthropic::stream(prompt, answer),
            Format::Replicate => replicate::stream(prompt, answer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_path() {
        assert_eq!(Format::from_path("/a/v1/chat/completions"), Format::OpenAi);
        assert_eq!(Format::from_path("/a/v1/messages"), Format::Anthropic);
        assert_eq!(
            Format::from_path("/a/v1/messages?beta=true"),
            Format::Anthropic
        );
        assert_eq!(Format::from_path("/a/v1/embeddings"), Format::OpenAi);
        for p in [
            "/a/v1/predictions",
            "/a/v1/models/meta/llama/predictions",
            "/a/v1/deployments/acme/x/predictions",
            "/a/v1/predictions/abc/stream",
            "/a/v1/predictions/abc/cancel?x=1",
        ] {
            assert_eq!(Format::from_path(p), Format::Replicate, "{p}");
        }
    }
}
