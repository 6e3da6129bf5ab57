//! The wire format of an exchange, chosen by the request path, and the
//! bodies each format gives a behaviour.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::prompt::{Answer, Prompt};
use crate::{anthropic, openai, vertex};

/// Which provider API a request speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `.../chat/completions`, and any path that is not Anthropic's.
    OpenAi,
    /// `.../v1/messages`.
    Anthropic,
    /// Vertex AI, Google's models: `…/publishers/google/models/M:generateContent`.
    VertexGemini,
    /// Vertex AI, Claude: `…/publishers/anthropic/models/M:rawPredict` (Anthropic's bodies,
    /// Google's errors around them).
    VertexAnthropic,
    /// An OAuth token endpoint: `…/token`.
    GoogleToken,
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
        if path.contains("/publishers/") {
            if path.ends_with(":rawPredict") || path.ends_with(":streamRawPredict") {
                return Format::VertexAnthropic;
            }
            if path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent") {
                return Format::VertexGemini;
            }
        }
        if path.ends_with("/token") {
            return Format::GoogleToken;
        }
        if path.trim_end_matches('/').ends_with("/messages") {
            Format::Anthropic
        } else {
            Format::OpenAi
        }
    }

    /// The error body for a status.
    pub fn error(self, status: u16) -> Value {
        match self {
            Format::OpenAi => openai::error(status),
            Format::Anthropic => anthropic::error(status),
            Format::VertexGemini => vertex::error(status),
            Format::VertexAnthropic => vertex::anthropic_error(status, anthropic::error(status)),
            Format::GoogleToken => vertex::token_error(status),
        }
    }

    /// The 400 body for a prompt of `tokens` beyond a window of `limit`.
    pub fn overflow(self, limit: u64, tokens: u64) -> Value {
        match self {
            Format::OpenAi => openai::overflow(limit, tokens),
            Format::Anthropic => anthropic::overflow(limit, tokens),
            Format::VertexGemini => vertex::overflow(limit, tokens),
            Format::VertexAnthropic => {
                vertex::wrap_anthropic(400, &anthropic::overflow(limit, tokens))
            }
            Format::GoogleToken => vertex::token_error(400),
        }
    }

    /// The body of a content-policy refusal: a 400, or a 200 where [`Format::policy_in_band`].
    pub fn policy(self) -> Value {
        match self {
            Format::OpenAi => openai::policy(),
            Format::Anthropic => anthropic::policy(),
            Format::VertexGemini => vertex::policy(),
            Format::VertexAnthropic => vertex::wrap_anthropic(400, &anthropic::policy()),
            Format::GoogleToken => vertex::token_error(400),
        }
    }

    /// Gemini refuses a prompt with a 200 (`promptFeedback.blockReason`), streamed as an event.
    pub fn policy_in_band(self) -> bool {
        self == Format::VertexGemini
    }

    /// The overloaded error a 200 response can carry in its body.
    pub fn inline_error(self) -> Value {
        match self {
            Format::OpenAi => openai::inline_error(),
            Format::Anthropic | Format::VertexAnthropic => anthropic::inline_error(),
            Format::VertexGemini => vertex::inline_error(),
            Format::GoogleToken => vertex::token_error(500),
        }
    }

    /// The overloaded error as an SSE event.
    pub fn stream_error(self) -> Vec<u8> {
        match self {
            Format::OpenAi => event(None, &openai::inline_error()),
            Format::Anthropic | Format::VertexAnthropic => {
                event(Some("error"), &anthropic::inline_error())
            }
            Format::VertexGemini | Format::GoogleToken => event(None, &self.inline_error()),
        }
    }

    /// A complete non-streaming success body.
    pub fn response(self, prompt: &Prompt, answer: &Answer) -> Value {
        match self {
            Format::OpenAi => openai::response(prompt, answer),
            Format::Anthropic | Format::VertexAnthropic => anthropic::response(prompt, answer),
            Format::VertexGemini => vertex::response(prompt, answer),
            Format::GoogleToken => vertex::token(),
        }
    }

    /// A streamed success.
    pub fn stream(self, prompt: &Prompt, answer: &Answer) -> Sse {
        match self {
            Format::OpenAi => openai::stream(prompt, answer),
            Format::Anthropic | Format::VertexAnthropic => anthropic::stream(prompt, answer),
            Format::VertexGemini => vertex::stream(prompt, answer),
            Format::GoogleToken => Sse {
                body: vec![event(None, &vertex::token())],
                ..Sse::default()
            },
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
        let vertex = "/a/v1/projects/p/locations/us-central1/publishers";
        assert_eq!(
            Format::from_path(&format!(
                "{vertex}/google/models/gemini-2.5-pro:generateContent"
            )),
            Format::VertexGemini
        );
        assert_eq!(
            Format::from_path(&format!(
                "{vertex}/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
            )),
            Format::VertexGemini
        );
        assert_eq!(
            Format::from_path(&format!(
                "{vertex}/anthropic/models/claude-sonnet-4@20250514:streamRawPredict"
            )),
            Format::VertexAnthropic
        );
        assert_eq!(Format::from_path("/tok/token"), Format::GoogleToken);
        assert_eq!(
            Format::from_path("/a/v1/projects/p/locations/l/endpoints/openapi/chat/completions"),
            Format::OpenAi
        );
    }
}
