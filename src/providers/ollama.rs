//! Ollama's native chat API (`POST /api/chat`, PROVIDERS.md §6): OpenAI-shaped requests mapped to
//! Ollama's body (sampling settings under `options`), its answers, its NDJSON stream (one JSON
//! object per line, the last one `"done": true`) and its `{"error": "..."}` bodies mapped back.
//!
//! Mapping, as litellm's `ollama_chat`: `max_tokens` → `options.num_predict`, `stop`,
//! `temperature`, `top_p`, `seed` and the penalties → `options`, `num_ctx` (and every other
//! Ollama option) from `litellm_params` or the request; tool-call arguments are sent as objects
//! and come back as objects (serialised here), with ids synthesised where Ollama gives none;
//! tool results are `tool` messages carrying the tool's name; images are bare base64 strings in
//! the message's `images`; `response_format` becomes `format` (`"json"` or the JSON schema);
//! `reasoning_effort` becomes `think`.
//!
//! Context overflow: by default Ollama cuts a prompt longer than `num_ctx` and answers 200 (no
//! error to classify); with `truncate: false` it answers 400, and Ollama Cloud and newer
//! builds say "The prompt is too long: N, model maximum context length: M" — both classified
//! as overflows. A deployment's `num_ctx` is its real window (see `config`).
//! `tool_choice` is not sent (Ollama has none; litellm drops it); `"none"` leaves the tools out.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::classify::{body_excerpt, classify, ErrorParts};
use super::{extra_headers, secret_header, Endpoint, StreamParser, WireFormat};
use crate::config::DeploymentConfig;
use crate::errors::Error;
use crate::types::{
    keep, unix_now, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, FunctionCall,
    FunctionDelta, Message, ResponseMessage, ToolCall, ToolCallDelta, Usage,
};

pub struct Ollama;

/// Ollama's sampling and runtime options (its Modelfile parameters): found among the request's
/// fields or the deployment's `litellm_params`, they are sent under `options`.
const OPTION_NAMES: &[&str] = &[
    "num_ctx",
    "num_predict",
    "num_keep",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "num_thread",
    "use_mmap",
    "numa",
    "low_vram",
    "top_k",
    "min_p",
    "typical_p",
    "tfs_z",
    "repeat_last_n",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "penalize_newline",
    "seed",
];

/// Top-level fields of `/api/chat` other than those built here, passed through when given.
/// `truncate: false` (and `shift: false`) make Ollama refuse a prompt longer than `num_ctx`
/// with a 400 instead of silently cutting it: set it in `litellm_params` to get context
/// overflows reported (and the router's fallback to a larger window).
const TOP_LEVEL_NAMES: &[&str] = &["keep_alive", "think", "format", "truncate", "shift"];

/// The largest NDJSON line accepted; a stream that never ends a line is broken.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

impl WireFormat for Ollama {
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
        // No key locally; Ollama Cloud and authenticating proxies take a bearer token.
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
        let mut e = classify(Some(http_status), error_parts(body));
        // Ollama Cloud's session / weekly / monthly plan limits: hours or days away.
        if e.status == crate::errors::Status::RateLimited
            && e.message.contains("usage limit, upgrade")
        {
            e.quota = true;
        }
        e
    }

    fn stream_parser(&self, ep: &Endpoint) -> Box<dyn StreamParser> {
        Box::new(OllamaStream::new(&ep.model))
    }
}

/// `{base}/api/chat`. The base is the server (`http://localhost:11434`); one given with the
/// OpenAI-compatible `/v1`, or with `/api`, or as the whole chat URL, is taken as meant.
fn chat_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/api/chat") {
        return base.to_owned();
    }
    let server = base
        .strip_suffix("/v1")
        .or_else(|| base.strip_suffix("/api"))
        .unwrap_or(base);
    format!("{}/api/chat", server.trim_end_matches('/'))
}

// ---------------------------------------------------------------------------------------------
// Request

fn build_body(ep: &Endpoint, req: &ChatRequest, stream: bool) -> Result<Value, Error> {
    let d = &ep.defaults;
    let mut body = Map::new();
    body.insert("model".into(), Value::from(ep.model.as_str()));
    body.insert(
        "messages".into(),
        Value::Array(convert_messages(&req.messages)?),
    );

    let choice_none = req
        .tool_choice
        .as_ref()
        .or_else(|| d.get("tool_choice"))
        .and_then(Value::as_str)
        == Some("none");
    if let Some(tools) = req.tools.as_ref().filter(|t| !t.is_empty() && !choice_none) {
        let tools = serde_json::to_value(tools)
            .map_err(|e| Error::invalid(format!("request JSON at `tools`: {e}")))?;
        body.insert("tools".into(), tools);
    }

    for key in TOP_LEVEL_NAMES {
        if let Some(v) = ep.param(req, key) {
            body.insert((*key).into(), v.clone());
        }
    }
    if !body.contains_key("format") {
        if let Some(format) = ep.param(req, "response_format").and_then(format_of) {
            body.insert("format".into(), format);
        }
    }
    if !body.contains_key("think") {
        if let Some(think) = ep
            .param(req, "reasoning_effort")
            .and_then(|e| think_of(e, &ep.model))
        {
            body.insert("think".into(), think);
        }
    }

    // Options: the deployment's `options` object, then each option named on its own (the
    // deployment's, then the request's), then the OpenAI fields, which win.
    let mut options = Map::new();
    if let Some(Value::Object(o)) = d.get("options") {
        options.extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(Value::Object(o)) = req.extra.get("options") {
        options.extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for key in OPTION_NAMES {
        if let Some(v) = ep.param(req, key) {
            options.insert((*key).into(), v.clone());
        }
    }
    let max_tokens = req
        .max_output_tokens()
        .or_else(|| d.get("max_completion_tokens").and_then(Value::as_u64))
        .or_else(|| d.get("max_tokens").and_then(Value::as_u64));
    if let Some(n) = max_tokens {
        options.insert("num_predict".into(), Value::from(n));
    }
    if let Some(t) = req
        .temperature
        .or_else(|| d.get("temperature").and_then(Value::as_f64))
    {
        options.insert("temperature".into(), Value::from(t));
    }
    if let Some(p) = req.top_p.or_else(|| d.get("top_p").and_then(Value::as_f64)) {
        options.insert("top_p".into(), Value::from(p));
    }
    let stop = req
        .stop
        .as_ref()
        .filter(|v| !v.is_null())
        .or_else(|| d.get("stop"));
    if let Some(stop) = stop.map(stop_list).filter(|s| !s.is_empty()) {
        options.insert("stop".into(), Value::from(stop));
    }
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    // Ollama streams unless told not to.
    body.insert("stream".into(), Value::Bool(stream));
    Ok(Value::Object(body))
}

/// `stop` as a string or an array of strings.
fn stop_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// OpenAI's `response_format` as Ollama's `format`: `"json"`, or the JSON schema itself.
fn format_of(rf: &Value) -> Option<Value> {
    match rf.get("type").and_then(Value::as_str)? {
        "json_object" => Some(Value::from("json")),
        "json_schema" => {
            let schema = rf.get("json_schema")?;
            Some(schema.get("schema").unwrap_or(schema).clone())
        }
        _ => None,
    }
}

/// OpenAI's `reasoning_effort` as Ollama's `think`: `"none"` is off; gpt-oss takes the level
/// (`"low"`/`"medium"`/`"high"`), other thinking models only `true`.
fn think_of(effort: &Value, model: &str) -> Option<Value> {
    let level = match effort.as_str()? {
        "none" => return Some(Value::Bool(false)),
        "minimal" | "low" => "low",
        "medium" => "medium",
        _ => "high",
    };
    Some(if model.contains("gpt-oss") {
        Value::from(level)
    } else {
        Value::Bool(true)
    })
}

/// The messages as Ollama takes them: string content, images apart, tool calls with object
/// arguments, tool results with the name of the tool they answer.
fn convert_messages(messages: &[Message]) -> Result<Vec<Value>, Error> {
    // Tool results carry no call id on Ollama's side, only the tool's name.
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "developer" => "system",
            "function" => "tool",
            r => r,
        };
        let (text, images) = content_of(&m.content, i)?;
        let mut msg = Map::new();
        msg.insert("role".into(), Value::from(role));
        msg.insert("content".into(), Value::from(text));
        if !images.is_empty() {
            msg.insert("images".into(), Value::from(images));
        }
        if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
            let calls: Vec<Value> = calls
                .iter()
                .map(|c| {
                    names.insert(c.id.as_str(), c.function.name.as_str());
                    json!({"function": {"name": c.function.name, "arguments": arguments_object(&c.function.arguments)}})
                })
                .collect();
            msg.insert("tool_calls".into(), Value::Array(calls));
        }
        if role == "tool" {
            let id = m.tool_call_id.as_deref();
            let name = m
                .name
                .as_deref()
                .or_else(|| id.and_then(|id| names.get(id).copied()));
            if let Some(name) = name {
                msg.insert("tool_name".into(), Value::from(name));
            }
            if let Some(id) = id {
                msg.insert("tool_call_id".into(), Value::from(id));
            }
        }
        if let Some(thinking) = m
            .extra
            .get("reasoning_content")
            .or_else(|| m.extra.get("thinking"))
            .and_then(Value::as_str)
            .filter(|_| role == "assistant")
        {
            msg.insert("thinking".into(), Value::from(thinking));
        }
        out.push(Value::Object(msg));
    }
    Ok(out)
}

/// Tool-call arguments as the object Ollama requires; empty or broken JSON becomes `{}`.
fn arguments_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

/// A message's text (its text parts joined) and its images as bare base64.
fn content_of(content: &Option<Value>, msg: usize) -> Result<(String, Vec<String>), Error> {
    let parts = match content {
        None | Some(Value::Null) => return Ok((String::new(), Vec::new())),
        Some(Value::String(s)) => return Ok((s.clone(), Vec::new())),
        Some(Value::Array(parts)) => parts,
        Some(other) => return Ok((other.to_string(), Vec::new())),
    };
    let mut text = String::new();
    let mut images = Vec::new();
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("image_url") => {
                let url = match p.get("image_url") {
                    Some(Value::String(u)) => u.as_str(),
                    Some(v) => v.get("url").and_then(Value::as_str).unwrap_or(""),
                    None => "",
                };
                images.push(base64_of(url, msg)?);
            }
            _ => {
                if let Some(t) = p.get("text").and_then(Value::as_str).or(p.as_str()) {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(t);
                }
            }
        }
    }
    Ok((text, images))
}

/// The base64 data of a `data:` URL. Ollama takes no image URLs, only the bytes.
fn base64_of(url: &str, msg: usize) -> Result<String, Error> {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((head, data)) = rest.split_once(',') {
            if head.ends_with(";base64") {
                return Ok(data.to_owned());
            }
        }
    } else if !url.contains("://") && !url.is_empty() {
        return Ok(url.to_owned()); // already bare base64
    }
    Err(Error::invalid(format!(
        "request JSON at `messages[{msg}].content`: Ollama takes images as base64 data URLs (data:image/png;base64,…), not links"
    )))
}

// ---------------------------------------------------------------------------------------------
// Response

/// One `/api/chat` object: the whole answer, or one line of a stream.
#[derive(Deserialize, Default)]
struct WireChat {
    #[serde(default)]
    model: String,
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize, Default)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
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
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

impl WireToolCall {
    /// As an OpenAI tool call: Ollama's id when it sends one, else a fresh one.
    fn into_call(self) -> ToolCall {
        ToolCall {
            id: self.id.filter(|id| !id.is_empty()).unwrap_or_else(call_id),
            kind: "function".to_owned(),
            function: FunctionCall {
                name: self.function.name,
                arguments: match self.function.arguments {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(Value::String(s)) => s,
                    Some(v) => v.to_string(),
                },
            },
        }
    }
}

/// A tool-call id in OpenAI's style, for the calls Ollama does not name.
fn call_id() -> String {
    let mut id = String::with_capacity(29);
    id.push_str("call_");
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(24));
    id
}

fn completion_id() -> String {
    let mut id = String::from("chatcmpl-");
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(24));
    id
}

/// Ollama's `done_reason` as an OpenAI `finish_reason`.
fn finish_reason(done_reason: Option<&str>, tool_calls: bool) -> &'static str {
    if tool_calls {
        return "tool_calls";
    }
    match done_reason {
        Some("length") => "length",
        // stop, load, unload, and none at all.
        _ => "stop",
    }
}

/// `{"error": "..."}` → message (an object's `message` when a proxy nests it).
pub fn error_parts(body: &[u8]) -> ErrorParts {
    #[derive(Deserialize)]
    struct Envelope {
        error: Value,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            error: Value::String(message),
        }) => ErrorParts {
            message,
            ..ErrorParts::default()
        },
        // An OpenAI-style envelope (a proxy in front of Ollama), or no JSON at all.
        _ => super::openai::error_parts(body),
    }
}

fn parse_response(ep: &Endpoint, body: &[u8]) -> Result<ChatResponse, Error> {
    let chat: WireChat = serde_json::from_slice(body).map_err(|e| {
        Error::upstream(format!(
            "upstream answer is not an Ollama chat response ({e}): {}",
            body_excerpt(body)
        ))
    })?;
    if chat.error.is_some() {
        return Err(classify(None, error_parts(body)));
    }
    let Some(message) = chat.message else {
        return Err(Error::upstream(format!(
            "upstream answer has no message: {}",
            body_excerpt(body)
        )));
    };
    let tool_calls: Option<Vec<ToolCall>> = message
        .tool_calls
        .filter(|c| !c.is_empty())
        .map(|c| c.into_iter().map(WireToolCall::into_call).collect());
    let text = message.content.unwrap_or_default();
    let finish = finish_reason(chat.done_reason.as_deref(), tool_calls.is_some());
    Ok(ChatResponse {
        id: completion_id(),
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: if chat.model.is_empty() {
            ep.model.clone()
        } else {
            chat.model
        },
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                content: (!text.is_empty() || tool_calls.is_none()).then_some(text),
                tool_calls,
                reasoning_content: message.thinking.filter(|t| !t.is_empty()),
                ..ResponseMessage::default()
            },
            finish_reason: Some(finish.to_owned()),
        }],
        usage: Some(Usage::new(
            chat.prompt_eval_count.unwrap_or(0),
            chat.eval_count.unwrap_or(0),
        )),
        llmr: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Stream

/// NDJSON: one chat object per line, split across reads anywhere; the `done: true` line ends it.
struct OllamaStream {
    line: Vec<u8>,
    id: Arc<str>,
    model: Arc<str>,
    created: u64,
    started: bool,
    tool_calls: u32,
    done: bool,
}

impl OllamaStream {
    fn new(model: &str) -> OllamaStream {
        OllamaStream {
            line: Vec::new(),
            id: completion_id().into(),
            model: model.into(),
            created: unix_now(),
            started: false,
            tool_calls: 0,
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

    fn on_line(&mut self, line: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(());
        }
        let chat: WireChat = serde_json::from_slice(line).map_err(|e| {
            Error::upstream(format!(
                "malformed stream line ({e}): {}",
                body_excerpt(line)
            ))
        })?;
        if chat.error.is_some() {
            return Err(classify(None, error_parts(line)));
        }
        if !chat.model.is_empty() {
            // Every line names it: kept (and shared by the chunks) while it is the same.
            keep(&mut self.model, &chat.model);
        }
        if let Some(m) = chat.message {
            if let Some(t) = m.thinking.filter(|t| !t.is_empty()) {
                let c = self.chunk(
                    Delta {
                        reasoning_content: Some(t),
                        ..Delta::default()
                    },
                    None,
                );
                out.push_back(c);
            }
            if let Some(t) = m.content.filter(|t| !t.is_empty()) {
                let c = self.chunk(
                    Delta {
                        content: Some(t),
                        ..Delta::default()
                    },
                    None,
                );
                out.push_back(c);
            }
            // Tool calls arrive whole: each is one delta with its id, name and all arguments.
            for call in m.tool_calls.into_iter().flatten() {
                let call = call.into_call();
                let index = self.tool_calls;
                self.tool_calls += 1;
                let c = self.chunk(
                    Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index,
                            id: Some(call.id),
                            kind: Some("function".to_owned()),
                            function: Some(FunctionDelta {
                                name: Some(call.function.name),
                                arguments: Some(call.function.arguments),
                            }),
                        }]),
                        ..Delta::default()
                    },
                    None,
                );
                out.push_back(c);
            }
        }
        if chat.done {
            self.done = true;
            let finish = finish_reason(chat.done_reason.as_deref(), self.tool_calls > 0);
            let c = self.chunk(Delta::default(), Some(finish));
            out.push_back(c);
            let mut usage = self.chunk(Delta::default(), None);
            usage.choices.clear();
            usage.usage = Some(Usage::new(
                chat.prompt_eval_count.unwrap_or(0),
                chat.eval_count.unwrap_or(0),
            ));
            out.push_back(usage);
        }
        Ok(())
    }
}

impl StreamParser for OllamaStream {
    fn feed(&mut self, mut bytes: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<bool, Error> {
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n') {
            if self.line.is_empty() {
                self.on_line(&bytes[..pos], out)?;
            } else {
                self.line.extend_from_slice(&bytes[..pos]);
                let line = std::mem::take(&mut self.line);
                self.on_line(&line, out)?;
            }
            bytes = &bytes[pos + 1..];
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() > MAX_LINE_BYTES {
            return Err(Error::upstream("stream line larger than 16 MiB"));
        }
        Ok(self.done)
    }

    fn finish(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        // The last line may come without its newline.
        let line = std::mem::take(&mut self.line);
        self.on_line(&line, out)?;
        if self.done {
            Ok(())
        } else {
            Err(Error::upstream(
                "stream ended before it was complete (no line with \"done\": true)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::errors::Status;
    use crate::types::StreamAssembler;

    fn endpoint_with(entry: &str) -> Endpoint {
        let c = config::parse(&format!(
            r#"{{"global_llm_configs":[{{"provider":"OLLAMA","model_name":"llama3.1:8b"{entry}}}]}}"#
        ))
        .unwrap();
        Ollama.endpoint(&c.deployments[0], None).unwrap()
    }

    fn endpoint() -> Endpoint {
        endpoint_with("")
    }

    fn body_of(ep: &Endpoint, request: &str, stream: bool) -> Value {
        let req = ChatRequest::from_json(request).unwrap();
        serde_json::from_slice(&Ollama.request_body(ep, &req, stream).unwrap()).unwrap()
    }

    fn body(request: &str) -> Value {
        body_of(&endpoint(), request, false)
    }

    #[test]
    fn endpoint_url_and_optional_key() {
        let ep = endpoint();
        assert_eq!(ep.url, "http://localhost:11434/api/chat");
        assert_eq!(ep.stream_url, ep.url);
        assert!(ep.headers.get(AUTHORIZATION).is_none(), "no key needed");
        let ep = endpoint_with(r#","api_key":"ollama-cloud-key","api_base":"https://ollama.com""#);
        assert_eq!(ep.url, "https://ollama.com/api/chat");
        assert_eq!(ep.headers[AUTHORIZATION], "Bearer ollama-cloud-key");
        assert!(ep.headers[AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn a_base_with_or_without_v1() {
        for base in [
            "http://h:11434",
            "http://h:11434/",
            "http://h:11434/v1",
            "http://h:11434/v1/",
            "http://h:11434/api",
            "http://h:11434/api/chat",
        ] {
            assert_eq!(chat_url(base), "http://h:11434/api/chat", "{base}");
        }
        assert_eq!(
            chat_url("http://127.0.0.1:9/t"),
            "http://127.0.0.1:9/t/api/chat"
        );
    }

    #[test]
    fn options_from_the_request_and_the_deployment() {
        let ep = endpoint_with(
            r#","litellm_params":{"num_ctx":8192,"temperature":0.1,"keep_alive":"10m","options":{"mirostat":1},"base_model":"llama3.1"}"#,
        );
        let b = body_of(
            &ep,
            r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],
                "max_tokens":64,"stop":"END","temperature":0.7,"top_p":0.9,"seed":42,
                "frequency_penalty":0.5,"top_k":20,"user":"u1","logprobs":true}"#,
            false,
        );
        assert_eq!(b["model"], "llama3.1:8b");
        assert_eq!(
            b["stream"], false,
            "sent explicitly: Ollama streams by default"
        );
        assert_eq!(
            b["messages"],
            json!([{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}])
        );
        assert_eq!(
            b["options"],
            json!({"num_ctx":8192,"num_predict":64,"stop":["END"],"temperature":0.7,"top_p":0.9,
                   "seed":42,"frequency_penalty":0.5,"top_k":20,"mirostat":1})
        );
        assert_eq!(b["keep_alive"], "10m");
        for absent in [
            "user",
            "logprobs",
            "max_tokens",
            "temperature",
            "tool_choice",
        ] {
            assert!(b.get(absent).is_none(), "{absent}");
        }
        let b = body_of(
            &ep,
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            true,
        );
        assert_eq!(b["stream"], true);
        assert_eq!(b["options"]["temperature"], 0.1, "the deployment's default");
        assert!(b["options"].get("num_predict").is_none());
    }

    #[test]
    fn tools_calls_and_results() {
        let b = body(
            r#"{"messages":[
                {"role":"user","content":"weather in Paris?"},
                {"role":"assistant","content":null,"tool_calls":[
                    {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                    {"id":"call_2","type":"function","function":{"name":"now","arguments":""}}]},
                {"role":"tool","tool_call_id":"call_1","content":"sunny"},
                {"role":"tool","tool_call_id":"call_2","content":{"t":"12:00"}}],
              "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
              "tool_choice":"required"}"#,
        );
        let m = &b["messages"];
        assert_eq!(
            m[1],
            json!({"role":"assistant","content":"","tool_calls":[
                {"function":{"name":"get_weather","arguments":{"city":"Paris"}}},
                {"function":{"name":"now","arguments":{}}}]})
        );
        assert_eq!(
            m[2],
            json!({"role":"tool","content":"sunny","tool_name":"get_weather","tool_call_id":"call_1"})
        );
        assert_eq!(m[3]["content"], r#"{"t":"12:00"}"#);
        assert_eq!(m[3]["tool_name"], "now");
        assert_eq!(b["tools"][0]["function"]["name"], "get_weather");
        assert!(b.get("tool_choice").is_none(), "Ollama has no tool_choice");

        let b = body(
            r#"{"messages":[{"role":"user","content":"hi"}],"tool_choice":"none",
                "tools":[{"type":"function","function":{"name":"f"}}]}"#,
        );
        assert!(
            b.get("tools").is_none(),
            "tool_choice none leaves the tools out"
        );
    }

    #[test]
    fn images_become_bare_base64() {
        let b = body(
            r#"{"messages":[{"role":"user","content":[
                {"type":"text","text":"what is this?"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}]}"#,
        );
        assert_eq!(
            b["messages"][0],
            json!({"role":"user","content":"what is this?","images":["iVBORw0KGgo="]})
        );
        let req = ChatRequest::from_json(
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
        )
        .unwrap();
        let e = Ollama.request_body(&endpoint(), &req, false).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(e.message.contains("base64"), "{}", e.message);
    }

    #[test]
    fn response_format_becomes_format() {
        let b = body(
            r#"{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#,
        );
        assert_eq!(b["format"], "json");
        let b = body(
            r#"{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema",
                "json_schema":{"name":"age","schema":{"type":"object","properties":{"age":{"type":"integer"}}}}}}"#,
        );
        assert_eq!(
            b["format"],
            json!({"type":"object","properties":{"age":{"type":"integer"}}})
        );
        assert!(b.get("response_format").is_none());
        let b = body(r#"{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"low"}"#);
        assert_eq!(b["think"], true, "llama3.1 takes no level");
        assert!(b.get("reasoning_effort").is_none());
        let b = body(r#"{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"none"}"#);
        assert_eq!(b["think"], false);
        let ep = endpoint_with(r#","litellm_params":{"truncate":false}"#);
        let ep = Endpoint {
            model: "gpt-oss:20b".into(),
            ..ep
        };
        let b = body_of(
            &ep,
            r#"{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"medium"}"#,
            false,
        );
        assert_eq!(b["think"], "medium", "gpt-oss takes the level");
        assert_eq!(
            b["truncate"], false,
            "turns silent truncation into an error"
        );
        let b =
            body(r#"{"messages":[{"role":"user","content":"hi"}],"format":"json","think":true}"#);
        assert_eq!(
            (b["format"].clone(), b["think"].clone()),
            (json!("json"), json!(true))
        );
    }

    // -----------------------------------------------------------------------------------------
    // Response (the documented examples of docs/api.md)

    #[test]
    fn text_response() {
        let r = parse_response(
            &endpoint(),
            br#"{"model":"llama3.2","created_at":"2023-12-12T14:13:43.416799Z",
                 "message":{"role":"assistant","content":"Hello! How are you today?"},
                 "done":true,"total_duration":5191566416,"load_duration":2154458,
                 "prompt_eval_count":26,"prompt_eval_duration":383809000,
                 "eval_count":298,"eval_duration":4799921000}"#,
        )
        .unwrap();
        assert_eq!(r.model, "llama3.2");
        assert!(r.id.starts_with("chatcmpl-"));
        let c = &r.choices[0];
        assert_eq!(
            c.message.content.as_deref(),
            Some("Hello! How are you today?")
        );
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        assert_eq!(r.usage, Some(Usage::new(26, 298)));

        let r = parse_response(
            &endpoint(),
            br#"{"model":"m","message":{"role":"assistant","content":"cut","thinking":"hmm"},"done":true,"done_reason":"length","prompt_eval_count":1,"eval_count":2}"#,
        )
        .unwrap();
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(
            r.choices[0].message.reasoning_content.as_deref(),
            Some("hmm")
        );
    }

    #[test]
    fn tool_call_response() {
        let r = parse_response(
            &endpoint(),
            br#"{"model":"llama3.2","created_at":"2024-07-22T20:33:28.123648Z",
                 "message":{"role":"assistant","content":"","tool_calls":[
                    {"function":{"name":"get_current_weather","arguments":{"format":"celsius","location":"Paris, FR"}}},
                    {"id":"call_x9","function":{"index":1,"name":"now","arguments":{}}}]},
                 "done_reason":"stop","done":true,"prompt_eval_count":122,"eval_count":33}"#,
        )
        .unwrap();
        let m = &r.choices[0].message;
        assert_eq!(m.content, None);
        let calls = m.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 2);
        assert!(
            calls[0].id.starts_with("call_") && calls[0].id.len() == 29,
            "{}",
            calls[0].id
        );
        assert_eq!(calls[0].function.name, "get_current_weather");
        let args: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
        assert_eq!(args, json!({"format":"celsius","location":"Paris, FR"}));
        assert_eq!(calls[1].id, "call_x9", "Ollama's own id is kept");
        assert_eq!(calls[1].function.arguments, "{}");
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(r.usage, Some(Usage::new(122, 33)));
    }

    fn http_error(status: u16, body: &str) -> Error {
        Ollama.parse_error(&endpoint(), status, body.as_bytes())
    }

    #[test]
    fn error_bodies() {
        let e = http_error(
            404,
            r#"{"error":"model \"x\" not found, try pulling it first"}"#,
        );
        assert_eq!(e.status, Status::BadRequest);
        assert_eq!(e.message, "model \"x\" not found, try pulling it first");
        let e = http_error(
            400,
            r#"{"error":"The prompt is too long: 208863, model maximum context length: 202752"}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        let e = http_error(
            400,
            r#"{"error":"prompt too long; exceeded max context length by 540451 tokens"}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        // `truncate: false` on a prompt beyond `num_ctx`.
        let e = http_error(
            400,
            r#"{"error":"the input length exceeds the context length"}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        // OLLAMA_MAX_QUEUE reached: retryable, not a bad request.
        let e = http_error(
            503,
            r#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#,
        );
        assert_eq!(e.status, Status::Upstream);
        let e = http_error(429, r#"{"error":"too many requests"}"#);
        assert_eq!((e.status, e.quota), (Status::RateLimited, false));
        let e = http_error(
            429,
            r#"{"error":"you (u1) have reached your weekly usage limit, upgrade for higher limits: https://ollama.com/upgrade"}"#,
        );
        assert_eq!(
            (e.status, e.quota),
            (Status::RateLimited, true),
            "a plan limit is a quota"
        );
        assert_eq!(
            http_error(401, r#"{"error":"unauthorized"}"#).status,
            Status::Auth
        );
        assert_eq!(
            http_error(500, r#"{"error":"llama runner process has terminated"}"#).status,
            Status::Upstream
        );
        assert_eq!(
            http_error(502, "<html>bad gateway</html>").message,
            "<html>bad gateway</html>"
        );
        let e = parse_response(&endpoint(), br#"{"error":"unexpected EOF"}"#).unwrap_err();
        assert_eq!(e.status, Status::Upstream);
        assert!(parse_response(&endpoint(), b"not json").is_err());
    }

    // -----------------------------------------------------------------------------------------
    // Stream

    fn run_stream(input: &str, piece: usize) -> (Vec<ChatChunk>, bool, Result<(), Error>) {
        let mut p = OllamaStream::new("llama3.2");
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

    const TEXT_STREAM: &str = concat!(
        r#"{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":"The","images":null},"done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2023-08-04T08:52:19.5Z","message":{"role":"assistant","content":" sky"},"done":false}"#,
        "\r\n",
        r#"{"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}"#,
        "\n"
    );

    #[test]
    fn stream_text_survives_any_split() {
        for piece in [1, 2, 3, 7, 50, 4096] {
            let (chunks, done, r) = run_stream(TEXT_STREAM, piece);
            r.unwrap();
            assert!(done, "piece {piece}");
            let texts: Vec<_> = chunks
                .iter()
                .filter_map(|c| c.choices.first()?.delta.content.clone())
                .collect();
            assert_eq!(texts, ["The", " sky"], "piece {piece}");
            assert_eq!(
                chunks[0].choices[0].delta.role.as_deref(),
                Some("assistant")
            );
            let r = assemble(&chunks);
            assert_eq!(r.choices[0].message.content.as_deref(), Some("The sky"));
            assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
            assert_eq!(r.usage, Some(Usage::new(26, 282)));
            assert_eq!(r.model, "llama3.2");
        }
        // The last line without its newline still ends the stream.
        let (_, _, r) = run_stream(TEXT_STREAM.trim_end(), 5);
        r.unwrap();
    }

    #[test]
    fn stream_tool_calls_arrive_whole() {
        let input = concat!(
            r#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":false}"#,
            "\n",
            r#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"now","arguments":{}}}]},"done":false}"#,
            "\n",
            r#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":10,"eval_count":20}"#,
            "\n"
        );
        let (chunks, _, r) = run_stream(input, 11);
        r.unwrap();
        let deltas: Vec<&ToolCallDelta> = chunks
            .iter()
            .filter_map(|c| c.choices.first()?.delta.tool_calls.as_ref())
            .flatten()
            .collect();
        assert_eq!(deltas.len(), 2);
        assert_eq!((deltas[0].index, deltas[1].index), (0, 1));
        assert!(deltas[0].id.as_deref().unwrap().starts_with("call_"));
        let r = assemble(&chunks);
        let calls = r.choices[0].message.tool_calls.as_ref().unwrap();
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
        assert_eq!(calls[1].function.arguments, "{}");
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn stream_thinking_and_length() {
        let input = concat!(
            r#"{"message":{"role":"assistant","content":"","thinking":"Let me"},"done":false}"#,
            "\n",
            r#"{"message":{"role":"assistant","content":"Hi"},"done":false}"#,
            "\n",
            r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"length","prompt_eval_count":3,"eval_count":1}"#
        );
        let (chunks, _, r) = run_stream(input, 9);
        r.unwrap();
        let r = assemble(&chunks);
        assert_eq!(
            r.choices[0].message.reasoning_content.as_deref(),
            Some("Let me")
        );
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));
    }

    #[test]
    fn stream_errors_and_truncation() {
        let input = concat!(
            r#"{"message":{"role":"assistant","content":"a"},"done":false}"#,
            "\n",
            r#"{"error":"an error was encountered while running the model: unexpected EOF"}"#,
            "\n"
        );
        let (chunks, _, r) = run_stream(input, 4);
        assert_eq!(chunks.len(), 1);
        let e = r.unwrap_err();
        assert_eq!(e.status, Status::Upstream);
        assert!(e.message.contains("unexpected EOF"));

        let (_, _, r) = run_stream(
            "{\"error\":\"The prompt is too long: 208863, model maximum context length: 202752\"}\n",
            3,
        );
        assert_eq!(r.unwrap_err().status, Status::ContextOverflow);

        let (_, done, r) = run_stream(
            "{\"message\":{\"role\":\"assistant\",\"content\":\"a\"},\"done\":false}\n",
            3,
        );
        assert!(!done);
        assert!(r.unwrap_err().message.contains("before it was complete"));

        let (_, _, r) = run_stream("{not json\n", 3);
        assert!(r.unwrap_err().message.contains("malformed"));
    }

    #[test]
    fn stream_parser_from_the_wire_format() {
        let mut p = Ollama.stream_parser(&endpoint());
        let mut out = VecDeque::new();
        assert!(p.feed(TEXT_STREAM.as_bytes(), &mut out).unwrap());
        p.finish(&mut out).unwrap();
    }
}
