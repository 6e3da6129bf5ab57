//! The OpenAI chat-completions wire format, spoken by OpenAI and every OpenAI-compatible host of
//! the table, and (with its own URL and key header) by Azure OpenAI.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::classify::{body_excerpt, classify, ErrorParts};
use super::openai_scan;
use super::{extra_headers, secret_header, Endpoint, StreamParser, WireFormat};
use crate::config::DeploymentConfig;
use crate::errors::{Error, Status};
use crate::sse::SseDecoder;
use crate::types::{
    chunk_object_of, lenient_u64, share, ChatChunk, ChatRequest, ChatResponse, ChunkChoice, Usage,
    CHUNK_OBJECT,
};

pub struct OpenAi;
pub struct AzureOpenAi;

/// Azure's GA data-plane version, used when the config names none.
pub const AZURE_DEFAULT_API_VERSION: &str = super::azure::DEFAULT_API_VERSION;

impl WireFormat for OpenAi {
    fn endpoint(&self, d: &DeploymentConfig, max_output: Option<u64>) -> Result<Endpoint, String> {
        let mut ep = Endpoint::common(d, max_output);
        ep.url = format!("{}/chat/completions", super::openai_hosts::base_url(d)?);
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
        error_of(http_status, body)
    }

    fn stream_parser(&self, _ep: &Endpoint) -> Box<dyn StreamParser> {
        Box::new(OpenAiStream::default())
    }
}

impl WireFormat for AzureOpenAi {
    fn endpoint(&self, d: &DeploymentConfig, max_output: Option<u64>) -> Result<Endpoint, String> {
        let mut ep = Endpoint::common(d, max_output);
        ep.url = super::azure::chat_url(d)?;
        ep.stream_url = ep.url.clone();
        ep.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        super::azure::auth_headers(d, &mut ep.headers)?;
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
        error_of(http_status, body)
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
/// `{"error": {"message", "type", "code"}}` (OpenAI, Azure, most), `{"error": "text", "code": "..."}`
/// (xAI, Hugging Face), `{"object": "error", "message", "type", "code"}` (Mistral, vLLM),
/// `{"detail": ...}` (FastAPI hosts), `{"error_code", "message"}` (Databricks),
/// `{"success": false, "errors": [{"code", "message"}]}` (Cloudflare), `{"message": ...}`.
#[derive(Deserialize, Default)]
struct Envelope {
    #[serde(default)]
    error_code: Option<Value>,
    #[serde(default)]
    errors: Option<Vec<Value>>,
    /// Hugging Face: seconds until a cold model is loaded (with a 503).
    #[serde(default)]
    estimated_time: Option<f64>,
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

/// A non-2xx answer classified, with a retry hint from the body where the host gives one.
fn error_of(http_status: u16, body: &[u8]) -> Error {
    let Ok(mut env) = serde_json::from_slice::<Envelope>(body) else {
        return classify(Some(http_status), error_parts(body));
    };
    let wait = env
        .estimated_time
        .take()
        .filter(|t| t.is_finite() && *t >= 0.0);
    let mut e = classify(Some(http_status), error_parts_of(env, body));
    if e.retry_after.is_none() {
        e.retry_after = wait;
    }
    e
}

/// Cloudflare's v4 `errors[]`: the first entry's code, every message. Its throttling and
/// allocation codes are named the way the classifier knows them, since the bare numbers
/// mean other things elsewhere (Mistral's codes are numbers of the same range).
fn cloudflare_parts(errors: &[Value]) -> ErrorParts {
    let messages: Vec<String> = errors
        .iter()
        .filter_map(|e| e.get("message").and_then(text_of))
        .collect();
    let code = errors.first().and_then(|e| e.get("code")).and_then(text_of);
    let code = match code.as_deref() {
        // 3040 out of capacity, 3021 inference requests per minute.
        Some("3040" | "3021") => Some("rate_limit_exceeded".to_owned()),
        // The daily free neuron allocation is used up: no use retrying today.
        Some("3036") => Some("insufficient_quota".to_owned()),
        _ => code,
    };
    ErrorParts {
        code,
        kind: None,
        message: messages.join("; "),
    }
}

fn error_parts_of(env: Envelope, body: &[u8]) -> ErrorParts {
    let mut p = ErrorParts::default();
    if env.error.is_none() {
        if let Some(errors) = env.errors.as_deref().filter(|e| !e.is_empty()) {
            return cloudflare_parts(errors);
        }
        if let Some(code) = env.error_code.as_ref().and_then(text_of) {
            p.code = Some(code);
            p.message = env
                .message
                .as_ref()
                .and_then(text_of)
                .unwrap_or_else(|| body_excerpt(body));
            return p;
        }
    }
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

/// A choice stopped by the host's content filter before it produced anything: a refusal the
/// caller must see as such, not an empty answer (Azure, OpenAI, Qwen).
fn filtered_empty(r: &ChatResponse) -> bool {
    r.choices.iter().all(|c| {
        c.finish_reason.as_deref() == Some("content_filter")
            && c.message.content.as_deref().unwrap_or("").is_empty()
            && c.message.tool_calls.as_ref().map_or(true, Vec::is_empty)
    })
}

const FILTERED: &str =
    "the answer was withheld by the provider's content filter (finish_reason: content_filter)";

fn parse_response(body: &[u8]) -> Result<ChatResponse, Error> {
    let text = std::str::from_utf8(body).ok();
    let fast = text.and_then(openai_scan::read_response);
    #[cfg(debug_assertions)]
    if let (Some(text), Some(r)) = (text, &fast) {
        openai_scan::response_same_as_serde(text, r);
    }
    match fast.map_or_else(|| serde_json::from_slice::<ChatResponse>(body), Ok) {
        Ok(r) if !r.choices.is_empty() && filtered_empty(&r) => {
            let refusal = r.choices.iter().find_map(|c| c.message.refusal.clone());
            Err(Error::new(
                Status::ContentPolicy,
                refusal.unwrap_or_else(|| FILTERED.to_owned()),
            ))
        }
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
    /// Content or tool calls went out (a later content filter then only cuts the answer).
    delivered: bool,
    /// The last chunk's `id` and `model`, shared by the next chunks that repeat them.
    id: Arc<str>,
    model: Arc<str>,
}

/// A chunk as it arrives: `ChatChunk`'s fields and defaults, with `id`, `object` and `model`
/// borrowed from the event (they are shared or borrowed in the chunk, not copied per chunk).
#[derive(Deserialize)]
struct WireChunk<'a> {
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    object: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_u64")]
    created: u64,
    #[serde(default, borrow)]
    model: Cow<'a, str>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

/// `data` read by serde, as a stream without earlier chunks reads it (what the chunk scan must
/// match).
#[cfg(any(test, debug_assertions))]
pub(super) fn read_chunk_with_serde(data: &str) -> Result<ChatChunk, serde_json::Error> {
    let w = serde_json::from_str::<WireChunk>(data)?;
    Ok(OpenAiStream::default().chunk(w))
}

impl OpenAiStream {
    fn chunk(&mut self, w: WireChunk<'_>) -> ChatChunk {
        ChatChunk {
            id: share(&mut self.id, &w.id),
            object: w
                .object
                .map_or(Cow::Borrowed(CHUNK_OBJECT), |o| chunk_object_of(&o)),
            created: w.created,
            model: share(&mut self.model, &w.model),
            choices: w.choices,
            usage: w.usage,
        }
    }

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
        let fast = openai_scan::read_chunk(data, &mut self.id, &mut self.model);
        #[cfg(debug_assertions)]
        if let Some(c) = &fast {
            openai_scan::chunk_same_as_serde(data, c);
        }
        let chunk = match fast.map_or_else(
            || serde_json::from_str::<WireChunk>(data).map(|w| self.chunk(w)),
            Ok,
        ) {
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
        self.delivered |= chunk.has_payload();
        if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
            self.saw_finish = true;
            if !self.delivered
                && chunk
                    .choices
                    .iter()
                    .any(|c| c.finish_reason.as_deref() == Some("content_filter"))
            {
                return Err(Error::new(Status::ContentPolicy, FILTERED));
            }
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
    fn stream_chunks_share_id_and_model_and_read_as_the_derive_reads_them() {
        let events = [
            r#"{"id":"c\"1","object":"chat.completion.chunk","created":7,"model":"m/ü","choices":[{"index":0,"delta":{"role":"assistant","content":"a"}}]}"#,
            r#"{"choices":[{"delta":{"content":"b"},"finish_reason":null,"index":0}],"created":7,"id":"c\"1","model":"m/ü","object":"chat.completion.chunk"}"#,
            r#"{"id":"c\"1","created":"7","model":"m/ü","choices":[{"index":0,"delta":{"content":"c"}}]}"#,
            r#"{"id":"c2","object":"chat.completion","created":8,"model":"n","choices":[{"index":0,"delta":{"content":"d"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":4,"total_tokens":5}}"#,
        ];
        let input: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        let (chunks, r) = run_stream(&format!("{input}data: [DONE]\n\n"));
        r.unwrap();
        assert_eq!(chunks.len(), events.len());
        for (c, e) in chunks.iter().zip(events) {
            let derived: ChatChunk = serde_json::from_str(e).unwrap();
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::to_value(&derived).unwrap(),
                "{e}"
            );
        }
        // The chunks that repeat an id or model share one copy; the constant object is borrowed.
        assert!(
            Arc::ptr_eq(&chunks[0].id, &chunks[1].id) && Arc::ptr_eq(&chunks[1].id, &chunks[2].id)
        );
        assert!(Arc::ptr_eq(&chunks[0].model, &chunks[2].model));
        assert_eq!(&*chunks[3].id, "c2");
        assert!(matches!(chunks[2].object, Cow::Borrowed(CHUNK_OBJECT)));
        assert_eq!(chunks[3].object, "chat.completion");
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
    // -----------------------------------------------------------------------------------------
    // Azure OpenAI, Cloudflare, Databricks, Hugging Face: their own error bodies and quirks.

    fn http_error(status: u16, body: &str) -> Error {
        OpenAi.parse_error(&endpoint(""), status, body.as_bytes())
    }

    #[test]
    fn azure_content_filter_overflow_and_throttling() {
        let e = http_error(
            400,
            r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":true,"detected":true},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}}}"#,
        );
        assert_eq!(e.status, Status::ContentPolicy);
        assert!(e.message.contains("content management policy"));
        let e = http_error(
            400,
            r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130042 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        let e = http_error(
            429,
            r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}"#,
        );
        assert_eq!(e.status, Status::RateLimited);
        assert!(!e.quota);
        assert_eq!(
            super::super::http::retry_hint_in_text(&e.message),
            Some(6.0)
        );
        let e = http_error(
            404,
            r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}"#,
        );
        assert_eq!(e.status, Status::BadRequest);
    }

    #[test]
    fn a_filtered_answer_is_a_content_policy_error() {
        let e = parse_response(br#"{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}],
            "choices":[{"index":0,"finish_reason":"content_filter","message":{"role":"assistant","content":null},
            "content_filter_results":{"violence":{"filtered":true,"severity":"high"}}}],"usage":{"prompt_tokens":9,"completion_tokens":0,"total_tokens":9}}"#).unwrap_err();
        assert_eq!(e.status, Status::ContentPolicy);
        // Content cut short by the filter is still an answer.
        let r = parse_response(br#"{"choices":[{"index":0,"finish_reason":"content_filter","message":{"role":"assistant","content":"Once upon"}}]}"#).unwrap();
        assert_eq!(
            r.choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );

        // Azure's first chunk holds only prompt_filter_results; a filter before any content
        // is a refusal, one after content only ends the answer.
        let head = "data: {\"id\":\"\",\"object\":\"\",\"created\":0,\"model\":\"\",\"choices\":[],\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n";
        let (_, r) = run_stream(&format!("{head}data: {{\"id\":\"1\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"content_filter\"}}]}}\n\ndata: [DONE]\n\n"));
        assert_eq!(r.unwrap_err().status, Status::ContentPolicy);
        let (chunks, r) = run_stream(&format!("{head}data: {{\"id\":\"1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"Hi\"}}}}]}}\n\ndata: {{\"id\":\"1\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"content_filter\"}}]}}\n\ndata: [DONE]\n\n"));
        r.unwrap();
        assert!(chunks.iter().any(|c| c.has_payload()));
    }

    #[test]
    fn cloudflare_envelope() {
        let e = http_error(
            400,
            r#"{"result":null,"success":false,"errors":[{"code":5007,"message":"No such model @cf/meta/llama-9 or task"}],"messages":[]}"#,
        );
        assert_eq!(
            (e.status, e.message.as_str()),
            (Status::BadRequest, "No such model @cf/meta/llama-9 or task")
        );
        let e = http_error(
            429,
            r#"{"result":null,"success":false,"errors":[{"code":3040,"message":"Capacity temporarily exceeded, please try again."}],"messages":[]}"#,
        );
        assert_eq!((e.status, e.quota), (Status::RateLimited, false));
        let e = http_error(
            429,
            r#"{"result":null,"success":false,"errors":[{"code":3036,"message":"You have used up your daily free allocation of 10,000 neurons. Please upgrade to Cloudflare's Workers Paid plan if you would like to continue usage."}],"messages":[]}"#,
        );
        assert_eq!(
            (e.status, e.quota),
            (Status::RateLimited, true),
            "the daily allocation is a quota"
        );
        let e = http_error(
            400,
            r#"{"result":null,"success":false,"errors":[{"code":3030,"message":"AiError: This model's maximum context length is 131072 tokens. However, you requested 16000 output tokens and your prompt contains at least 115073 input tokens, for a total of at least 131073 tokens. Please reduce the length of the input prompt or reduce max_tokens."}],"messages":[]}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        let e = http_error(
            403,
            r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}"#,
        );
        assert_eq!(e.status, Status::Auth);
        let e = http_error(
            408,
            r#"{"success":false,"errors":[{"code":3007,"message":"Request timeout"}]}"#,
        );
        assert_eq!(e.status, Status::Timeout);
    }

    #[test]
    fn databricks_envelope() {
        let e = http_error(
            429,
            r#"{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"Exceeded workspace rate limit for databricks-meta-llama-3-3-70b-instruct: QPS limit of 2"}"#,
        );
        assert_eq!(e.status, Status::RateLimited);
        assert!(e.message.starts_with("Exceeded workspace rate limit"));
        let e = http_error(
            400,
            r#"{"error_code":"BAD_REQUEST","message":"Bad request: rpc error: code = InvalidArgument desc = max_tokens (10000) cannot exceed 8192. Please reduce the length of max output tokens generated."}"#,
        );
        assert_eq!(
            e.status,
            Status::BadRequest,
            "an output cap, not the window"
        );
        let e = http_error(
            400,
            r#"{"error_code":"BAD_REQUEST","message":"Bad request: This model's maximum context length is 131072 tokens. However, you requested 140000 tokens (132000 in the messages, 8000 in the completion). Please reduce the length of the messages or completion."}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        assert_eq!(
            http_error(
                403,
                r#"{"error_code":"PERMISSION_DENIED","message":"Invalid access token."}"#
            )
            .status,
            Status::Auth
        );
        assert_eq!(http_error(404, r#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"The given endpoint does not exist."}"#).status, Status::BadRequest);
        assert_eq!(http_error(503, r#"{"error_code":"TEMPORARILY_UNAVAILABLE","message":"The service is temporarily unavailable."}"#).status, Status::Upstream);
        // Claude-backed endpoints answer with a list of blocks.
        let r = parse_response(br#"{"id":"c","object":"chat.completion","created":1,"model":"databricks-claude-sonnet-4","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":[{"type":"reasoning","summary":[{"type":"summary_text","text":"think"}]},{"type":"text","text":"Hello"}]}}]}"#).unwrap();
        assert_eq!(r.choices[0].message.content.as_deref(), Some("Hello"));
        let (chunks, r) = run_stream("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Hel\"}]}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n");
        r.unwrap();
        assert_eq!(chunks[0].choices[0].delta.content.as_deref(), Some("Hel"));
    }

    #[test]
    fn hugging_face_envelopes() {
        let e = http_error(
            400,
            r#"{"error":"Model meta-llama/Llama-9 is not supported by any provider you have enabled."}"#,
        );
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                Status::BadRequest,
                "Model meta-llama/Llama-9 is not supported by any provider you have enabled."
            )
        );
        let e = http_error(
            422,
            r#"{"error":"Input validation error: `inputs` tokens + `max_new_tokens` must be <= 8192. Given: 6204 `inputs` tokens and 2047 `max_new_tokens`","error_type":"validation"}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        let e = http_error(
            422,
            r#"{"error":"Input validation error: `max_new_tokens` must be <= 192","error_type":"validation"}"#,
        );
        assert_eq!(
            e.status,
            Status::BadRequest,
            "an output cap, not the window"
        );
        let e = http_error(
            503,
            r#"{"error":"Model HuggingFaceH4/zephyr-7b-beta is currently loading","estimated_time":20.0}"#,
        );
        assert_eq!((e.status, e.retry_after), (Status::Upstream, Some(20.0)));
        let e = http_error(
            429,
            r#"{"error":{"message":"Rate limit reached. You reached free usage limit (reset hourly).","type":"rate_limit","code":null}}"#,
        );
        assert_eq!(e.status, Status::RateLimited);
        let e = http_error(
            402,
            r#"{"error":"You have exceeded your monthly included credits for Inference Providers. Subscribe to PRO to get 20x more monthly included credits."}"#,
        );
        assert!(e.quota);
    }
}
