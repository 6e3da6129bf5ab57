//! The OpenAI chat-completions wire format, spoken by OpenAI and every OpenAI-compatible host of
//! the table, and (with its own URL and key header) by Azure OpenAI.

use std::collections::VecDeque;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::classify::{body_excerpt, classify, ErrorParts};
use super::{extra_headers, secret_header, Endpoint, StreamParser, WireFormat};
use crate::config::DeploymentConfig;
use crate::errors::Error;
use crate::sse::SseDecoder;
use crate::types::{ChatChunk, ChatRequest, ChatResponse};

pub struct OpenAi;
pub struct AzureOpenAi;

/// Azure's GA data-plane version, used when the config names none.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

impl WireFormat for OpenAi {
    fn endpoint(&self, d: &DeploymentConfig, max_output: Option<u64>) -> Result<Endpoint, String> {
        let mut ep = Endpoint::common(d, max_output);
        let base = match (
            &d.api_base,
            d.params.get("account_id").and_then(Value::as_str),
        ) {
            (Some(b), _) => b.clone(),
            (None, Some(account)) if d.spec.key == "CLOUDFLARE" => {
                format!("https://api.cloudflare.com/client/v4/accounts/{account}/ai/v1")
            }
            _ => d
                .spec
                .default_base
                .ok_or_else(|| d.spec.note.to_owned())?
                .to_owned(),
        };
        ep.url = format!("{}/chat/completions", base.trim_end_matches('/'));
        ep.stream_url = ep.url.clone();
        ep.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(k) = &d.api_key {
            ep.headers.insert(
                AUTHORIZATION,
                secret_header(&format!("Bearer {}", k.expose()))?,
            );
        }
        if let Some(org) = d.params.get("organization").and_then(Value::as_str) {
            ep.headers.insert(
                "openai-organization",
                HeaderValue::from_str(org).map_err(|_| "`organization` is not header-safe")?,
            );
        }
        extra_headers(d, &mut ep.headers)?;
        Ok(ep)
    }

    fn request_body(
        &self,
        ep: &Endpoint,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<Vec<u8>, Error> {
        write_body(ep, req, stream)
    }

    fn parse_response(&self, _ep: &Endpoint, body: &[u8]) -> Result<ChatResponse, Error> {
        parse_response(body)
    }

    fn parse_error(&self, _ep: &Endpoint, http_status: u16, body: &[u8]) -> Error {
        classify(Some(http_status), error_parts(body))
    }

    fn stream_parser(&self, _ep: &Endpoint) -> Box<dyn StreamParser> {
        Box::new(OpenAiStream::default())
    }
}

impl WireFormat for AzureOpenAi {
    fn endpoint(&self, d: &DeploymentConfig, max_output: Option<u64>) -> Result<Endpoint, String> {
        let mut ep = Endpoint::common(d, max_output);
        let base = d
            .api_base
            .as_deref()
            .ok_or_else(|| d.spec.note.to_owned())?;
        let version = d
            .params
            .get("api_version")
            .and_then(Value::as_str)
            .unwrap_or(AZURE_DEFAULT_API_VERSION);
        // The model name of an Azure config is its deployment name.
        ep.url = format!(
            "{}/openai/deployments/{}/chat/completions?api-version={}",
            base.trim_end_matches('/'),
            d.model,
            version
        );
        ep.stream_url = ep.url.clone();
        ep.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(k) = &d.api_key {
            ep.headers.insert("api-key", secret_header(k.expose())?);
        }
        extra_headers(d, &mut ep.headers)?;
        Ok(ep)
    }

    fn request_body(
        &self,
        ep: &Endpoint,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<Vec<u8>, Error> {
        write_body(ep, req, stream)
    }

    fn parse_response(&self, _ep: &Endpoint, body: &[u8]) -> Result<ChatResponse, Error> {
        parse_response(body)
    }

    fn parse_error(&self, _ep: &Endpoint, http_status: u16, body: &[u8]) -> Error {
        classify(Some(http_status), error_parts(body))
    }

    fn stream_parser(&self, _ep: &Endpoint) -> Box<dyn StreamParser> {
        Box::new(OpenAiStream::default())
    }
}

/// The request as the OpenAI body: the deployment's model, the request's fields, then the
/// deployment's default params the request did not set. Written straight to bytes, once.
struct Body<'a> {
    ep: &'a Endpoint,
    req: &'a ChatRequest,
    stream: bool,
}

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (ep, r) = (self.ep, self.req);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("model", &ep.model)?;
        m.serialize_entry("messages", &r.messages)?;
        macro_rules! opt {
            ($($f:ident),*) => {$(
                if let Some(v) = &r.$f {
                    m.serialize_entry(stringify!($f), v)?;
                }
            )*};
        }
        opt!(
            tools,
            tool_choice,
            parallel_tool_calls,
            stop,
            max_tokens,
            max_completion_tokens,
            temperature,
            top_p,
            user
        );
        for (k, v) in &r.extra {
            if k != "stream_options" || self.stream {
                m.serialize_entry(k, v)?;
            }
        }
        for (k, v) in &ep.defaults {
            if !Endpoint::request_sets(r, k) && (k != "stream_options" || self.stream) {
                m.serialize_entry(k, v)?;
            }
        }
        if self.stream {
            m.serialize_entry("stream", &true)?;
            if ep.stream_usage
                && !r.extra.contains_key("stream_options")
                && !ep.defaults.contains_key("stream_options")
            {
                m.serialize_entry(
                    "stream_options",
                    &serde_json::json!({"include_usage": true}),
                )?;
            }
        }
        m.end()
    }
}

fn write_body(ep: &Endpoint, req: &ChatRequest, stream: bool) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(512);
    let mut ser = serde_json::Serializer::new(&mut out);
    Body { ep, req, stream }
        .serialize(&mut ser)
        .map_err(|e| Error::invalid(format!("request could not be encoded: {e}")))?;
    Ok(out)
}

/// The envelopes OpenAI-compatible hosts use for errors, all in one lenient shape:
/// `{"error": {"message", "type", "code"}}` (OpenAI, most), `{"error": "text", "code": "..."}`
/// (xAI), `{"object": "error", "message", "type", "code"}` (Mistral, vLLM), `{"detail": ...}`
/// (FastAPI hosts), `{"message": ...}`.
#[derive(Deserialize, Default)]
struct Envelope {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default, rename = "type")]
    kind: Option<Value>,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    detail: Option<Value>,
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Extracts code, type and message from any of the envelopes; the raw body when none fits.
pub fn error_parts(body: &[u8]) -> ErrorParts {
    let Ok(env) = serde_json::from_slice::<Envelope>(body) else {
        return ErrorParts {
            message: body_excerpt(body),
            ..ErrorParts::default()
        };
    };
    error_parts_of(env, body)
}

fn error_parts_of(env: Envelope, body: &[u8]) -> ErrorParts {
    let mut p = ErrorParts::default();
    match env.error {
        Some(Value::Object(e)) => {
            p.message = e.get("message").and_then(text_of).unwrap_or_default();
            p.kind = e.get("type").and_then(text_of);
            p.code = e.get("code").and_then(text_of);
            // OpenRouter: the upstream's own error is in metadata.raw; its text decides the class.
            if let Some(raw) = e
                .get("metadata")
                .and_then(|m| m.get("raw"))
                .and_then(Value::as_str)
            {
                p.message = format!("{}: {raw}", p.message);
            }
            // OpenRouter's moderation refusal.
            if e.get("metadata")
                .is_some_and(|m| m.get("reasons").is_some() || m.get("flagged_input").is_some())
            {
                p.code = Some("content_policy_violation".into());
            }
        }
        Some(Value::String(s)) => {
            p.message = s;
            p.code = env.code.as_ref().and_then(text_of);
        }
        _ => {
            p.message = env
                .message
                .as_ref()
                .or(env.detail.as_ref())
                .and_then(text_of)
                .unwrap_or_else(|| body_excerpt(body));
            p.kind = env.kind.as_ref().and_then(text_of);
            p.code = env.code.as_ref().and_then(text_of);
        }
    }
    // A code that only repeats the HTTP status says nothing the status does not.
    if p.code
        .as_deref()
        .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
    {
        p.code = None;
    }
    p
}

fn parse_response(body: &[u8]) -> Result<ChatResponse, Error> {
    match serde_json::from_slice::<ChatResponse>(body) {
        Ok(r) if !r.choices.is_empty() => Ok(r),
        Ok(_) => {
            // A 200 whose body is an error object (several hosts do this).
            let parts = error_parts(body);
            if !parts.message.is_empty() && has_error_field(body) {
                return Err(classify(None, parts));
            }
            Err(Error::upstream(format!(
                "upstream answered without choices: {}",
                body_excerpt(body)
            )))
        }
        Err(e) => {
            if has_error_field(body) {
                return Err(classify(None, error_parts(body)));
            }
            Err(Error::upstream(format!(
                "upstream answer is not a chat completion ({e}): {}",
                body_excerpt(body)
            )))
        }
    }
}

fn has_error_field(body: &[u8]) -> bool {
    serde_json::from_slice::<Envelope>(body).is_ok_and(|e| e.error.is_some() || e.detail.is_some())
}

/// OpenAI SSE: `data: {chunk}` … `data: [DONE]`; errors as `data: {"error":…}` or `event: error`.
#[derive(Default)]
struct OpenAiStream {
    sse: SseDecoder,
    saw_finish: bool,
    saw_done: bool,
}

impl OpenAiStream {
    fn on_event(
        &mut self,
        event: &str,
        data: &str,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<(), Error> {
        if self.saw_done {
            return Ok(());
        }
        let data = data.trim();
        if data.is_empty() {
            return Ok(()); // keep-alive
        }
        if data == "[DONE]" {
            self.saw_done = true;
            return Ok(());
        }
        if event == "error" {
            return Err(classify(None, error_parts(data.as_bytes())));
        }
        let chunk: ChatChunk = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => {
                if has_error_field(data.as_bytes()) {
                    return Err(classify(None, error_parts(data.as_bytes())));
                }
                return Err(Error::upstream(format!(
                    "malformed stream event ({e}): {}",
                    body_excerpt(data.as_bytes())
                )));
            }
        };
        let error_finish = chunk
            .choices
            .iter()
            .any(|c| c.finish_reason.as_deref() == Some("error"));
        if ((chunk.choices.is_empty() && chunk.usage.is_none()) || error_finish)
            && has_error_field(data.as_bytes())
        {
            return Err(classify(None, error_parts(data.as_bytes())));
        }
        if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
            self.saw_finish = true;
        }
        out.push_back(chunk);
        Ok(())
    }
}

impl StreamParser for OpenAiStream {
    fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<bool, Error> {
        let mut sse = std::mem::take(&mut self.sse);
        let r = sse.feed(
            bytes,
            |ev| self.on_event(&ev.event, &ev.data, out),
            || Error::upstream("stream event larger than 16 MiB"),
        );
        self.sse = sse;
        r.map(|()| self.saw_done)
    }

    fn finish(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if let Some(ev) = self.sse.finish() {
            self.on_event(&ev.event, &ev.data, out)?;
        }
        // Some hosts close right after the finishing chunk without `[DONE]`: that answer is whole.
        if self.saw_done || self.saw_finish {
            Ok(())
        } else {
            Err(Error::upstream(
                "stream ended before it was complete (no finish_reason, no [DONE])",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::errors::Status;

    fn endpoint(extra: &str) -> Endpoint {
        let c = config::parse(&format!(
            r#"{{"global_llm_configs":[{{"provider":"OPENAI","model_name":"gpt-4o","api_key":"sk-test-123456",
               "litellm_params":{{"temperature":0.1,"seed":3,"base_model":"gpt-4o","timeout":9{extra}}}}}]}}"#
        ))
        .unwrap();
        OpenAi.endpoint(&c.deployments[0], None).unwrap()
    }

    #[test]
    fn endpoint_url_and_auth() {
        let ep = endpoint("");
        assert_eq!(ep.url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(ep.headers[AUTHORIZATION], "Bearer sk-test-123456");
        assert!(ep.headers[AUTHORIZATION].is_sensitive());
        assert!(!ep.defaults.contains_key("base_model") && !ep.defaults.contains_key("timeout"));
    }

    #[test]
    fn body_merges_defaults_under_the_request() {
        let ep = endpoint("");
        let req = ChatRequest::from_json(
            r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"temperature":0.9,"timeout":5,"logprobs":true}"#,
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&write_body(&ep, &req, true).unwrap()).unwrap();
        assert_eq!(
            body["model"], "gpt-4o",
            "the deployment's model, not the group"
        );
        assert_eq!(body["temperature"], 0.9, "the request wins");
        assert_eq!(body["seed"], 3, "the deployment's default rides along");
        assert_eq!(body["logprobs"], true, "unknown fields pass through");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert!(body.get("timeout").is_none());
        let body: Value = serde_json::from_slice(&write_body(&ep, &req, false).unwrap()).unwrap();
        assert!(body.get("stream").is_none() && body.get("stream_options").is_none());
    }

    #[test]
    fn error_envelopes() {
        let p = error_parts(br#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#);
        assert_eq!(
            (p.code.as_deref(), p.kind.as_deref(), p.message.as_str()),
            (
                Some("context_length_exceeded"),
                Some("invalid_request_error"),
                "too long"
            )
        );
        let p = error_parts(br#"{"code":"Client specified an invalid argument","error":"This model's maximum prompt length is 131072 but the request contains 200000 tokens."}"#);
        assert!(p.message.starts_with("This model's maximum prompt length"));
        let p = error_parts(
            br#"{"object":"error","message":"bad","type":"invalid_request_error","code":"3051"}"#,
        );
        assert_eq!(
            (p.code.as_deref(), p.message.as_str()),
            (Some("3051"), "bad")
        );
        let p = error_parts(br#"{"error":{"code":400,"message":"Provider returned error","metadata":{"raw":"prompt is too long: 300000 tokens > 200000 maximum","provider_name":"Anthropic"}}}"#);
        assert_eq!(p.code, None);
        assert!(p.message.contains("prompt is too long"));
        let p = error_parts(b"<html>502 Bad Gateway</html>");
        assert_eq!(p.message, "<html>502 Bad Gateway</html>");
        let e = OpenAi.parse_error(&endpoint(""), 400, br#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.","type":"invalid_request_error","code":"context_length_exceeded"}}"#);
        assert_eq!(e.status, Status::ContextOverflow);
    }

    #[test]
    fn a_200_with_an_error_inside_is_an_error() {
        let e = parse_response(br#"{"error":{"message":"Overloaded","type":"server_error"}}"#)
            .unwrap_err();
        assert_eq!(e.status, Status::Upstream);
        assert_eq!(e.message, "Overloaded");
        let e = parse_response(b"not json").unwrap_err();
        assert_eq!(e.status, Status::Upstream);
        let r = parse_response(br#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#).unwrap();
        assert_eq!(r.choices[0].message.content.as_deref(), Some("hi"));
    }

    fn run_stream(input: &str) -> (Vec<ChatChunk>, Result<(), Error>) {
        let mut p = OpenAiStream::default();
        let mut out = VecDeque::new();
        let mut r = Ok(());
        for piece in input.as_bytes().chunks(7) {
            if let Err(e) = p.feed(piece, &mut out) {
                r = Err(e);
                break;
            }
        }
        if r.is_ok() {
            r = p.finish(&mut out);
        }
        (out.into_iter().collect(), r)
    }

    #[test]
    fn stream_text_tools_usage_and_done() {
        let input = concat!(
            ": OPENROUTER PROCESSING\n\n",
            "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}\n\n",
            "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"id\":\"1\",\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,\"total_tokens\":5}}\n\n",
            "data: [DONE]\n\n"
        );
        let (chunks, r) = run_stream(input);
        r.unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].choices[0].delta.content.as_deref(), Some("Hi"));
        assert!(chunks[1].has_payload());
        assert!(!chunks[2].has_payload());
        assert_eq!(chunks[2].usage.unwrap().total_tokens, 5);
    }

    #[test]
    fn stream_errors() {
        let (_, r) = run_stream("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\"}}\n\n");
        assert_eq!(r.unwrap_err().status, Status::Upstream);
        let (_, r) = run_stream("event: error\ndata: {\"error\":{\"message\":\"Rate limit reached\",\"type\":\"rate_limit_error\"}}\n\n");
        assert_eq!(r.unwrap_err().status, Status::RateLimited);
        let (chunks, r) =
            run_stream("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n");
        assert_eq!(chunks.len(), 1);
        assert!(r.unwrap_err().message.contains("before it was complete"));
        let (_, r) = run_stream("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n\n");
        assert!(r.is_ok(), "EOF after a finish_reason is a whole answer");
        let (_, r) = run_stream("data: {not json\n\n");
        assert!(r.unwrap_err().message.contains("malformed"));
    }
}
