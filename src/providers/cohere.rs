//! Cohere's v2 chat API (`POST /v2/chat`, PROVIDERS.md §7): OpenAI-shaped requests mapped to
//! Cohere's body, its answers, its SSE stream (`message-start` … `message-end`) and its flat
//! `{"id", "message"}` errors mapped back.
//!
//! Mapping: messages keep their roles (developer becomes system); an assistant turn's text next
//! to tool calls is its `tool_plan`, and a `tool_plan` that comes back is given as the answer's
//! text; tools keep OpenAI's shape (a `strict` function turns on `strict_tools`); `tool_choice`
//! has only `REQUIRED` and `NONE`, so `auto` is left out and a named tool is `REQUIRED` with only
//! that tool offered; `stop` → `stop_sequences`, `top_p` → `p`, `top_k` → `k`; `response_format`
//! `json_schema` → `json_object` with its schema. `parallel_tool_calls` and `user` have no Cohere
//! counterpart and are not sent.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock};

use regex::Regex;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::classify::{body_excerpt, classify, ErrorParts};
use super::{extra_headers, secret_header, Endpoint, StreamParser, WireFormat};
use crate::config::DeploymentConfig;
use crate::errors::{Error, Status};
use crate::sse::SseDecoder;
use crate::types::{
    content_text, unix_now, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta,
    FunctionCall, FunctionDelta, Message, ResponseMessage, Tool, ToolCall, ToolCallDelta, Usage,
};

pub struct Cohere;

/// Cohere's own request fields, sent when the request or the deployment's `litellm_params` give
/// them (`k` and `p` are read apart, with `top_k` / `top_p`).
const NATIVE_FIELDS: &[&str] = &[
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "documents",
    "citation_options",
    "safety_mode",
    "strict_tools",
    "thinking",
    "priority",
    "logprobs",
];

impl WireFormat for Cohere {
    fn endpoint(&self, d: &DeploymentConfig, max_output: Option<u64>) -> Result<Endpoint, String> {
        let mut ep = Endpoint::common(d, max_output);
        let base = match &d.api_base {
            Some(b) => b.as_str(),
            None => d.spec.default_base.ok_or_else(|| d.spec.note.to_owned())?,
        };
        ep.url = chat_url(base);
        ep.stream_url = ep.url.clone();
        ep.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        ep.headers
            .insert("x-client-name", HeaderValue::from_static("llmr"));
        if let Some(k) = &d.api_key {
            ep.headers.insert(
                AUTHORIZATION,
                secret_header(&format!("Bearer {}", k.expose()))?,
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
        let body = build_body(ep, req, stream)?;
        serde_json::to_vec(&body)
            .map_err(|e| Error::invalid(format!("request could not be encoded: {e}")))
    }

    fn parse_response(&self, ep: &Endpoint, body: &[u8]) -> Result<ChatResponse, Error> {
        parse_response(ep, body)
    }

    fn parse_error(&self, _ep: &Endpoint, http_status: u16, body: &[u8]) -> Error {
        cohere_error(Some(http_status), error_parts(body))
    }

    fn stream_parser(&self, ep: &Endpoint) -> Box<dyn StreamParser> {
        Box::new(CohereStream::new(&ep.model))
    }
}

/// `{base}/v2/chat`. The base is the host (`https://api.cohere.com`); one given with `/v2`, as
/// the whole chat URL, or as litellm's legacy `/v1` (or `/v1/chat`) is taken as meant: only v2 is
/// spoken here.
fn chat_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let host = ["/v2/chat", "/v1/chat", "/v2", "/v1"]
        .iter()
        .find_map(|suffix| base.strip_suffix(suffix))
        .unwrap_or(base);
    format!("{}/v2/chat", host.trim_end_matches('/'))
}

// ---------------------------------------------------------------------------------------------
// Request

fn build_body(ep: &Endpoint, req: &ChatRequest, stream: bool) -> Result<Value, Error> {
    let d = &ep.defaults;
    let mut body = Map::new();
    body.insert("model".into(), Value::from(ep.model.as_str()));
    body.insert(
        "messages".into(),
        Value::Array(convert_messages(&req.messages)),
    );

    if let Some(tools) = req.tools.as_ref().filter(|t| !t.is_empty()) {
        let choice = req.tool_choice.as_ref().or_else(|| d.get("tool_choice"));
        let (offered, choice) = match tool_choice(choice)? {
            ToolChoice::Auto => (tools.iter().collect(), None),
            ToolChoice::None => (tools.iter().collect(), Some("NONE")),
            ToolChoice::Required => (tools.iter().collect(), Some("REQUIRED")),
            ToolChoice::Named(name) => {
                let only: Vec<&Tool> = tools.iter().filter(|t| t.function.name == name).collect();
                if only.is_empty() {
                    return Err(Error::invalid(format!(
                        "request JSON at `tool_choice`: names the tool `{name}`, which is not among `tools`"
                    )));
                }
                (only, Some("REQUIRED"))
            }
        };
        if offered.iter().any(|t| is_strict(t)) {
            body.insert("strict_tools".into(), Value::Bool(true));
        }
        body.insert(
            "tools".into(),
            Value::Array(offered.into_iter().map(tool_def).collect()),
        );
        if let Some(choice) = choice {
            body.insert("tool_choice".into(), Value::from(choice));
        }
    }

    let max_tokens = req
        .max_output_tokens()
        .or_else(|| d.get("max_completion_tokens").and_then(Value::as_u64))
        .or_else(|| d.get("max_tokens").and_then(Value::as_u64));
    if let Some(n) = max_tokens {
        body.insert("max_tokens".into(), Value::from(n));
    }
    let stop = req
        .stop
        .as_ref()
        .filter(|v| !v.is_null())
        .or_else(|| ep.param(req, "stop_sequences"))
        .or_else(|| d.get("stop"));
    if let Some(stop) = stop.map(stop_list).filter(|s| !s.is_empty()) {
        body.insert("stop_sequences".into(), Value::from(stop));
    }
    if let Some(t) = req
        .temperature
        .or_else(|| d.get("temperature").and_then(Value::as_f64))
    {
        body.insert("temperature".into(), Value::from(t));
    }
    let p = req
        .top_p
        .map(Value::from)
        .or_else(|| ep.param(req, "p").cloned())
        .or_else(|| d.get("top_p").cloned());
    if let Some(p) = p {
        body.insert("p".into(), p);
    }
    if let Some(k) = ep.param(req, "top_k").or_else(|| ep.param(req, "k")) {
        body.insert("k".into(), k.clone());
    }
    if let Some(rf) = ep.param(req, "response_format").and_then(response_format) {
        body.insert("response_format".into(), rf);
    }
    for key in NATIVE_FIELDS {
        if let Some(v) = ep.param(req, key) {
            body.insert((*key).into(), v.clone());
        }
    }
    body.insert("stream".into(), Value::Bool(stream));
    Ok(Value::Object(body))
}

enum ToolChoice {
    Auto,
    None,
    Required,
    Named(String),
}

/// OpenAI's `tool_choice` (or Cohere's own upper-case values).
fn tool_choice(choice: Option<&Value>) -> Result<ToolChoice, Error> {
    let bad = || {
        Error::invalid(
            "request JSON at `tool_choice`: must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\":…}}",
        )
    };
    let word = |s: &str| match s.to_ascii_lowercase().as_str() {
        "auto" => Ok(ToolChoice::Auto),
        "none" => Ok(ToolChoice::None),
        "required" | "any" => Ok(ToolChoice::Required),
        _ => Err(bad()),
    };
    match choice {
        None | Some(Value::Null) => Ok(ToolChoice::Auto),
        Some(Value::String(s)) => word(s),
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("function") => o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .map(|n| ToolChoice::Named(n.to_owned()))
                .ok_or_else(bad),
            // Anthropic's shape, for callers that send it to every provider.
            Some("tool") => o
                .get("name")
                .and_then(Value::as_str)
                .map(|n| ToolChoice::Named(n.to_owned()))
                .ok_or_else(bad),
            Some(w) => word(w),
            None => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

fn is_strict(t: &Tool) -> bool {
    t.function.extra.get("strict").and_then(Value::as_bool) == Some(true)
}

/// OpenAI's tool without `strict` (Cohere's is the request-wide `strict_tools`); a tool without
/// parameters gets an empty object schema.
fn tool_def(t: &Tool) -> Value {
    let f = &t.function;
    let mut function = Map::new();
    function.insert("name".into(), Value::from(f.name.as_str()));
    if let Some(d) = f.description.as_deref().filter(|d| !d.is_empty()) {
        function.insert("description".into(), Value::from(d));
    }
    let parameters = match &f.parameters {
        Some(p @ Value::Object(_)) => p.clone(),
        _ => json!({"type": "object", "properties": {}}),
    };
    function.insert("parameters".into(), parameters);
    json!({"type": "function", "function": function})
}

/// `stop` as a string or an array of strings.
fn stop_list(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// OpenAI's `response_format` as Cohere's: `json_object` (Cohere's own, with or without its
/// `json_schema`, passes as it is); `json_schema` becomes `json_object` with that schema;
/// `text` is the default and is left out.
fn response_format(rf: &Value) -> Option<Value> {
    match rf.get("type").and_then(Value::as_str)? {
        "text" => None,
        "json_schema" => {
            let schema = rf.get("json_schema").map(|s| s.get("schema").unwrap_or(s));
            Some(match schema {
                Some(s) => json!({"type": "json_object", "json_schema": s}),
                None => json!({"type": "json_object"}),
            })
        }
        _ => Some(rf.clone()),
    }
}

/// The messages as Cohere takes them: near OpenAI's shape, with the assistant's text next to
/// tool calls moved to `tool_plan`.
fn convert_messages(messages: &[Message]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| match m.role.as_str() {
            "system" | "developer" => {
                json!({"role": "system", "content": text_content(&m.content)})
            }
            "user" => json!({"role": "user", "content": user_content(&m.content)}),
            "assistant" => assistant_message(m),
            "tool" | "function" => {
                let mut msg = Map::new();
                msg.insert("role".into(), Value::from("tool"));
                // A legacy `function` result names the function, not a call.
                if let Some(id) = m.tool_call_id.as_deref().or(m.name.as_deref()) {
                    msg.insert("tool_call_id".into(), Value::from(id));
                }
                msg.insert("content".into(), Value::from(content_text(&m.content)));
                Value::Object(msg)
            }
            // Unknown roles pass through, as the seed does.
            other => {
                json!({"role": other, "content": m.content.clone().unwrap_or(Value::from(""))})
            }
        })
        .collect()
}

/// System content: a string, or the text parts of an array as Cohere's text parts.
fn text_content(content: &Option<Value>) -> Value {
    match content {
        Some(Value::Array(parts)) => Value::Array(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str).or(p.as_str()))
                .map(|t| json!({"type": "text", "text": t}))
                .collect(),
        ),
        other => Value::from(content_text(other)),
    }
}

/// User content: a string, or text and `image_url` parts (Cohere's vision models take both).
fn user_content(content: &Option<Value>) -> Value {
    let Some(Value::Array(parts)) = content else {
        return Value::from(content_text(content));
    };
    Value::Array(
        parts
            .iter()
            .map(|p| {
                if let Some(t) = p.as_str() {
                    return json!({"type": "text", "text": t});
                }
                match p.get("type").and_then(Value::as_str) {
                    Some("image_url") => match p.get("image_url") {
                        Some(Value::String(url)) => {
                            json!({"type": "image_url", "image_url": {"url": url}})
                        }
                        _ => p.clone(),
                    },
                    _ => p.clone(),
                }
            })
            .collect(),
    )
}

fn assistant_message(m: &Message) -> Value {
    let mut msg = Map::new();
    msg.insert("role".into(), Value::from("assistant"));
    match m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
        Some(calls) => {
            let text = content_text(&m.content);
            let plan = m
                .extra
                .get("tool_plan")
                .and_then(Value::as_str)
                .unwrap_or(&text);
            if !plan.is_empty() {
                msg.insert("tool_plan".into(), Value::from(plan));
            }
            let calls = calls
                .iter()
                .map(|c| {
                    let arguments = if c.function.arguments.trim().is_empty() {
                        "{}"
                    } else {
                        c.function.arguments.as_str()
                    };
                    json!({"id": c.id, "type": "function",
                           "function": {"name": c.function.name, "arguments": arguments}})
                })
                .collect();
            msg.insert("tool_calls".into(), Value::Array(calls));
        }
        None => {
            msg.insert("content".into(), text_content(&m.content));
        }
    }
    Value::Object(msg)
}

// ---------------------------------------------------------------------------------------------
// Response

#[derive(Deserialize)]
struct WireChat {
    #[serde(default)]
    id: String,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    message: Option<MessageField>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// `message` is the answer in a chat response and the error text in an error body.
#[derive(Deserialize)]
#[serde(untagged)]
enum MessageField {
    Error(String),
    Message(WireMessage),
}

#[derive(Deserialize, Default)]
struct WireMessage {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_plan: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: WireFunction,
}

#[derive(Deserialize, Default)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

/// Arguments as OpenAI's JSON string; an object (a lax gateway) is serialised, nothing is `{}`.
fn arguments_text(arguments: Option<Value>) -> String {
    match arguments {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        None | Some(Value::Null) | Some(Value::String(_)) => "{}".to_owned(),
        Some(v) => v.to_string(),
    }
}

/// `usage` of an answer and of `message-end`: `tokens` (what the model saw, template included)
/// when given, else `billed_units`.
#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    billed_units: Option<Counts>,
    #[serde(default)]
    tokens: Option<Counts>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct Counts {
    // Numbers, sometimes written as floats (`21.0`).
    #[serde(default)]
    input_tokens: Option<f64>,
    #[serde(default)]
    output_tokens: Option<f64>,
}

impl WireUsage {
    fn usage(&self) -> Option<Usage> {
        let has = |c: &Option<Counts>| {
            c.filter(|c| c.input_tokens.is_some() || c.output_tokens.is_some())
        };
        let c = has(&self.tokens).or_else(|| has(&self.billed_units))?;
        let n = |v: Option<f64>| {
            v.filter(|v| v.is_finite() && *v > 0.0)
                .map_or(0, |v| v as u64)
        };
        Some(Usage::new(n(c.input_tokens), n(c.output_tokens)))
    }
}

/// Cohere's `finish_reason` as OpenAI's, or the error a failed generation is. v1's values
/// (`ERROR_TOXIC`, `ERROR_LIMIT`, `USER_CANCEL`) are read too: gateways still send them.
fn finish_reason(
    reason: Option<&str>,
    tool_calls: bool,
    error: Option<&str>,
) -> Result<&'static str, Error> {
    let natural = if tool_calls { "tool_calls" } else { "stop" };
    let Some(reason) = reason else {
        return Ok(natural);
    };
    Ok(match reason.to_ascii_uppercase().as_str() {
        "MAX_TOKENS" | "ERROR_LIMIT" => "length",
        "TOOL_CALL" => "tool_calls",
        "ERROR_TOXIC" => "content_filter",
        "ERROR" => {
            let message = error
                .filter(|e| !e.trim().is_empty())
                .unwrap_or("Cohere ended the generation with finish_reason ERROR");
            return Err(in_band_error(message));
        }
        "TIMEOUT" => {
            return Err(Error::new(
                Status::Timeout,
                "Cohere ended the generation with finish_reason TIMEOUT",
            ))
        }
        // COMPLETE, STOP_SEQUENCE, USER_CANCEL, and values added after this was written.
        _ => natural,
    })
}

fn parse_response(ep: &Endpoint, body: &[u8]) -> Result<ChatResponse, Error> {
    let chat: WireChat = serde_json::from_slice(body).map_err(|e| {
        Error::upstream(format!(
            "upstream answer is not a Cohere chat response ({e}): {}",
            body_excerpt(body)
        ))
    })?;
    let message = match chat.message {
        Some(MessageField::Message(m)) => m,
        Some(MessageField::Error(text)) => return Err(in_band_error(&text)),
        None => {
            return Err(Error::upstream(format!(
                "upstream answer has no message: {}",
                body_excerpt(body)
            )))
        }
    };
    let mut text = String::new();
    let mut saw_text = false;
    let mut reasoning = String::new();
    match message.content {
        Some(Value::String(s)) => {
            saw_text = true;
            text = s;
        }
        Some(Value::Array(parts)) => {
            for p in &parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("thinking") => {
                        reasoning.push_str(p.get("thinking").and_then(Value::as_str).unwrap_or(""))
                    }
                    _ => {
                        if let Some(t) = p.get("text").and_then(Value::as_str) {
                            saw_text = true;
                            text.push_str(t);
                        }
                    }
                }
            }
        }
        _ => {}
    }
    let tool_calls: Option<Vec<ToolCall>> =
        message.tool_calls.filter(|c| !c.is_empty()).map(|calls| {
            calls
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id.unwrap_or_default(),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: c.function.name.unwrap_or_default(),
                        arguments: arguments_text(c.function.arguments),
                    },
                })
                .collect()
        });
    // The plan the model wrote before its tool calls is what OpenAI models put in `content`.
    if text.is_empty() {
        if let Some(plan) = message.tool_plan.filter(|p| !p.is_empty()) {
            saw_text = true;
            text = plan;
        }
    }
    let finish = finish_reason(chat.finish_reason.as_deref(), tool_calls.is_some(), None)?;
    Ok(ChatResponse {
        id: chat.id,
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: ep.model.clone(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                content: (saw_text || tool_calls.is_none()).then_some(text),
                tool_calls,
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                ..ResponseMessage::default()
            },
            finish_reason: Some(finish.to_owned()),
        }],
        usage: chat.usage.and_then(|u| u.usage()),
        llmr: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Cohere's `{"id", "message"}` (a gateway's OpenAI-style envelope, or plain text, works too).
pub fn error_parts(body: &[u8]) -> ErrorParts {
    super::openai::error_parts(body)
}

/// Refusals under `safety_mode` say that the generation or the request was blocked.
static BLOCKED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bblocked\b").expect("static regex"));

/// Classifies a Cohere error. Beyond the shared rules: 498 is Cohere's invalid-token status;
/// 499 ("request cancelled", "streaming error") is Cohere's side giving up, retryable as its
/// docs say (the caller's own cancel never reads an answer); a `blocked` request is a content
/// refusal; a trial key's monthly allowance is a quota (no use retrying this key this month).
fn cohere_error(http_status: Option<u16>, parts: ErrorParts) -> Error {
    let blocked = matches!(http_status, None | Some(400 | 422)) && BLOCKED.is_match(&parts.message);
    let monthly = http_status == Some(429) && is_monthly_allowance(&parts.message);
    let mut e = classify(http_status, parts);
    match http_status {
        Some(498) => e.status = Status::Auth,
        Some(499) => e.status = Status::Upstream,
        _ => {}
    }
    if blocked && e.status != Status::ContextOverflow {
        e.status = Status::ContentPolicy;
    }
    e.quota |= monthly;
    e
}

/// "You are using a Trial key, which is limited to 1000 API calls / month."
fn is_monthly_allowance(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("/ month") || m.contains("per month") || m.contains("/month")
}

/// An error inside a 200 (an error body, `message-end` with an error): classified by its text.
fn in_band_error(message: &str) -> Error {
    cohere_error(
        None,
        ErrorParts {
            message: message.to_owned(),
            ..ErrorParts::default()
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Stream

/// Cohere SSE: `event: <type>` + `data: {"type": "<type>", …}` from `message-start` to
/// `message-end`, mapped to OpenAI chunks.
struct CohereStream {
    sse: SseDecoder,
    id: Arc<str>,
    model: Arc<str>,
    created: u64,
    started: bool,
    /// Tool calls so far: (Cohere's index, OpenAI index, got arguments).
    tools: Vec<(u64, u32, bool)>,
    done: bool,
}

#[derive(Deserialize)]
struct StreamEvent {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    delta: Option<EventDelta>,
    /// A flat error object sent as an event.
    #[serde(default)]
    message: Option<Value>,
}

#[derive(Deserialize, Default)]
struct EventDelta {
    #[serde(default)]
    message: Option<DeltaMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize, Default)]
struct DeltaMessage {
    /// One part in deltas (`{"type"?, "text" | "thinking"}`); an empty array in message-start.
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_plan: Option<String>,
    /// One call in tool-call events (an array of one from some gateways).
    #[serde(default)]
    tool_calls: Option<Value>,
}

impl CohereStream {
    fn new(model: &str) -> CohereStream {
        CohereStream {
            sse: SseDecoder::new(),
            id: Arc::default(),
            model: model.into(),
            created: unix_now(),
            started: false,
            tools: Vec::new(),
            done: false,
        }
    }

    fn chunk(&mut self, mut delta: Delta, finish_reason: Option<&str>) -> ChatChunk {
        if !self.started {
            self.started = true;
            delta.role = Some("assistant".to_owned());
        }
        ChatChunk {
            id: self.id.clone(),
            object: crate::types::CHUNK_OBJECT.into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(str::to_owned),
            }],
            usage: None,
        }
    }

    fn text(&mut self, text: String, out: &mut VecDeque<ChatChunk>) {
        if !text.is_empty() {
            let c = self.chunk(
                Delta {
                    content: Some(text),
                    ..Delta::default()
                },
                None,
            );
            out.push_back(c);
        }
    }

    fn tool_delta(&mut self, d: ToolCallDelta, out: &mut VecDeque<ChatChunk>) {
        let c = self.chunk(
            Delta {
                tool_calls: Some(vec![d]),
                ..Delta::default()
            },
            None,
        );
        out.push_back(c);
    }

    fn on_event(
        &mut self,
        event: &str,
        data: &str,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        let data = data.trim();
        if data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            // Some gateways end with it; message-end, when it came, already said everything.
            return self.end(None, None, None, out);
        }
        let ev: StreamEvent = serde_json::from_str(data).map_err(|e| {
            Error::upstream(format!(
                "malformed stream event ({e}): {}",
                body_excerpt(data.as_bytes())
            ))
        })?;
        let kind = ev.kind.as_deref().unwrap_or(event);
        // A flat `{"id", "message": "…"}` error sent as an event (no type, or type `error`).
        if let Some(Value::String(text)) = &ev.message {
            if kind.is_empty() || kind == "error" {
                return Err(in_band_error(text));
            }
        }
        let delta = ev.delta.unwrap_or_default();
        let message = delta.message.unwrap_or_default();
        match kind {
            "message-start" => {
                if let Some(id) = ev.id.filter(|id| !id.is_empty()) {
                    self.id = id.into();
                }
                let c = self.chunk(Delta::default(), None);
                out.push_back(c);
            }
            "content-start" | "content-delta" => {
                if let Some(part) = message.content.as_ref().filter(|c| c.is_object()) {
                    if let Some(t) = part.get("thinking").and_then(Value::as_str) {
                        if !t.is_empty() {
                            let c = self.chunk(
                                Delta {
                                    reasoning_content: Some(t.to_owned()),
                                    ..Delta::default()
                                },
                                None,
                            );
                            out.push_back(c);
                        }
                    } else if let Some(t) = part.get("text").and_then(Value::as_str) {
                        self.text(t.to_owned(), out);
                    }
                }
            }
            "tool-plan-delta" => {
                if let Some(plan) = message.tool_plan {
                    self.text(plan, out);
                }
            }
            "tool-call-start" => {
                let call = one_call(message.tool_calls);
                let index = self.tools.len() as u32;
                let arguments = call
                    .as_ref()
                    .and_then(|c| c.function.arguments.as_ref())
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                self.tools.push((
                    ev.index.unwrap_or(index as u64),
                    index,
                    !arguments.is_empty(),
                ));
                let (id, name) = match call {
                    Some(c) => (c.id, c.function.name),
                    None => (None, None),
                };
                self.tool_delta(
                    ToolCallDelta {
                        index,
                        id,
                        kind: Some("function".to_owned()),
                        function: Some(FunctionDelta {
                            name,
                            arguments: Some(arguments),
                        }),
                    },
                    out,
                );
            }
            "tool-call-delta" => {
                let fragment = one_call(message.tool_calls)
                    .and_then(|c| c.function.arguments)
                    .and_then(|a| match a {
                        Value::String(s) => Some(s),
                        _ => None,
                    })
                    .filter(|s| !s.is_empty());
                if let (Some(fragment), Some(index)) = (fragment, self.tool_at(ev.index)) {
                    self.tools[index].2 = true;
                    let index = self.tools[index].1;
                    self.tool_delta(arguments_delta(index, fragment), out);
                }
            }
            "tool-call-end" => {
                // A call without parameters may stream no arguments at all: they are `{}`.
                if let Some(at) = self.tool_at(ev.index).filter(|&i| !self.tools[i].2) {
                    self.tools[at].2 = true;
                    let index = self.tools[at].1;
                    self.tool_delta(arguments_delta(index, "{}".to_owned()), out);
                }
            }
            "message-end" => {
                let error = match &delta.error {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Object(o)) => {
                        o.get("message").and_then(Value::as_str).map(str::to_owned)
                    }
                    _ => None,
                };
                if let Some(e) = error.as_deref().filter(|e| !e.trim().is_empty()) {
                    if !delta
                        .finish_reason
                        .as_deref()
                        .is_some_and(|r| r.eq_ignore_ascii_case("ERROR"))
                    {
                        return Err(in_band_error(e));
                    }
                }
                return self.end(
                    delta.finish_reason.as_deref(),
                    error.as_deref(),
                    delta.usage,
                    out,
                );
            }
            // content-end, citation-start/end, debug, and types added after this was written.
            _ => {}
        }
        Ok(())
    }

    /// The tool call a delta or end event names (by Cohere's index; the latest when none).
    fn tool_at(&self, cohere_index: Option<u64>) -> Option<usize> {
        match cohere_index {
            Some(i) => self.tools.iter().rposition(|t| t.0 == i),
            None => self.tools.len().checked_sub(1),
        }
    }

    fn end(
        &mut self,
        reason: Option<&str>,
        error: Option<&str>,
        usage: Option<WireUsage>,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<(), Error> {
        self.done = true;
        let finish = finish_reason(reason, !self.tools.is_empty(), error)?;
        let c = self.chunk(Delta::default(), Some(finish));
        out.push_back(c);
        if let Some(u) = usage.and_then(|u| u.usage()) {
            let mut c = self.chunk(Delta::default(), None);
            c.choices.clear();
            c.usage = Some(u);
            out.push_back(c);
        }
        Ok(())
    }
}

fn arguments_delta(index: u32, arguments: String) -> ToolCallDelta {
    ToolCallDelta {
        index,
        id: None,
        kind: None,
        function: Some(FunctionDelta {
            name: None,
            arguments: Some(arguments),
        }),
    }
}

/// The call of a tool-call event: an object, or the first of an array.
fn one_call(v: Option<Value>) -> Option<WireToolCall> {
    let v = match v? {
        Value::Array(a) => a.into_iter().next()?,
        v => v,
    };
    serde_json::from_value(v).ok()
}

impl StreamParser for CohereStream {
    fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<bool, Error> {
        let mut sse = std::mem::take(&mut self.sse);
        let r = sse.feed(
            bytes,
            |ev| self.on_event(&ev.event, &ev.data, out),
            || Error::upstream("stream event larger than 16 MiB"),
        );
        self.sse = sse;
        r.map(|()| self.done)
    }

    fn finish(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if let Some(ev) = self.sse.finish() {
            self.on_event(&ev.event, &ev.data, out)?;
        }
        if self.done {
            Ok(())
        } else {
            Err(Error::upstream(
                "stream ended before it was complete (no message-end)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::types::StreamAssembler;

    fn endpoint_with(entry: &str) -> Endpoint {
        let c = config::parse(&format!(
            r#"{{"global_llm_configs":[{{"provider":"COHERE","model_name":"command-a-03-2025","api_key":"co-test-key-123456"{entry}}}]}}"#
        ))
        .unwrap();
        Cohere.endpoint(&c.deployments[0], None).unwrap()
    }

    fn endpoint() -> Endpoint {
        endpoint_with("")
    }

    fn body_of(ep: &Endpoint, request: &str, stream: bool) -> Value {
        let req = ChatRequest::from_json(request).unwrap();
        serde_json::from_slice(&Cohere.request_body(ep, &req, stream).unwrap()).unwrap()
    }

    fn body(request: &str) -> Value {
        body_of(&endpoint(), request, false)
    }

    /// The error of a request refused by parsing (llmr's schema) or by the translation.
    fn body_err(request: &str) -> Error {
        let req = match ChatRequest::from_json(request) {
            Ok(r) => r,
            Err(e) => return e,
        };
        Cohere.request_body(&endpoint(), &req, false).unwrap_err()
    }

    // -----------------------------------------------------------------------------------------
    // Endpoint and request

    #[test]
    fn endpoint_url_and_bearer_key() {
        let ep = endpoint();
        assert_eq!(ep.url, "https://api.cohere.com/v2/chat");
        assert_eq!(ep.stream_url, ep.url);
        assert_eq!(ep.headers[AUTHORIZATION], "Bearer co-test-key-123456");
        assert!(ep.headers[AUTHORIZATION].is_sensitive());
        assert_eq!(ep.headers[CONTENT_TYPE], "application/json");
        assert!(
            !format!("{ep:?}").contains("co-test-key-123456"),
            "no key in Debug"
        );
        let ep = endpoint_with(r#","litellm_params":{"extra_headers":{"X-Client-Name":"my-app"}}"#);
        assert_eq!(ep.headers["x-client-name"], "my-app");
    }

    #[test]
    fn a_base_with_or_without_the_path() {
        for base in [
            "https://api.cohere.ai",
            "https://api.cohere.ai/",
            "https://api.cohere.ai/v2",
            "https://api.cohere.ai/v2/chat",
            "https://api.cohere.ai/v1",
            "https://api.cohere.ai/v1/chat/",
        ] {
            assert_eq!(chat_url(base), "https://api.cohere.ai/v2/chat", "{base}");
        }
        assert_eq!(
            chat_url("http://127.0.0.1:9/t"),
            "http://127.0.0.1:9/t/v2/chat"
        );
    }

    #[test]
    fn sampling_fields_and_their_cohere_names() {
        let ep = endpoint_with(
            r#","litellm_params":{"temperature":0.1,"safety_mode":"STRICT","top_k":5,"max_tokens":100}"#,
        );
        let b = body_of(
            &ep,
            r#"{"messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"hi"}],
                "max_completion_tokens":64,"stop":"END","temperature":0.7,"top_p":0.9,"seed":42,
                "frequency_penalty":0.5,"user":"u1","parallel_tool_calls":false,"logit_bias":{"1":2}}"#,
            false,
        );
        assert_eq!(b["model"], "command-a-03-2025");
        assert_eq!(b["stream"], false);
        assert_eq!(
            b["messages"],
            json!([{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}])
        );
        assert_eq!(b["max_tokens"], 64);
        assert_eq!(b["stop_sequences"], json!(["END"]));
        assert_eq!(b["temperature"], 0.7);
        assert_eq!(b["p"], 0.9);
        assert_eq!(b["k"], 5);
        assert_eq!(
            (b["seed"].clone(), b["frequency_penalty"].clone()),
            (json!(42), json!(0.5))
        );
        assert_eq!(b["safety_mode"], "STRICT");
        for absent in [
            "stop",
            "top_p",
            "top_k",
            "user",
            "parallel_tool_calls",
            "logit_bias",
            "max_completion_tokens",
            "tools",
            "tool_choice",
        ] {
            assert!(b.get(absent).is_none(), "{absent}");
        }
        let b = body_of(
            &ep,
            r#"{"messages":[{"role":"user","content":"hi"}],"stop":["a","b"]}"#,
            true,
        );
        assert_eq!(b["stream"], true);
        assert_eq!(b["temperature"], 0.1, "the deployment's default");
        assert_eq!(b["max_tokens"], 100, "the deployment's default");
        assert_eq!(b["stop_sequences"], json!(["a", "b"]));
    }

    const WEATHER_TOOLS: &str = r#"[
        {"type":"function","function":{"name":"get_weather","description":"Weather of a city",
          "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
        {"type":"function","function":{"name":"now"}}]"#;

    #[test]
    fn tool_calls_plans_and_results() {
        let b = body(&format!(
            r#"{{"messages":[
                {{"role":"user","content":"weather in Paris?"}},
                {{"role":"assistant","content":"I will look it up.","tool_calls":[
                    {{"id":"get_weather_1","type":"function","function":{{"name":"get_weather","arguments":{{"city":"Paris"}}}}}},
                    {{"id":"now_2","type":"function","function":{{"name":"now","arguments":""}}}}]}},
                {{"role":"tool","tool_call_id":"get_weather_1","content":"sunny"}},
                {{"role":"tool","tool_call_id":"now_2","content":{{"t":"12:00"}}}},
                {{"role":"assistant","content":[{{"type":"text","text":"Sunny at noon."}}]}}],
              "tools":{WEATHER_TOOLS}}}"#
        ));
        let m = &b["messages"];
        assert_eq!(
            m[1],
            json!({"role":"assistant","tool_plan":"I will look it up.","tool_calls":[
                {"id":"get_weather_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                {"id":"now_2","type":"function","function":{"name":"now","arguments":"{}"}}]})
        );
        assert_eq!(
            m[2],
            json!({"role":"tool","tool_call_id":"get_weather_1","content":"sunny"})
        );
        assert_eq!(
            m[3]["content"], r#"{"t":"12:00"}"#,
            "non-string results are serialised"
        );
        assert_eq!(
            m[4],
            json!({"role":"assistant","content":[{"type":"text","text":"Sunny at noon."}]})
        );
        assert_eq!(
            b["tools"],
            json!([
                {"type":"function","function":{"name":"get_weather","description":"Weather of a city",
                  "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
                {"type":"function","function":{"name":"now","parameters":{"type":"object","properties":{}}}}])
        );
        assert!(b.get("tool_choice").is_none(), "auto is Cohere's default");
        assert!(b.get("strict_tools").is_none());

        // A tool plan given back as Cohere sent it wins over the text, and a call without text has none.
        let b = body(
            r#"{"messages":[{"role":"user","content":"x"},
                {"role":"assistant","content":null,"tool_plan":"Plan.","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},
                {"role":"assistant","tool_calls":[{"id":"b","type":"function","function":{"name":"f","arguments":"{}"}}]}]}"#,
        );
        assert_eq!(b["messages"][1]["tool_plan"], "Plan.");
        assert!(b["messages"][1].get("content").is_none());
        assert!(b["messages"][2].get("tool_plan").is_none());
    }

    fn choice(tool_choice: &str) -> Value {
        body(&format!(
            r#"{{"messages":[{{"role":"user","content":"hi"}}],"tools":{WEATHER_TOOLS},"tool_choice":{tool_choice}}}"#
        ))
    }

    #[test]
    fn tool_choice_is_required_none_or_left_out() {
        assert!(choice(r#""auto""#).get("tool_choice").is_none());
        assert_eq!(choice(r#""required""#)["tool_choice"], "REQUIRED");
        assert_eq!(choice(r#""none""#)["tool_choice"], "NONE");
        assert_eq!(choice(r#""NONE""#)["tool_choice"], "NONE");
        assert_eq!(choice(r#""none""#)["tools"].as_array().unwrap().len(), 2);
        // A named tool: required, with only that tool offered.
        let b = choice(r#"{"type":"function","function":{"name":"now"}}"#);
        assert_eq!(b["tool_choice"], "REQUIRED");
        assert_eq!(b["tools"].as_array().unwrap().len(), 1);
        assert_eq!(b["tools"][0]["function"]["name"], "now");
        let e = body_err(&format!(
            r#"{{"messages":[{{"role":"user","content":"hi"}}],"tools":{WEATHER_TOOLS},"tool_choice":{{"type":"function","function":{{"name":"nope"}}}}}}"#
        ));
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(e.message.contains("nope"), "{}", e.message);
        let e = body_err(&format!(
            r#"{{"messages":[{{"role":"user","content":"hi"}}],"tools":{WEATHER_TOOLS},"tool_choice":"sometimes"}}"#
        ));
        assert_eq!(e.status, Status::InvalidArgument);
        // Without tools there is nothing to choose among.
        let b = body(r#"{"messages":[{"role":"user","content":"hi"}],"tool_choice":"required"}"#);
        assert!(b.get("tool_choice").is_none());
        // OpenAI's per-function `strict` is Cohere's request-wide `strict_tools`.
        let b = body(
            r#"{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","strict":true,"parameters":{"type":"object","properties":{}}}}]}"#,
        );
        assert_eq!(b["strict_tools"], true);
        assert!(b["tools"][0]["function"].get("strict").is_none());
    }

    #[test]
    fn response_format_json_object_and_schema() {
        let rf = |f: &str| {
            body(&format!(
                r#"{{"messages":[{{"role":"user","content":"hi"}}],"response_format":{f}}}"#
            ))["response_format"]
                .clone()
        };
        assert_eq!(
            rf(r#"{"type":"json_object"}"#),
            json!({"type":"json_object"})
        );
        assert_eq!(
            rf(
                r#"{"type":"json_schema","json_schema":{"name":"age","strict":true,"schema":{"type":"object","properties":{"age":{"type":"integer"}}}}}"#
            ),
            json!({"type":"json_object","json_schema":{"type":"object","properties":{"age":{"type":"integer"}}}})
        );
        let native = r#"{"type":"json_object","json_schema":{"type":"object"}}"#;
        assert_eq!(rf(native), serde_json::from_str::<Value>(native).unwrap());
        assert_eq!(rf(r#"{"type":"text"}"#), Value::Null, "text is the default");
    }

    #[test]
    fn images_and_system_parts() {
        let b = body(
            r#"{"messages":[
                {"role":"system","content":[{"type":"text","text":"Be"},{"type":"text","text":" kind."}]},
                {"role":"user","content":[{"type":"text","text":"what is this?"},
                    {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}},
                    {"type":"image_url","image_url":"https://x/y.png"}]}]}"#,
        );
        assert_eq!(
            b["messages"][0]["content"],
            json!([{"type":"text","text":"Be"},{"type":"text","text":" kind."}])
        );
        assert_eq!(
            b["messages"][1]["content"],
            json!([{"type":"text","text":"what is this?"},
                   {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}},
                   {"type":"image_url","image_url":{"url":"https://x/y.png"}}])
        );
    }

    // -----------------------------------------------------------------------------------------
    // Response

    #[test]
    fn text_response_with_tokens_usage() {
        // Cohere's documented v2 answer.
        let r = parse_response(
            &endpoint(),
            br#"{"id":"c14c80c3-18eb-4519-9460-6c92edd8cfb4","finish_reason":"COMPLETE",
                 "message":{"role":"assistant","content":[{"type":"text","text":"LLMs are "},{"type":"text","text":"models."}]},
                 "usage":{"billed_units":{"input_tokens":5,"output_tokens":418},"tokens":{"input_tokens":71,"output_tokens":418}}}"#,
        )
        .unwrap();
        assert_eq!(r.id, "c14c80c3-18eb-4519-9460-6c92edd8cfb4");
        assert_eq!(r.model, "command-a-03-2025");
        let c = &r.choices[0];
        assert_eq!(c.message.content.as_deref(), Some("LLMs are models."));
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            r.usage,
            Some(Usage::new(71, 418)),
            "tokens, not billed_units"
        );

        let r = parse_response(
            &endpoint(),
            br#"{"id":"x","finish_reason":"MAX_TOKENS","message":{"role":"assistant","content":[
                 {"type":"thinking","thinking":"Hmm."},{"type":"text","text":"cut"}]},
                 "usage":{"billed_units":{"input_tokens":9.0,"output_tokens":3}}}"#,
        )
        .unwrap();
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(
            r.choices[0].message.reasoning_content.as_deref(),
            Some("Hmm.")
        );
        assert_eq!(r.choices[0].message.content.as_deref(), Some("cut"));
        assert_eq!(
            r.usage,
            Some(Usage::new(9, 3)),
            "billed_units when tokens are absent"
        );
    }

    #[test]
    fn tool_call_response_keeps_the_plan_as_text() {
        let r = parse_response(
            &endpoint(),
            br#"{"id":"a1","finish_reason":"TOOL_CALL","message":{"role":"assistant",
                 "tool_plan":"I will search for the weather in Madrid.",
                 "tool_calls":[{"id":"get_weather_776n8ctsgycn","type":"function",
                    "function":{"name":"get_weather","arguments":"{\"location\":\"Madrid\"}"}},
                    {"id":"now_1","type":"function","function":{"name":"now","arguments":""}}]},
                 "usage":{"billed_units":{"input_tokens":37,"output_tokens":28},"tokens":{"input_tokens":1048,"output_tokens":57}}}"#,
        )
        .unwrap();
        let m = &r.choices[0].message;
        assert_eq!(
            m.content.as_deref(),
            Some("I will search for the weather in Madrid.")
        );
        let calls = m.tool_calls.as_ref().unwrap();
        assert_eq!(calls[0].id, "get_weather_776n8ctsgycn");
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(calls[0].function.arguments, r#"{"location":"Madrid"}"#);
        assert_eq!(calls[1].function.arguments, "{}");
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(r.usage, Some(Usage::new(1048, 57)));

        // Calls without a plan: no content at all, as OpenAI.
        let r = parse_response(
            &endpoint(),
            br#"{"id":"a2","finish_reason":"COMPLETE","message":{"role":"assistant","tool_calls":[
                 {"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]}}"#,
        )
        .unwrap();
        assert_eq!(r.choices[0].message.content, None);
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(r.usage, None, "no usage: the router estimates it");
    }

    #[test]
    fn finish_reasons() {
        let finish = |reason: &str| {
            parse_response(
                &endpoint(),
                format!(r#"{{"id":"x","finish_reason":"{reason}","message":{{"role":"assistant","content":[{{"type":"text","text":"t"}}]}}}}"#)
                    .as_bytes(),
            )
            .map(|r| r.choices[0].finish_reason.clone().unwrap())
        };
        assert_eq!(finish("COMPLETE").unwrap(), "stop");
        assert_eq!(finish("STOP_SEQUENCE").unwrap(), "stop");
        assert_eq!(finish("MAX_TOKENS").unwrap(), "length");
        assert_eq!(finish("complete").unwrap(), "stop");
        assert_eq!(finish("ERROR_TOXIC").unwrap(), "content_filter");
        assert_eq!(finish("SOMETHING_NEW").unwrap(), "stop");
        let e = finish("ERROR").unwrap_err();
        assert_eq!(
            e.status,
            Status::Upstream,
            "a failed generation is retryable"
        );
        assert_eq!(finish("TIMEOUT").unwrap_err().status, Status::Timeout);
    }

    #[test]
    fn a_200_that_is_not_an_answer() {
        let e = parse_response(
            &endpoint(),
            br#"{"id":"x","message":"internal server error"}"#,
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (Status::Upstream, "internal server error")
        );
        let e = parse_response(
            &endpoint(),
            br#"{"id":"x","message":"too many tokens: size limit exceeded by 12 tokens. Try using shorter or fewer inputs."}"#,
        )
        .unwrap_err();
        assert_eq!(e.status, Status::ContextOverflow);
        assert_eq!(
            parse_response(&endpoint(), b"<html>").unwrap_err().status,
            Status::Upstream
        );
        assert_eq!(
            parse_response(&endpoint(), b"{}").unwrap_err().status,
            Status::Upstream
        );
        assert_eq!(
            parse_response(&endpoint(), b"[1]").unwrap_err().status,
            Status::Upstream
        );
    }

    // -----------------------------------------------------------------------------------------
    // Errors (texts from Cohere's errors page and from public issue threads)

    fn http_error(status: u16, message: &str) -> Error {
        let body = json!({"id": "24e32f6d-b372-4853-85f2-11e65134f032", "message": message});
        Cohere.parse_error(&endpoint(), status, body.to_string().as_bytes())
    }

    #[test]
    fn overflow_and_the_output_cap_that_is_not_one() {
        for m in [
            "too many tokens: size limit exceeded by 11326 tokens. Try using shorter or fewer inputs, or setting prompt_truncation='AUTO'.",
            "too many tokens: size limit exceeded by 19296 tokens. Try using shorter or fewer inputs. The limit for this model is 132000 tokens.",
            "too many tokens: minimal context could not be added to prompt (size limit exceeded by 280 tokens)",
            "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 4292. Try using a shorter prompt, or enabling prompt truncating.",
        ] {
            let e = http_error(400, m);
            assert_eq!(e.status, Status::ContextOverflow, "{m}");
            assert_eq!(e.message, m);
        }
        let e = http_error(
            400,
            "too many tokens: max tokens must be less than or equal to 4096, the maximum output for this model - received 8192.",
        );
        assert_eq!(
            e.status,
            Status::BadRequest,
            "an output cap is not an overflow"
        );
        assert_eq!(
            http_error(400, "invalid request: message must not be empty in a turn").status,
            Status::BadRequest
        );
    }

    #[test]
    fn rate_limits_and_quotas() {
        let e = http_error(
            429,
            "You are using a Trial key, which is limited to 40 API calls / minute. You can continue to use the Trial key for free or upgrade to a Production key with higher rate limits at 'https://dashboard.cohere.com/api-keys'.",
        );
        assert_eq!(e.status, Status::RateLimited);
        assert!(!e.quota);
        assert_eq!(e.retry_after, None, "Cohere gives no retry hint");
        let e = http_error(
            429,
            "You are using a Trial key, which is limited to 1000 API calls / month.",
        );
        assert_eq!(e.status, Status::RateLimited);
        assert!(
            e.quota,
            "this month's allowance is gone: another key must answer"
        );
        assert_eq!(
            http_error(
                429,
                "trial token rate limit exceeded, limit is 100000 tokens per minute"
            )
            .status,
            Status::RateLimited
        );
        let e = http_error(
            402,
            "Maximum billing reached for this API key as set in your dashboard, please go to https://dashboard.cohere.com/billing?tab=payment to increase your maximum amount to continue using this API key.",
        );
        assert!(e.quota);
        assert_eq!(e.status, Status::BadRequest);
    }

    #[test]
    fn auth_policy_cancel_and_server_errors() {
        assert_eq!(http_error(401, "invalid api token").status, Status::Auth);
        assert_eq!(http_error(401, "no api key supplied").status, Status::Auth);
        let e = http_error(498, "invalid api token");
        assert_eq!((e.status, e.http_status), (Status::Auth, Some(498)));
        let e = http_error(
            400,
            "invalid request: the generation was blocked by the safety mode",
        );
        assert_eq!(e.status, Status::ContentPolicy);
        assert_eq!(
            http_error(403, "Sorry, you have been blocked").status,
            Status::Auth,
            "a WAF page is about access, not content"
        );
        for m in [
            "request cancelled",
            "streaming error - scroll down for more streaming errors",
        ] {
            let e = http_error(499, m);
            assert_eq!(
                e.status,
                Status::Upstream,
                "retryable, as Cohere's docs say: {m}"
            );
        }
        assert_eq!(
            http_error(404, "model 'xyz' not found, make sure the correct model ID was used and that you have access to the model.").status,
            Status::BadRequest
        );
        assert_eq!(
            http_error(500, "internal server error").status,
            Status::Upstream
        );
        let e = Cohere.parse_error(&endpoint(), 503, b"<html>503 Service Unavailable</html>");
        assert_eq!(
            (e.status, e.message.as_str()),
            (Status::Upstream, "<html>503 Service Unavailable</html>")
        );
        let e = Cohere.parse_error(&endpoint(), 502, b"");
        assert!(!e.message.is_empty());
    }

    // -----------------------------------------------------------------------------------------
    // Stream

    /// Feeds `input` in pieces of `piece` bytes; the chunks, whether a feed said done, and how
    /// the stream ended.
    fn run_stream(input: &str, piece: usize) -> (Vec<ChatChunk>, bool, Result<(), Error>) {
        let mut p = CohereStream::new("command-a-03-2025");
        let mut out = VecDeque::new();
        let mut done = false;
        for bytes in input.as_bytes().chunks(piece) {
            match p.feed(bytes, &mut out) {
                Ok(d) => done = d,
                Err(e) => return (out.into_iter().collect(), done, Err(e)),
            }
        }
        let r = p.finish(&mut out);
        (out.into_iter().collect(), done, r)
    }

    fn assemble(chunks: &[ChatChunk]) -> ChatResponse {
        let mut a = StreamAssembler::default();
        for c in chunks {
            a.push(c);
        }
        a.into_response()
    }

    fn ev(data: Value) -> String {
        format!(
            "event: {}\ndata: {data}\n\n",
            data["type"].as_str().unwrap()
        )
    }

    /// Cohere's documented text stream (abridged), ending with a gateway's `[DONE]`.
    fn text_stream() -> String {
        [
            ev(json!({"id":"a8fc192e-4bb8-4e15-ae1f-a174e8b02ae8","type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}})),
            ev(json!({"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}})),
            ev(json!({"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Coca"}}}})),
            ev(json!({"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"-Cola é"}}}})),
            ev(json!({"type":"citation-start","index":0,"delta":{"message":{"citations":{"start":0,"end":4,"text":"Coca","sources":[]}}}})),
            ev(json!({"type":"citation-end","index":0})),
            ev(json!({"type":"content-end","index":0})),
            ev(json!({"type":"message-end","delta":{"finish_reason":"COMPLETE","usage":{"billed_units":{"input_tokens":21,"output_tokens":105},"tokens":{"input_tokens":186,"output_tokens":105}}}})),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat()
    }

    #[test]
    fn stream_text_survives_any_split() {
        let input = text_stream();
        for piece in 1..=input.len().min(600) {
            let (chunks, done, r) = run_stream(&input, piece);
            r.unwrap_or_else(|e| panic!("piece {piece}: {e}"));
            assert!(done, "piece {piece}");
            let texts: Vec<_> = chunks
                .iter()
                .filter_map(|c| c.choices.first()?.delta.content.clone())
                .collect();
            assert_eq!(texts, ["Coca", "-Cola é"], "piece {piece}");
            assert_eq!(
                chunks[0].choices[0].delta.role.as_deref(),
                Some("assistant")
            );
            assert!(chunks
                .iter()
                .all(|c| &*c.id == "a8fc192e-4bb8-4e15-ae1f-a174e8b02ae8"));
            let r = assemble(&chunks);
            assert_eq!(r.choices[0].message.content.as_deref(), Some("Coca-Cola é"));
            assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
            assert_eq!(r.usage, Some(Usage::new(186, 105)));
            assert_eq!(r.model, "command-a-03-2025");
        }
    }

    /// A recorded tool-call stream (object-shaped `tool_calls`, as the API sends them), with two
    /// calls, the second without parameters.
    fn tool_stream() -> String {
        [
            ev(json!({"id":"93b3f521-090e-4ebc-bac4-f7c557e63c00","type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}})),
            ev(json!({"type":"tool-plan-delta","delta":{"message":{"tool_plan":"Voy"}}})),
            ev(json!({"type":"tool-plan-delta","delta":{"message":{"tool_plan":" a buscar"}}})),
            ev(json!({"type":"tool-call-start","index":0,"delta":{"message":{"tool_calls":{"id":"database_agent_3v76fs3zjrgq","type":"function","function":{"name":"database_agent","arguments":""}}}}})),
            ev(json!({"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"{\n    \""}}}}})),
            ev(json!({"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"query"}}}}})),
            ev(json!({"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"\": \"Juan\""}}}}})),
            ev(json!({"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"\n}"}}}}})),
            ev(json!({"type":"tool-call-end","index":0})),
            ev(json!({"type":"tool-call-start","index":1,"delta":{"message":{"tool_calls":[{"id":"now_1","type":"function","function":{"name":"now","arguments":""}}]}}})),
            ev(json!({"type":"tool-call-end","index":1})),
            ev(json!({"type":"message-end","delta":{"finish_reason":"TOOL_CALL","usage":{"billed_units":{"input_tokens":50,"output_tokens":26},"tokens":{"input_tokens":793,"output_tokens":61},"cached_tokens":176}}})),
        ]
        .concat()
    }

    #[test]
    fn stream_tool_calls_assemble_at_any_split() {
        let input = tool_stream();
        for piece in [1, 2, 3, 5, 8, 13, 64, 333, input.len()] {
            let (chunks, done, r) = run_stream(&input, piece);
            r.unwrap();
            assert!(done);
            let r = assemble(&chunks);
            let m = &r.choices[0].message;
            assert_eq!(
                m.content.as_deref(),
                Some("Voy a buscar"),
                "the plan reaches the caller as text"
            );
            let calls = m.tool_calls.as_ref().unwrap();
            assert_eq!(calls.len(), 2, "piece {piece}");
            assert_eq!(calls[0].id, "database_agent_3v76fs3zjrgq");
            assert_eq!(calls[0].function.name, "database_agent");
            let args: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
            assert_eq!(args, json!({"query": "Juan"}));
            assert_eq!(
                (calls[1].id.as_str(), calls[1].function.arguments.as_str()),
                ("now_1", "{}")
            );
            assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
            assert_eq!(r.usage, Some(Usage::new(793, 61)));
        }
        // The first fragment of a call carries its id, type and name, as OpenAI's do.
        let (chunks, _, _) = run_stream(&input, input.len());
        let first = chunks
            .iter()
            .find_map(|c| c.choices.first()?.delta.tool_calls.clone())
            .unwrap();
        assert_eq!(first[0].index, 0);
        assert_eq!(first[0].kind.as_deref(), Some("function"));
        assert_eq!(
            first[0].function.as_ref().unwrap().name.as_deref(),
            Some("database_agent")
        );
    }

    #[test]
    fn stream_thinking_and_max_tokens() {
        let input = [
            ev(json!({"id":"r","type":"message-start","delta":{"message":{"role":"assistant"}}})),
            ev(json!({"type":"content-start","index":0,"delta":{"message":{"content":{"type":"thinking","thinking":""}}}})),
            ev(json!({"type":"content-delta","index":0,"delta":{"message":{"content":{"thinking":"Let me"}}}})),
            ev(json!({"type":"content-end","index":0})),
            ev(json!({"type":"content-start","index":1,"delta":{"message":{"content":{"type":"text","text":"Hi"}}}})),
            ev(json!({"type":"content-end","index":1})),
            ev(json!({"type":"message-end","delta":{"finish_reason":"MAX_TOKENS","usage":{"billed_units":{"input_tokens":3,"output_tokens":1}}}})),
        ]
        .concat();
        let (chunks, _, r) = run_stream(&input, 7);
        r.unwrap();
        let r = assemble(&chunks);
        assert_eq!(
            r.choices[0].message.reasoning_content.as_deref(),
            Some("Let me")
        );
        assert_eq!(r.choices[0].message.content.as_deref(), Some("Hi"));
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(r.usage, Some(Usage::new(3, 1)));
    }

    #[test]
    fn stream_errors() {
        let head = [
            ev(json!({"id":"e","type":"message-start","delta":{"message":{"role":"assistant"}}})),
            ev(json!({"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"par"}}}})),
        ]
        .concat();
        // message-end with an error: what came before is delivered, then the error.
        let input = head.clone()
            + &ev(
                json!({"type":"message-end","delta":{"finish_reason":"ERROR","error":"internal server error"}}),
            );
        let (chunks, _, r) = run_stream(&input, 9);
        assert_eq!(chunks.iter().filter(|c| c.has_payload()).count(), 1);
        let e = r.unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (Status::Upstream, "internal server error")
        );
        // An overflow reported in the stream is still an overflow.
        let input = head.clone()
            + &ev(
                json!({"type":"message-end","delta":{"finish_reason":"ERROR","error":"too many tokens: size limit exceeded by 5 tokens."}}),
            );
        assert_eq!(
            run_stream(&input, 4).2.unwrap_err().status,
            Status::ContextOverflow
        );
        // ERROR without a text, TIMEOUT, an error next to another finish reason.
        let input =
            head.clone() + &ev(json!({"type":"message-end","delta":{"finish_reason":"ERROR"}}));
        assert_eq!(
            run_stream(&input, 50).2.unwrap_err().status,
            Status::Upstream
        );
        let input =
            head.clone() + &ev(json!({"type":"message-end","delta":{"finish_reason":"TIMEOUT"}}));
        assert_eq!(
            run_stream(&input, 50).2.unwrap_err().status,
            Status::Timeout
        );
        let input = head.clone()
            + &ev(
                json!({"type":"message-end","delta":{"finish_reason":"COMPLETE","error":"the generation was blocked"}}),
            );
        assert_eq!(
            run_stream(&input, 50).2.unwrap_err().status,
            Status::ContentPolicy
        );
        // A flat error object as an event.
        let input = head.clone() + "data: {\"id\":\"x\",\"message\":\"request cancelled\"}\n\n";
        assert_eq!(
            run_stream(&input, 50).2.unwrap_err().message,
            "request cancelled"
        );
    }

    #[test]
    fn stream_cut_short_malformed_or_ended_by_done() {
        let head = ev(
            json!({"id":"e","type":"message-start","delta":{"message":{"role":"assistant"}}}),
        ) + &ev(
            json!({"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"par"}}}}),
        );
        let (chunks, done, r) = run_stream(&head, 5);
        assert!(!done);
        assert_eq!(chunks.iter().filter(|c| c.has_payload()).count(), 1);
        let e = r.unwrap_err();
        assert_eq!(e.status, Status::Upstream);
        assert!(
            e.message.contains("before it was complete"),
            "{}",
            e.message
        );
        let (_, _, r) = run_stream(&(head.clone() + "data: {not json\n\n"), 5);
        assert!(r.unwrap_err().message.contains("malformed"));
        // `[DONE]` without message-end still ends the stream (some gateways send only that).
        let (chunks, done, r) = run_stream(&(head + "data: [DONE]\n\n"), 5);
        r.unwrap();
        assert!(done);
        assert_eq!(
            assemble(&chunks).choices[0].finish_reason.as_deref(),
            Some("stop")
        );
        // Events after message-end are ignored.
        let (chunks, _, r) = run_stream(
            &(text_stream()
                + &ev(
                    json!({"type":"content-delta","delta":{"message":{"content":{"text":"late"}}}}),
                )),
            3,
        );
        r.unwrap();
        assert_eq!(
            assemble(&chunks).choices[0].message.content.as_deref(),
            Some("Coca-Cola é")
        );
    }

    #[test]
    fn stream_parser_from_the_wire_format() {
        let mut p = Cohere.stream_parser(&endpoint());
        let mut out = VecDeque::new();
        assert!(p.feed(text_stream().as_bytes(), &mut out).unwrap());
        p.finish(&mut out).unwrap();
    }
}
