//! The Anthropic Messages API (`POST /v1/messages`, PROVIDERS.md §3): OpenAI-shaped requests
//! mapped to Anthropic's body, its answers, stream events and errors mapped back.
//!
//! The request mapping follows litellm's `anthropic_messages_pt`: system and developer messages
//! become the top-level `system`; tool results and user turns that follow each other become one
//! user turn; consecutive assistant turns merge; tool-call arguments are sent as parsed objects.

use std::borrow::Cow;
use std::collections::VecDeque;

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::classify::{body_excerpt, classify, ErrorParts};
use super::{extra_headers, secret_header, Endpoint, StreamParser, WireFormat};
use crate::config::DeploymentConfig;
use crate::errors::Error;
use crate::sse::SseDecoder;
use crate::types::{
    unix_now, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, FunctionCall,
    FunctionDelta, Message, ResponseMessage, Tool, ToolCall, ToolCallDelta, Usage,
};

pub struct Anthropic;

/// The API version sent when `litellm_params.anthropic_version` names none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` is required; this is sent when neither the request, the deployment nor the
/// model table gives a cap.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

impl WireFormat for Anthropic {
    fn endpoint(&self, d: &DeploymentConfig, max_output: Option<u64>) -> Result<Endpoint, String> {
        let mut ep = Endpoint::common(d, max_output);
        let base = match &d.api_base {
            Some(b) => b.as_str(),
            None => d.spec.default_base.ok_or_else(|| d.spec.note.to_owned())?,
        };
        ep.url = messages_url(base);
        ep.stream_url = ep.url.clone();
        ep.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(k) = &d.api_key {
            ep.headers.insert("x-api-key", secret_header(k.expose())?);
        }
        let version = match d.params.get("anthropic_version") {
            None | Some(Value::Null) => ANTHROPIC_VERSION,
            Some(Value::String(v)) => v.as_str(),
            Some(_) => return Err("`litellm_params.anthropic_version` must be a string".into()),
        };
        ep.headers.insert(
            "anthropic-version",
            HeaderValue::from_str(version).map_err(|_| "`anthropic_version` is not header-safe")?,
        );
        // Beta flags: one string (possibly comma-separated already) or an array of strings.
        let beta = match d.params.get("anthropic_beta") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(flags)) => {
                let flags: Option<Vec<&str>> = flags.iter().map(Value::as_str).collect();
                let flags = flags.ok_or(
                    "`litellm_params.anthropic_beta` must be a string or an array of strings",
                )?;
                Some(flags.join(","))
            }
            Some(_) => {
                return Err(
                    "`litellm_params.anthropic_beta` must be a string or an array of strings"
                        .into(),
                )
            }
        };
        if let Some(beta) = beta.filter(|b| !b.trim().is_empty()) {
            ep.headers.insert(
                "anthropic-beta",
                HeaderValue::from_str(&beta).map_err(|_| "`anthropic_beta` is not header-safe")?,
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
        let mut out = Vec::with_capacity(512);
        body.serialize(&mut serde_json::Serializer::new(&mut out))
            .map_err(|e| Error::invalid(format!("request could not be encoded: {e}")))?;
        Ok(out)
    }

    fn parse_response(&self, _ep: &Endpoint, body: &[u8]) -> Result<ChatResponse, Error> {
        parse_response(body)
    }

    fn parse_error(&self, _ep: &Endpoint, http_status: u16, body: &[u8]) -> Error {
        classify(Some(http_status), error_parts(body))
    }

    fn stream_parser(&self, ep: &Endpoint) -> Box<dyn StreamParser> {
        Box::new(AnthropicStream::new(&ep.model))
    }
}

/// `{base}/v1/messages`; a base that already ends in `/v1` or `/v1/messages` is taken as it is.
fn messages_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/messages") {
        base.to_owned()
    } else if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    }
}

// ---------------------------------------------------------------------------------------------
// Request

/// The Messages body, borrowing from the request wherever it can (images stay where they are).
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<System<'a>>,
    messages: Vec<Turn<'a>>,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<ToolDef<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Serialize)]
#[serde(untagged)]
enum System<'a> {
    Text(Cow<'a, str>),
    Blocks(Vec<Block<'a>>),
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
struct ToolDef<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Cow<'a, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<&'a Value>,
}

/// One content block, with the `cache_control` its OpenAI part or message carried.
struct Block<'a> {
    kind: BlockKind<'a>,
    cache: Option<&'a Value>,
}

enum BlockKind<'a> {
    Text(&'a str),
    Image(Source<'a>),
    Document(Source<'a>),
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: Option<ToolResultContent<'a>>,
    },
    /// A part already in Anthropic's shape (`document`, `thinking`, `search_result`, …): sent as given.
    Raw(&'a Value),
}

#[derive(Serialize)]
#[serde(untagged)]
enum ToolResultContent<'a> {
    Text(&'a str),
    Blocks(Vec<Block<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

impl<'a> Block<'a> {
    fn new(kind: BlockKind<'a>) -> Block<'a> {
        Block { kind, cache: None }
    }

    fn is_tool_result(&self) -> bool {
        matches!(self.kind, BlockKind::ToolResult { .. })
    }
}

impl Serialize for Block<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let BlockKind::Raw(v) = &self.kind {
            return v.serialize(s);
        }
        let mut m = s.serialize_map(None)?;
        match &self.kind {
            BlockKind::Text(text) => {
                m.serialize_entry("type", "text")?;
                m.serialize_entry("text", text)?;
            }
            BlockKind::Image(source) => {
                m.serialize_entry("type", "image")?;
                m.serialize_entry("source", source)?;
            }
            BlockKind::Document(source) => {
                m.serialize_entry("type", "document")?;
                m.serialize_entry("source", source)?;
            }
            BlockKind::ToolUse { id, name, input } => {
                m.serialize_entry("type", "tool_use")?;
                m.serialize_entry("id", id)?;
                m.serialize_entry("name", name)?;
                m.serialize_entry("input", input)?;
            }
            BlockKind::ToolResult {
                tool_use_id,
                content,
            } => {
                m.serialize_entry("type", "tool_result")?;
                m.serialize_entry("tool_use_id", tool_use_id)?;
                if let Some(c) = content {
                    m.serialize_entry("content", c)?;
                }
            }
            BlockKind::Raw(_) => unreachable!("handled above"),
        }
        if let Some(c) = self.cache {
            m.serialize_entry("cache_control", c)?;
        }
        m.end()
    }
}

/// A request field, else the deployment's default param of the same name (nulls are absent).
fn param<'a>(ep: &'a Endpoint, req: &'a ChatRequest, key: &str) -> Option<&'a Value> {
    req.extra
        .get(key)
        .or_else(|| ep.defaults.get(key))
        .filter(|v| !v.is_null())
}

fn build_body<'a>(ep: &'a Endpoint, req: &'a ChatRequest, stream: bool) -> Result<Body<'a>, Error> {
    let d = &ep.defaults;
    let (system, messages) = convert_messages(&req.messages)?;

    let max_tokens = req
        .max_output_tokens()
        .or_else(|| d.get("max_completion_tokens").and_then(Value::as_u64))
        .or_else(|| d.get("max_tokens").and_then(Value::as_u64))
        .or(ep.max_output_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);

    let stop = req
        .stop
        .as_ref()
        .filter(|v| !v.is_null())
        .or_else(|| req.extra.get("stop_sequences"))
        .or_else(|| d.get("stop"))
        .or_else(|| d.get("stop_sequences"));
    let stop_sequences = stop.map(stop_sequences).filter(|s| !s.is_empty());

    let thinking = param(ep, req, "thinking");
    // Extended thinking rejects temperature other than 1, any top_k, and top_p below 0.95.
    let thinking_on = thinking
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t != "disabled");
    // OpenAI's range is 0–2, Anthropic's 0–1: a hotter request gets Anthropic's hottest.
    let temperature = req
        .temperature
        .or_else(|| d.get("temperature").and_then(Value::as_f64))
        .map(|t| t.clamp(0.0, 1.0))
        .filter(|t| !thinking_on || *t == 1.0);
    let top_p = req
        .top_p
        .or_else(|| d.get("top_p").and_then(Value::as_f64))
        .filter(|p| !thinking_on || *p >= 0.95);
    let top_k = param(ep, req, "top_k").filter(|_| !thinking_on);

    // Anthropic's metadata holds only `user_id`; OpenAI's free-form metadata would be a 400.
    let metadata_user = param(ep, req, "metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str);
    let user = req
        .user
        .as_deref()
        .or_else(|| d.get("user").and_then(Value::as_str))
        .or(metadata_user)
        .filter(|u| !u.is_empty());
    let metadata = user.map(|u| json!({ "user_id": u }));

    let tools: Option<Vec<ToolDef>> = req
        .tools
        .as_ref()
        .filter(|t| !t.is_empty())
        .map(|t| t.iter().map(tool_def).collect());
    let tool_choice = if tools.is_some() {
        let choice = req.tool_choice.as_ref().or_else(|| d.get("tool_choice"));
        let parallel = req
            .parallel_tool_calls
            .or_else(|| d.get("parallel_tool_calls").and_then(Value::as_bool));
        tool_choice(choice, parallel)?
    } else {
        None // Anthropic rejects a tool_choice without tools.
    };

    // OpenAI's tiers (`default`, `flex`, …) mean nothing to Anthropic and would be a 400.
    let service_tier = param(ep, req, "service_tier")
        .and_then(Value::as_str)
        .filter(|t| matches!(*t, "auto" | "standard_only"));

    Ok(Body {
        model: &ep.model,
        system,
        messages,
        max_tokens,
        stop_sequences,
        temperature,
        top_p,
        top_k,
        metadata,
        tools,
        tool_choice,
        thinking,
        service_tier,
        stream,
    })
}

/// `stop` as a string or an array; whitespace-only sequences are refused by Anthropic, so dropped.
fn stop_sequences(v: &Value) -> Vec<&str> {
    let keep = |s: &&str| !s.trim().is_empty();
    match v {
        Value::String(s) => Some(s.as_str()).filter(keep).into_iter().collect(),
        Value::Array(a) => a.iter().filter_map(Value::as_str).filter(keep).collect(),
        _ => Vec::new(),
    }
}

fn tool_def(t: &Tool) -> ToolDef<'_> {
    let f = &t.function;
    let input_schema = match &f.parameters {
        Some(Value::Object(o)) if o.contains_key("type") => {
            Cow::Borrowed(f.parameters.as_ref().unwrap())
        }
        Some(Value::Object(o)) => {
            let mut o = o.clone();
            o.insert("type".into(), "object".into());
            Cow::Owned(Value::Object(o))
        }
        _ => Cow::Owned(json!({"type": "object", "properties": {}})),
    };
    ToolDef {
        name: &f.name,
        description: f.description.as_deref().filter(|s| !s.is_empty()),
        input_schema,
        cache_control: t
            .extra
            .get("cache_control")
            .or_else(|| f.extra.get("cache_control")),
    }
}

/// OpenAI's `tool_choice` (and `parallel_tool_calls`) as Anthropic's object.
fn tool_choice(choice: Option<&Value>, parallel: Option<bool>) -> Result<Option<Value>, Error> {
    let bad = || {
        Error::invalid(
            "request JSON at `tool_choice`: must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\":…}}",
        )
    };
    let mut out = match choice {
        None | Some(Value::Null) if parallel == Some(false) => json!({"type": "auto"}),
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" | "any" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            _ => return Err(bad()),
        },
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?;
                json!({"type": "tool", "name": name})
            }
            // Already Anthropic's shape.
            Some("auto" | "any" | "tool" | "none") => Value::Object(o.clone()),
            _ => return Err(bad()),
        },
        Some(_) => return Err(bad()),
    };
    if parallel == Some(false) && out["type"] != "none" {
        out["disable_parallel_tool_use"] = Value::Bool(true);
    }
    Ok(Some(out))
}

/// Splits off the system prompt and turns the rest into alternating user / assistant turns.
fn convert_messages(messages: &[Message]) -> Result<(Option<System<'_>>, Vec<Turn<'_>>), Error> {
    let mut system_parts: Vec<&Message> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (role, mut blocks) = match m.role.as_str() {
            "system" | "developer" => {
                system_parts.push(m);
                continue;
            }
            "assistant" => ("assistant", assistant_blocks(m, i)?),
            "tool" | "function" => ("user", vec![tool_result(m, i)?]),
            // `user`, and roles Anthropic has no name for: their content is the caller's.
            _ => ("user", content_blocks(&m.content, i)?),
        };
        if let Some(cache) = m.extra.get("cache_control") {
            if let Some(last) = blocks.last_mut() {
                last.cache = Some(cache);
            }
        }
        if blocks.is_empty() {
            continue; // Anthropic refuses empty turns; an empty message says nothing anyway.
        }
        match turns.last_mut() {
            Some(t) if t.role == role => t.content.append(&mut blocks),
            _ => turns.push(Turn {
                role,
                content: blocks,
            }),
        }
    }
    for t in &mut turns {
        // Tool results must open the user turn that answers the tool uses.
        if t.role == "user" && t.content.iter().any(Block::is_tool_result) {
            let (mut results, rest): (Vec<Block>, Vec<Block>) = std::mem::take(&mut t.content)
                .into_iter()
                .partition(Block::is_tool_result);
            results.extend(rest);
            t.content = results;
        }
    }
    // A final assistant turn (a prefill) must not end in whitespace.
    if let Some(t) = turns.last_mut().filter(|t| t.role == "assistant") {
        if let Some(Block {
            kind: BlockKind::Text(text),
            ..
        }) = t.content.last_mut()
        {
            *text = text.trim_end();
            if text.is_empty() {
                t.content.pop();
            }
        }
        if t.content.is_empty() {
            turns.pop();
        }
    }
    Ok((system_prompt(&system_parts)?, turns))
}

/// The system prompt: one string when every system message is plain text, else text blocks.
fn system_prompt<'a>(parts: &[&'a Message]) -> Result<Option<System<'a>>, Error> {
    let plain = parts.iter().all(|m| {
        matches!(m.content, Some(Value::String(_)) | Some(Value::Null) | None)
            && !m.extra.contains_key("cache_control")
    });
    if plain {
        let texts: Vec<&str> = parts
            .iter()
            .filter_map(|m| m.content.as_ref().and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .collect();
        return Ok(match texts.as_slice() {
            [] => None,
            [one] => Some(System::Text(Cow::Borrowed(one))),
            many => Some(System::Text(Cow::Owned(many.join("\n\n")))),
        });
    }
    let mut blocks = Vec::new();
    for m in parts {
        let mut own = content_blocks(&m.content, 0)?;
        if let Some(cache) = m.extra.get("cache_control") {
            if let Some(last) = own.last_mut() {
                last.cache = Some(cache);
            }
        }
        // The system prompt takes text blocks only.
        blocks.extend(
            own.into_iter()
                .filter(|b| matches!(b.kind, BlockKind::Text(_))),
        );
    }
    Ok((!blocks.is_empty()).then_some(System::Blocks(blocks)))
}

/// A message's content as blocks: a string is one text block; empty text is left out.
fn content_blocks(content: &Option<Value>, msg: usize) -> Result<Vec<Block<'_>>, Error> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Block::new(BlockKind::Text(s))]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                if let Some(b) = part_block(p, msg)? {
                    out.push(b);
                }
            }
            Ok(out)
        }
        Some(other) => Err(Error::invalid(format!(
            "request JSON at `messages[{msg}].content`: must be a string or an array of parts, not {}",
            json_kind(other)
        ))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One OpenAI content part as an Anthropic block.
fn part_block(p: &Value, msg: usize) -> Result<Option<Block<'_>>, Error> {
    let kind = match p {
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => return Ok(Some(Block::new(BlockKind::Text(s)))),
        Value::Object(o) => o.get("type").and_then(Value::as_str).unwrap_or(""),
        _ => return Ok(None),
    };
    let kind = match kind {
        "text" => match p.get("text").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => BlockKind::Text(t),
            _ => return Ok(None),
        },
        "image_url" => {
            let url = match p.get("image_url") {
                Some(Value::String(u)) => u.as_str(),
                Some(v) => v.get("url").and_then(Value::as_str).unwrap_or(""),
                None => "",
            };
            media_block(url, msg, "image_url")?
        }
        "file" => {
            let data = p
                .get("file")
                .and_then(|f| f.get("file_data"))
                .and_then(Value::as_str)
                .unwrap_or("");
            media_block(data, msg, "file.file_data")?
        }
        _ => BlockKind::Raw(p),
    };
    Ok(Some(Block {
        kind,
        cache: p.get("cache_control"),
    }))
}

/// A data URL (`data:image/png;base64,…`) or a web URL as an image, or a PDF as a document.
fn media_block<'a>(url: &'a str, msg: usize, field: &str) -> Result<BlockKind<'a>, Error> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "request JSON at `messages[{msg}].content`: {field} {why}"
        ))
    };
    if let Some(rest) = url.strip_prefix("data:") {
        let (head, data) = rest
            .split_once(',')
            .ok_or_else(|| bad("is a data URL without data"))?;
        let media_type = head.strip_suffix(";base64").ok_or_else(|| {
            bad("must be a base64 data URL (Anthropic takes no other inline data)")
        })?;
        let source = Source::Base64 { media_type, data };
        return Ok(if media_type == "application/pdf" {
            BlockKind::Document(source)
        } else {
            BlockKind::Image(source)
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(BlockKind::Image(Source::Url { url }));
    }
    Err(bad("must be a data URL or an http(s) URL"))
}

/// An assistant message: its thinking blocks (sent back as given), text, then tool uses.
fn assistant_blocks(m: &Message, msg: usize) -> Result<Vec<Block<'_>>, Error> {
    let mut out = Vec::new();
    // litellm's `thinking_blocks`: with extended thinking they must lead the turn.
    if let Some(Value::Array(thinking)) = m.extra.get("thinking_blocks") {
        out.extend(thinking.iter().map(|b| Block::new(BlockKind::Raw(b))));
    }
    out.extend(content_blocks(&m.content, msg)?);
    for call in m.tool_calls.iter().flatten() {
        out.push(Block::new(BlockKind::ToolUse {
            id: &call.id,
            name: &call.function.name,
            input: tool_input(&call.function.arguments),
        }));
    }
    Ok(out)
}

/// Tool-call arguments as the object Anthropic requires. Empty, invalid or non-object JSON
/// (a truncated earlier answer, say) becomes `{}`: the turn stays valid and the conversation can
/// go on, where refusing it would fail the whole request on this deployment.
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

/// A `tool` (or legacy `function`) message as a `tool_result` block.
fn tool_result(m: &Message, msg: usize) -> Result<Block<'_>, Error> {
    let tool_use_id = m
        .tool_call_id
        .as_deref()
        .or(m.name.as_deref())
        .unwrap_or_default();
    let content = match &m.content {
        Some(Value::String(s)) if !s.is_empty() => Some(ToolResultContent::Text(s)),
        Some(Value::Array(_)) => {
            let blocks = content_blocks(&m.content, msg)?;
            (!blocks.is_empty()).then_some(ToolResultContent::Blocks(blocks))
        }
        _ => None,
    };
    Ok(Block {
        kind: BlockKind::ToolResult {
            tool_use_id,
            content,
        },
        cache: m.extra.get("cache_control"),
    })
}

// ---------------------------------------------------------------------------------------------
// Response

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    id: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<WireBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
}

/// Token counts; every field may be absent or null (message_delta carries only some).
#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// The prompt as OpenAI counts it: cached and cache-written input included.
    fn prompt(&self) -> u64 {
        self.input_tokens.unwrap_or(0)
            + self.cache_creation_input_tokens.unwrap_or(0)
            + self.cache_read_input_tokens.unwrap_or(0)
    }
}

/// Anthropic's `stop_reason` as an OpenAI `finish_reason`.
fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn (a server-tool loop paused: the turn is whole).
        _ => "stop",
    }
}

/// A tool's input as OpenAI's argument string; a string input is taken as the arguments text.
fn arguments_of(input: Option<Value>) -> String {
    match input {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(s)) => s,
        Some(v) => v.to_string(),
    }
}

fn is_error_body(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        error: Option<Value>,
    }
    serde_json::from_slice::<Probe>(body)
        .is_ok_and(|p| p.kind.as_deref() == Some("error") || p.error.is_some())
}

fn parse_response(body: &[u8]) -> Result<ChatResponse, Error> {
    if is_error_body(body) {
        return Err(classify(None, error_parts(body)));
    }
    let msg: WireMessage = serde_json::from_slice(body).map_err(|e| {
        Error::upstream(format!(
            "upstream answer is not an Anthropic message ({e}): {}",
            body_excerpt(body)
        ))
    })?;
    if msg.kind.as_deref().is_some_and(|k| k != "message") {
        return Err(Error::upstream(format!(
            "upstream answer is not an Anthropic message: {}",
            body_excerpt(body)
        )));
    }
    let mut text = String::new();
    let mut saw_text = false;
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for b in msg.content {
        match b.kind.as_str() {
            "text" => {
                saw_text = true;
                text.push_str(b.text.as_deref().unwrap_or_default());
            }
            "thinking" => reasoning.push_str(b.thinking.as_deref().unwrap_or_default()),
            "tool_use" => tool_calls.push(ToolCall {
                id: b.id.unwrap_or_default(),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: b.name.unwrap_or_default(),
                    arguments: arguments_of(b.input),
                },
            }),
            // redacted_thinking, server tool blocks: nothing an OpenAI caller can use.
            _ => {}
        }
    }
    let tool_calls = (!tool_calls.is_empty()).then_some(tool_calls);
    let finish = match msg.stop_reason.as_deref() {
        Some(r) => finish_reason(r),
        None if tool_calls.is_some() => "tool_calls",
        None => "stop",
    };
    let usage = msg.usage.unwrap_or_default();
    Ok(ChatResponse {
        id: msg.id,
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: msg.model,
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
        usage: Some(Usage::new(usage.prompt(), usage.output_tokens.unwrap_or(0))),
        llmr: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: WireError,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// `{"type":"error","error":{"type","message"}}` → kind and message. Other JSON (a gateway in
/// front of Anthropic) is read as OpenAI's envelopes are; a non-JSON body becomes its excerpt.
pub fn error_parts(body: &[u8]) -> ErrorParts {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(ErrorEnvelope {
            error: WireError { kind, message },
        }) if kind.is_some() || message.is_some() => ErrorParts {
            code: None,
            kind,
            message: message.unwrap_or_default(),
        },
        _ => super::openai::error_parts(body),
    }
}

// ---------------------------------------------------------------------------------------------
// Stream

/// Anthropic SSE: named events from `message_start` to `message_stop`, mapped to OpenAI chunks.
struct AnthropicStream {
    sse: SseDecoder,
    id: String,
    model: String,
    created: u64,
    usage: WireUsage,
    /// Tool blocks seen so far: (Anthropic block index, OpenAI tool index, got arguments).
    tools: Vec<(u64, u32, bool)>,
    stopped: bool,
}

/// The fields of every stream event this parser reads.
#[derive(Deserialize)]
struct StreamEvent {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    content_block: Option<WireBlock>,
    #[serde(default)]
    delta: Option<EventDelta>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct EventDelta {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

impl AnthropicStream {
    fn new(model: &str) -> AnthropicStream {
        AnthropicStream {
            sse: SseDecoder::new(),
            id: String::new(),
            model: model.to_owned(),
            created: unix_now(),
            usage: WireUsage::default(),
            tools: Vec::new(),
            stopped: false,
        }
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<&str>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_owned(),
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

    fn tool_delta(&self, index: u32, arguments: String) -> ChatChunk {
        self.chunk(
            Delta {
                tool_calls: Some(vec![ToolCallDelta {
                    index,
                    id: None,
                    kind: None,
                    function: Some(FunctionDelta {
                        name: None,
                        arguments: Some(arguments),
                    }),
                }]),
                ..Delta::default()
            },
            None,
        )
    }

    fn on_event(
        &mut self,
        event: &str,
        data: &str,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<(), Error> {
        if self.stopped {
            return Ok(());
        }
        let data = data.trim();
        if data.is_empty() {
            return Ok(());
        }
        let ev: StreamEvent = match serde_json::from_str(data) {
            Ok(ev) => ev,
            Err(e) => {
                if event == "error" {
                    return Err(classify(None, error_parts(data.as_bytes())));
                }
                return Err(Error::upstream(format!(
                    "malformed stream event ({e}): {}",
                    body_excerpt(data.as_bytes())
                )));
            }
        };
        if event == "error" || ev.kind == "error" {
            return Err(classify(None, error_parts(data.as_bytes())));
        }
        match ev.kind.as_str() {
            "message_start" => {
                if let Some(m) = ev.message {
                    if !m.id.is_empty() {
                        self.id = m.id;
                    }
                    if !m.model.is_empty() {
                        self.model = m.model;
                    }
                    if let Some(u) = m.usage {
                        self.usage = u;
                    }
                }
                out.push_back(self.chunk(
                    Delta {
                        role: Some("assistant".to_owned()),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            "content_block_start" => {
                let (Some(block), Some(at)) = (ev.content_block, ev.index) else {
                    return Ok(());
                };
                match block.kind.as_str() {
                    "tool_use" => {
                        let index = self.tools.len() as u32;
                        self.tools.push((at, index, false));
                        out.push_back(self.chunk(
                            Delta {
                                tool_calls: Some(vec![ToolCallDelta {
                                    index,
                                    id: block.id,
                                    kind: Some("function".to_owned()),
                                    function: Some(FunctionDelta {
                                        name: block.name,
                                        arguments: Some(String::new()),
                                    }),
                                }]),
                                ..Delta::default()
                            },
                            None,
                        ));
                    }
                    "text" => {
                        if let Some(t) = block.text.filter(|t| !t.is_empty()) {
                            out.push_back(self.chunk(
                                Delta {
                                    content: Some(t),
                                    ..Delta::default()
                                },
                                None,
                            ));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let Some(d) = ev.delta else { return Ok(()) };
                match d.kind.as_deref() {
                    Some("text_delta") => {
                        if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                            out.push_back(self.chunk(
                                Delta {
                                    content: Some(t),
                                    ..Delta::default()
                                },
                                None,
                            ));
                        }
                    }
                    Some("thinking_delta") => {
                        if let Some(t) = d.thinking.filter(|t| !t.is_empty()) {
                            out.push_back(self.chunk(
                                Delta {
                                    reasoning_content: Some(t),
                                    ..Delta::default()
                                },
                                None,
                            ));
                        }
                    }
                    Some("input_json_delta") => {
                        let Some(json) = d.partial_json.filter(|j| !j.is_empty()) else {
                            return Ok(());
                        };
                        // Server-tool blocks also stream input; only client tool_use blocks count.
                        let Some(tool) = self.tools.iter_mut().find(|t| Some(t.0) == ev.index)
                        else {
                            return Ok(());
                        };
                        tool.2 = true;
                        let index = tool.1;
                        out.push_back(self.tool_delta(index, json));
                    }
                    // signature_delta, citations_delta: nothing an OpenAI caller can use.
                    _ => {}
                }
            }
            "content_block_stop" => {
                // A tool without parameters may stream no input at all: its arguments are `{}`.
                if let Some(tool) = self
                    .tools
                    .iter_mut()
                    .find(|t| Some(t.0) == ev.index && !t.2)
                {
                    tool.2 = true;
                    let index = tool.1;
                    out.push_back(self.tool_delta(index, "{}".to_owned()));
                }
            }
            "message_delta" => {
                if let Some(reason) = ev.delta.and_then(|d| d.stop_reason) {
                    out.push_back(self.chunk(Delta::default(), Some(finish_reason(&reason))));
                }
                if let Some(u) = ev.usage {
                    // Cumulative counts; message_delta may repeat the input counts or leave them out.
                    let merged = &mut self.usage;
                    merged.output_tokens = u.output_tokens.or(merged.output_tokens);
                    merged.input_tokens = u.input_tokens.or(merged.input_tokens);
                    merged.cache_creation_input_tokens = u
                        .cache_creation_input_tokens
                        .or(merged.cache_creation_input_tokens);
                    merged.cache_read_input_tokens =
                        u.cache_read_input_tokens.or(merged.cache_read_input_tokens);
                    let mut chunk = self.chunk(Delta::default(), None);
                    chunk.choices.clear();
                    chunk.usage = Some(Usage::new(
                        self.usage.prompt(),
                        self.usage.output_tokens.unwrap_or(0),
                    ));
                    out.push_back(chunk);
                }
            }
            "message_stop" => self.stopped = true,
            // ping, and event types added after this was written.
            _ => {}
        }
        Ok(())
    }
}

impl StreamParser for AnthropicStream {
    fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<bool, Error> {
        let mut sse = std::mem::take(&mut self.sse);
        let r = sse.feed(
            bytes,
            |ev| self.on_event(&ev.event, &ev.data, out),
            || Error::upstream("stream event larger than 16 MiB"),
        );
        self.sse = sse;
        r.map(|()| self.stopped)
    }

    fn finish(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if let Some(ev) = self.sse.finish() {
            self.on_event(&ev.event, &ev.data, out)?;
        }
        if self.stopped {
            Ok(())
        } else {
            Err(Error::upstream(
                "stream ended before it was complete (no message_stop)",
            ))
        }
    }
}
