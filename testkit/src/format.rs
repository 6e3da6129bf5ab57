//! The wire format of an exchange, chosen by the request path, and the
//! bodies each format gives a behaviour.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::prompt::{Answer, Prompt};
use crate::{anthropic, bedrock, cohere, gemini, ollama, openai, replicate, vertex};

/// Which provider API a request speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `.../chat/completions`, and any path that is not Anthropic's.
    OpenAi,
    /// `.../v1/messages`.
    Anthropic,
    /// `.../models/{model}:generateContent` and `:streamGenerateContent`.
    Gemini,
    /// `.../v2/chat`.
    Cohere,
    /// `.../api/chat` (Ollama's native API).
    Ollama,
    /// `.../model/{id}/converse` and `.../converse-stream` (AWS event-stream frames).
    Bedrock,
    /// Replicate's `.../predictions` and the URLs of one prediction.
    Replicate,
    /// Gemini on Vertex AI: `.../publishers/google/models/M:generateContent`, the Gemini
    /// format with Vertex's error wording.
    VertexGemini,
    /// Claude on Vertex AI: `.../publishers/anthropic/models/M:rawPredict` (and
    /// `:streamRawPredict`), Anthropic's body with Google's front door for errors. Gemini on
    /// Vertex is [`Format::Gemini`].
    VertexAnthropic,
    /// An OAuth token endpoint (`.../token`), for Vertex's service-account flow.
    GoogleToken,
}

/// How a provider refuses content.
pub(crate) enum Refusal {
    /// An error answer with this status and body.
    Error(u16, Value),
    /// A 200 whose body (streaming: whose one event) says the prompt was blocked.
    Blocked(Value),
    /// An ordinary answer whose text declines (Ollama has no content filter).
    Text(&'static str),
}

/// A streamed response, in three parts so faults can cut it: events before
/// the content, one event per content piece, events after the content.
/// Each event is complete SSE text (ending with a blank line), or one whole
/// binary event-stream frame for Bedrock.
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
        if bedrock::is_converse_path(path) {
            return Format::Bedrock;
        }
        if bedrock::is_converse_path(path) {
            return Format::Bedrock;
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = path.trim_end_matches('/');
        let vertex = path.contains("/publishers/");
        if vertex && (path.ends_with(":rawPredict") || path.ends_with(":streamRawPredict")) {
            Format::VertexAnthropic
        } else if vertex
            && (path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent"))
        {
            Format::VertexGemini
        } else if path.ends_with("/token") {
            Format::GoogleToken
        } else if path.ends_with("/messages") {
            Format::Anthropic
        } else if path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent") {
            Format::Gemini
        } else if path.ends_with("/v2/chat") {
            Format::Cohere
        } else if path.ends_with("/api/chat") {
            Format::Ollama
        } else if path.split('/').any(|s| s == "predictions") {
            Format::Replicate
        } else {
            Format::OpenAi
        }
    }

    /// What the behaviours need to know of a request in this format.
    pub fn prompt(self, body: &Value, path: &str) -> Prompt {
        match self {
            Format::OpenAi | Format::Anthropic | Format::Cohere | Format::Replicate => {
                Prompt::from_body(body)
            }
            Format::Gemini | Format::VertexGemini => gemini::prompt(body, path),
            Format::Bedrock => {
                let mut p = Prompt::from_body(body);
                // Bedrock says "stream" in the path (`/converse-stream`), not in the body.
                p.stream |= bedrock::is_stream_path(path);
                p
            }
            Format::VertexAnthropic => {
                let mut p = Prompt::from_body(body);
                // The model and the wish to stream are in the URL.
                p.stream |= vertex::streams(path);
                if let Some(m) = vertex::model_of(path) {
                    p.model = m;
                }
                p
            }
            Format::GoogleToken => Prompt::default(),
            Format::Ollama => {
                let mut p = Prompt::from_body(body);
                // Ollama streams unless told not to.
                p.stream |= body.get("stream").is_none();
                p
            }
        }
    }

    /// The content type of a streamed answer.
    pub fn stream_content_type(self) -> &'static str {
        match self {
            Format::OpenAi
            | Format::Anthropic
            | Format::Gemini
            | Format::VertexGemini
            | Format::Cohere
            | Format::Replicate
            | Format::VertexAnthropic
            | Format::GoogleToken => "text/event-stream",
            Format::Ollama => ollama::NDJSON,
            Format::Bedrock => bedrock::EVENT_STREAM,
        }
    }

    /// The error body for a status.
    pub fn error(self, status: u16) -> Value {
        match self {
            Format::OpenAi => openai::error(status),
            Format::Anthropic => anthropic::error(status),
            Format::Gemini => gemini::error(status),
            Format::VertexGemini => vertex::error(status),
            Format::Cohere => cohere::error(status),
            Format::Ollama => ollama::error(status),
            Format::Bedrock => bedrock::error(status),
            Format::Replicate => replicate::error(status),
            Format::VertexAnthropic => vertex::anthropic_error(status, anthropic::error(status)),
            Format::GoogleToken => vertex::token_error(status),
        }
    }

    /// A header that names the error, where the format has one (Bedrock's
    /// `x-amzn-ErrorType`). `status` is the HTTP status of the error answer.
    pub fn error_header(self, status: u16) -> Option<(String, String)> {
        match self {
            Format::Bedrock => Some(("x-amzn-ErrorType".to_owned(), bedrock::error_type(status))),
            _ => None,
        }
    }

    /// The 400 body for a prompt of `tokens` beyond a window of `limit`.
    pub fn overflow(self, limit: u64, tokens: u64) -> Value {
        match self {
            Format::OpenAi => openai::overflow(limit, tokens),
            Format::Anthropic => anthropic::overflow(limit, tokens),
            Format::Gemini | Format::VertexGemini => gemini::overflow(limit, tokens),
            Format::Cohere => cohere::overflow(limit, tokens),
            Format::Ollama => ollama::overflow(limit, tokens),
            Format::Bedrock => bedrock::overflow(limit, tokens),
            Format::Replicate => replicate::overflow(limit, tokens),
            Format::VertexAnthropic => {
                vertex::wrap_anthropic(400, &anthropic::overflow(limit, tokens))
            }
            Format::GoogleToken => vertex::token_error(400),
        }
    }

    /// How this format's provider refuses content.
    pub fn policy(self) -> Refusal {
        match self {
            Format::OpenAi => Refusal::Error(400, openai::policy()),
            Format::Anthropic => Refusal::Error(400, anthropic::policy()),
            Format::Gemini | Format::VertexGemini => Refusal::Blocked(gemini::policy()),
            Format::Cohere => Refusal::Error(400, cohere::policy()),
            Format::Ollama => Refusal::Text(ollama::REFUSAL),
            Format::Bedrock => Refusal::Error(400, bedrock::policy()),
            Format::Replicate => Refusal::Error(400, replicate::policy()),
            Format::VertexAnthropic => {
                Refusal::Error(400, vertex::wrap_anthropic(400, &anthropic::policy()))
            }
            Format::GoogleToken => Refusal::Error(400, vertex::token_error(400)),
        }
    }

    /// The overloaded error a 200 response can carry in its body.
    pub fn inline_error(self) -> Value {
        match self {
            Format::OpenAi => openai::inline_error(),
            Format::Anthropic => anthropic::inline_error(),
            Format::Gemini | Format::VertexGemini => gemini::inline_error(),
            Format::Cohere => cohere::inline_error(),
            Format::Ollama => ollama::inline_error(),
            Format::Bedrock => bedrock::inline_error(),
            Format::Replicate => replicate::inline_error(),
            Format::VertexAnthropic => anthropic::inline_error(),
            Format::GoogleToken => vertex::token_error(500),
        }
    }

    /// The overloaded error as an SSE event.
    pub fn stream_error(self) -> Vec<u8> {
        match self {
            Format::OpenAi => event(None, &openai::inline_error()),
            Format::Anthropic => event(Some("error"), &anthropic::inline_error()),
            Format::Gemini | Format::VertexGemini => event(None, &gemini::inline_error()),
            Format::Cohere => cohere::stream_error(),
            Format::Ollama => ollama::line(&ollama::inline_error()),
            Format::Bedrock => bedrock::stream_error(),
            Format::Replicate => replicate::stream_error(),
            Format::VertexAnthropic => event(Some("error"), &anthropic::inline_error()),
            Format::GoogleToken => event(None, &vertex::token_error(500)),
        }
    }

    /// A complete non-streaming success body.
    pub fn response(self, prompt: &Prompt, answer: &Answer) -> Value {
        match self {
            Format::OpenAi => openai::response(prompt, answer),
            Format::Anthropic => anthropic::response(prompt, answer),
            Format::Gemini | Format::VertexGemini => gemini::response(prompt, answer),
            Format::Cohere => cohere::response(prompt, answer),
            Format::Ollama => ollama::response(prompt, answer),
            Format::Bedrock => bedrock::response(prompt, answer),
            Format::Replicate => replicate::response(prompt, answer),
            Format::VertexAnthropic => anthropic::response(prompt, answer),
            Format::GoogleToken => vertex::token(),
        }
    }

    /// A streamed success.
    pub fn stream(self, prompt: &Prompt, answer: &Answer) -> Sse {
        match self {
            Format::OpenAi => openai::stream(prompt, answer),
            Format::Anthropic => anthropic::stream(prompt, answer),
            Format::Gemini | Format::VertexGemini => gemini::stream(prompt, answer),
            Format::Cohere => cohere::stream(prompt, answer),
            Format::Ollama => ollama::stream(prompt, answer),
            Format::Bedrock => bedrock::stream(prompt, answer),
            Format::Replicate => replicate::stream(prompt, answer),
            Format::VertexAnthropic => anthropic::stream(prompt, answer),
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
        assert_eq!(
            Format::from_path("/a/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
            Format::Gemini
        );
        assert_eq!(Format::from_path("/a/v2/chat"), Format::Cohere);
        assert_eq!(Format::from_path("/a/v1/chat"), Format::OpenAi);
        assert_eq!(Format::from_path("/a/api/chat"), Format::Ollama);
        assert_eq!(Format::from_path("/a/v1/chat/completions"), Format::OpenAi);
        assert_eq!(
            Format::from_path("/a/model/x.y-v1%3A0/converse"),
            Format::Bedrock
        );
        assert_eq!(
            Format::from_path("/a/model/x/converse-stream"),
            Format::Bedrock
        );
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
