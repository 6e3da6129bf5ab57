//! MOCK: answers in-process from `litellm_params`, for demos and for users' own tests.
//!
//! - `mock_response`: the answer text (streamed word by word);
//! - `mock_tool_calls`: `[{"name", "arguments"}]` answered as tool calls;
//! - `mock_error`: fail every call: a status name (`"rate_limited"`), or an object
//!   `{"http_status": 429, "message": "...", "retry_after": 2}` classified like a real provider's;
//! - `mock_delay_ms` / `mock_chunk_delay_ms`: latency before the answer and between chunks;
//! - `max_input_tokens` (deployment field): prompts estimated above it fail as a context overflow,
//!   as a real provider would, so context-window fallback can be tried offline.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::classify::{classify, ErrorParts};
use super::{BoxFuture, ChatClient, ChunkStream};
use crate::config::DeploymentConfig;
use crate::errors::{Error, Status};
use crate::types::{
    unix_now, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, FunctionCall,
    FunctionDelta, ResponseMessage, ToolCall, ToolCallDelta, Usage,
};

const DEFAULT_RESPONSE: &str = "This is a mock response from llmr.";

pub struct MockClient {
    provider: Arc<str>,
    model: String,
    response: String,
    tool_calls: Vec<(String, String)>,
    error: Option<Error>,
    delay: Duration,
    chunk_delay: Duration,
    max_input_tokens: Option<u64>,
}

impl MockClient {
    pub fn new(d: &DeploymentConfig) -> Result<MockClient, String> {
        let p = &d.params;
        let response = match p.get("mock_response") {
            None | Some(Value::Null) => DEFAULT_RESPONSE.to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("`litellm_params.mock_response` must be a string".into()),
        };
        let tool_calls = match p.get("mock_tool_calls") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| {
                    let name = t
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or("`mock_tool_calls[]` entries need a string `name`")?;
                    let args = match t.get("arguments") {
                        None | Some(Value::Null) => "{}".to_owned(),
                        Some(Value::String(s)) => s.clone(),
                        Some(v) => v.to_string(),
                    };
                    Ok((name.to_owned(), args))
                })
                .collect::<Result<_, String>>()?,
            Some(_) => return Err("`litellm_params.mock_tool_calls` must be an array".into()),
        };
        let error = match p.get("mock_error") {
            None | Some(Value::Null) => None,
            Some(v) => Some(mock_error(v)?),
        };
        let ms = |k: &str| -> Result<Duration, String> {
            match p.get(k) {
                None | Some(Value::Null) => Ok(Duration::ZERO),
                Some(v) => v
                    .as_u64()
                    .filter(|ms| *ms <= 600_000)
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        format!("`litellm_params.{k}` must be milliseconds from 0 to 600000")
                    }),
            }
        };
        Ok(MockClient {
            provider: d.prefix.clone(),
            model: d.model.clone(),
            response,
            tool_calls,
            error,
            delay: ms("mock_delay_ms")?,
            chunk_delay: ms("mock_chunk_delay_ms")?,
            max_input_tokens: d.max_input_tokens,
        })
    }

    /// The failure this call should end with, if any.
    fn failure(&self, req: &ChatRequest) -> Option<Error> {
        if let Some(e) = &self.error {
            return Some(e.clone().with_provider(&self.provider));
        }
        let window = self.max_input_tokens?;
        let need = req.estimate_prompt_tokens();
        (need > window).then(|| {
            classify(
                Some(400),
                ErrorParts {
                    code: Some("context_length_exceeded".into()),
                    kind: Some("invalid_request_error".into()),
                    message: format!(
                        "This model's maximum context length is {window} tokens. However, your messages resulted in {need} tokens."
                    ),
                },
            )
            .with_provider(&self.provider)
        })
    }

    fn usage(&self, req: &ChatRequest) -> Usage {
        let completion = self.response.split_whitespace().count() as u64
            + self
                .tool_calls
                .iter()
                .map(|(_, a)| a.len() as u64 / 4 + 1)
                .sum::<u64>();
        Usage::new(req.estimate_prompt_tokens(), completion)
    }

    fn id() -> String {
        format!("chatcmpl-mock-{:016x}", fastrand::u64(..))
    }
}

fn mock_error(v: &Value) -> Result<Error, String> {
    if let Some(name) = v.as_str() {
        // Only what a provider can answer: a deployment "failing" with `cancelled` or
        // `not_initialized` would read as the caller's own doing.
        const PROVIDER_STATUSES: [Status; 7] = [
            Status::ContextOverflow,
            Status::RateLimited,
            Status::Auth,
            Status::BadRequest,
            Status::ContentPolicy,
            Status::Timeout,
            Status::Upstream,
        ];
        let status = PROVIDER_STATUSES
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                format!(
                    "`mock_error`: `{name}` is not a status a provider can answer (one of {})",
                    PROVIDER_STATUSES.map(|s| s.name()).join(", ")
                )
            })?;
        let http = match status {
            Status::RateLimited => Some(429),
            Status::Auth => Some(401),
            Status::BadRequest | Status::ContextOverflow | Status::ContentPolicy => Some(400),
            Status::Upstream => Some(500),
            Status::Timeout => Some(408),
            _ => None,
        };
        let mut e = Error::new(status, format!("mock deployment told to fail with {name}"));
        e.http_status = http;
        return Ok(e);
    }
    let Value::Object(o) = v else {
        return Err("`mock_error` must be a status name or an object".into());
    };
    let http = o
        .get("http_status")
        .and_then(Value::as_u64)
        .filter(|s| (400..600).contains(s))
        .ok_or("`mock_error.http_status` must be an HTTP error status (400-599)")?
        as u16;
    let message = o
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("mock deployment told to fail")
        .to_owned();
    let code = o.get("code").and_then(Value::as_str).map(str::to_owned);
    let mut e = classify(
        Some(http),
        ErrorParts {
            code,
            kind: None,
            message,
        },
    );
    e.retry_after = o
        .get("retry_after")
        .and_then(Value::as_f64)
        .filter(|r| *r >= 0.0);
    Ok(e)
}

impl ChatClient for MockClient {
    fn complete<'a>(
        &'a self,
        req: &'a ChatRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ChatResponse, Error>> {
        Box::pin(async move {
            if !self.delay.is_zero() {
                if self.delay > timeout {
                    tokio::time::sleep(timeout).await;
                    return Err(Error::new(Status::Timeout, "mock deployment timed out"));
                }
                tokio::time::sleep(self.delay).await;
            }
            if let Some(e) = self.failure(req) {
                return Err(e);
            }
            let tool_calls: Vec<ToolCall> = self
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, (name, args))| ToolCall {
                    id: format!("call_mock_{i}"),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: name.clone(),
                        arguments: args.clone(),
                    },
                })
                .collect();
            let has_tools = !tool_calls.is_empty();
            Ok(ChatResponse {
                id: Self::id(),
                object: "chat.completion".into(),
                created: unix_now(),
                model: self.model.clone(),
                choices: vec![Choice {
                    index: 0,
                    message: ResponseMessage {
                        content: if has_tools {
                            None
                        } else {
                            Some(self.response.clone())
                        },
                        tool_calls: has_tools.then_some(tool_calls),
                        ..ResponseMessage::default()
                    },
                    finish_reason: Some(if has_tools { "tool_calls" } else { "stop" }.into()),
                }],
                usage: Some(self.usage(req)),
                llmr: None,
            })
        })
    }

    fn open_stream<'a>(
        &'a self,
        req: &'a ChatRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn ChunkStream>, Error>> {
        Box::pin(async move {
            if !self.delay.is_zero() {
                if self.delay > timeout {
                    tokio::time::sleep(timeout).await;
                    return Err(Error::new(Status::Timeout, "mock deployment timed out"));
                }
                tokio::time::sleep(self.delay).await;
            }
            if let Some(e) = self.failure(req) {
                return Err(e);
            }
            let (id, created): (Arc<str>, _) = (Self::id().into(), unix_now());
            let model: Arc<str> = self.model.as_str().into();
            let chunk = |delta: Delta, finish: Option<&str>| ChatChunk {
                id: id.clone(),
                object: crate::types::CHUNK_OBJECT.into(),
                created,
                model: model.clone(),
                choices: vec![ChunkChoice {
                    index: 0,
                    delta,
                    finish_reason: finish.map(str::to_owned),
                }],
                usage: None,
            };
            let mut chunks = VecDeque::new();
            if self.tool_calls.is_empty() {
                for word in self.response.split_inclusive(' ') {
                    chunks.push_back(chunk(
                        Delta {
                            content: Some(word.to_owned()),
                            ..Delta::default()
                        },
                        None,
                    ));
                }
            } else {
                for (i, (name, args)) in self.tool_calls.iter().enumerate() {
                    chunks.push_back(chunk(
                        Delta {
                            tool_calls: Some(vec![ToolCallDelta {
                                index: i as u32,
                                id: Some(format!("call_mock_{i}")),
                                kind: Some("function".into()),
                                function: Some(FunctionDelta {
                                    name: Some(name.clone()),
                                    arguments: Some(args.clone()),
                                }),
                            }]),
                            ..Delta::default()
                        },
                        None,
                    ));
                }
            }
            let finish = if self.tool_calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            };
            let mut last = chunk(Delta::default(), Some(finish));
            last.usage = Some(self.usage(req));
            chunks.push_back(last);
            Ok(Box::new(MockStream {
                chunks,
                delay: self.chunk_delay,
                #[cfg(test)]
                panic_after_first: crate::fault::at(req, "stream"),
                #[cfg(test)]
                given: 0,
            }) as Box<dyn ChunkStream>)
        })
    }
}

struct MockStream {
    chunks: VecDeque<ChatChunk>,
    delay: Duration,
    #[cfg(test)]
    panic_after_first: bool,
    #[cfg(test)]
    given: usize,
}

impl ChunkStream for MockStream {
    fn next_chunk(&mut self) -> BoxFuture<'_, Option<Result<ChatChunk, Error>>> {
        Box::pin(async move {
            #[cfg(test)]
            {
                if self.panic_after_first && self.given >= 1 {
                    panic!("llmr test fault at stream (after the first chunk)");
                }
                self.given += 1;
            }
            let c = self.chunks.pop_front()?;
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            Some(Ok(c))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_error_names_only_what_a_provider_can_answer() {
        for (name, http) in [
            ("rate_limited", Some(429)),
            ("auth", Some(401)),
            ("context_overflow", Some(400)),
            ("upstream", Some(500)),
            ("timeout", Some(408)),
        ] {
            let e = mock_error(&Value::from(name)).unwrap();
            assert_eq!(e.status.name(), name);
            assert_eq!(e.http_status, http, "{name}");
        }
        for name in [
            "cancelled",
            "not_initialized",
            "config",
            "invalid_argument",
            "internal",
            "ok",
            "nope",
        ] {
            let msg = mock_error(&Value::from(name)).unwrap_err();
            assert!(msg.contains(name) && msg.contains("rate_limited"), "{msg}");
        }
    }

    #[test]
    fn mock_error_object_is_classified_like_a_provider_answer() {
        let e = mock_error(&serde_json::json!({
            "http_status": 400, "code": "context_length_exceeded", "message": "too long"
        }))
        .unwrap();
        assert_eq!(e.status, Status::ContextOverflow);
        assert!(mock_error(&serde_json::json!({"http_status": 200})).is_err());
        assert!(mock_error(&serde_json::json!(3)).is_err());
    }
}
