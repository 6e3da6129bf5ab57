//! The Anthropic Messages API (`POST /v1/messages`, PROVIDERS.md §3): OpenAI-shaped requests
//! mapped to Anthropic's body, its answers, stream events and errors mapped back.
//!
//! The request mapping follows litellm's `anthropic_messages_pt`: system and developer messages
//! become the top-level `system`; tool results and user turns that follow each other become one
//! user turn; consecutive assistant turns merge; tool-call arguments are sent as parsed objects.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::classify::{body_excerpt, classify, ErrorParts};
use super::convert::{arguments_of, is_blank, json_kind, tool_input};
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
        if let Some(beta) = beta_header(d)? {
            ep.headers.insert("anthropic-beta", beta);
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
        write_body(ep, req, stream, Flavor::Anthropic)
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

/// `litellm_params.anthropic_beta` as the `anthropic-beta` header: one string (possibly
/// comma-separated already) or an array of strings.
pub(crate) fn beta_header(d: &DeploymentConfig) -> Result<Option<HeaderValue>, String> {
    let bad = "`litellm_params.anthropic_beta` must be a string or an array of strings";
    let beta = match d.params.get("anthropic_beta") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(flags)) => {
            let flags: Option<Vec<&str>> = flags.iter().map(Value::as_str).collect();
            flags.ok_or(bad)?.join(",")
        }
        Some(_) => return Err(bad.into()),
    };
    if beta.trim().is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(&beta)
        .map(Some)
        .map_err(|_| "`anthropic_beta` is not header-safe".into())
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

/// Where the body goes: Claude on Vertex AI takes the model from the URL and the API version in
/// the body (`anthropic_version: vertex-2023-10-16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    Anthropic,
    Vertex,
}

/// The API version Vertex AI's Claude endpoints take in the body.
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// The body as bytes.
pub(crate) fn write_body(
    ep: &Endpoint,
    req: &ChatRequest,
    stream: bool,
    flavor: Flavor,
) -> Result<Vec<u8>, Error> {
    let mut body = build_body(ep, req, stream)?;
    if flavor == Flavor::Vertex {
        body.model = None;
        body.anthropic_version = Some(VERTEX_ANTHROPIC_VERSION);
    }
    let mut out = Vec::with_capacity(512);
    body.serialize(&mut serde_json::Serializer::new(&mut out))
        .map_err(|e| Error::invalid(format!("request could not be encoded: {e}")))?;
    Ok(out)
}

/// The Messages body, borrowing from the request wherever it can (images stay where they are).
#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anthropic_version: Option<&'a str>,
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

fn build_body<'a>(ep: &'a Endpoint, req: &'a ChatRequest, stream: bool) -> Result<Body<'a>, Error> {
    let d = &ep.defaults;
    let (system, messages) = convert_messages(&req.messages)?;

    let mut max_tokens = req
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

    let thinking = ep.param(req, "thinking");
    // Extended thinking rejects temperature other than 1, any top_k, and top_p below 0.95.
    let thinking_on = thinking
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t != "disabled");
    // `max_tokens` must exceed the thinking budget. A cap the caller did not choose (a default)
    // that would not is raised as litellm does: the budget plus room for the answer.
    if let Some(budget) = thinking
        .filter(|_| thinking_on)
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64)
    {
        if req.max_output_tokens().is_none() && max_tokens <= budget {
            max_tokens = budget.saturating_add(DEFAULT_MAX_TOKENS);
        }
    }
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
    let top_k = ep.param(req, "top_k").filter(|_| !thinking_on);

    // Anthropic's metadata holds only `user_id`; OpenAI's free-form metadata would be a 400.
    let metadata_user = ep
        .param(req, "metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str);
    let user = req
        .user
        .as_deref()
        .or_else(|| d.get("user").and_then(Value::as_str))
        .or(metadata_user)
        .filter(|u| !u.is_empty());
    let metadata = user.map(|u| json!({ "user_id": u }));

    let mut tools: Option<Vec<ToolDef>> = req
        .tools
        .as_ref()
        .filter(|t| !t.is_empty())
        .map(|t| t.iter().map(tool_def).collect());
    let mut tool_choice = if tools.is_some() {
        let choice = req.tool_choice.as_ref().or_else(|| d.get("tool_choice"));
        let parallel = req
            .parallel_tool_calls
            .or_else(|| d.get("parallel_tool_calls").and_then(Value::as_bool));
        tool_choice(choice, parallel)?
    } else {
        None // Anthropic rejects a tool_choice without tools.
    };
    // "Requests which include `tool_use` or `tool_result` blocks must define tools": a history
    // with tool calls sent without `tools` (a closing summary turn, say), which OpenAI takes, is
    // given the tools it names, and `tool_choice: none` so that none of them is called.
    if tools.is_none() {
        if let Some(defs) = history_tools(&messages) {
            tools = Some(defs);
            tool_choice = Some(json!({"type": "none"}));
        }
    }

    // OpenAI's tiers (`default`, `flex`, …) mean nothing to Anthropic and would be a 400.
    let service_tier = ep
        .param(req, "service_tier")
        .and_then(Value::as_str)
        .filter(|t| matches!(*t, "auto" | "standard_only"));

    Ok(Body {
        model: Some(&ep.model),
        anthropic_version: None,
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

/// Tool definitions for the tool uses and results of a history sent without `tools`: one per
/// name used (with an open schema), or a placeholder when only results are there.
fn history_tools<'a>(turns: &[Turn<'a>]) -> Option<Vec<ToolDef<'a>>> {
    const DESCRIPTION: &str = "A tool used earlier in this conversation.";
    let blocks = || turns.iter().flat_map(|t| t.content.iter());
    let mut names: Vec<&'a str> = Vec::new();
    let mut results = false;
    for b in blocks() {
        match b.kind {
            BlockKind::ToolUse { name, .. } if !names.contains(&name) => names.push(name),
            BlockKind::ToolResult { .. } => results = true,
            _ => {}
        }
    }
    if names.is_empty() && !results {
        return None;
    }
    if names.is_empty() {
        names.push("tool");
    }
    let schema = || Cow::Owned(json!({"type": "object", "properties": {}}));
    Some(
        names
            .into_iter()
            .map(|name| ToolDef {
                name,
                description: Some(DESCRIPTION),
                input_schema: schema(),
                cache_control: None,
            })
            .collect(),
    )
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

/// The text of the user turn put first when the conversation does not open with one.
const PLACEHOLDER_USER_TEXT: &str = ".";

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
    // The conversation must open with a user turn (and have one at all): a history that starts
    // with the assistant, or holds only system messages, gets litellm's placeholder user turn.
    if !matches!(turns.first(), Some(t) if t.role == "user") {
        turns.insert(
            0,
            Turn {
                role: "user",
                content: vec![Block::new(BlockKind::Text(PLACEHOLDER_USER_TEXT))],
            },
        );
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
            .filter(|s| !is_blank(s))
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

/// A message's content as blocks: a string is one text block; blank text is left out.
fn content_blocks(content: &Option<Value>, msg: usize) -> Result<Vec<Block<'_>>, Error> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if is_blank(s) => Ok(Vec::new()),
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

/// One OpenAI content part as an Anthropic block.
fn part_block(p: &Value, msg: usize) -> Result<Option<Block<'_>>, Error> {
    let kind = match p {
        Value::String(s) if is_blank(s) => return Ok(None),
        Value::String(s) => return Ok(Some(Block::new(BlockKind::Text(s)))),
        Value::Object(o) => o.get("type").and_then(Value::as_str).unwrap_or(""),
        _ => return Ok(None),
    };
    let kind = match kind {
        "text" => match p.get("text").and_then(Value::as_str) {
            Some(t) if !is_blank(t) => BlockKind::Text(t),
            _ => return Ok(None),
        },
        "image_url" => {
            let url = match p.get("image_url") {
                Some(Value::String(u)) => u.as_str(),
                Some(v) => v.get("url").and_then(Value::as_str).unwrap_or(""),
                None => "",
            };
            media_block(url, msg, "image_url", false)?
        }
        "file" => {
            let data = p
                .get("file")
                .and_then(|f| f.get("file_data"))
                .and_then(Value::as_str)
                .unwrap_or("");
            media_block(data, msg, "file.file_data", true)?
        }
        _ => BlockKind::Raw(p),
    };
    Ok(Some(Block {
        kind,
        cache: p.get("cache_control"),
    }))
}

/// A data URL (`data:image/png;base64,…`) or a web URL as an image; a PDF, or any `file` part
/// (`document`), as a document.
fn media_block<'a>(
    url: &'a str,
    msg: usize,
    field: &str,
    document: bool,
) -> Result<BlockKind<'a>, Error> {
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
        return Ok(if document || media_type == "application/pdf" {
            BlockKind::Document(source)
        } else {
            BlockKind::Image(source)
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        let source = Source::Url { url };
        return Ok(if document {
            BlockKind::Document(source)
        } else {
            BlockKind::Image(source)
        });
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

/// A `tool` (or legacy `function`) message as a `tool_result` block.
fn tool_result(m: &Message, msg: usize) -> Result<Block<'_>, Error> {
    let tool_use_id = m
        .tool_call_id
        .as_deref()
        .or(m.name.as_deref())
        .unwrap_or_default();
    let content = match &m.content {
        Some(Value::String(s)) if !is_blank(s) => Some(ToolResultContent::Text(s)),
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
        self.input_tokens
            .unwrap_or(0)
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
            .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
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

pub(crate) fn parse_response(body: &[u8]) -> Result<ChatResponse, Error> {
    if is_error_body(body) {
        return Err(in_band_error(body));
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

/// The HTTP status Anthropic answers each error type with (its errors page).
fn http_status_of(kind: &str) -> Option<u16> {
    Some(match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => return None,
    })
}

/// An error that arrived inside a 200 (an `error` stream event, an error body): classified as
/// the HTTP answer its type stands for, so that an `overloaded_error` event is a retryable 529
/// and a `rate_limit_error` event cools the deployment down like a 429 would.
fn in_band_error(body: &[u8]) -> Error {
    let parts = error_parts(body);
    let status = parts.kind.as_deref().and_then(http_status_of);
    classify(status, parts)
}

// ---------------------------------------------------------------------------------------------
// Stream

/// Anthropic SSE: named events from `message_start` to `message_stop`, mapped to OpenAI chunks.
pub(crate) struct AnthropicStream {
    sse: SseDecoder,
    id: Arc<str>,
    model: Arc<str>,
    created: u64,
    usage: WireUsage,
    /// Tool blocks seen so far: (Anthropic block index, OpenAI tool index, got arguments).
    tools: Vec<(u64, u32, bool)>,
    /// A usage chunk went out (message_delta carries one; message_start's counts alone do not).
    usage_sent: bool,
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
    pub(crate) fn new(model: &str) -> AnthropicStream {
        AnthropicStream {
            sse: SseDecoder::new(),
            id: Arc::default(),
            model: model.into(),
            created: unix_now(),
            usage: WireUsage::default(),
            tools: Vec::new(),
            usage_sent: false,
            stopped: false,
        }
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<&str>) -> ChatChunk {
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

    /// A chunk without choices that carries the counts so far.
    fn usage_chunk(&mut self) -> ChatChunk {
        self.usage_sent = true;
        let mut chunk = self.chunk(Delta::default(), None);
        chunk.choices.clear();
        chunk.usage = Some(Usage::new(
            self.usage.prompt(),
            self.usage.output_tokens.unwrap_or(0),
        ));
        chunk
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
                    return Err(in_band_error(data.as_bytes()));
                }
                return Err(Error::upstream(format!(
                    "malformed stream event ({e}): {}",
                    body_excerpt(data.as_bytes())
                )));
            }
        };
        if event == "error" || ev.kind == "error" {
            return Err(in_band_error(data.as_bytes()));
        }
        match ev.kind.as_str() {
            "message_start" => {
                if let Some(m) = ev.message {
                    if !m.id.is_empty() {
                        self.id = m.id.into();
                    }
                    if !m.model.is_empty() {
                        self.model = m.model.into();
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
                    out.push_back(self.usage_chunk());
                }
            }
            "message_stop" => {
                // Usage that came only with message_start is not lost.
                if !self.usage_sent
                    && (self.usage.input_tokens.is_some() || self.usage.output_tokens.is_some())
                {
                    out.push_back(self.usage_chunk());
                }
                self.stopped = true;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::errors::Status;
    use crate::types::StreamAssembler;

    const KEY: &str = "sk-ant-test-123456";

    fn endpoint_with(params: &str, max_output: Option<u64>) -> Result<Endpoint, String> {
        let c = config::parse(&format!(
            r#"{{"global_llm_configs":[{{"provider":"ANTHROPIC","model_name":"claude-3-5-sonnet-20241022",
               "api_key":"{KEY}","litellm_params":{{"base_model":"claude-3-5-sonnet","timeout":9{params}}}}}]}}"#
        ))
        .unwrap();
        Anthropic.endpoint(&c.deployments[0], max_output)
    }

    fn endpoint(params: &str) -> Endpoint {
        endpoint_with(params, None).unwrap()
    }

    fn body_of(ep: &Endpoint, request: &str, stream: bool) -> Value {
        let req = ChatRequest::from_json(request).unwrap();
        serde_json::from_slice(&Anthropic.request_body(ep, &req, stream).unwrap()).unwrap()
    }

    fn body(request: &str) -> Value {
        body_of(&endpoint(""), request, false)
    }

    /// The error of a request refused by parsing (llmr's schema) or by the translation.
    fn body_err(request: &str) -> Error {
        let req = match ChatRequest::from_json(request) {
            Ok(r) => r,
            Err(e) => return e,
        };
        Anthropic
            .request_body(&endpoint(""), &req, false)
            .unwrap_err()
    }

    // -----------------------------------------------------------------------------------------
    // Endpoint

    #[test]
    fn endpoint_url_and_headers() {
        let ep = endpoint("");
        assert_eq!(ep.url, "https://api.anthropic.com/v1/messages");
        assert_eq!(ep.stream_url, ep.url);
        assert_eq!(ep.headers["x-api-key"], KEY);
        assert!(ep.headers["x-api-key"].is_sensitive());
        assert!(ep.headers.get(reqwest::header::AUTHORIZATION).is_none());
        assert_eq!(ep.headers["anthropic-version"], ANTHROPIC_VERSION);
        assert_eq!(ep.headers[CONTENT_TYPE], "application/json");
        assert!(ep.headers.get("anthropic-beta").is_none());
        assert!(!ep.defaults.contains_key("base_model") && !ep.defaults.contains_key("timeout"));

        let ep = endpoint(
            r#","anthropic_version":"2024-01-01","anthropic_beta":["prompt-caching-2024-07-31","context-1m-2025-08-07"],"extra_headers":{"x-trace":"t1"}"#,
        );
        assert_eq!(ep.headers["anthropic-version"], "2024-01-01");
        assert_eq!(
            ep.headers["anthropic-beta"],
            "prompt-caching-2024-07-31,context-1m-2025-08-07"
        );
        assert_eq!(ep.headers["x-trace"], "t1");
        let ep = endpoint(r#","anthropic_beta":"a,b""#);
        assert_eq!(ep.headers["anthropic-beta"], "a,b");
        assert!(endpoint_with(r#","anthropic_version":5"#, None).is_err());
        assert!(endpoint_with(r#","anthropic_beta":[1]"#, None).is_err());
    }

    #[test]
    fn messages_url_takes_the_base_as_documented_or_already_complete() {
        assert_eq!(
            messages_url("http://127.0.0.1:9/t"),
            "http://127.0.0.1:9/t/v1/messages"
        );
        assert_eq!(
            messages_url("https://api.anthropic.com/"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            messages_url("https://gw.example/v1"),
            "https://gw.example/v1/messages"
        );
        assert_eq!(
            messages_url("https://gw.example/v1/messages/"),
            "https://gw.example/v1/messages"
        );
    }

    // -----------------------------------------------------------------------------------------
    // Request

    #[test]
    fn system_and_developer_messages_become_the_top_level_system() {
        let b = body(
            r#"{"model":"auto","messages":[
                {"role":"system","content":"You are terse."},
                {"role":"developer","content":"Answer in French."},
                {"role":"user","content":"hi"},
                {"role":"system","content":""}]}"#,
        );
        assert_eq!(
            b["model"], "claude-3-5-sonnet-20241022",
            "the deployment's model"
        );
        assert_eq!(b["system"], "You are terse.\n\nAnswer in French.");
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
        assert_eq!(
            b["messages"][0],
            json!({"role":"user","content":[{"type":"text","text":"hi"}]})
        );
        assert!(b.get("stream").is_none());

        // Cache control (on the message or a part) needs blocks.
        let b = body(
            r#"{"messages":[
                {"role":"system","content":"long rules","cache_control":{"type":"ephemeral"}},
                {"role":"system","content":[{"type":"text","text":"more"},{"type":"image_url","image_url":"https://x/y.png"}]},
                {"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(
            b["system"],
            json!([
                {"type":"text","text":"long rules","cache_control":{"type":"ephemeral"}},
                {"type":"text","text":"more"}
            ])
        );
        let b = body(r#"{"messages":[{"role":"user","content":"hi"}]}"#);
        assert!(b.get("system").is_none());
    }

    #[test]
    fn consecutive_turns_of_one_role_merge() {
        let b = body(
            r#"{"messages":[
                {"role":"user","content":"a"},
                {"role":"user","content":[{"type":"text","text":"b"}]},
                {"role":"assistant","content":"c"},
                {"role":"assistant","content":"d"},
                {"role":"user","content":"e"}]}"#,
        );
        assert_eq!(
            b["messages"],
            json!([
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                {"role":"assistant","content":[{"type":"text","text":"c"},{"type":"text","text":"d"}]},
                {"role":"user","content":[{"type":"text","text":"e"}]}
            ])
        );
    }

    #[test]
    fn tool_calls_become_tool_use_and_results_one_user_turn() {
        let b = body(
            r#"{"messages":[
                {"role":"user","content":"weather in Paris and Rome?"},
                {"role":"assistant","content":"Checking.","tool_calls":[
                    {"id":"toolu_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}},
                    {"id":"toolu_2","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Rome\",\"days\":[1,2]}"}},
                    {"id":"toolu_3","type":"function","function":{"name":"now","arguments":""}},
                    {"id":"toolu_4","type":"function","function":{"name":"now","arguments":"{\"trunc"}}]},
                {"role":"tool","tool_call_id":"toolu_1","content":"sunny"},
                {"role":"tool","tool_call_id":"toolu_2","content":"rain"},
                {"role":"tool","tool_call_id":"toolu_3","content":""},
                {"role":"user","content":"thanks"},
                {"role":"tool","tool_call_id":"toolu_4","content":"12:00"}],
              "tools":[{"type":"function","function":{"name":"weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},
                       {"type":"function","function":{"name":"now","description":""}}]}"#,
        );
        let m = &b["messages"];
        assert_eq!(m.as_array().unwrap().len(), 3);
        assert_eq!(
            m[1],
            json!({"role":"assistant","content":[
                {"type":"text","text":"Checking."},
                {"type":"tool_use","id":"toolu_1","name":"weather","input":{"city":"Paris"}},
                {"type":"tool_use","id":"toolu_2","name":"weather","input":{"city":"Rome","days":[1,2]}},
                {"type":"tool_use","id":"toolu_3","name":"now","input":{}},
                {"type":"tool_use","id":"toolu_4","name":"now","input":{}}
            ]}),
            "arguments are sent parsed; empty or broken ones as {{}}"
        );
        assert_eq!(
            m[2],
            json!({"role":"user","content":[
                {"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"},
                {"type":"tool_result","tool_use_id":"toolu_2","content":"rain"},
                {"type":"tool_result","tool_use_id":"toolu_3"},
                {"type":"tool_result","tool_use_id":"toolu_4","content":"12:00"},
                {"type":"text","text":"thanks"}
            ]}),
            "every result in the one user turn after the tool uses, results first"
        );
        assert_eq!(
            b["tools"],
            json!([
                {"name":"weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},
                {"name":"now","input_schema":{"type":"object","properties":{}}}
            ])
        );
        assert!(b.get("tool_choice").is_none());
    }

    #[test]
    fn tool_results_with_parts_and_a_schema_without_type() {
        let b = body(
            r#"{"messages":[
                {"role":"user","content":"go"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":{"x":1}}}]},
                {"role":"tool","tool_call_id":"t1","content":{"ok":true}}],
              "tools":[{"type":"function","function":{"name":"f","parameters":{"properties":{"x":{"type":"integer"}}},"cache_control":{"type":"ephemeral"}}}]}"#,
        );
        assert_eq!(b["messages"][1]["content"][0]["input"], json!({"x":1}));
        assert_eq!(
            b["messages"][2]["content"][0],
            json!({"type":"tool_result","tool_use_id":"t1","content":"{\"ok\":true}"})
        );
        assert_eq!(
            b["tools"][0],
            json!({"name":"f","input_schema":{"type":"object","properties":{"x":{"type":"integer"}}},"cache_control":{"type":"ephemeral"}})
        );
    }

    fn choice(tool_choice: &str) -> Value {
        body(&format!(
            r#"{{"messages":[{{"role":"user","content":"hi"}}],
                "tools":[{{"type":"function","function":{{"name":"f"}}}}]{tool_choice}}}"#
        ))
        .get("tool_choice")
        .cloned()
        .unwrap_or(Value::Null)
    }

    #[test]
    fn tool_choice_mappings() {
        assert_eq!(choice(""), Value::Null, "none given: Anthropic's default");
        assert_eq!(choice(r#","tool_choice":"auto""#), json!({"type":"auto"}));
        assert_eq!(
            choice(r#","tool_choice":"required""#),
            json!({"type":"any"})
        );
        assert_eq!(choice(r#","tool_choice":"none""#), json!({"type":"none"}));
        assert_eq!(
            choice(r#","tool_choice":{"type":"function","function":{"name":"f"}}"#),
            json!({"type":"tool","name":"f"})
        );
        assert_eq!(
            choice(r#","tool_choice":{"type":"tool","name":"f"}"#),
            json!({"type":"tool","name":"f"}),
            "Anthropic's own shape passes"
        );
        assert_eq!(
            choice(r#","tool_choice":"required","parallel_tool_calls":false"#),
            json!({"type":"any","disable_parallel_tool_use":true})
        );
        assert_eq!(
            choice(r#","parallel_tool_calls":false"#),
            json!({"type":"auto","disable_parallel_tool_use":true})
        );
        assert_eq!(
            choice(
                r#","tool_choice":{"type":"function","function":{"name":"f"}},"parallel_tool_calls":false"#
            ),
            json!({"type":"tool","name":"f","disable_parallel_tool_use":true})
        );
        assert_eq!(
            choice(r#","tool_choice":"none","parallel_tool_calls":false"#),
            json!({"type":"none"})
        );
        assert_eq!(
            choice(r#","tool_choice":"auto","parallel_tool_calls":true"#),
            json!({"type":"auto"})
        );

        // Without tools Anthropic refuses a tool_choice: it is left out.
        let b = body(r#"{"messages":[{"role":"user","content":"hi"}],"tool_choice":"required"}"#);
        assert!(b.get("tool_choice").is_none() && b.get("tools").is_none());

        for bad in [
            r#""sometimes""#,
            "5",
            r#"{"type":"function"}"#,
            r#"{"type":"x"}"#,
        ] {
            let e = body_err(&format!(
                r#"{{"messages":[{{"role":"user","content":"hi"}}],"tools":[{{"type":"function","function":{{"name":"f"}}}}],"tool_choice":{bad}}}"#
            ));
            assert_eq!(e.status, Status::InvalidArgument, "{bad}");
            assert!(e.message.contains("tool_choice"), "{}", e.message);
        }
    }

    #[test]
    fn a_history_with_tool_calls_but_no_tools_gets_them_declared_and_unusable() {
        let b = body(
            r#"{"messages":[
                {"role":"user","content":"weather?"},
                {"role":"assistant","tool_calls":[
                    {"id":"t1","type":"function","function":{"name":"weather","arguments":"{}"}},
                    {"id":"t2","type":"function","function":{"name":"weather","arguments":"{}"}},
                    {"id":"t3","type":"function","function":{"name":"clock","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"t1","content":"sunny"},
                {"role":"tool","tool_call_id":"t2","content":"sunny"},
                {"role":"tool","tool_call_id":"t3","content":"noon"},
                {"role":"user","content":"Summarise."}],
              "tool_choice":"auto"}"#,
        );
        let names: Vec<&str> = b["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["weather", "clock"]);
        assert_eq!(b["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(b["tool_choice"], json!({"type":"none"}));

        // Only a result (its call cut off the history): a placeholder tool.
        let b = body(
            r#"{"messages":[{"role":"tool","tool_call_id":"t0","content":"x"},{"role":"user","content":"go on"}]}"#,
        );
        assert_eq!(b["tools"].as_array().unwrap().len(), 1);
        assert_eq!(b["tool_choice"], json!({"type":"none"}));

        // With tools given, they are sent as they are.
        let b = body(
            r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","tool_calls":[{"id":"t","type":"function","function":{"name":"weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"t","content":"x"}],
               "tools":[{"type":"function","function":{"name":"weather"}},{"type":"function","function":{"name":"other"}}]}"#,
        );
        assert_eq!(b["tools"].as_array().unwrap().len(), 2);
        assert!(b.get("tool_choice").is_none());
    }

    #[test]
    fn stop_string_or_array() {
        let b = body(r#"{"messages":[{"role":"user","content":"hi"}],"stop":"END"}"#);
        assert_eq!(b["stop_sequences"], json!(["END"]));
        assert!(b.get("stop").is_none());
        let b = body(r#"{"messages":[{"role":"user","content":"hi"}],"stop":["a","  ","b"]}"#);
        assert_eq!(
            b["stop_sequences"],
            json!(["a", "b"]),
            "whitespace-only is refused upstream"
        );
        for none in [r#""stop":" ""#, r#""stop":[]"#, r#""stop":null"#] {
            let b = body(&format!(
                r#"{{"messages":[{{"role":"user","content":"hi"}}],{none}}}"#
            ));
            assert!(b.get("stop_sequences").is_none(), "{none}");
        }
        let b = body(r#"{"messages":[{"role":"user","content":"hi"}],"stop_sequences":["x"]}"#);
        assert_eq!(
            b["stop_sequences"],
            json!(["x"]),
            "Anthropic's own name passes"
        );
        let b = body_of(
            &endpoint(r#","stop":["D"]"#),
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            false,
        );
        assert_eq!(
            b["stop_sequences"],
            json!(["D"]),
            "the deployment's default"
        );
        let b = body_of(
            &endpoint(r#","stop":["D"]"#),
            r#"{"messages":[{"role":"user","content":"hi"}],"stop":"R"}"#,
            false,
        );
        assert_eq!(b["stop_sequences"], json!(["R"]), "the request wins");
    }

    #[test]
    fn max_tokens_is_always_sent() {
        let hi = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(body(hi)["max_tokens"], DEFAULT_MAX_TOKENS);
        let capped = endpoint_with("", Some(8192)).unwrap();
        assert_eq!(
            body_of(&capped, hi, false)["max_tokens"],
            8192,
            "the model's output cap"
        );
        assert_eq!(
            body_of(
                &capped,
                r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":100}"#,
                false
            )["max_tokens"],
            100
        );
        let b = body(
            r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":100,"max_completion_tokens":200}"#,
        );
        assert_eq!(b["max_tokens"], 200);
        assert!(b.get("max_completion_tokens").is_none());
        let with_default = endpoint_with(r#","max_tokens":300"#, Some(8192)).unwrap();
        assert_eq!(body_of(&with_default, hi, false)["max_tokens"], 300);
        assert_eq!(
            body_of(
                &with_default,
                r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":50}"#,
                false
            )["max_tokens"],
            50
        );
    }

    #[test]
    fn images_and_documents() {
        let b = body(
            r#"{"messages":[{"role":"user","content":[
                {"type":"text","text":"what is this?"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}},
                {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}},
                {"type":"image_url","image_url":"http://example.com/dog.gif"},
                {"type":"file","file":{"file_data":"data:application/pdf;base64,JVBERi0="}},
                {"type":"file","file":{"file_data":"https://example.com/paper.pdf"}},
                {"type":"text","text":"thanks","cache_control":{"type":"ephemeral"}}]}]}"#,
        );
        assert_eq!(
            b["messages"][0]["content"],
            json!([
                {"type":"text","text":"what is this?"},
                {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
                {"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}},
                {"type":"image","source":{"type":"url","url":"http://example.com/dog.gif"}},
                {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}},
                {"type":"document","source":{"type":"url","url":"https://example.com/paper.pdf"}},
                {"type":"text","text":"thanks","cache_control":{"type":"ephemeral"}}
            ])
        );
        for bad in [
            r#"{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}"#,
            r#"{"type":"image_url","image_url":{"url":"data:image/png,rawbytes"}}"#,
            r#"{"type":"image_url","image_url":{"url":"data:image/png;base64"}}"#,
            r#"{"type":"image_url"}"#,
        ] {
            let e = body_err(&format!(
                r#"{{"messages":[{{"role":"user","content":"a"}},{{"role":"user","content":[{bad}]}}]}}"#
            ));
            assert_eq!(e.status, Status::InvalidArgument, "{bad}");
            assert!(e.message.contains("messages[1]"), "{}", e.message);
        }
        let e = body_err(r#"{"messages":[{"role":"user","content":5}]}"#);
        assert_eq!(e.status, Status::InvalidArgument);
    }

    #[test]
    fn deployment_params_ride_under_the_request() {
        let ep = endpoint(
            r#","temperature":0.2,"top_p":0.9,"top_k":40,"seed":3,"anthropic_version":"2023-06-01","user":"dep-user""#,
        );
        let b = body_of(
            &ep,
            r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"temperature":0.7,"timeout":5,
                "logprobs":true,"response_format":{"type":"json_object"},"stream":false}"#,
            true,
        );
        assert_eq!(b["temperature"], 0.7, "the request wins");
        assert_eq!(b["top_p"], 0.9, "the deployment's default rides along");
        assert_eq!(b["top_k"], 40);
        assert_eq!(b["metadata"], json!({"user_id":"dep-user"}));
        assert_eq!(b["stream"], true, "the function called decides");
        for absent in [
            "seed",
            "logprobs",
            "response_format",
            "timeout",
            "anthropic_version",
            "base_model",
            "user",
            "stream_options",
        ] {
            assert!(b.get(absent).is_none(), "{absent} must not reach Anthropic");
        }
        let b = body_of(
            &ep,
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            false,
        );
        assert_eq!(b["temperature"], 0.2);
        assert!(b.get("stream").is_none());
        let b = body_of(
            &ep,
            r#"{"messages":[{"role":"user","content":"hi"}],"top_k":5,"user":"u-1"}"#,
            false,
        );
        assert_eq!(b["top_k"], 5);
        assert_eq!(b["metadata"], json!({"user_id":"u-1"}));
    }

    #[test]
    fn temperature_metadata_and_service_tier() {
        let b = body(
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":1.7,
                "metadata":{"user_id":"abc","session":"s"},"service_tier":"default"}"#,
        );
        assert_eq!(b["temperature"], 1.0, "clamped to Anthropic's range");
        assert_eq!(b["metadata"], json!({"user_id":"abc"}));
        assert!(
            b.get("service_tier").is_none(),
            "OpenAI's tiers are not Anthropic's"
        );
        let b = body(
            r#"{"messages":[{"role":"user","content":"hi"}],"metadata":{"tag":"x"},"service_tier":"auto"}"#,
        );
        assert!(b.get("metadata").is_none());
        assert_eq!(b["service_tier"], "auto");
    }

    #[test]
    fn thinking_constraints() {
        let b = body(
            r#"{"messages":[{"role":"user","content":"hi"}],"thinking":{"type":"enabled","budget_tokens":8000},
                "temperature":0.3,"top_p":0.5,"top_k":10}"#,
        );
        assert_eq!(
            b["thinking"],
            json!({"type":"enabled","budget_tokens":8000})
        );
        assert!(
            b.get("temperature").is_none() && b.get("top_p").is_none() && b.get("top_k").is_none(),
            "thinking refuses them: {b}"
        );
        assert_eq!(
            b["max_tokens"],
            8000 + DEFAULT_MAX_TOKENS,
            "a default cap at or below the budget is raised"
        );
        let b = body(
            r#"{"messages":[{"role":"user","content":"hi"}],"thinking":{"type":"enabled","budget_tokens":1024},"temperature":1,"max_tokens":900}"#,
        );
        assert_eq!(b["max_tokens"], 900, "the caller's own cap is kept");
        assert_eq!(b["temperature"], 1.0);
        let b = body(
            r#"{"messages":[{"role":"user","content":"hi"}],"thinking":{"type":"enabled","budget_tokens":1024}}"#,
        );
        assert_eq!(
            b["max_tokens"], DEFAULT_MAX_TOKENS,
            "a default above the budget stays"
        );
        let b = body(
            r#"{"messages":[{"role":"user","content":"hi"}],"thinking":{"type":"disabled"},"temperature":0.3}"#,
        );
        assert_eq!(b["temperature"], 0.3);
    }

    #[test]
    fn the_conversation_opens_with_a_user_turn() {
        let b = body(
            r#"{"messages":[{"role":"system","content":"s"},{"role":"assistant","content":"Hello!"},{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(b["messages"][0]["role"], "user");
        assert_eq!(
            b["messages"][0]["content"][0]["text"],
            PLACEHOLDER_USER_TEXT
        );
        assert_eq!(b["messages"][1]["content"][0]["text"], "Hello!");
        let b = body(r#"{"messages":[{"role":"system","content":"Tell a joke."}]}"#);
        assert_eq!(b["system"], "Tell a joke.");
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
        assert_eq!(b["messages"][0]["role"], "user");
    }

    #[test]
    fn prefill_and_blank_text() {
        let b = body(
            r#"{"messages":[{"role":"user","content":"  "},{"role":"user","content":[{"type":"text","text":"\n"},{"type":"text","text":"hi"}]},
                {"role":"assistant","content":"\n\n","tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"t","content":"  "},
                {"role":"assistant","content":"The answer is "}],
              "tools":[{"type":"function","function":{"name":"f"}}]}"#,
        );
        assert_eq!(
            b["messages"],
            json!([
                {"role":"user","content":[{"type":"text","text":"hi"}]},
                {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"t"}]},
                {"role":"assistant","content":[{"type":"text","text":"The answer is"}]}
            ]),
            "blank text is left out; a final assistant turn loses its trailing whitespace"
        );
        let b = body(
            r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"   "}]}"#,
        );
        assert_eq!(
            b["messages"].as_array().unwrap().len(),
            1,
            "an empty prefill is dropped"
        );
    }

    #[test]
    fn thinking_blocks_lead_the_assistant_turn() {
        let b = body(
            r#"{"messages":[{"role":"user","content":"q"},
                {"role":"assistant","content":"a","thinking_blocks":[{"type":"thinking","thinking":"hmm","signature":"sig"}],
                 "tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"t","content":"r"}],
              "tools":[{"type":"function","function":{"name":"f"}}]}"#,
        );
        assert_eq!(
            b["messages"][1]["content"][0],
            json!({"type":"thinking","thinking":"hmm","signature":"sig"})
        );
        assert_eq!(b["messages"][1]["content"][1]["type"], "text");
        assert_eq!(b["messages"][1]["content"][2]["type"], "tool_use");
    }

    // -----------------------------------------------------------------------------------------
    // Response

    #[test]
    fn text_response() {
        let r = parse_response(
            br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022",
                 "content":[{"type":"text","text":"Hello"},{"type":"text","text":", world"}],
                 "stop_reason":"end_turn","stop_sequence":null,
                 "usage":{"input_tokens":12,"output_tokens":34,"cache_creation_input_tokens":5,"cache_read_input_tokens":100}}"#,
        )
        .unwrap();
        assert_eq!(r.id, "msg_1");
        assert_eq!(r.object, "chat.completion");
        assert_eq!(r.model, "claude-3-5-sonnet-20241022");
        assert!(r.created > 0);
        let c = &r.choices[0];
        assert_eq!(c.message.role, "assistant");
        assert_eq!(c.message.content.as_deref(), Some("Hello, world"));
        assert!(c.message.tool_calls.is_none());
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            r.usage,
            Some(Usage::new(117, 34)),
            "cached and cache-written input count as prompt"
        );
    }

    #[test]
    fn tool_use_response() {
        let r = parse_response(
            br#"{"id":"msg_2","type":"message","role":"assistant","model":"m",
                 "content":[{"type":"thinking","thinking":"Let me look.","signature":"s"},
                            {"type":"tool_use","id":"toolu_a","name":"weather","input":{"city":"Paris","days":[1,2]}},
                            {"type":"tool_use","id":"toolu_b","name":"now","input":{}}],
                 "stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":4}}"#,
        )
        .unwrap();
        let m = &r.choices[0].message;
        assert_eq!(m.content, None, "only tool calls: content is null");
        assert_eq!(m.reasoning_content.as_deref(), Some("Let me look."));
        let calls = m.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].id, "toolu_a");
        assert_eq!(calls[0].kind, "function");
        assert_eq!(calls[0].function.name, "weather");
        let args: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
        assert_eq!(args, json!({"city":"Paris","days":[1,2]}));
        assert_eq!(calls[1].function.arguments, "{}");
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(r.usage, Some(Usage::new(3, 4)));
        let json = serde_json::to_value(&r).unwrap();
        assert!(
            json["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"].is_string()
        );
    }

    #[test]
    fn stop_reasons() {
        for (reason, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "stop"),
            ("something_new", "stop"),
        ] {
            let r = parse_response(
                format!(
                    r#"{{"id":"m","type":"message","model":"x","content":[{{"type":"text","text":"t"}}],"stop_reason":"{reason}","usage":{{"input_tokens":1,"output_tokens":1}}}}"#
                )
                .as_bytes(),
            )
            .unwrap();
            assert_eq!(
                r.choices[0].finish_reason.as_deref(),
                Some(finish),
                "{reason}"
            );
        }
        let r = parse_response(
            br#"{"id":"m","type":"message","model":"x","content":[],"stop_reason":null}"#,
        )
        .unwrap();
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!(r.choices[0].message.content.as_deref(), Some(""));
        assert_eq!(r.usage, Some(Usage::new(0, 0)));
    }

    #[test]
    fn a_200_that_is_not_a_message() {
        let e = parse_response(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .unwrap_err();
        assert_eq!((e.status, e.http_status), (Status::Upstream, Some(529)));
        assert_eq!(e.message, "Overloaded");
        let e = parse_response(b"<html>oops</html>").unwrap_err();
        assert_eq!(e.status, Status::Upstream);
        assert!(e.message.contains("<html>oops</html>"), "{}", e.message);
        let e = parse_response(br#"{"type":"completion","completion":"x"}"#).unwrap_err();
        assert_eq!(e.status, Status::Upstream);
    }

    // -----------------------------------------------------------------------------------------
    // Errors

    fn http_error(status: u16, body: &str) -> Error {
        Anthropic.parse_error(&endpoint(""), status, body.as_bytes())
    }

    fn envelope(kind: &str, message: &str) -> String {
        json!({"type":"error","error":{"type":kind,"message":message},"request_id":"req_1"})
            .to_string()
    }

    #[test]
    fn error_bodies() {
        let e = http_error(529, &envelope("overloaded_error", "Overloaded"));
        assert_eq!((e.status, e.http_status), (Status::Upstream, Some(529)));
        assert_eq!(e.message, "Overloaded");
        assert!(!e.quota);

        let e = http_error(
            429,
            &envelope(
                "rate_limit_error",
                "This request would exceed the rate limit for your organization of 80,000 input tokens per minute.",
            ),
        );
        assert_eq!(e.status, Status::RateLimited);
        assert!(!e.quota);

        let e = http_error(401, &envelope("authentication_error", "invalid x-api-key"));
        assert_eq!(e.status, Status::Auth);
        assert_eq!(e.message, "invalid x-api-key");
        let e = http_error(
            403,
            &envelope("permission_error", "Your API key does not have permission."),
        );
        assert_eq!(e.status, Status::Auth);

        let e = http_error(
            400,
            &envelope(
                "invalid_request_error",
                "prompt is too long: 250000 tokens > 200000 maximum",
            ),
        );
        assert_eq!(e.status, Status::ContextOverflow);
        assert_eq!(
            e.message,
            "prompt is too long: 250000 tokens > 200000 maximum"
        );
        let e = http_error(
            400,
            &envelope(
                "invalid_request_error",
                "input length and `max_tokens` exceed context limit: 199759 + 8192 > 200000, decrease input length or `max_tokens` and try again",
            ),
        );
        assert_eq!(e.status, Status::ContextOverflow);
        let e = http_error(
            400,
            &envelope(
                "invalid_request_error",
                "max_tokens: 128001 > 64000, which is the maximum allowed number of output tokens for claude-opus-4-5-20251101",
            ),
        );
        assert_eq!(
            e.status,
            Status::BadRequest,
            "an output cap is not an overflow"
        );
        let e = http_error(
            400,
            &envelope("invalid_request_error", "messages: field required"),
        );
        assert_eq!(e.status, Status::BadRequest);
        let e = http_error(
            400,
            &envelope(
                "invalid_request_error",
                "Output blocked by content filtering policy",
            ),
        );
        assert_eq!(e.status, Status::ContentPolicy);

        let e = http_error(
            413,
            &envelope(
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes.",
            ),
        );
        assert_eq!(
            e.status,
            Status::BadRequest,
            "the 32 MB edge limit: a bigger window cannot help"
        );
        let e = http_error(
            402,
            &envelope("billing_error", "Your credit balance is too low."),
        );
        assert!(e.quota);
        let e = http_error(404, &envelope("not_found_error", "model: claude-9"));
        assert_eq!(e.status, Status::BadRequest);
        let e = http_error(500, &envelope("api_error", "Internal server error"));
        assert_eq!(e.status, Status::Upstream);

        // Not Anthropic's envelope: a gateway in front of it.
        let e = http_error(502, "<html>502 Bad Gateway</html>");
        assert_eq!(e.status, Status::Upstream);
        assert_eq!(e.message, "<html>502 Bad Gateway</html>");
        let e = http_error(
            429,
            r#"{"error":{"message":"slow down","type":"requests"}}"#,
        );
        assert_eq!(
            (e.status, e.message.as_str()),
            (Status::RateLimited, "slow down")
        );
        let e = http_error(503, "");
        assert_eq!(e.status, Status::Upstream);
        assert!(!e.message.is_empty());
    }

    #[test]
    fn error_parts_of_the_envelope() {
        let p = error_parts(envelope("overloaded_error", "Overloaded").as_bytes());
        assert_eq!(
            (p.code.as_deref(), p.kind.as_deref(), p.message.as_str()),
            (None, Some("overloaded_error"), "Overloaded")
        );
        let p = error_parts(br#"{"error":"plain text"}"#);
        assert_eq!(p.message, "plain text");
    }

    // -----------------------------------------------------------------------------------------
    // Stream

    /// Feeds `input` in pieces of `piece` bytes; returns the chunks, whether a feed said the
    /// stream was over, and the result.
    fn run_stream(input: &str, piece: usize) -> (Vec<ChatChunk>, bool, Result<(), Error>) {
        let mut p = AnthropicStream::new("claude-3-5-sonnet-20241022");
        let mut out = VecDeque::new();
        let mut done = false;
        let mut r = Ok(());
        for bytes in input.as_bytes().chunks(piece) {
            match p.feed(bytes, &mut out) {
                Ok(d) => done |= d,
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        if r.is_ok() {
            r = p.finish(&mut out);
        }
        (out.into_iter().collect(), done, r)
    }

    fn assemble(chunks: &[ChatChunk]) -> ChatResponse {
        let mut a = StreamAssembler::default();
        for c in chunks {
            a.push(c);
        }
        a.into_response()
    }

    fn ev(name: &str, data: Value) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    fn text_stream() -> String {
        [
            ev(
                "message_start",
                json!({"type":"message_start","message":{"id":"msg_s1","type":"message","role":"assistant",
                    "model":"claude-3-5-sonnet-20241022","content":[],"stop_reason":null,"stop_sequence":null,
                    "usage":{"input_tokens":25,"output_tokens":1,"cache_read_input_tokens":10,"cache_creation_input_tokens":0}}}),
            ),
            ev(
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            ),
            ev("ping", json!({"type":"ping"})),
            ": a comment\n\n".to_owned(),
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Héllo"}}),
            ),
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", 世界 🌍"}}),
            ),
            ev(
                "content_block_stop",
                json!({"type":"content_block_stop","index":0}),
            ),
            ev(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}),
            ),
            ev("message_stop", json!({"type":"message_stop"})),
        ]
        .concat()
    }

    #[test]
    fn stream_text_survives_any_split() {
        let input = text_stream();
        for piece in [1, 2, 3, 5, 7, 13, 64, input.len()] {
            let (chunks, done, r) = run_stream(&input, piece);
            r.unwrap();
            assert!(done, "message_stop ends the stream (piece {piece})");
            let payload: Vec<&str> = chunks
                .iter()
                .filter(|c| c.has_payload())
                .map(|c| c.choices[0].delta.content.as_deref().unwrap())
                .collect();
            assert_eq!(payload, ["Héllo", ", 世界 🌍"], "piece {piece}");
            assert_eq!(
                chunks[0].choices[0].delta.role.as_deref(),
                Some("assistant")
            );
            assert!(chunks
                .iter()
                .all(|c| &*c.id == "msg_s1" && c.object == "chat.completion.chunk"));
            let r = assemble(&chunks);
            assert_eq!(
                r.choices[0].message.content.as_deref(),
                Some("Héllo, 世界 🌍")
            );
            assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
            assert_eq!(
                r.usage,
                Some(Usage::new(35, 15)),
                "prompt from message_start (cache included), output from message_delta"
            );
            assert_eq!(r.model, "claude-3-5-sonnet-20241022");
        }
        // CRLF line ends.
        let (chunks, _, r) = run_stream(&input.replace('\n', "\r\n"), 3);
        r.unwrap();
        assert_eq!(
            assemble(&chunks).choices[0].message.content.as_deref(),
            Some("Héllo, 世界 🌍")
        );
    }

    fn tool_stream() -> String {
        let delta = |index: u64, partial: &str| {
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":index,"delta":{"type":"input_json_delta","partial_json":partial}}),
            )
        };
        [
            ev(
                "message_start",
                json!({"type":"message_start","message":{"id":"msg_t","model":"m","content":[],"usage":{"input_tokens":40,"output_tokens":1}}}),
            ),
            ev(
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}),
            ),
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Need weather."}}),
            ),
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}),
            ),
            ev("content_block_stop", json!({"type":"content_block_stop","index":0})),
            ev(
                "content_block_start",
                json!({"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}),
            ),
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Let me check."}}),
            ),
            ev("content_block_stop", json!({"type":"content_block_stop","index":1})),
            ev(
                "content_block_start",
                json!({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_w","name":"weather","input":{}}}),
            ),
            delta(2, ""),
            delta(2, "{\"city\": \"Pa"),
            delta(2, "ris\", \"days\""),
            delta(2, ": [1, 2]}"),
            ev("content_block_stop", json!({"type":"content_block_stop","index":2})),
            ev(
                "content_block_start",
                json!({"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_n","name":"now","input":{}}}),
            ),
            delta(3, ""),
            ev("content_block_stop", json!({"type":"content_block_stop","index":3})),
            ev(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":60}}),
            ),
            ev("message_stop", json!({"type":"message_stop"})),
        ]
        .concat()
    }

    #[test]
    fn stream_tool_calls_assemble_from_input_json_deltas() {
        let input = tool_stream();
        for piece in [1, 4, 11, input.len()] {
            let (chunks, done, r) = run_stream(&input, piece);
            r.unwrap();
            assert!(done);
            // Tool blocks are renumbered 0.. whatever Anthropic's block index.
            let indices: Vec<u32> = chunks
                .iter()
                .filter_map(|c| c.choices.first()?.delta.tool_calls.as_ref())
                .map(|t| t[0].index)
                .collect();
            assert_eq!(indices, [0, 0, 0, 0, 1, 1], "piece {piece}");
            let first = chunks
                .iter()
                .find_map(|c| c.choices.first()?.delta.tool_calls.clone())
                .unwrap();
            assert_eq!(first[0].id.as_deref(), Some("toolu_w"));
            assert_eq!(first[0].kind.as_deref(), Some("function"));
            let r = assemble(&chunks);
            let m = &r.choices[0].message;
            assert_eq!(m.content.as_deref(), Some("Let me check."));
            assert_eq!(m.reasoning_content.as_deref(), Some("Need weather."));
            let calls = m.tool_calls.as_ref().unwrap();
            assert_eq!(calls.len(), 2);
            assert_eq!(
                (calls[0].id.as_str(), calls[0].function.name.as_str()),
                ("toolu_w", "weather")
            );
            let args: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
            assert_eq!(args, json!({"city":"Paris","days":[1,2]}));
            assert_eq!(
                (calls[1].id.as_str(), calls[1].function.name.as_str()),
                ("toolu_n", "now")
            );
            assert_eq!(
                calls[1].function.arguments, "{}",
                "a tool without input gets {{}}"
            );
            assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
            assert_eq!(r.usage, Some(Usage::new(40, 60)));
        }
    }

    #[test]
    fn stream_max_tokens_and_usage_without_message_delta_usage() {
        let input = [
            ev(
                "message_start",
                json!({"type":"message_start","message":{"id":"x","model":"m","usage":{"input_tokens":7,"output_tokens":1}}}),
            ),
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"cut"}}),
            ),
            ev(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"max_tokens"}}),
            ),
            ev("message_stop", json!({"type":"message_stop"})),
        ]
        .concat();
        let (chunks, _, r) = run_stream(&input, 5);
        r.unwrap();
        let r = assemble(&chunks);
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(r.usage, Some(Usage::new(7, 1)));
        let usage_chunks = chunks.iter().filter(|c| c.usage.is_some()).count();
        assert_eq!(usage_chunks, 1);
    }

    #[test]
    fn stream_error_events() {
        let start = ev(
            "message_start",
            json!({"type":"message_start","message":{"id":"x","model":"m","usage":{"input_tokens":7,"output_tokens":1}}}),
        );
        let text = ev(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"partial"}}),
        );
        let error = |kind: &str, message: &str| {
            ev(
                "error",
                json!({"type":"error","error":{"type":kind,"message":message}}),
            )
        };
        for (kind, message, status, http) in [
            ("overloaded_error", "Overloaded", Status::Upstream, 529),
            ("api_error", "Internal server error", Status::Upstream, 500),
            ("rate_limit_error", "Rate limited", Status::RateLimited, 429),
            (
                "invalid_request_error",
                "prompt is too long: 250000 tokens > 200000 maximum",
                Status::ContextOverflow,
                400,
            ),
            (
                "invalid_request_error",
                "Output blocked by content filtering policy",
                Status::ContentPolicy,
                400,
            ),
        ] {
            let input = [start.clone(), text.clone(), error(kind, message)].concat();
            for piece in [1, 9, input.len()] {
                let (chunks, done, r) = run_stream(&input, piece);
                let e = r.unwrap_err();
                assert_eq!(
                    (e.status, e.http_status),
                    (status, Some(http)),
                    "{kind} piece {piece}"
                );
                assert_eq!(e.message, message);
                assert!(!done);
                assert_eq!(
                    chunks.iter().filter(|c| c.has_payload()).count(),
                    1,
                    "what came before the error is kept"
                );
            }
        }
        // An error event whose data is not JSON, and one without an event name.
        let (_, _, r) = run_stream(&format!("{start}event: error\ndata: upstream broke\n\n"), 4);
        let e = r.unwrap_err();
        assert_eq!(e.status, Status::Upstream);
        assert!(e.message.contains("upstream broke"), "{}", e.message);
        let (_, _, r) = run_stream(
            &format!(
                "{start}data: {}\n\n",
                json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})
            ),
            4,
        );
        assert_eq!(r.unwrap_err().http_status, Some(529));
    }

    #[test]
    fn stream_cut_short_or_malformed() {
        let full = text_stream();
        let cut = &full[..full.find("event: message_stop").unwrap()];
        let (chunks, done, r) = run_stream(cut, 6);
        assert!(!done);
        let e = r.unwrap_err();
        assert_eq!(e.status, Status::Upstream);
        assert!(e.message.contains("message_stop"), "{}", e.message);
        assert_eq!(chunks.iter().filter(|c| c.has_payload()).count(), 2);

        let (_, _, r) = run_stream("", 1);
        assert_eq!(r.unwrap_err().status, Status::Upstream, "an empty stream");

        // The last event without its blank line still counts.
        let (_, done, r) = run_stream(full.trim_end(), 8);
        r.unwrap();
        assert!(!done, "message_stop came only at EOF");

        let (_, _, r) = run_stream("event: content_block_delta\ndata: {not json\n\n", 3);
        let e = r.unwrap_err();
        assert_eq!(e.status, Status::Upstream);
        assert!(e.message.contains("malformed"), "{}", e.message);

        // Whatever follows message_stop is ignored.
        let after = format!(
            "{full}{}",
            ev(
                "error",
                json!({"type":"error","error":{"type":"overloaded_error","message":"late"}})
            )
        );
        let (chunks, done, r) = run_stream(&after, 16);
        r.unwrap();
        assert!(done);
        assert_eq!(
            assemble(&chunks).choices[0].message.content.as_deref(),
            Some("Héllo, 世界 🌍")
        );
    }

    #[test]
    fn stream_parser_from_the_wire_format() {
        let ep = endpoint("");
        let mut p = Anthropic.stream_parser(&ep);
        let mut out = VecDeque::new();
        assert!(p.feed(text_stream().as_bytes(), &mut out).unwrap());
        p.finish(&mut out).unwrap();
        assert_eq!(out.iter().filter(|c| c.has_payload()).count(), 2);
    }
}
