//! Amazon Bedrock Runtime Converse / ConverseStream (PROVIDERS.md §8): OpenAI-shaped requests
//! mapped to the Converse body, its answers, event-stream frames and errors mapped back.
//!
//! Auth is a Bedrock API key (bearer) or SigV4 ([`super::sigv4::SigV4`], run per request by the
//! HTTP driver). Streams are AWS binary event-stream frames ([`super::eventstream`]); the usage
//! comes in the `metadata` event *after* `messageStop`, so a stream is read to its end.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::classify::{body_excerpt, classify, ErrorParts};
use super::convert::{arguments_of, is_blank, tool_input};
use super::eventstream::{Decoder, Message as Frame};
use super::sigv4::{uri_encode, Credentials, SigV4};
use super::{extra_headers, secret_header, Endpoint, StreamParser, WireFormat};
use crate::config::DeploymentConfig;
use crate::errors::{Error, Status};
use crate::secret::Secret;
use crate::types::{
    unix_now, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, FunctionCall,
    FunctionDelta, Message, ResponseMessage, Tool, ToolCall, ToolCallDelta, Usage,
};

pub struct Bedrock;

/// The SigV4 signing name of Bedrock Runtime (its host says `bedrock-runtime`).
pub const SIGNING_SERVICE: &str = "bedrock";

impl WireFormat for Bedrock {
    fn endpoint(&self, d: &DeploymentConfig, max_output: Option<u64>) -> Result<Endpoint, String> {
        endpoint_in(d, max_output, &|name| std::env::var(name).ok())
    }

    fn request_body(
        &self,
        ep: &Endpoint,
        req: &ChatRequest,
        _stream: bool,
    ) -> Result<Vec<u8>, Error> {
        // The same body for both: ConverseStream says "stream" in its path.
        let body = build_body(ep, req)?;
        serde_json::to_vec(&body)
            .map_err(|e| Error::invalid(format!("request could not be encoded: {e}")))
    }

    fn parse_response(&self, ep: &Endpoint, body: &[u8]) -> Result<ChatResponse, Error> {
        parse_response(&ep.model, body)
    }

    fn parse_error(&self, _ep: &Endpoint, http_status: u16, body: &[u8]) -> Error {
        classify_error(Some(http_status), error_parts(None, body))
    }

    fn parse_error_with_headers(
        &self,
        _ep: &Endpoint,
        http_status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Error {
        classify_error(Some(http_status), error_parts(Some(headers), body))
    }

    fn stream_parser(&self, ep: &Endpoint) -> Box<dyn StreamParser> {
        Box::new(BedrockStream::new(&ep.model))
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoint

/// Looks up an environment variable (a parameter, so that tests need not touch the process's).
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A string setting of `litellm_params`, `os.environ/NAME` read from the environment.
fn setting(d: &DeploymentConfig, key: &str, env: Env) -> Result<Option<String>, String> {
    match d.params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.strip_prefix("os.environ/") {
            Some(name) => match env(name).filter(|v| !v.is_empty()) {
                Some(v) => Ok(Some(v)),
                None => Err(format!(
                    "`litellm_params.{key}` names the environment variable {name}, which is not set"
                )),
            },
            None => Ok((!s.is_empty()).then(|| s.clone())),
        },
        Some(_) => Err(format!("`litellm_params.{key}` must be a string")),
    }
}

fn env_var(env: Env, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// How requests are authenticated.
enum Auth {
    Bearer(Secret),
    SigV4(Credentials),
}

/// Credentials: the deployment's own (`api_key` = a Bedrock API key, or access keys), else the
/// environment's — `AWS_BEARER_TOKEN_BEDROCK` first, as the AWS SDKs take it, then the
/// standard access-key variables.
fn credentials(d: &DeploymentConfig, env: Env) -> Result<Auth, String> {
    let key_id = setting(d, "aws_access_key_id", env)?;
    let secret = setting(d, "aws_secret_access_key", env)?;
    let token = setting(d, "aws_session_token", env)?;
    match (&d.api_key, key_id, secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(
            "give either `api_key` (a Bedrock API key) or `aws_access_key_id` and `aws_secret_access_key`, not both"
                .into(),
        ),
        (Some(key), None, None) => Ok(Auth::Bearer(key.clone())),
        (None, Some(access_key_id), Some(secret)) => Ok(Auth::SigV4(Credentials {
            access_key_id,
            secret_access_key: Secret::new(&secret),
            session_token: token.map(|t| Secret::new(&t)),
        })),
        (None, Some(_), None) | (None, None, Some(_)) => Err(
            "`aws_access_key_id` and `aws_secret_access_key` go together: one of them is missing"
                .into(),
        ),
        (None, None, None) => {
            if let Some(key) = env_var(env, "AWS_BEARER_TOKEN_BEDROCK") {
                return Ok(Auth::Bearer(Secret::new(&key)));
            }
            match (
                env_var(env, "AWS_ACCESS_KEY_ID"),
                env_var(env, "AWS_SECRET_ACCESS_KEY"),
            ) {
                (Some(access_key_id), Some(secret)) => Ok(Auth::SigV4(Credentials {
                    access_key_id,
                    secret_access_key: Secret::new(&secret),
                    session_token: token
                        .or_else(|| env_var(env, "AWS_SESSION_TOKEN"))
                        .map(|t| Secret::new(&t)),
                })),
                _ => Err("no AWS credentials: give `litellm_params.aws_access_key_id` and `aws_secret_access_key` (or a Bedrock API key as `api_key`), or set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_BEARER_TOKEN_BEDROCK".into()),
            }
        }
    }
}

fn endpoint_in(
    d: &DeploymentConfig,
    max_output: Option<u64>,
    env: Env,
) -> Result<Endpoint, String> {
    // Ways of getting credentials this client does not have: refusing beats signing with others.
    for key in [
        "aws_profile_name",
        "aws_role_name",
        "aws_web_identity_token",
    ] {
        if d.params.get(key).is_some_and(|v| !v.is_null()) {
            return Err(format!(
                "`litellm_params.{key}` is not supported: give access keys (`aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`) or a Bedrock API key"
            ));
        }
    }
    let mut ep = Endpoint::common(d, max_output);
    // litellm's `bedrock/converse/<model>` route names the API this module always speaks.
    let model = d.model.strip_prefix("converse/").unwrap_or(&d.model);
    if model.is_empty() {
        return Err("no Bedrock model id in `model_name`".into());
    }
    ep.model = model.to_owned();
    let region = match setting(d, "aws_region_name", env)? {
        Some(r) => Some(r),
        None => setting(d, "region_name", env)?,
    }
    .or_else(|| env_var(env, "AWS_REGION"))
    .or_else(|| env_var(env, "AWS_DEFAULT_REGION"));
    if let Some(r) = &region {
        if !r
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!("`{r}` is not an AWS region name"));
        }
    }
    let no_region = || {
        "no AWS region: set `litellm_params.aws_region_name` (or AWS_REGION / AWS_DEFAULT_REGION)"
            .to_owned()
    };
    let base = match (
        &d.api_base,
        setting(d, "aws_bedrock_runtime_endpoint", env)?,
    ) {
        (Some(b), _) => b.clone(),
        (None, Some(b)) => b,
        (None, None) => {
            let r = region.as_deref().ok_or_else(no_region)?;
            format!("https://bedrock-runtime.{r}.amazonaws.com")
        }
    };
    let base = base.trim_end_matches('/');
    // `:` of versioned ids and `/` of ARNs are encoded; SigV4 encodes the path once more.
    let id = uri_encode(model, true);
    ep.url = format!("{base}/model/{id}/converse");
    ep.stream_url = format!("{base}/model/{id}/converse-stream");
    ep.headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match credentials(d, env)? {
        Auth::Bearer(key) => {
            ep.headers.insert(
                AUTHORIZATION,
                secret_header(&format!("Bearer {}", key.expose()))?,
            );
        }
        Auth::SigV4(credentials) => {
            ep.auth = Some(Arc::new(SigV4 {
                credentials,
                region: region.ok_or_else(no_region)?,
                service: SIGNING_SERVICE.to_owned(),
                content_sha256_header: false,
            }));
        }
    }
    extra_headers(d, &mut ep.headers)?;
    Ok(ep)
}

// ---------------------------------------------------------------------------------------------
// Request

/// The Converse body, borrowing from the request wherever it can.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'a>>,
    #[serde(skip_serializing_if = "InferenceConfig::is_empty")]
    inference_config: InferenceConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    additional_model_request_fields: BTreeMap<&'a str, &'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guardrail_config: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    performance_config: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_metadata: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_model_response_field_paths: Option<&'a Value>,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

/// A Converse content block: `{"text": …}`, `{"image": …}`, `{"toolUse": …}`, ….
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Block<'a> {
    Text(Cow<'a, str>),
    Image(Media<'a>),
    Document(Document<'a>),
    ToolUse(ToolUse<'a>),
    ToolResult(ToolResult<'a>),
    ReasoningContent(Value),
    CachePoint(CachePoint),
    /// A part already in Converse's shape (no OpenAI `type`): sent as given.
    #[serde(untagged)]
    Raw(&'a Value),
}

#[derive(Serialize)]
struct Media<'a> {
    format: &'static str,
    source: Source<'a>,
}

#[derive(Serialize)]
struct Document<'a> {
    format: &'static str,
    name: String,
    source: Source<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Source<'a> {
    /// Base64 text: JSON carries Converse's blob type that way.
    Bytes(&'a str),
    S3Location {
        uri: &'a str,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse<'a> {
    tool_use_id: &'a str,
    name: &'a str,
    input: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolResult<'a> {
    tool_use_id: &'a str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
struct CachePoint {
    #[serde(rename = "type")]
    kind: &'static str,
}

const CACHE_POINT: CachePoint = CachePoint { kind: "default" };

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
}

impl InferenceConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    tools: Vec<ToolEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum ToolEntry<'a> {
    ToolSpec(ToolSpec<'a>),
    CachePoint(CachePoint),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: InputSchema<'a>,
}

#[derive(Serialize)]
struct InputSchema<'a> {
    json: Cow<'a, Value>,
}

/// Request fields mapped to Converse's own fields (or read for the endpoint): never sent as
/// `additionalModelRequestFields`.
const MAPPED_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "timeout",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "stop",
    "stop_sequences",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "user",
    "guardrailConfig",
    "guardrail_config",
    "performanceConfig",
    "performance_config",
    "requestMetadata",
    "request_metadata",
    "additionalModelRequestFields",
    "additional_model_request_fields",
    "additionalModelResponseFieldPaths",
    "additional_model_response_field_paths",
    "region_name",
];

/// OpenAI request fields with no Converse meaning. Sent to the model as extra fields they would
/// be refused ("extraneous key … is not permitted"), so they are left out.
const OPENAI_ONLY_FIELDS: &[&str] = &[
    "n",
    "seed",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "frequency_penalty",
    "presence_penalty",
    "stream_options",
    "response_format",
    "metadata",
    "service_tier",
    "store",
    "modalities",
    "prediction",
    "audio",
    "web_search_options",
    "functions",
    "function_call",
    "reasoning_effort",
    "extra_body",
];

/// Whether an unknown field goes to the model in `additionalModelRequestFields` (`top_k`,
/// Claude's `thinking`, `anthropic_beta`, …).
fn is_model_field(key: &str) -> bool {
    !MAPPED_FIELDS.contains(&key)
        && !OPENAI_ONLY_FIELDS.contains(&key)
        && !key.starts_with("aws_")
        && !key.starts_with("mock_")
}

fn build_body<'a>(ep: &'a Endpoint, req: &'a ChatRequest) -> Result<Body<'a>, Error> {
    let d = &ep.defaults;
    let (system, messages) = convert_messages(&req.messages)?;

    let stop = req
        .stop
        .as_ref()
        .filter(|v| !v.is_null())
        .or_else(|| req.extra.get("stop_sequences"))
        .or_else(|| d.get("stop"))
        .or_else(|| d.get("stop_sequences"));
    let inference_config = InferenceConfig {
        max_tokens: req
            .max_output_tokens()
            .or_else(|| d.get("max_completion_tokens").and_then(Value::as_u64))
            .or_else(|| d.get("max_tokens").and_then(Value::as_u64)),
        // OpenAI's range is 0–2; every Bedrock model takes 0–1.
        temperature: req
            .temperature
            .or_else(|| d.get("temperature").and_then(Value::as_f64))
            .map(|t| t.clamp(0.0, 1.0)),
        top_p: req.top_p.or_else(|| d.get("top_p").and_then(Value::as_f64)),
        stop_sequences: stop.map(stop_sequences).unwrap_or_default(),
    };

    let history_has_tools = messages
        .iter()
        .flat_map(|t| t.content.iter())
        .any(|b| matches!(b, Block::ToolUse(_) | Block::ToolResult(_)));
    let tools = req.tools.as_ref().filter(|t| !t.is_empty());
    let choice = match tools {
        Some(_) => tool_choice(req.tool_choice.as_ref().or_else(|| d.get("tool_choice")))?,
        None => ToolChoice::Default,
    };
    // "The toolConfig field must be defined when using toolUse and toolResult content blocks":
    // tools stay declared whenever the history uses them, even with `none` (which Converse
    // lacks: it is said by leaving `toolChoice` out) or when the caller sent no `tools`.
    let tool_config = match (tools, choice) {
        (Some(_), ToolChoice::None) if !history_has_tools => None,
        (Some(tools), choice) => Some(ToolConfig {
            tools: tool_entries(tools),
            tool_choice: match choice {
                ToolChoice::Is(v) => Some(v),
                ToolChoice::Default | ToolChoice::None => None,
            },
        }),
        (None, _) => history_tools(&messages),
    };

    // Model-specific fields: the caller's own object, then the deployment's and the request's
    // unknown fields (the request's win).
    let mut additional: BTreeMap<&str, &Value> = BTreeMap::new();
    if let Some(Value::Object(o)) = ep
        .param(req, "additionalModelRequestFields")
        .or_else(|| ep.param(req, "additional_model_request_fields"))
    {
        additional.extend(o.iter().map(|(k, v)| (k.as_str(), v)));
    }
    for (k, v) in d {
        if is_model_field(k) && !v.is_null() && !Endpoint::request_sets(req, k) {
            additional.insert(k, v);
        }
    }
    for (k, v) in &req.extra {
        if is_model_field(k) && !v.is_null() {
            additional.insert(k, v);
        }
    }

    let either = |a: &str, b: &str| ep.param(req, a).or_else(|| ep.param(req, b));
    Ok(Body {
        messages,
        system,
        inference_config,
        tool_config,
        additional_model_request_fields: additional,
        guardrail_config: either("guardrailConfig", "guardrail_config"),
        performance_config: either("performanceConfig", "performance_config"),
        request_metadata: either("requestMetadata", "request_metadata"),
        additional_model_response_field_paths: either(
            "additionalModelResponseFieldPaths",
            "additional_model_response_field_paths",
        ),
    })
}

/// `stop` as a string or an array; empty sequences are refused, so dropped.
fn stop_sequences(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) if !s.is_empty() => vec![s.as_str()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

fn tool_entries(tools: &[Tool]) -> Vec<ToolEntry<'_>> {
    let mut out = Vec::with_capacity(tools.len() + 1);
    let mut cache = false;
    for t in tools {
        let f = &t.function;
        let json = match &f.parameters {
            Some(p @ Value::Object(o)) if o.contains_key("type") => Cow::Borrowed(p),
            Some(Value::Object(o)) => {
                let mut o = o.clone();
                o.insert("type".into(), "object".into());
                Cow::Owned(Value::Object(o))
            }
            _ => Cow::Owned(json!({"type": "object", "properties": {}})),
        };
        out.push(ToolEntry::ToolSpec(ToolSpec {
            name: &f.name,
            description: f.description.as_deref().filter(|s| !s.is_empty()),
            input_schema: InputSchema { json },
        }));
        cache |= t.extra.contains_key("cache_control") || f.extra.contains_key("cache_control");
    }
    // A cache point after the tools caches every definition before it.
    if cache {
        out.push(ToolEntry::CachePoint(CACHE_POINT));
    }
    out
}

/// Tool definitions for a history that uses tools when the request declares none: one per name
/// used, with an open schema, and no `toolChoice`.
fn history_tools<'a>(turns: &[Turn<'a>]) -> Option<ToolConfig<'a>> {
    let mut names: Vec<&'a str> = Vec::new();
    let mut results = false;
    for b in turns.iter().flat_map(|t| t.content.iter()) {
        match b {
            Block::ToolUse(u) if !names.contains(&u.name) => names.push(u.name),
            Block::ToolResult(_) => results = true,
            _ => {}
        }
    }
    if names.is_empty() && !results {
        return None;
    }
    if names.is_empty() {
        names.push("tool");
    }
    Some(ToolConfig {
        tools: names
            .into_iter()
            .map(|name| {
                ToolEntry::ToolSpec(ToolSpec {
                    name,
                    description: Some("A tool used earlier in this conversation."),
                    input_schema: InputSchema {
                        json: Cow::Owned(json!({"type": "object", "properties": {}})),
                    },
                })
            })
            .collect(),
        tool_choice: None,
    })
}

enum ToolChoice {
    /// Not given: the model decides (Converse's default, `auto`).
    Default,
    /// `none`.
    None,
    Is(Value),
}

fn tool_choice(choice: Option<&Value>) -> Result<ToolChoice, Error> {
    let bad = || {
        Error::invalid(
            "request JSON at `tool_choice`: must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\":…}}",
        )
    };
    Ok(match choice {
        None | Some(Value::Null) => ToolChoice::Default,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Is(json!({"auto": {}})),
            "required" | "any" => ToolChoice::Is(json!({"any": {}})),
            "none" => ToolChoice::None,
            _ => return Err(bad()),
        },
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?;
                ToolChoice::Is(json!({"tool": {"name": name}}))
            }
            // Already Converse's shape.
            None if o.len() == 1
                && (o.contains_key("auto") || o.contains_key("any") || o.contains_key("tool")) =>
            {
                ToolChoice::Is(Value::Object(o.clone()))
            }
            _ => return Err(bad()),
        },
        Some(_) => return Err(bad()),
    })
}

/// The text of the user turn put first when the conversation does not open with one, and of
/// a tool result that has none (Converse refuses blank text).
const PLACEHOLDER_TEXT: &str = ".";

/// Numbers the documents of one request: Converse wants their names unique.
#[derive(Default)]
struct Docs(usize);

/// Splits off the system blocks and turns the rest into alternating user / assistant turns.
fn convert_messages(messages: &[Message]) -> Result<(Vec<Block<'_>>, Vec<Turn<'_>>), Error> {
    let mut docs = Docs::default();
    let mut system: Vec<Block> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let cache = m.extra.contains_key("cache_control");
        let (role, mut blocks) = match m.role.as_str() {
            "system" | "developer" => {
                let mut own: Vec<Block> = content_blocks(&m.content, i, &mut docs)?
                    .into_iter()
                    .filter(|b| matches!(b, Block::Text(_) | Block::CachePoint(_)))
                    .collect();
                if cache && !own.is_empty() {
                    own.push(Block::CachePoint(CACHE_POINT));
                }
                system.append(&mut own);
                continue;
            }
            "assistant" => ("assistant", assistant_blocks(m, i, &mut docs)?),
            "tool" | "function" => ("user", vec![tool_result(m, i, &mut docs)?]),
            // `user`, and roles Converse has no name for: their content is the caller's.
            _ => ("user", content_blocks(&m.content, i, &mut docs)?),
        };
        if blocks.is_empty() {
            continue; // Converse refuses empty turns; an empty message says nothing anyway.
        }
        if cache {
            blocks.push(Block::CachePoint(CACHE_POINT));
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
        // Tool results open the user turn that answers the tool uses.
        if t.role == "user" && t.content.iter().any(|b| matches!(b, Block::ToolResult(_))) {
            let (mut results, rest): (Vec<Block>, Vec<Block>) = std::mem::take(&mut t.content)
                .into_iter()
                .partition(|b| matches!(b, Block::ToolResult(_)));
            results.extend(rest);
            t.content = results;
        }
    }
    // A final assistant turn (a prefill) must not end in whitespace.
    if let Some(t) = turns.last_mut().filter(|t| t.role == "assistant") {
        if let Some(Block::Text(text)) = t.content.last_mut() {
            if let Cow::Borrowed(s) = text {
                *text = Cow::Borrowed(s.trim_end());
            }
            if text.is_empty() {
                t.content.pop();
            }
        }
        if t.content.is_empty() {
            turns.pop();
        }
    }
    // The conversation must open with a user turn (and have one at all).
    if !matches!(turns.first(), Some(t) if t.role == "user") {
        turns.insert(
            0,
            Turn {
                role: "user",
                content: vec![Block::Text(Cow::Borrowed(PLACEHOLDER_TEXT))],
            },
        );
    }
    Ok((system, turns))
}

/// A message's content as blocks: a string is one text block; blank text is left out.
fn content_blocks<'a>(
    content: &'a Option<Value>,
    msg: usize,
    docs: &mut Docs,
) -> Result<Vec<Block<'a>>, Error> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if is_blank(s) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Block::Text(Cow::Borrowed(s))]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                if let Some(b) = part_block(p, msg, docs)? {
                    out.push(b);
                    if p.get("cache_control").is_some() {
                        out.push(Block::CachePoint(CACHE_POINT));
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(Error::invalid(format!(
            "request JSON at `messages[{msg}].content`: must be a string or an array of parts"
        ))),
    }
}

/// One OpenAI content part as a Converse block.
fn part_block<'a>(p: &'a Value, msg: usize, docs: &mut Docs) -> Result<Option<Block<'a>>, Error> {
    let kind = match p {
        Value::String(s) if is_blank(s) => return Ok(None),
        Value::String(s) => return Ok(Some(Block::Text(Cow::Borrowed(s)))),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some(kind) => kind,
            // `{"text": …}`, `{"document": …}`, `{"cachePoint": …}`: Converse's own shape.
            None if o.len() == 1 => return Ok(Some(Block::Raw(p))),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok(Some(match kind {
        "text" => match p.get("text").and_then(Value::as_str) {
            Some(t) if !is_blank(t) => Block::Text(Cow::Borrowed(t)),
            _ => return Ok(None),
        },
        "image_url" => {
            let url = match p.get("image_url") {
                Some(Value::String(u)) => u.as_str(),
                Some(v) => v.get("url").and_then(Value::as_str).unwrap_or(""),
                None => "",
            };
            media_block(url, msg, "image_url", None, docs)?
        }
        "file" => {
            let file = p.get("file");
            let data = file
                .and_then(|f| f.get("file_data").or_else(|| f.get("file_id")))
                .and_then(Value::as_str)
                .unwrap_or("");
            let name = file.and_then(|f| f.get("filename")).and_then(Value::as_str);
            media_block(data, msg, "file.file_data", Some(name), docs)?
        }
        other => {
            return Err(Error::invalid(format!(
            "request JSON at `messages[{msg}].content`: Bedrock Converse takes no `{other}` parts"
        )))
        }
    }))
}

/// Converse's image format of a media type.
fn image_format(media_type: &str) -> Option<&'static str> {
    Some(match media_type {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return None,
    })
}

/// Converse's document format of a media type.
fn document_format(media_type: &str) -> Option<&'static str> {
    Some(match media_type {
        "application/pdf" => "pdf",
        "text/csv" => "csv",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "text/html" => "html",
        "text/plain" => "txt",
        "text/markdown" => "md",
        _ => return None,
    })
}

/// The format of an S3 object, from its extension.
fn format_of_extension(uri: &str) -> Option<(&'static str, bool)> {
    let ext = uri.rsplit_once('.')?.1.to_ascii_lowercase();
    let image = match ext.as_str() {
        "jpg" => "image/jpeg".to_owned(),
        "png" | "jpeg" | "gif" | "webp" => format!("image/{ext}"),
        _ => String::new(),
    };
    if let Some(f) = image_format(&image) {
        return Some((f, true));
    }
    let f = match ext.as_str() {
        "pdf" => "pdf",
        "csv" => "csv",
        "doc" => "doc",
        "docx" => "docx",
        "xls" => "xls",
        "xlsx" => "xlsx",
        "html" => "html",
        "txt" => "txt",
        "md" => "md",
        _ => return None,
    };
    Some((f, false))
}

/// A document name Converse accepts (letters, digits, single spaces, `-()[]`), unique in the
/// request.
fn document_name(filename: Option<&str>, docs: &mut Docs) -> String {
    docs.0 += 1;
    let stem = filename
        .map(|f| f.rsplit_once('.').map_or(f, |(s, _)| s))
        .unwrap_or("");
    let mut name = String::with_capacity(stem.len() + 4);
    for c in stem.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') {
            name.push(c);
        } else if !name.ends_with(' ') && !name.is_empty() {
            name.push(' ');
        }
    }
    let name = name.trim_end();
    if name.is_empty() {
        format!("document {}", docs.0)
    } else {
        format!("{name} {}", docs.0)
    }
}

/// An image or document from a base64 data URL (`data:image/png;base64,…`) or an `s3://` URI:
/// Converse fetches nothing from the web. `document`: a `file` part, with its file name.
fn media_block<'a>(
    url: &'a str,
    msg: usize,
    field: &str,
    document: Option<Option<&str>>,
    docs: &mut Docs,
) -> Result<Block<'a>, Error> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "request JSON at `messages[{msg}].content`: {field} {why}"
        ))
    };
    let (format, is_image, source) = if let Some(rest) = url.strip_prefix("data:") {
        let (head, data) = rest
            .split_once(',')
            .ok_or_else(|| bad("is a data URL without data"))?;
        let media_type = head
            .strip_suffix(";base64")
            .ok_or_else(|| bad("must be a base64 data URL"))?;
        let (format, is_image) = match (image_format(media_type), document_format(media_type)) {
            (Some(f), _) => (f, true),
            (None, Some(f)) => (f, false),
            (None, None) => {
                return Err(bad(&format!(
                    "has a media type Bedrock does not take ({media_type})"
                )))
            }
        };
        (format, is_image, Source::Bytes(data))
    } else if url.starts_with("s3://") {
        let (format, is_image) = format_of_extension(url)
            .ok_or_else(|| bad("names an S3 object whose format its extension does not tell"))?;
        (format, is_image, Source::S3Location { uri: url })
    } else {
        return Err(bad(
            "must be a base64 data URL or an s3:// URI (Bedrock fetches nothing from the web)",
        ));
    };
    Ok(if is_image {
        Block::Image(Media { format, source })
    } else {
        Block::Document(Document {
            format,
            name: document_name(document.flatten(), docs),
            source,
        })
    })
}

/// An assistant message: its reasoning blocks (sent back as given), text, then tool uses.
fn assistant_blocks<'a>(
    m: &'a Message,
    msg: usize,
    docs: &mut Docs,
) -> Result<Vec<Block<'a>>, Error> {
    let mut out = Vec::new();
    // litellm's `thinking_blocks` (Anthropic's shape): a signed reasoning turn must be sent
    // back with its signature when tools are in play.
    if let Some(Value::Array(thinking)) = m.extra.get("thinking_blocks") {
        for b in thinking {
            let kind = b.get("type").and_then(Value::as_str);
            if kind == Some("redacted_thinking") {
                if let Some(data) = b.get("data") {
                    out.push(Block::ReasoningContent(json!({"redactedContent": data})));
                }
            } else if let Some(text) = b.get("thinking").and_then(Value::as_str) {
                let mut r = json!({"text": text});
                if let Some(sig) = b.get("signature").filter(|s| s.is_string()) {
                    r["signature"] = sig.clone();
                }
                out.push(Block::ReasoningContent(json!({"reasoningText": r})));
            }
        }
    }
    out.extend(content_blocks(&m.content, msg, docs)?);
    for call in m.tool_calls.iter().flatten() {
        out.push(Block::ToolUse(ToolUse {
            tool_use_id: &call.id,
            name: &call.function.name,
            input: tool_input(&call.function.arguments),
        }));
    }
    Ok(out)
}

/// A `tool` (or legacy `function`) message as a `toolResult` block.
fn tool_result<'a>(m: &'a Message, msg: usize, docs: &mut Docs) -> Result<Block<'a>, Error> {
    let tool_use_id = m
        .tool_call_id
        .as_deref()
        .or(m.name.as_deref())
        .unwrap_or_default();
    let mut content: Vec<Block> = content_blocks(&m.content, msg, docs)?
        .into_iter()
        .filter(|b| !matches!(b, Block::CachePoint(_)))
        .collect();
    if content.is_empty() {
        content.push(Block::Text(Cow::Borrowed(PLACEHOLDER_TEXT)));
    }
    Ok(Block::ToolResult(ToolResult {
        tool_use_id,
        content,
    }))
}

// ---------------------------------------------------------------------------------------------
// Response

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    output: Option<WireOutput>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireOutput {
    #[serde(default)]
    message: Option<WireMessage>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Vec<WireBlock>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBlock {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<WireToolUse>,
    #[serde(default)]
    reasoning_content: Option<WireReasoning>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireToolUse {
    #[serde(default)]
    tool_use_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReasoning {
    #[serde(default)]
    reasoning_text: Option<WireReasoningText>,
}

#[derive(Deserialize)]
struct WireReasoningText {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_write_input_tokens: Option<u64>,
}

impl WireUsage {
    /// The prompt as OpenAI counts it: cached and cache-written input included.
    fn usage(&self) -> Usage {
        Usage::new(
            self.input_tokens
                .unwrap_or(0)
                .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
                .saturating_add(self.cache_write_input_tokens.unwrap_or(0)),
            self.output_tokens.unwrap_or(0),
        )
    }
}

/// Converse's `stopReason` as an OpenAI `finish_reason`; an error for the reasons that say the
/// answer is broken (another deployment may well do better).
fn finish_reason(stop_reason: &str) -> Result<&'static str, Error> {
    Ok(match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        "malformed_model_output" | "malformed_tool_use" => {
            return Err(Error::upstream(format!(
                "the model's answer was unusable (stopReason {stop_reason})"
            )))
        }
        // end_turn, stop_sequence, and reasons added after this was written.
        _ => "stop",
    })
}

/// An id for an answer: Converse gives none in its body.
fn new_id() -> String {
    format!("chatcmpl-bedrock-{:016x}", fastrand::u64(..))
}

fn parse_response(model: &str, body: &[u8]) -> Result<ChatResponse, Error> {
    let resp: WireResponse = serde_json::from_slice(body).map_err(|e| {
        Error::upstream(format!(
            "upstream answer is not a Converse response ({e}): {}",
            body_excerpt(body)
        ))
    })?;
    let Some(message) = resp.output.and_then(|o| o.message) else {
        // A 200 without an answer: an error body behind a gateway, or nothing usable.
        let parts = error_parts(None, body);
        if !parts.message.is_empty() && parts.message != body_excerpt(body) {
            return Err(classify_error(None, parts));
        }
        return Err(Error::upstream(format!(
            "upstream answer is not a Converse response (no output.message): {}",
            body_excerpt(body)
        )));
    };
    let mut text = String::new();
    let mut saw_text = false;
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for b in message.content {
        if let Some(t) = b.text {
            saw_text = true;
            text.push_str(&t);
        }
        if let Some(t) = b
            .reasoning_content
            .and_then(|r| r.reasoning_text)
            .and_then(|r| r.text)
        {
            reasoning.push_str(&t);
        }
        if let Some(u) = b.tool_use {
            tool_calls.push(ToolCall {
                id: u.tool_use_id,
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: u.name,
                    arguments: arguments_of(u.input),
                },
            });
        }
    }
    let tool_calls = (!tool_calls.is_empty()).then_some(tool_calls);
    let finish = match resp.stop_reason.as_deref() {
        Some(r) => finish_reason(r)?,
        None if tool_calls.is_some() => "tool_calls",
        None => "stop",
    };
    Ok(ChatResponse {
        id: new_id(),
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: model.to_owned(),
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
        usage: resp.usage.map(|u| u.usage()),
        llmr: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Deserialize)]
struct WireError {
    #[serde(default, alias = "Message")]
    message: Option<String>,
    #[serde(default, rename = "__type")]
    kind: Option<String>,
}

/// An exception name without its namespace: `ValidationException:http://internal.amazon.com/…`
/// (the header) and `com.amazon.coral.validate#ValidationException` (`__type`) both name
/// `ValidationException`.
fn exception_name(raw: &str) -> &str {
    let name = raw.split(':').next().unwrap_or(raw);
    name.rsplit('#').next().unwrap_or(name).trim()
}

/// The exception name (the `x-amzn-ErrorType` header, else the body's `__type`) and the message
/// of an error answer. Other JSON (a gateway in front of Bedrock) is read as OpenAI's envelopes
/// are; a non-JSON body becomes its excerpt.
fn error_parts(headers: Option<&HeaderMap>, body: &[u8]) -> ErrorParts {
    let header_kind = headers
        .and_then(|h| h.get("x-amzn-errortype"))
        .and_then(|v| v.to_str().ok())
        .map(exception_name)
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    let mut parts = match serde_json::from_slice::<WireError>(body) {
        Ok(WireError { message, kind }) if message.is_some() || kind.is_some() => ErrorParts {
            code: None,
            kind: kind.as_deref().map(exception_name).map(str::to_owned),
            message: message.unwrap_or_default(),
        },
        _ => super::openai::error_parts(body),
    };
    if header_kind.is_some() {
        parts.kind = header_kind;
    }
    parts
}

/// The HTTP status Bedrock answers each exception with (its API reference), for exceptions
/// that arrive inside a 200 stream.
fn http_status_of(exception: &str) -> Option<u16> {
    Some(match exception.to_ascii_lowercase().as_str() {
        "validationexception" | "servicequotaexceededexception" => 400,
        "accessdeniedexception"
        | "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "expiredtokenexception" => 403,
        "resourcenotfoundexception" => 404,
        "modeltimeoutexception" => 408,
        "modelerrorexception" | "modelstreamerrorexception" => 424,
        "throttlingexception" | "modelnotreadyexception" => 429,
        "internalserverexception" => 500,
        "serviceunavailableexception" => 503,
        _ => return None,
    })
}

/// What an exception name settles whatever the HTTP status said.
fn status_of_exception(exception: &str) -> Option<Status> {
    Some(match exception.to_ascii_lowercase().as_str() {
        "accessdeniedexception"
        | "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "incompletesignatureexception"
        | "missingauthenticationtokenexception"
        | "expiredtokenexception" => Status::Auth,
        "throttlingexception" | "modelnotreadyexception" | "servicequotaexceededexception" => {
            Status::RateLimited
        }
        "modeltimeoutexception" => Status::Timeout,
        "modelerrorexception"
        | "modelstreamerrorexception"
        | "internalserverexception"
        | "serviceunavailableexception" => Status::Upstream,
        "resourcenotfoundexception" => Status::BadRequest,
        _ => return None,
    })
}

/// Classifies a Bedrock error. `http_status` is `None` for an exception frame in a stream: the
/// status its exception stands for is used, so a `throttlingException` frame cools the
/// deployment down like a 429 would.
fn classify_error(http_status: Option<u16>, parts: ErrorParts) -> Error {
    let kind = parts.kind.clone();
    let status = http_status.or_else(|| kind.as_deref().and_then(http_status_of));
    let mut e = classify(status, parts);
    if let Some(k) = kind.as_deref() {
        if !matches!(e.status, Status::ContextOverflow | Status::ContentPolicy) {
            if let Some(s) = status_of_exception(k) {
                e.status = s;
            }
        }
        // An account quota: only another account (deployment) can help soon.
        if k.eq_ignore_ascii_case("ServiceQuotaExceededException") {
            e.quota = true;
        }
    }
    e
}

/// An `exception` frame: `:exception-type` names it, the payload is `{"message": …}`
/// (`modelStreamErrorException` adds `originalStatusCode` / `originalMessage`).
fn exception_frame(frame: &Frame) -> Error {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Payload {
        #[serde(default, alias = "Message")]
        message: Option<String>,
        #[serde(default)]
        original_message: Option<String>,
    }
    let kind = frame.header_str(":exception-type").unwrap_or("exception");
    let p: Payload = serde_json::from_slice(&frame.payload).unwrap_or_default();
    let mut message = p.message.unwrap_or_else(|| body_excerpt(&frame.payload));
    if let Some(original) = p
        .original_message
        .filter(|m| !m.is_empty() && *m != message)
    {
        message = format!("{message}: {original}");
    }
    classify_error(
        None,
        ErrorParts {
            code: None,
            kind: Some(exception_name(kind).to_owned()),
            message,
        },
    )
}

/// An `error` frame: `:error-code` and `:error-message` headers.
fn error_frame(frame: &Frame) -> Error {
    let code = frame.header_str(":error-code").unwrap_or("");
    let message = frame.header_str(":error-message").unwrap_or("");
    classify_error(
        None,
        ErrorParts {
            code: None,
            kind: (!code.is_empty()).then(|| exception_name(code).to_owned()),
            message: if message.is_empty() && !code.is_empty() {
                format!("Bedrock stream error {code}")
            } else {
                message.to_owned()
            },
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Stream

/// ConverseStream: event-stream frames from `messageStart` to `metadata`, mapped to OpenAI
/// chunks.
struct BedrockStream {
    decoder: Decoder,
    id: Arc<str>,
    model: Arc<str>,
    created: u64,
    /// Tool blocks seen so far: (Converse block index, OpenAI tool index, got arguments).
    tools: Vec<(u64, u32, bool)>,
    /// `messageStop` was seen: the answer is whole (usage may still follow).
    stopped: bool,
    /// `metadata` was seen: nothing more is expected.
    done: bool,
}

/// The fields of every stream event this parser reads (each event uses some of them).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamEvent {
    #[serde(default)]
    content_block_index: Option<u64>,
    #[serde(default)]
    start: Option<StartBlock>,
    #[serde(default)]
    delta: Option<EventDelta>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartBlock {
    #[serde(default)]
    tool_use: Option<WireToolUse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventDelta {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<ToolUseDelta>,
    #[serde(default)]
    reasoning_content: Option<ReasoningDelta>,
}

#[derive(Deserialize)]
struct ToolUseDelta {
    #[serde(default)]
    input: Option<String>,
}

#[derive(Deserialize)]
struct ReasoningDelta {
    #[serde(default)]
    text: Option<String>,
}

impl BedrockStream {
    fn new(model: &str) -> BedrockStream {
        BedrockStream {
            decoder: Decoder::new(),
            id: new_id().into(),
            model: model.into(),
            created: unix_now(),
            tools: Vec::new(),
            stopped: false,
            done: false,
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

    fn on_frame(&mut self, frame: &Frame, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        match frame.header_str(":message-type") {
            Some("event") => {}
            Some("exception") => return Err(exception_frame(frame)),
            Some("error") => return Err(error_frame(frame)),
            // Message types added after this was written.
            _ => return Ok(()),
        }
        let event = frame.header_str(":event-type").unwrap_or("");
        let ev: StreamEvent = serde_json::from_slice(&frame.payload).map_err(|e| {
            Error::upstream(format!(
                "malformed `{event}` stream event ({e}): {}",
                body_excerpt(&frame.payload)
            ))
        })?;
        match event {
            "messageStart" => out.push_back(self.chunk(
                Delta {
                    role: Some("assistant".to_owned()),
                    ..Delta::default()
                },
                None,
            )),
            "contentBlockStart" => {
                let (Some(tool), Some(at)) =
                    (ev.start.and_then(|s| s.tool_use), ev.content_block_index)
                else {
                    return Ok(());
                };
                let index = self.tools.len() as u32;
                self.tools.push((at, index, false));
                out.push_back(self.chunk(
                    Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index,
                            id: Some(tool.tool_use_id),
                            kind: Some("function".to_owned()),
                            function: Some(FunctionDelta {
                                name: Some(tool.name),
                                arguments: Some(String::new()),
                            }),
                        }]),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            "contentBlockDelta" => {
                let Some(d) = ev.delta else { return Ok(()) };
                if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                    out.push_back(self.chunk(
                        Delta {
                            content: Some(t),
                            ..Delta::default()
                        },
                        None,
                    ));
                }
                if let Some(t) = d.reasoning_content.and_then(|r| r.text) {
                    if !t.is_empty() {
                        out.push_back(self.chunk(
                            Delta {
                                reasoning_content: Some(t),
                                ..Delta::default()
                            },
                            None,
                        ));
                    }
                }
                if let Some(json) = d.tool_use.and_then(|u| u.input).filter(|j| !j.is_empty()) {
                    // Fragments of a block whose start was never seen have no call to join.
                    let Some(tool) = self
                        .tools
                        .iter_mut()
                        .find(|t| Some(t.0) == ev.content_block_index)
                    else {
                        return Ok(());
                    };
                    tool.2 = true;
                    let index = tool.1;
                    out.push_back(self.tool_delta(index, json));
                }
            }
            "contentBlockStop" => {
                // A tool without parameters may stream no input at all: its arguments are `{}`.
                if let Some(tool) = self
                    .tools
                    .iter_mut()
                    .find(|t| Some(t.0) == ev.content_block_index && !t.2)
                {
                    tool.2 = true;
                    let index = tool.1;
                    out.push_back(self.tool_delta(index, "{}".to_owned()));
                }
            }
            "messageStop" => {
                let finish = match ev.stop_reason.as_deref() {
                    Some(r) => finish_reason(r)?,
                    None if !self.tools.is_empty() => "tool_calls",
                    None => "stop",
                };
                out.push_back(self.chunk(Delta::default(), Some(finish)));
                self.stopped = true;
            }
            "metadata" => {
                if let Some(u) = ev.usage {
                    let mut chunk = self.chunk(Delta::default(), None);
                    chunk.choices.clear();
                    chunk.usage = Some(u.usage());
                    out.push_back(chunk);
                }
                self.done = true;
            }
            // Event types added after this was written.
            _ => {}
        }
        Ok(())
    }
}

impl StreamParser for BedrockStream {
    fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<bool, Error> {
        if self.done {
            return Ok(true);
        }
        self.decoder.push(bytes);
        loop {
            match self.decoder.next_message() {
                Ok(Some(frame)) => {
                    self.on_frame(&frame, out)?;
                    if self.done {
                        return Ok(true);
                    }
                }
                Ok(None) => return Ok(false),
                Err(e) => {
                    return Err(Error::upstream(format!(
                        "malformed Bedrock event stream: {e}"
                    )))
                }
            }
        }
    }

    fn finish(&mut self, _out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        if let Err(e) = self.decoder.finish() {
            return Err(Error::upstream(format!(
                "Bedrock event stream cut short: {e}"
            )));
        }
        if self.stopped {
            // The answer is whole; only the usage (metadata) is missing.
            Ok(())
        } else {
            Err(Error::upstream(
                "stream ended before it was complete (no messageStop)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::providers::eventstream::{encode, event, exception, HeaderValue as H};
    use crate::types::StreamAssembler;
    use std::collections::HashMap;

    const MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn deployment(entry: &str) -> DeploymentConfig {
        let c = config::parse(&format!(r#"{{"global_llm_configs":[{entry}]}}"#)).unwrap();
        c.deployments.into_iter().next().unwrap()
    }

    fn entry(params: &str) -> String {
        format!(
            r#"{{"provider":"BEDROCK","model_name":"{MODEL}","litellm_params":{{"timeout":9{params}}}}}"#
        )
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn endpoint_env(params: &str, env: &[(&str, &str)]) -> Result<Endpoint, String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        endpoint_in(&deployment(&entry(params)), None, &|k| env.get(k).cloned())
    }

    fn keys() -> String {
        format!(
            r#","aws_region_name":"us-west-2","aws_access_key_id":"{AKID}","aws_secret_access_key":"{SECRET}""#
        )
    }

    fn endpoint() -> Endpoint {
        endpoint_env(&keys(), &[]).unwrap()
    }

    fn endpoint_params(params: &str) -> Endpoint {
        endpoint_env(&format!("{}{params}", keys()), &[]).unwrap()
    }

    fn body_of(ep: &Endpoint, request: &str) -> Value {
        let req = ChatRequest::from_json(request).unwrap();
        serde_json::from_slice(&Bedrock.request_body(ep, &req, false).unwrap()).unwrap()
    }

    fn body(request: &str) -> Value {
        body_of(&endpoint(), request)
    }

    /// The error of a request refused by parsing (llmr's schema) or by the translation.
    fn body_err(request: &str) -> Error {
        let req = match ChatRequest::from_json(request) {
            Ok(r) => r,
            Err(e) => return e,
        };
        Bedrock.request_body(&endpoint(), &req, false).unwrap_err()
    }

    fn sign(ep: &Endpoint, url: &str, body: &[u8]) -> HeaderMap {
        let mut h = ep.headers.clone();
        let auth = ep.auth.as_ref().expect("SigV4");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(auth.authorize(url, body, &mut h)).unwrap();
        h
    }

    // -----------------------------------------------------------------------------------------
    // Endpoint

    #[test]
    fn endpoint_urls_and_sigv4_from_params() {
        let ep = endpoint();
        assert_eq!(
            ep.url,
            "https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
        );
        assert_eq!(
            ep.stream_url,
            "https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
        );
        assert_eq!(ep.headers[CONTENT_TYPE], "application/json");
        assert!(
            ep.headers.get(AUTHORIZATION).is_none(),
            "signed per request"
        );
        assert!(!format!("{ep:?}").contains(SECRET), "no secret in Debug");
        for k in [
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_region_name",
        ] {
            assert!(!ep.defaults.contains_key(k), "{k} is never sent");
        }
        let h = sign(&ep, &ep.url, b"{}");
        let auth = h[AUTHORIZATION].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(auth.contains("/us-west-2/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="), "{auth}");
        assert!(h[AUTHORIZATION].is_sensitive());
        assert!(h.get("x-amz-security-token").is_none());
    }

    #[test]
    fn model_ids_are_encoded_in_the_path() {
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0";
        let d = deployment(&format!(
            r#"{{"provider":"AWS_BEDROCK","model_name":"{arn}","litellm_params":{{"api_key":"k-1234567890","aws_region_name":"us-east-1"}}}}"#
        ));
        let ep = endpoint_in(&d, None, &no_env).unwrap();
        assert_eq!(
            ep.url,
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-sonnet-4-20250514-v1%3A0/converse"
        );
        // litellm's `converse/` route prefix names this API.
        let d = deployment(&format!(
            r#"{{"provider":"BEDROCK","model_name":"converse/{MODEL}","litellm_params":{{"api_key":"k","aws_region_name":"eu-west-1"}}}}"#
        ));
        let ep = endpoint_in(&d, None, &no_env).unwrap();
        assert_eq!(ep.model, MODEL);
        assert!(ep
            .url
            .ends_with("/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"));
    }

    #[test]
    fn bearer_api_key_and_api_base() {
        let ep = endpoint_env(
            r#","api_key":"ABSKbedrockkey123","aws_region_name":"us-east-1""#,
            &[],
        )
        .unwrap();
        assert_eq!(ep.headers[AUTHORIZATION], "Bearer ABSKbedrockkey123");
        assert!(ep.headers[AUTHORIZATION].is_sensitive());
        assert!(ep.auth.is_none());
        // api_base replaces the host; a bearer key needs no region.
        let ep = endpoint_env(
            r#","api_key":"ABSKbedrockkey123","api_base":"http://127.0.0.1:9/t/","extra_headers":{"x-trace":"1"}"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            ep.url,
            "http://127.0.0.1:9/t/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
        );
        assert_eq!(ep.headers["x-trace"], "1");
        let ep = endpoint_params(
            r#","aws_bedrock_runtime_endpoint":"https://vpce-1.bedrock-runtime.us-west-2.vpce.amazonaws.com""#,
        );
        assert!(ep
            .url
            .starts_with("https://vpce-1.bedrock-runtime.us-west-2.vpce.amazonaws.com/model/"));
    }

    #[test]
    fn credentials_from_the_environment() {
        // Access keys with a session token, region from AWS_REGION.
        let ep = endpoint_env(
            "",
            &[
                ("AWS_REGION", "eu-central-1"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", AKID),
                ("AWS_SECRET_ACCESS_KEY", SECRET),
                ("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEtoken"),
            ],
        )
        .unwrap();
        assert!(ep
            .url
            .starts_with("https://bedrock-runtime.eu-central-1.amazonaws.com/"));
        let h = sign(&ep, &ep.url, b"{}");
        assert_eq!(h["x-amz-security-token"], "FwoGZXIvYXdzEtoken");
        let auth = h[AUTHORIZATION].to_str().unwrap();
        assert!(
            auth.contains("/eu-central-1/bedrock/aws4_request"),
            "{auth}"
        );
        assert!(
            auth.contains("x-amz-security-token"),
            "the token is signed: {auth}"
        );
        // AWS_DEFAULT_REGION when AWS_REGION is unset; a Bedrock API key first.
        let ep = endpoint_env(
            "",
            &[
                ("AWS_DEFAULT_REGION", "ap-south-1"),
                ("AWS_BEARER_TOKEN_BEDROCK", "ABSKenvkey"),
                ("AWS_ACCESS_KEY_ID", AKID),
                ("AWS_SECRET_ACCESS_KEY", SECRET),
            ],
        )
        .unwrap();
        assert!(ep.url.contains("ap-south-1"));
        assert_eq!(ep.headers[AUTHORIZATION], "Bearer ABSKenvkey");
        // `os.environ/NAME` in litellm_params.
        let ep = endpoint_env(
            r#","aws_region_name":"os.environ/MY_REGION","aws_access_key_id":"os.environ/MY_KEY","aws_secret_access_key":"os.environ/MY_SECRET","aws_session_token":"os.environ/MY_TOKEN""#,
            &[("MY_REGION", "us-east-2"), ("MY_KEY", AKID), ("MY_SECRET", SECRET), ("MY_TOKEN", "tok")],
        )
        .unwrap();
        assert!(ep.url.contains("us-east-2"));
        assert_eq!(sign(&ep, &ep.url, b"")["x-amz-security-token"], "tok");
        let e = endpoint_env(r#","aws_region_name":"us-east-1","aws_access_key_id":"os.environ/UNSET_KEY","aws_secret_access_key":"x""#, &[]).unwrap_err();
        assert!(e.contains("UNSET_KEY"), "{e}");
    }

    #[test]
    fn unusable_auth_settings_are_refused_at_init() {
        let no_region = endpoint_env(
            &format!(r#","aws_access_key_id":"{AKID}","aws_secret_access_key":"{SECRET}""#),
            &[],
        )
        .unwrap_err();
        assert!(no_region.contains("region"), "{no_region}");
        let none = endpoint_env(r#","aws_region_name":"us-east-1""#, &[]).unwrap_err();
        assert!(none.contains("no AWS credentials"), "{none}");
        let half = endpoint_env(
            &format!(r#","aws_region_name":"us-east-1","aws_access_key_id":"{AKID}""#),
            &[],
        )
        .unwrap_err();
        assert!(half.contains("go together"), "{half}");
        let both = endpoint_env(&format!(r#","api_key":"k-12345678"{}"#, keys()), &[]).unwrap_err();
        assert!(both.contains("not both"), "{both}");
        let profile =
            endpoint_env(&format!(r#"{},"aws_profile_name":"dev""#, keys()), &[]).unwrap_err();
        assert!(profile.contains("aws_profile_name"), "{profile}");
        let bad_region =
            endpoint_env(r#","aws_region_name":"us east","api_key":"k""#, &[]).unwrap_err();
        assert!(bad_region.contains("not an AWS region"), "{bad_region}");
        for e in [&no_region, &none, &half, &both, &profile] {
            assert!(!e.contains(SECRET), "{e}");
        }
    }

    #[test]
    fn the_registry_routes_both_names_here_without_a_required_key() {
        for key in ["BEDROCK", "AWS_BEDROCK"] {
            let spec = crate::providers::registry::by_key(key).unwrap();
            assert_eq!(spec.family, crate::providers::registry::Family::Bedrock);
            assert!(!spec.needs_key);
        }
        let d = deployment(&entry(r#","aws_region_name":"us-east-1""#));
        assert_eq!(&*d.prefix, "bedrock");
    }

    // -----------------------------------------------------------------------------------------
    // Request

    #[test]
    fn system_blocks_messages_and_merging() {
        let b = body(
            r#"{"messages":[
                {"role":"system","content":"You are terse."},
                {"role":"developer","content":[{"type":"text","text":"Answer in French."}],"cache_control":{"type":"ephemeral"}},
                {"role":"assistant","content":"Earlier answer."},
                {"role":"user","content":"a"},
                {"role":"user","content":[{"type":"text","text":"b"},{"type":"text","text":"  "}]},
                {"role":"assistant","content":"c"},
                {"role":"assistant","content":""},
                {"role":"assistant","content":"d  "}]}"#,
        );
        assert_eq!(
            b["system"],
            json!([{"text":"You are terse."},{"text":"Answer in French."},{"cachePoint":{"type":"default"}}])
        );
        assert_eq!(
            b["messages"],
            json!([
                {"role":"user","content":[{"text":"."}]},
                {"role":"assistant","content":[{"text":"Earlier answer."}]},
                {"role":"user","content":[{"text":"a"},{"text":"b"}]},
                {"role":"assistant","content":[{"text":"c"},{"text":"d"}]}
            ]),
            "a user turn first, same roles merged, blank text left out, the prefill trimmed"
        );
        for absent in [
            "inferenceConfig",
            "toolConfig",
            "additionalModelRequestFields",
            "model",
            "stream",
        ] {
            assert!(b.get(absent).is_none(), "{absent}: {b}");
        }
    }

    #[test]
    fn inference_config_and_additional_fields() {
        let ep = endpoint_params(
            r#","temperature":0.3,"top_k":40,"aws_profile":"x","guardrailConfig":{"guardrailIdentifier":"g1","guardrailVersion":"1"}"#,
        );
        let b = body_of(
            &ep,
            r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":64,"temperature":1.7,"top_p":0.9,
                "stop":["END",""],"seed":7,"response_format":{"type":"json_object"},"user":"u1",
                "thinking":{"type":"enabled","budget_tokens":1024},"stream_options":{"include_usage":true},
                "additionalModelRequestFields":{"anthropic_beta":["x"]}}"#,
        );
        assert_eq!(
            b["inferenceConfig"],
            json!({"maxTokens":64,"temperature":1.0,"topP":0.9,"stopSequences":["END"]}),
            "OpenAI's temperature range clamped to Bedrock's"
        );
        assert_eq!(
            b["additionalModelRequestFields"],
            json!({"top_k":40,"thinking":{"type":"enabled","budget_tokens":1024},"anthropic_beta":["x"]})
        );
        assert_eq!(
            b["guardrailConfig"],
            json!({"guardrailIdentifier":"g1","guardrailVersion":"1"})
        );
        let b = body_of(
            &ep,
            r#"{"messages":[{"role":"user","content":"hi"}],"stop":"X","max_completion_tokens":5}"#,
        );
        assert_eq!(
            b["inferenceConfig"],
            json!({"maxTokens":5,"temperature":0.3,"stopSequences":["X"]}),
            "the deployment's temperature when the request has none"
        );
    }

    fn weather_tools() -> &'static str {
        r#"[{"type":"function","function":{"name":"weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},
            {"type":"function","function":{"name":"now","description":""}}]"#
    }

    #[test]
    fn tool_calls_become_tool_use_and_results_one_user_turn() {
        let b = body(&format!(
            r#"{{"messages":[
                {{"role":"user","content":"weather in Paris and Rome?"}},
                {{"role":"assistant","content":"Checking.","tool_calls":[
                    {{"id":"tooluse_1","type":"function","function":{{"name":"weather","arguments":"{{\"city\":\"Paris\"}}"}}}},
                    {{"id":"tooluse_2","type":"function","function":{{"name":"weather","arguments":"{{\"city\":\"Rome\"}}"}}}},
                    {{"id":"tooluse_3","type":"function","function":{{"name":"now","arguments":""}}}}]}},
                {{"role":"tool","tool_call_id":"tooluse_1","content":"sunny"}},
                {{"role":"tool","tool_call_id":"tooluse_2","content":"rain"}},
                {{"role":"tool","tool_call_id":"tooluse_3","content":""}},
                {{"role":"user","content":"thanks"}}],
              "tools":{}, "tool_choice":"auto"}}"#,
            weather_tools()
        ));
        let m = &b["messages"];
        assert_eq!(m.as_array().unwrap().len(), 3);
        assert_eq!(
            m[1],
            json!({"role":"assistant","content":[
                {"text":"Checking."},
                {"toolUse":{"toolUseId":"tooluse_1","name":"weather","input":{"city":"Paris"}}},
                {"toolUse":{"toolUseId":"tooluse_2","name":"weather","input":{"city":"Rome"}}},
                {"toolUse":{"toolUseId":"tooluse_3","name":"now","input":{}}}
            ]})
        );
        assert_eq!(
            m[2],
            json!({"role":"user","content":[
                {"toolResult":{"toolUseId":"tooluse_1","content":[{"text":"sunny"}]}},
                {"toolResult":{"toolUseId":"tooluse_2","content":[{"text":"rain"}]}},
                {"toolResult":{"toolUseId":"tooluse_3","content":[{"text":"."}]}},
                {"text":"thanks"}
            ]}),
            "every result of the turn in one user message, results first, never blank"
        );
        assert_eq!(
            b["toolConfig"],
            json!({"tools":[
                {"toolSpec":{"name":"weather","description":"Weather","inputSchema":{"json":{"type":"object","properties":{"city":{"type":"string"}}}}}},
                {"toolSpec":{"name":"now","inputSchema":{"json":{"type":"object","properties":{}}}}}
            ],"toolChoice":{"auto":{}}})
        );
    }

    fn choice(tool_choice: &str, history: bool) -> Value {
        let messages = if history {
            r#"[{"role":"user","content":"go"},
                {"role":"assistant","tool_calls":[{"id":"t1","type":"function","function":{"name":"weather","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"t1","content":"ok"}]"#
        } else {
            r#"[{"role":"user","content":"go"}]"#
        };
        body(&format!(
            r#"{{"messages":{messages},"tools":{},"tool_choice":{tool_choice}}}"#,
            weather_tools()
        ))["toolConfig"]
            .clone()
    }

    #[test]
    fn tool_choice_mappings() {
        assert_eq!(choice(r#""auto""#, false)["toolChoice"], json!({"auto":{}}));
        assert_eq!(
            choice(r#""required""#, false)["toolChoice"],
            json!({"any":{}})
        );
        assert_eq!(
            choice(r#"{"type":"function","function":{"name":"now"}}"#, false)["toolChoice"],
            json!({"tool":{"name":"now"}})
        );
        assert_eq!(
            choice(r#"{"any":{}}"#, false)["toolChoice"],
            json!({"any":{}})
        );
        assert!(choice("null", false).get("toolChoice").is_none());
        // `none`: no toolChoice exists; the tools go unless the history needs them declared.
        assert!(choice(r#""none""#, false).is_null());
        let c = choice(r#""none""#, true);
        assert_eq!(c["tools"].as_array().unwrap().len(), 2);
        assert!(c.get("toolChoice").is_none());
        for bad in [r#""sometimes""#, r#"{"type":"function"}"#, "5"] {
            let e = body_err(&format!(
                r#"{{"messages":[{{"role":"user","content":"x"}}],"tools":{},"tool_choice":{bad}}}"#,
                weather_tools()
            ));
            assert_eq!(e.status, Status::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn a_history_with_tool_blocks_but_no_tools_gets_them_declared() {
        let b = body(
            r#"{"messages":[{"role":"user","content":"go"},
                {"role":"assistant","tool_calls":[{"id":"t1","type":"function","function":{"name":"lookup","arguments":"{\"q\":1}"}}]},
                {"role":"tool","tool_call_id":"t1","content":"found"},
                {"role":"user","content":"summarise"}]}"#,
        );
        assert_eq!(
            b["toolConfig"],
            json!({"tools":[{"toolSpec":{"name":"lookup","description":"A tool used earlier in this conversation.",
                "inputSchema":{"json":{"type":"object","properties":{}}}}}]})
        );
        let b = body(r#"{"messages":[{"role":"user","content":"hi"}]}"#);
        assert!(b.get("toolConfig").is_none());
    }

    #[test]
    fn images_documents_and_cache_points() {
        let b = body(
            r#"{"messages":[{"role":"user","content":[
                {"type":"text","text":"What is this?"},
                {"type":"image_url","image_url":{"url":"data:image/jpg;base64,AAAA"}},
                {"type":"image_url","image_url":"s3://bucket/cat.png","cache_control":{"type":"ephemeral"}},
                {"type":"file","file":{"file_data":"data:application/pdf;base64,JVBE","filename":"Q3 report.v2.pdf"}},
                {"type":"file","file":{"file_data":"data:text/plain;base64,aGk="}},
                {"document":{"format":"md","name":"raw","source":{"bytes":"Iw=="}}}]}]}"#,
        );
        assert_eq!(
            b["messages"][0]["content"],
            json!([
                {"text":"What is this?"},
                {"image":{"format":"jpeg","source":{"bytes":"AAAA"}}},
                {"image":{"format":"png","source":{"s3Location":{"uri":"s3://bucket/cat.png"}}}},
                {"cachePoint":{"type":"default"}},
                {"document":{"format":"pdf","name":"Q3 report v2 1","source":{"bytes":"JVBE"}}},
                {"document":{"format":"txt","name":"document 2","source":{"bytes":"aGk="}}},
                {"document":{"format":"md","name":"raw","source":{"bytes":"Iw=="}}}
            ])
        );
        for (part, why) in [
            (
                r#"{"type":"image_url","image_url":{"url":"https://x/y.png"}}"#,
                "fetches nothing",
            ),
            (
                r#"{"type":"image_url","image_url":{"url":"data:image/bmp;base64,AA"}}"#,
                "image/bmp",
            ),
            (
                r#"{"type":"image_url","image_url":{"url":"data:image/png,AA"}}"#,
                "base64",
            ),
            (r#"{"type":"input_audio","input_audio":{}}"#, "input_audio"),
        ] {
            let e = body_err(&format!(
                r#"{{"messages":[{{"role":"user","content":[{part}]}}]}}"#
            ));
            assert_eq!(e.status, Status::InvalidArgument);
            assert!(e.message.contains(why), "{}", e.message);
        }
    }

    #[test]
    fn thinking_blocks_go_back_as_reasoning_content() {
        let b = body(
            r#"{"messages":[{"role":"user","content":"q"},
                {"role":"assistant","content":"a","thinking_blocks":[
                    {"type":"thinking","thinking":"hmm","signature":"sig1"},
                    {"type":"redacted_thinking","data":"xyz"}]},
                {"role":"user","content":"more"}]}"#,
        );
        assert_eq!(
            b["messages"][1]["content"],
            json!([
                {"reasoningContent":{"reasoningText":{"text":"hmm","signature":"sig1"}}},
                {"reasoningContent":{"redactedContent":"xyz"}},
                {"text":"a"}
            ])
        );
    }

    // -----------------------------------------------------------------------------------------
    // Response

    fn parse(body: &str) -> Result<ChatResponse, Error> {
        Bedrock.parse_response(&endpoint(), body.as_bytes())
    }

    #[test]
    fn text_response_with_reasoning_and_usage() {
        let r = parse(
            r#"{"output":{"message":{"role":"assistant","content":[
                {"reasoningContent":{"reasoningText":{"text":"Think.","signature":"s"}}},
                {"text":"Hello"},{"text":" there."}]}},
              "stopReason":"end_turn",
              "usage":{"inputTokens":30,"outputTokens":20,"totalTokens":50,"cacheReadInputTokens":5,"cacheWriteInputTokens":2},
              "metrics":{"latencyMs":640}}"#,
        )
        .unwrap();
        assert_eq!(r.object, "chat.completion");
        assert_eq!(r.model, MODEL);
        assert!(r.id.starts_with("chatcmpl-bedrock-"));
        let m = &r.choices[0].message;
        assert_eq!(m.content.as_deref(), Some("Hello there."));
        assert_eq!(m.reasoning_content.as_deref(), Some("Think."));
        assert!(m.tool_calls.is_none());
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            r.usage,
            Some(Usage::new(37, 20)),
            "cached input counts as prompt"
        );
    }

    #[test]
    fn tool_use_response() {
        let r = parse(
            r#"{"output":{"message":{"role":"assistant","content":[
                {"toolUse":{"toolUseId":"tooluse_abc","name":"weather","input":{"city":"Paris","days":[1,2]}}},
                {"toolUse":{"toolUseId":"tooluse_def","name":"now","input":{}}}]}},
              "stopReason":"tool_use","usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7}}"#,
        )
        .unwrap();
        let m = &r.choices[0].message;
        assert!(m.content.is_none());
        let calls = m.tool_calls.as_ref().unwrap();
        assert_eq!(calls[0].id, "tooluse_abc");
        assert_eq!(calls[0].kind, "function");
        assert_eq!(calls[0].function.name, "weather");
        assert_eq!(
            serde_json::from_str::<Value>(&calls[0].function.arguments).unwrap(),
            json!({"city":"Paris","days":[1,2]})
        );
        assert_eq!(calls[1].function.arguments, "{}");
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn stop_reasons() {
        for (reason, want) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
            ("something_new", "stop"),
        ] {
            let r = parse(&format!(
                r#"{{"output":{{"message":{{"content":[{{"text":"x"}}]}}}},"stopReason":"{reason}"}}"#
            ))
            .unwrap();
            assert_eq!(
                r.choices[0].finish_reason.as_deref(),
                Some(want),
                "{reason}"
            );
        }
        for reason in ["malformed_model_output", "malformed_tool_use"] {
            let e = parse(&format!(
                r#"{{"output":{{"message":{{"content":[]}}}},"stopReason":"{reason}"}}"#
            ))
            .unwrap_err();
            assert_eq!(e.status, Status::Upstream, "{reason}");
        }
    }

    #[test]
    fn a_200_that_is_not_an_answer() {
        for body in ["<html>502</html>", "{}", r#"{"output":{}}"#, "[1]"] {
            assert_eq!(parse(body).unwrap_err().status, Status::Upstream, "{body}");
        }
        let e = parse(r#"{"message":"Too many requests, please wait before trying again.","__type":"ThrottlingException"}"#).unwrap_err();
        assert_eq!(e.status, Status::RateLimited);
    }

    // -----------------------------------------------------------------------------------------
    // Errors

    fn http_error(status: u16, error_type: Option<&str>, body: &str) -> Error {
        let mut h = HeaderMap::new();
        if let Some(t) = error_type {
            h.insert(
                "x-amzn-errortype",
                HeaderValue::from_str(&format!(
                    "{t}:http://internal.amazon.com/coral/com.amazon.bedrock/"
                ))
                .unwrap(),
            );
        }
        h.insert("x-amzn-requestid", HeaderValue::from_static("b7b8a0a4-1"));
        Bedrock.parse_error_with_headers(&endpoint(), status, &h, body.as_bytes())
    }

    fn msg(text: &str) -> String {
        json!({ "message": text }).to_string()
    }

    #[test]
    fn error_answers_map_to_statuses() {
        let cases: &[(u16, &str, &str, Status)] = &[
            (400, "ValidationException", "The model returned the following errors: Input is too long for requested model.", Status::ContextOverflow),
            (400, "ValidationException", "Input is too long for requested model.", Status::ContextOverflow),
            (400, "ValidationException", "The model returned the following errors: prompt is too long: 200049 tokens > 200000 maximum", Status::ContextOverflow),
            (400, "ValidationException", "Malformed input request: expected maxLength: 42000, actual: 46735, please reformat your input and try again.", Status::ContextOverflow),
            (400, "ValidationException", "The model returned the following errors: Input Tokens Exceeded: Number of input tokens exceeds maximum length. Please update the input to try again.", Status::ContextOverflow),
            (400, "ValidationException", "The maximum tokens you requested exceed the model limit of 4096. Try again with a maximum tokens value that is lower than 4096.", Status::BadRequest),
            (400, "ValidationException", "The toolConfig field must be defined when using toolUse and toolResult content blocks.", Status::BadRequest),
            (400, "ValidationException", "Invocation of model ID anthropic.claude-sonnet-4-20250514-v1:0 with on-demand throughput isn\u{2019}t supported. Retry your request with the ID or ARN of an inference profile that contains this model.", Status::BadRequest),
            (400, "ValidationException", "The model returned the following errors: Output blocked by content filtering policy", Status::ContentPolicy),
            (429, "ThrottlingException", "Too many tokens, please wait before trying again.", Status::RateLimited),
            (429, "ThrottlingException", "Too many requests, please wait before trying again.", Status::RateLimited),
            (429, "ModelNotReadyException", "Model is not ready to serve inference requests.", Status::RateLimited),
            (400, "ServiceQuotaExceededException", "Your request exceeds the service quota for your account.", Status::RateLimited),
            (403, "AccessDeniedException", "You don't have access to the model with the specified model ID.", Status::Auth),
            (403, "UnrecognizedClientException", "The security token included in the request is invalid.", Status::Auth),
            (403, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.", Status::Auth),
            (400, "ExpiredTokenException", "The security token included in the request is expired", Status::Auth),
            (404, "ResourceNotFoundException", "Could not resolve the foundation model from the provided model identifier.", Status::BadRequest),
            (408, "ModelTimeoutException", "Model has timed out in processing the request. Try your request again.", Status::Timeout),
            (424, "ModelErrorException", "The system encountered an unexpected error during processing. Try your request again.", Status::Upstream),
            (500, "InternalServerException", "The server encountered an internal error.", Status::Upstream),
            (503, "ServiceUnavailableException", "Bedrock is unable to process your request.", Status::Upstream),
        ];
        for (status, kind, text, want) in cases {
            let e = http_error(*status, Some(kind), &msg(text));
            assert_eq!(e.status, *want, "{status} {kind}: {text}");
            assert_eq!(e.message, *text);
        }
        let e = http_error(400, Some("ServiceQuotaExceededException"), &msg("quota"));
        assert!(e.quota);
        // The name may come in the body alone (`__type`, awsJson style), or `Message`.
        let e = http_error(
            400,
            None,
            r#"{"__type":"com.amazon.coral.service#ThrottlingException","Message":"Too many tokens, please wait before trying again."}"#,
        );
        assert_eq!(e.status, Status::RateLimited);
        assert_eq!(
            e.message,
            "Too many tokens, please wait before trying again."
        );
        // A 429 whose text reads like an overflow is still a throttle.
        let e = http_error(429, Some("ThrottlingException"), &msg("Too many tokens"));
        assert_eq!(e.status, Status::RateLimited);
        // Without the header the status alone decides; a non-JSON body is its excerpt.
        assert_eq!(http_error(403, None, "{}").status, Status::Auth);
        let e = http_error(502, None, "<html>Bad Gateway</html>");
        assert_eq!(
            (e.status, e.message.as_str()),
            (Status::Upstream, "<html>Bad Gateway</html>")
        );
        // A gateway speaking OpenAI's envelope.
        let e = http_error(
            400,
            None,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        // parse_error without headers still reads the body.
        let e = Bedrock.parse_error(
            &endpoint(),
            400,
            msg("Input is too long for requested model.").as_bytes(),
        );
        assert_eq!(e.status, Status::ContextOverflow);
    }

    // -----------------------------------------------------------------------------------------
    // Stream

    fn run_stream(bytes: &[u8], cuts: &[usize]) -> (Vec<ChatChunk>, Result<(), Error>) {
        let mut p = Bedrock.stream_parser(&endpoint());
        let mut out = VecDeque::new();
        let mut start = 0;
        let mut ended = false;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            match p.feed(&bytes[start..cut], &mut out) {
                Ok(true) => {
                    ended = true;
                    break;
                }
                Ok(false) => {}
                Err(e) => return (out.into(), Err(e)),
            }
            start = cut;
        }
        let r = if ended { Ok(()) } else { p.finish(&mut out) };
        (out.into(), r)
    }

    fn assemble(chunks: &[ChatChunk]) -> ChatResponse {
        let mut a = StreamAssembler::default();
        for c in chunks {
            a.push(c);
        }
        a.into_response()
    }

    fn ev(name: &str, data: Value) -> Vec<u8> {
        event(name, data.to_string().as_bytes())
    }

    fn text_stream() -> Vec<u8> {
        [
            ev("messageStart", json!({"role":"assistant"})),
            ev("contentBlockDelta", json!({"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"Hmm."}}})),
            ev("contentBlockDelta", json!({"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"sig"}}})),
            ev("contentBlockStop", json!({"contentBlockIndex":0})),
            ev("contentBlockDelta", json!({"contentBlockIndex":1,"delta":{"text":"Hel"},"p":"abcdefghij"})),
            ev("contentBlockDelta", json!({"contentBlockIndex":1,"delta":{"text":"lo ☃"}})),
            ev("contentBlockStop", json!({"contentBlockIndex":1})),
            ev("messageStop", json!({"stopReason":"end_turn"})),
            ev("metadata", json!({"usage":{"inputTokens":9,"outputTokens":3,"totalTokens":12},"metrics":{"latencyMs":5}})),
        ]
        .concat()
    }

    #[test]
    fn stream_text_survives_any_split() {
        let all = text_stream();
        let (whole, r) = run_stream(&all, &[]);
        r.unwrap();
        let resp = assemble(&whole);
        let m = &resp.choices[0].message;
        assert_eq!(m.content.as_deref(), Some("Hello ☃"));
        assert_eq!(m.reasoning_content.as_deref(), Some("Hmm."));
        assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            resp.usage,
            Some(Usage::new(9, 3)),
            "usage after messageStop"
        );
        assert_eq!(whole[0].choices[0].delta.role.as_deref(), Some("assistant"));
        assert!(whole
            .iter()
            .all(|c| c.object == "chat.completion.chunk" && c.id == whole[0].id));
        let shape = |chunks: &[ChatChunk]| serde_json::to_value(assemble(chunks).choices).unwrap();
        let want = shape(&whole);
        for cut in 0..=all.len() {
            let (chunks, r) = run_stream(&all, &[cut]);
            r.unwrap_or_else(|e| panic!("cut at {cut}: {}", e.message));
            assert_eq!(chunks.len(), whole.len(), "cut at {cut}");
            assert_eq!(shape(&chunks), want, "cut at {cut}");
        }
        let every: Vec<usize> = (1..all.len()).collect();
        let (chunks, r) = run_stream(&all, &every);
        r.unwrap();
        assert_eq!(shape(&chunks), want, "one byte at a time");
    }

    fn tool_stream() -> Vec<u8> {
        [
            ev("messageStart", json!({"role":"assistant"})),
            ev("contentBlockDelta", json!({"contentBlockIndex":0,"delta":{"text":"Let me check."}})),
            ev("contentBlockStop", json!({"contentBlockIndex":0})),
            ev("contentBlockStart", json!({"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_A","name":"weather"}}})),
            ev("contentBlockDelta", json!({"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"city\":"}}})),
            ev("contentBlockDelta", json!({"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"Paris\"}"}}})),
            ev("contentBlockStop", json!({"contentBlockIndex":1})),
            ev("contentBlockStart", json!({"contentBlockIndex":2,"start":{"toolUse":{"toolUseId":"tooluse_B","name":"now"}}})),
            ev("contentBlockStop", json!({"contentBlockIndex":2})),
            ev("messageStop", json!({"stopReason":"tool_use"})),
            ev("metadata", json!({"usage":{"inputTokens":20,"outputTokens":10,"totalTokens":30}})),
        ]
        .concat()
    }

    #[test]
    fn stream_tool_calls_assemble_from_input_fragments() {
        let all = tool_stream();
        let (chunks, r) = run_stream(&all, &[]);
        r.unwrap();
        let first = chunks
            .iter()
            .find_map(|c| c.choices.first()?.delta.tool_calls.as_ref())
            .unwrap();
        assert_eq!(first[0].index, 0);
        assert_eq!(first[0].id.as_deref(), Some("tooluse_A"));
        assert_eq!(first[0].kind.as_deref(), Some("function"));
        let r = assemble(&chunks);
        let calls = r.choices[0].message.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].function.name.as_str()),
            ("tooluse_A", "weather")
        );
        assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
        assert_eq!(
            (calls[1].id.as_str(), calls[1].function.arguments.as_str()),
            ("tooluse_B", "{}")
        );
        assert_eq!(
            r.choices[0].message.content.as_deref(),
            Some("Let me check.")
        );
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(r.usage, Some(Usage::new(20, 10)));
        for cut in 0..=all.len() {
            let (c, res) = run_stream(&all, &[cut]);
            res.unwrap();
            let again = assemble(&c);
            assert_eq!(
                again.choices[0].message.tool_calls, r.choices[0].message.tool_calls,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn stream_exceptions_map_to_statuses() {
        let head = [
            ev("messageStart", json!({"role":"assistant"})),
            ev(
                "contentBlockDelta",
                json!({"contentBlockIndex":0,"delta":{"text":"Hal"}}),
            ),
        ]
        .concat();
        let cases = [
            (
                "throttlingException",
                "Too many tokens, please wait before trying again.",
                Status::RateLimited,
                Some(429),
            ),
            (
                "validationException",
                "Input is too long for requested model.",
                Status::ContextOverflow,
                Some(400),
            ),
            (
                "validationException",
                "The maximum tokens you requested exceed the model limit of 4096.",
                Status::BadRequest,
                Some(400),
            ),
            (
                "modelStreamErrorException",
                "The model stream was interrupted.",
                Status::Upstream,
                Some(424),
            ),
            (
                "internalServerException",
                "An internal server error occurred.",
                Status::Upstream,
                Some(500),
            ),
            (
                "serviceUnavailableException",
                "Bedrock is unable to process your request.",
                Status::Upstream,
                Some(503),
            ),
            ("someNewException", "what", Status::Upstream, None),
        ];
        for (kind, text, want, http) in cases {
            let mut all = head.clone();
            all.extend(exception(
                kind,
                json!({"message": text}).to_string().as_bytes(),
            ));
            let (chunks, r) = run_stream(&all, &[]);
            assert_eq!(chunks.len(), 2, "{kind}: what came before stays delivered");
            let e = r.unwrap_err();
            assert_eq!((e.status, e.http_status), (want, http), "{kind}: {text}");
            assert!(e.message.starts_with(text), "{}", e.message);
        }
        // modelStreamErrorException carries the model's own message.
        let frame = exception(
            "modelStreamErrorException",
            br#"{"message":"Model stream error","originalStatusCode":500,"originalMessage":"Overloaded"}"#,
        );
        let e = run_stream(&frame, &[]).1.unwrap_err();
        assert_eq!(e.message, "Model stream error: Overloaded");
        // A `:message-type` error frame.
        let frame = encode(
            &[
                (":message-type", H::String("error".into())),
                (":error-code", H::String("ThrottlingException".into())),
                (":error-message", H::String("Rate exceeded".into())),
            ],
            b"",
        );
        let e = run_stream(&frame, &[]).1.unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (Status::RateLimited, "Rate exceeded")
        );
    }

    #[test]
    fn broken_event_streams_are_upstream_errors_without_panic() {
        let all = text_stream();
        // A bad CRC in the middle: what was decoded before stays, then the stream fails.
        let mut corrupt = all.clone();
        let second = u32::from_be_bytes(corrupt[0..4].try_into().unwrap()) as usize;
        let at = second + 20;
        corrupt[at] ^= 0xFF;
        let (chunks, r) = run_stream(&corrupt, &[]);
        assert_eq!(chunks.len(), 1);
        let e = r.unwrap_err();
        assert_eq!(e.status, Status::Upstream);
        assert!(e.message.contains("CRC"), "{}", e.message);
        // A corrupt prelude, at every split.
        let mut bad_prelude = all.clone();
        bad_prelude[2] ^= 0x01;
        for cut in 0..bad_prelude.len().min(40) {
            let (chunks, r) = run_stream(&bad_prelude, &[cut]);
            assert!(chunks.is_empty());
            assert_eq!(r.unwrap_err().status, Status::Upstream);
        }
        // Cut inside a frame, and cut before messageStop.
        let (_, r) = run_stream(&all[..all.len() - 5], &[]);
        assert!(r.unwrap_err().message.contains("cut short"));
        let stop = all.len() - ev("metadata", json!({"usage":{"inputTokens":9,"outputTokens":3,"totalTokens":12},"metrics":{"latencyMs":5}})).len()
            - ev("messageStop", json!({"stopReason":"end_turn"})).len();
        let (chunks, r) = run_stream(&all[..stop], &[]);
        assert!(!chunks.is_empty());
        assert!(r.unwrap_err().message.contains("messageStop"));
        // messageStop without metadata: the answer is whole.
        let (chunks, r) = run_stream(&all[..all.len() - ev("metadata", json!({"usage":{"inputTokens":9,"outputTokens":3,"totalTokens":12},"metrics":{"latencyMs":5}})).len()], &[]);
        r.unwrap();
        assert_eq!(
            assemble(&chunks).choices[0].message.content.as_deref(),
            Some("Hello ☃")
        );
        // A payload that is not JSON; garbage that is no frame at all.
        let (_, r) = run_stream(&event("contentBlockDelta", b"{not json"), &[]);
        assert_eq!(r.unwrap_err().status, Status::Upstream);
        let (_, r) = run_stream(b"<html><body>502 Bad Gateway</body></html>", &[]);
        assert_eq!(r.unwrap_err().status, Status::Upstream);
        // A malformed stop reason in the stream.
        let frame = ev("messageStop", json!({"stopReason":"malformed_tool_use"}));
        assert_eq!(
            run_stream(&frame, &[]).1.unwrap_err().status,
            Status::Upstream
        );
    }

    #[test]
    fn sigv4_signs_the_stand_in_host_and_path_as_sent() {
        // The signature a server recomputes from what it received matches the one sent.
        let ep = endpoint_env(
            &format!(
                r#"{},"api_base":"http://127.0.0.1:8080/t","aws_session_token":"tok""#,
                keys()
            ),
            &[],
        )
        .unwrap();
        let body = br#"{"messages":[]}"#;
        let h = sign(&ep, &ep.stream_url, body);
        let date = h["x-amz-date"].to_str().unwrap().to_owned();
        let headers = [
            ("content-type", "application/json"),
            ("host", "127.0.0.1:8080"),
            ("x-amz-date", date.as_str()),
            ("x-amz-security-token", "tok"),
        ];
        let hash = super::super::sigv4::sha256_hex(body);
        let req = super::super::sigv4::Request {
            method: "POST",
            path: "/t/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream",
            query: "",
            headers: &headers,
            payload_hash: &hash,
        };
        let scope = super::super::sigv4::Scope {
            amz_date: &date,
            region: "us-west-2",
            service: "bedrock",
        };
        let want = super::super::sigv4::sign(&req, &scope, AKID, SECRET);
        assert!(want.canonical_request.contains("v1%253A0/converse-stream"));
        assert_eq!(h[AUTHORIZATION], want.authorization.as_str());
    }
}

#[cfg(test)]
mod model_table {
    /// Bedrock deployments get their windows from the model table, inference-profile and
    /// `converse/` forms included (the context-window fallback depends on it).
    #[test]
    fn bedrock_ids_resolve_in_the_model_table() {
        use crate::model_info::lookup_deployment;
        for (id, window) in [
            ("anthropic.claude-3-5-haiku-20241022-v1:0", 200_000),
            ("us.anthropic.claude-sonnet-4-20250514-v1:0", 200_000),
            ("eu.anthropic.claude-3-7-sonnet-20250219-v1:0", 200_000),
            ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", 200_000),
            ("amazon.nova-pro-v1:0", 300_000),
            ("us.amazon.nova-micro-v1:0", 128_000),
            ("meta.llama3-3-70b-instruct-v1:0", 128_000),
            ("converse/amazon.nova-lite-v1:0", 300_000),
        ] {
            let info = lookup_deployment(None, "bedrock", id);
            assert_eq!(info.map(|i| i.max_input_tokens), Some(window), "{id}");
        }
    }
}
