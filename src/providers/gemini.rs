//! The Gemini API (`generateContent` / `streamGenerateContent?alt=sse`, PROVIDERS.md §4): OpenAI-
//! shaped requests mapped to Gemini's body, its answers, stream events and errors mapped back.
//!
//! Vertex AI speaks the same body for Google's models (PROVIDERS.md §9); [`super::vertex`] reuses
//! [`write_body`], [`parse_response`], [`error_from`] and [`GeminiStream`] from here.
//!
//! The mapping follows litellm's Gemini transformation: system and developer messages become
//! `systemInstruction`; `assistant` turns are `model` turns; tool calls are `functionCall` parts
//! with parsed `args`; tool results are `functionResponse` parts keyed by the function's *name*
//! (Gemini has no call ids: the name is found from the id through the history's tool calls);
//! turns of one role that follow each other are merged. Gemini returns no call ids, so they are
//! synthesised; a call's `thoughtSignature` (which Gemini 3 requires back with the call) rides in
//! the synthesised id after [`THOUGHT_SEPARATOR`] and is restored when the history comes back.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::classify::{body_excerpt, classify, ErrorParts};
use super::convert::json_kind;
use super::{extra_headers, secret_header, Endpoint, StreamParser, WireFormat};
use crate::config::DeploymentConfig;
use crate::errors::{Error, Status};
use crate::sse::SseDecoder;
use crate::types::{
    keep, unix_now, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, FunctionCall,
    FunctionDelta, Message, ResponseMessage, Tool, ToolCall, ToolCallDelta, Usage,
};

pub struct Gemini;

/// The API version of the default URL: `v1` lags on system instructions and tools.
pub const API_VERSION: &str = "v1beta";

/// Between a synthesised tool-call id and the call's thought signature (litellm's separator).
pub const THOUGHT_SEPARATOR: &str = "__thought__";

/// The documented stand-in signature for a Gemini 3 function call whose real signature was lost
/// (a history written by another provider, or by a client that rebuilt the ids).
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// Gemini takes at most this many stop sequences.
const MAX_STOP_SEQUENCES: usize = 5;

impl WireFormat for Gemini {
    fn endpoint(&self, d: &DeploymentConfig, max_output: Option<u64>) -> Result<Endpoint, String> {
        let mut ep = Endpoint::common(d, max_output);
        ep.model = model_id(&d.model, &["gemini/", "models/"]).to_owned();
        if ep.model.is_empty() || ep.model.contains(['/', '?', '#', ' ']) {
            return Err(format!(
                "`model_name` {:?} is not a Gemini model id",
                d.model
            ));
        }
        let base = match &d.api_base {
            Some(b) => b.as_str(),
            None => d.spec.default_base.ok_or_else(|| d.spec.note.to_owned())?,
        };
        let version = match d.params.get("api_version") {
            None | Some(Value::Null) => API_VERSION,
            Some(Value::String(v))
                if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                v.as_str()
            }
            Some(_) => {
                return Err(
                    "`litellm_params.api_version` must be a version such as \"v1beta\"".into(),
                )
            }
        };
        let models = models_url(base, version);
        ep.url = format!("{models}/{}:generateContent", ep.model);
        ep.stream_url = format!("{models}/{}:streamGenerateContent?alt=sse", ep.model);
        ep.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(k) = &d.api_key {
            ep.headers
                .insert("x-goog-api-key", secret_header(k.expose())?);
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
        write_body(ep, req, stream, Flavor::GeminiApi)
    }

    fn parse_response(&self, ep: &Endpoint, body: &[u8]) -> Result<ChatResponse, Error> {
        parse_response(&ep.model, body)
    }

    fn parse_error(&self, _ep: &Endpoint, http_status: u16, body: &[u8]) -> Error {
        error_from(Some(http_status), body)
    }

    fn stream_parser(&self, ep: &Endpoint) -> Box<dyn StreamParser> {
        Box::new(GeminiStream::new(&ep.model))
    }
}

/// A model name without the prefixes people write in front of it (`gemini/`, `models/`).
pub(crate) fn model_id<'a>(model: &'a str, prefixes: &[&str]) -> &'a str {
    let mut m = model.trim();
    for p in prefixes {
        m = m.strip_prefix(p).unwrap_or(m);
    }
    m
}

/// `{base}/{version}/models`; a base that already names a version (or `…/models`) is kept.
fn models_url(base: &str, version: &str) -> String {
    let base = base.trim_end_matches('/');
    let last = base.rsplit('/').next().unwrap_or("");
    if last == "models" {
        base.to_owned()
    } else if is_version_segment(last) {
        format!("{base}/models")
    } else {
        format!("{base}/{version}/models")
    }
}

/// `v1`, `v1beta`, `v1alpha`, `v1beta1`, …
pub(crate) fn is_version_segment(s: &str) -> bool {
    s.len() >= 2
        && s.starts_with('v')
        && s.as_bytes()[1].is_ascii_digit()
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Gemini 3 and later check thought signatures on function calls; 1.x and 2.x do not.
fn checks_signatures(model: &str) -> bool {
    let m = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    m.starts_with("gemini-") && !m.starts_with("gemini-1") && !m.starts_with("gemini-2")
}

// ---------------------------------------------------------------------------------------------
// Request

/// Where the body goes: Vertex takes a few fields the Gemini API refuses (`labels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    GeminiApi,
    #[allow(dead_code)] // Until the Vertex provider lands.
    Vertex,
}

/// The `generateContent` body, borrowing from the request wherever it can.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<SystemInstruction<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    generation_config: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_settings: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cached_content: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<&'a Value>,
}

#[derive(Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
struct SystemInstruction<'a> {
    parts: Vec<Part<'a>>,
}

/// One part of a turn.
enum Part<'a> {
    Text(Cow<'a, str>),
    InlineData {
        mime_type: Cow<'a, str>,
        data: &'a str,
    },
    FileData {
        mime_type: Cow<'a, str>,
        file_uri: &'a str,
    },
    FunctionCall {
        name: &'a str,
        args: Value,
        signature: Option<&'a str>,
    },
    FunctionResponse {
        name: &'a str,
        response: Value,
    },
    /// A part already in Gemini's shape: sent as given.
    Raw(&'a Value),
}

impl Part<'_> {
    fn is_function_response(&self) -> bool {
        matches!(self, Part::FunctionResponse { .. })
    }
}

impl Serialize for Part<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Part::Raw(v) = self {
            return v.serialize(s);
        }
        let mut m = s.serialize_map(None)?;
        match self {
            Part::Text(t) => m.serialize_entry("text", t)?,
            Part::InlineData { mime_type, data } => {
                m.serialize_entry("inlineData", &json!({"mimeType": mime_type, "data": data}))?
            }
            Part::FileData {
                mime_type,
                file_uri,
            } => m.serialize_entry(
                "fileData",
                &json!({"mimeType": mime_type, "fileUri": file_uri}),
            )?,
            Part::FunctionCall {
                name,
                args,
                signature,
            } => {
                m.serialize_entry("functionCall", &json!({"name": name, "args": args}))?;
                if let Some(sig) = signature {
                    m.serialize_entry("thoughtSignature", sig)?;
                }
            }
            Part::FunctionResponse { name, response } => m.serialize_entry(
                "functionResponse",
                &json!({"name": name, "response": response}),
            )?,
            Part::Raw(_) => unreachable!("handled above"),
        }
        m.end()
    }
}

/// The first of several names a param goes by.
fn param_any<'a>(ep: &'a Endpoint, req: &'a ChatRequest, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| ep.param(req, k))
}

/// The body as bytes.
pub(crate) fn write_body(
    ep: &Endpoint,
    req: &ChatRequest,
    stream: bool,
    flavor: Flavor,
) -> Result<Vec<u8>, Error> {
    let body = build_body(ep, req, stream, flavor)?;
    let mut out = Vec::with_capacity(512);
    body.serialize(&mut serde_json::Serializer::new(&mut out))
        .map_err(|e| Error::invalid(format!("request could not be encoded: {e}")))?;
    Ok(out)
}

fn build_body<'a>(
    ep: &'a Endpoint,
    req: &'a ChatRequest,
    stream: bool,
    flavor: Flavor,
) -> Result<Body<'a>, Error> {
    let d = &ep.defaults;
    let (system_instruction, contents) =
        convert_messages(&req.messages, checks_signatures(&ep.model))?;

    let tools_given = req.tools.as_ref().filter(|t| !t.is_empty());
    let tools =
        tools_given.map(|t| vec![json!({"functionDeclarations": function_declarations(t)})]);
    let tool_config = if tools.is_some() {
        tool_config(req.tool_choice.as_ref().or_else(|| d.get("tool_choice")))?
    } else {
        None // A toolConfig without tools says nothing.
    };

    let mut gc = Map::new();
    // Gemini's own generationConfig first: the OpenAI fields below override it.
    if let Some(Value::Object(native)) =
        param_any(ep, req, &["generationConfig", "generation_config"])
    {
        gc.extend(native.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let number =
        |typed: Option<f64>, key: &str| typed.or_else(|| d.get(key).and_then(Value::as_f64));
    if let Some(t) = number(req.temperature, "temperature") {
        gc.insert("temperature".into(), t.into());
    }
    if let Some(p) = number(req.top_p, "top_p") {
        gc.insert("topP".into(), p.into());
    }
    if let Some(k) = ep.param(req, "top_k") {
        gc.insert("topK".into(), k.clone());
    }
    let max_tokens = req
        .max_output_tokens()
        .or_else(|| d.get("max_completion_tokens").and_then(Value::as_u64))
        .or_else(|| d.get("max_tokens").and_then(Value::as_u64));
    if let Some(m) = max_tokens {
        gc.insert("maxOutputTokens".into(), m.into());
    }
    let stop = req
        .stop
        .as_ref()
        .filter(|v| !v.is_null())
        .or_else(|| d.get("stop"))
        .map(stop_sequences)
        .filter(|s| !s.is_empty());
    if let Some(stop) = stop {
        gc.insert("stopSequences".into(), stop.into());
    }
    // A stream carries one candidate (the assembled answer has one choice).
    if let Some(n) = ep.param(req, "n").and_then(Value::as_u64) {
        if n > 1 && !stream {
            gc.insert("candidateCount".into(), n.into());
        }
    }
    for (ours, theirs) in [
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = ep.param(req, ours) {
            gc.insert(theirs.into(), v.clone());
        }
    }
    if let Some(rf) = ep.param(req, "response_format") {
        response_format(rf, &mut gc)?;
    }
    if let Some(thinking) = thinking_config(ep, req) {
        gc.insert("thinkingConfig".into(), thinking);
    }

    Ok(Body {
        contents,
        system_instruction,
        tools,
        tool_config,
        generation_config: gc,
        safety_settings: param_any(ep, req, &["safety_settings", "safetySettings"]),
        cached_content: param_any(ep, req, &["cached_content", "cachedContent"]),
        labels: match flavor {
            Flavor::Vertex => ep.param(req, "labels").filter(|l| l.is_object()),
            Flavor::GeminiApi => None,
        },
    })
}

/// `stop` as a string or an array; empty strings dropped, at most five kept.
fn stop_sequences(v: &Value) -> Vec<Value> {
    let all: Vec<&str> = match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    all.into_iter()
        .filter(|s| !s.is_empty())
        .take(MAX_STOP_SEQUENCES)
        .map(Value::from)
        .collect()
}

/// OpenAI's `response_format` as `responseMimeType` (+ `responseSchema`).
fn response_format(rf: &Value, gc: &mut Map<String, Value>) -> Result<(), Error> {
    let bad = || {
        Error::invalid(
            "request JSON at `response_format`: must be {\"type\":\"text\"}, {\"type\":\"json_object\"} or {\"type\":\"json_schema\",\"json_schema\":{\"schema\":…}}",
        )
    };
    match rf.get("type").and_then(Value::as_str).ok_or_else(bad)? {
        "text" => {}
        "json_object" => {
            gc.insert("responseMimeType".into(), "application/json".into());
        }
        "json_schema" => {
            gc.insert("responseMimeType".into(), "application/json".into());
            let schema = rf
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .or_else(|| rf.get("schema"));
            if let Some(schema) = schema.filter(|s| s.is_object()) {
                gc.insert("responseSchema".into(), clean_schema(schema));
            }
        }
        _ => return Err(bad()),
    }
    Ok(())
}

/// `reasoning_effort`, Anthropic-style `thinking`, or Gemini's own `thinkingConfig`.
fn thinking_config(ep: &Endpoint, req: &ChatRequest) -> Option<Value> {
    if let Some(native) = param_any(ep, req, &["thinkingConfig", "thinking_config"]) {
        return Some(native.clone());
    }
    if let Some(t) = ep.param(req, "thinking") {
        return Some(match t.get("type").and_then(Value::as_str) {
            Some("disabled") => json!({"thinkingBudget": 0}),
            _ => match t.get("budget_tokens").and_then(Value::as_u64) {
                Some(b) => json!({"thinkingBudget": b, "includeThoughts": true}),
                None => json!({"includeThoughts": true}),
            },
        });
    }
    let effort = ep.param(req, "reasoning_effort")?.as_str()?;
    if checks_signatures(&ep.model) {
        // Gemini 3 takes a level, not a budget.
        let level = match effort {
            "none" | "disable" | "minimal" | "low" => "low",
            _ => "high",
        };
        return Some(json!({"thinkingLevel": level, "includeThoughts": true}));
    }
    Some(match effort {
        "none" | "disable" => json!({"thinkingBudget": 0}),
        "minimal" => json!({"thinkingBudget": 128, "includeThoughts": true}),
        "low" => json!({"thinkingBudget": 1024, "includeThoughts": true}),
        "medium" => json!({"thinkingBudget": 2048, "includeThoughts": true}),
        _ => json!({"thinkingBudget": 4096, "includeThoughts": true}),
    })
}

/// Every function tool as a declaration. A tool without parameters (or with an empty object
/// schema) declares none: Gemini refuses an OBJECT without properties.
fn function_declarations(tools: &[Tool]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| {
            let f = &t.function;
            let mut decl = Map::new();
            decl.insert("name".into(), f.name.clone().into());
            if let Some(desc) = f.description.as_deref().filter(|s| !s.is_empty()) {
                decl.insert("description".into(), desc.into());
            }
            if let Some(p) = &f.parameters {
                let schema = clean_schema(p);
                let has_properties = schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|o| !o.is_empty());
                let is_object = schema
                    .get("type")
                    .and_then(Value::as_str)
                    .map_or(true, |t| t.eq_ignore_ascii_case("object"));
                if has_properties || !is_object {
                    decl.insert("parameters".into(), schema);
                }
            }
            Value::Object(decl)
        })
        .collect()
}

/// OpenAI's `tool_choice` as Gemini's `toolConfig`.
fn tool_config(choice: Option<&Value>) -> Result<Option<Value>, Error> {
    let bad = || {
        Error::invalid(
            "request JSON at `tool_choice`: must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\":…}}",
        )
    };
    let mode = |m: &str| Some(json!({"functionCallingConfig": {"mode": m}}));
    Ok(match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => mode("AUTO"),
            "required" | "any" => mode("ANY"),
            "none" => mode("NONE"),
            _ => return Err(bad()),
        },
        Some(Value::Object(o)) if o.contains_key("functionCallingConfig") => {
            Some(Value::Object(o.clone()))
        }
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(bad)?;
            Some(json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}))
        }
        Some(_) => return Err(bad()),
    })
}

// ---------------------------------------------------------------------------------------------
// The JSON-schema subset Gemini accepts

/// Schema keywords Gemini's `Schema` (an OpenAPI 3.0 subset) knows; every other keyword
/// (`$schema`, `$id`, `additionalProperties`, `strict`, `examples`, `default`, `not`,
/// `patternProperties`, `exclusiveMinimum`, `multipleOf`, `uniqueItems`, …) is dropped, as it
/// would be refused.
const SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "description",
    "nullable",
    "enum",
    "properties",
    "required",
    "items",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "anyOf",
    "propertyOrdering",
];

/// How deep a schema (and its resolved `$ref`s) may nest before the rest is cut off.
const MAX_SCHEMA_DEPTH: usize = 32;

/// A JSON schema rewritten into what Gemini accepts: `$ref`s into `$defs`/`definitions` inlined,
/// `type: [T, "null"]` and `anyOf` with a null branch as `nullable`, `oneOf` as `anyOf`, a
/// single-branch `allOf` merged, `const` as a one-value `enum`, numeric enums and unsupported
/// `format`s dropped, `required` limited to declared properties, unknown keywords removed.
pub fn clean_schema(schema: &Value) -> Value {
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .and_then(Value::as_object);
    clean(schema, defs, 0)
}

fn clean(v: &Value, defs: Option<&Map<String, Value>>, depth: usize) -> Value {
    let Value::Object(o) = v else {
        return Value::Object(Map::new()); // `true`, or nonsense: any value.
    };
    if depth > MAX_SCHEMA_DEPTH {
        return Value::Object(Map::new());
    }
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"));
        let target = name.and_then(|n| defs?.get(n));
        let mut out = match target {
            Some(t) => clean(t, defs, depth + 1),
            None => Value::Object(Map::new()),
        };
        if let (Some(desc), Value::Object(m)) = (o.get("description"), &mut out) {
            m.insert("description".into(), desc.clone());
        }
        return out;
    }
    // allOf: merged into one schema (the usual single-element wrapper around a $ref).
    if let Some(Value::Array(all)) = o.get("allOf") {
        let mut merged = Map::new();
        for part in all {
            if let Value::Object(p) = clean(part, defs, depth + 1) {
                merge_schema(&mut merged, p);
            }
        }
        let mut rest = o.clone();
        rest.remove("allOf");
        if let Value::Object(r) = clean(&Value::Object(rest), defs, depth + 1) {
            merge_schema(&mut merged, r);
        }
        return Value::Object(merged);
    }

    let mut out = Map::new();
    let mut nullable = o.get("nullable").and_then(Value::as_bool).unwrap_or(false);
    match o.get("type") {
        Some(Value::String(t)) if t == "null" => nullable = true,
        Some(Value::String(t)) => {
            out.insert("type".into(), t.clone().into());
        }
        Some(Value::Array(types)) => {
            let mut kinds: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            if kinds.contains(&"null") {
                nullable = true;
                kinds.retain(|k| *k != "null");
            }
            match kinds.as_slice() {
                [] => {}
                [one] => {
                    out.insert("type".into(), (*one).into());
                }
                many => {
                    let branches: Vec<Value> = many.iter().map(|k| json!({"type": k})).collect();
                    out.insert("anyOf".into(), branches.into());
                }
            }
        }
        _ => {}
    }
    for (k, val) in o {
        match k.as_str() {
            "type" | "nullable" | "anyOf" | "oneOf" => {}
            "properties" => {
                if let Value::Object(props) = val {
                    let cleaned: Map<String, Value> = props
                        .iter()
                        .map(|(name, s)| (name.clone(), clean(s, defs, depth + 1)))
                        .collect();
                    if !cleaned.is_empty() {
                        out.insert("properties".into(), Value::Object(cleaned));
                    }
                }
            }
            "items" => {
                let item = match val {
                    Value::Array(tuple) => tuple.first().cloned().unwrap_or(Value::Null),
                    other => other.clone(),
                };
                out.insert("items".into(), clean(&item, defs, depth + 1));
            }
            "enum" => {
                if let Value::Array(values) = val {
                    let strings: Option<Vec<&str>> = values
                        .iter()
                        .filter(|v| !v.is_null())
                        .map(Value::as_str)
                        .collect();
                    if values.iter().any(Value::is_null) {
                        nullable = true;
                    }
                    // Gemini takes string enums only.
                    if let Some(s) = strings.filter(|s| !s.is_empty()) {
                        out.insert("enum".into(), s.into());
                    }
                }
            }
            "const" => {
                if let Some(s) = val.as_str() {
                    out.insert("enum".into(), json!([s]));
                }
            }
            "format" | "required" => {} // checked below, once the type is known
            key if SCHEMA_KEYS.contains(&key) => {
                out.insert(k.clone(), val.clone());
            }
            _ => {}
        }
    }
    // anyOf / oneOf: null branches become `nullable`; one branch left is the schema itself.
    let branches = o
        .get("anyOf")
        .or_else(|| o.get("oneOf"))
        .and_then(Value::as_array);
    if let Some(branches) = branches {
        let mut kept: Vec<Value> = Vec::with_capacity(branches.len());
        for b in branches {
            if b.get("type").and_then(Value::as_str) == Some("null")
                && b.as_object().is_some_and(|m| m.len() == 1)
            {
                nullable = true;
                continue;
            }
            kept.push(clean(b, defs, depth + 1));
        }
        match kept.len() {
            0 => {}
            1 => {
                if let Some(Value::Object(only)) = kept.pop() {
                    for (k, v) in only {
                        out.entry(k).or_insert(v);
                    }
                }
            }
            _ => {
                out.insert("anyOf".into(), kept.into());
            }
        }
    }
    if out.contains_key("enum") && !out.contains_key("type") && !out.contains_key("anyOf") {
        out.insert("type".into(), "string".into());
    }
    if !out.contains_key("type") && !out.contains_key("anyOf") {
        if out.contains_key("properties") {
            out.insert("type".into(), "object".into());
        } else if out.contains_key("items") {
            out.insert("type".into(), "array".into());
        }
    }
    let kind = out
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    if let Some(f) = o.get("format").and_then(Value::as_str) {
        let allowed: &[&str] = match kind.as_deref() {
            Some("string") => &["enum", "date-time"],
            Some("integer") => &["int32", "int64"],
            Some("number") => &["float", "double"],
            _ => &[],
        };
        if allowed.contains(&f) {
            out.insert("format".into(), f.into());
        }
    }
    if let (Some(Value::Array(req)), Some(Value::Object(props))) =
        (o.get("required"), out.get("properties"))
    {
        let req: Vec<Value> = req
            .iter()
            .filter(|r| r.as_str().is_some_and(|n| props.contains_key(n)))
            .cloned()
            .collect();
        if !req.is_empty() {
            out.insert("required".into(), req.into());
        }
    }
    if nullable {
        out.insert("nullable".into(), true.into());
    }
    Value::Object(out)
}

/// Merges one cleaned schema into another: properties and required lists united, other
/// keywords taken from the later schema.
fn merge_schema(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (k.as_str(), into.get_mut(&k), v) {
            ("properties", Some(Value::Object(a)), Value::Object(b)) => a.extend(b),
            ("required", Some(Value::Array(a)), Value::Array(b)) => {
                for r in b {
                    if !a.contains(&r) {
                        a.push(r);
                    }
                }
            }
            (_, _, v) => {
                into.insert(k, v);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

/// Splits off the system instruction and turns the rest into `user` / `model` contents.
fn convert_messages(
    messages: &[Message],
    sign_calls: bool,
) -> Result<(Option<SystemInstruction<'_>>, Vec<Content<'_>>), Error> {
    // Tool results name their call by id; Gemini wants the function's name.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for m in messages {
        for c in m.tool_calls.iter().flatten() {
            names.insert(c.id.as_str(), c.function.name.as_str());
        }
    }
    let mut system: Vec<Part> = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (role, mut parts) = match m.role.as_str() {
            "system" | "developer" => {
                let mut parts = Vec::new();
                user_parts(&m.content, i, &mut parts)?;
                // The system instruction takes text only.
                system.extend(parts.into_iter().filter(|p| matches!(p, Part::Text(_))));
                continue;
            }
            "assistant" | "model" => ("model", model_parts(m, i, sign_calls)?),
            "tool" | "function" => ("user", vec![function_response(m, &names)]),
            // `user`, and roles Gemini has no name for: their content is the caller's.
            _ => {
                let mut parts = Vec::new();
                user_parts(&m.content, i, &mut parts)?;
                ("user", parts)
            }
        };
        if parts.is_empty() {
            continue; // Gemini refuses a turn without parts.
        }
        match contents.last_mut() {
            Some(c) if c.role == role => c.parts.append(&mut parts),
            _ => contents.push(Content { role, parts }),
        }
    }
    for c in &mut contents {
        // Function responses open the user turn that answers the calls.
        if c.role == "user" && c.parts.iter().any(Part::is_function_response) {
            let (mut responses, rest): (Vec<Part>, Vec<Part>) = std::mem::take(&mut c.parts)
                .into_iter()
                .partition(Part::is_function_response);
            responses.extend(rest);
            c.parts = responses;
        }
    }
    if contents.is_empty() {
        // Only system messages: Gemini needs contents, so they are the user's turn.
        if system.is_empty() {
            return Err(Error::invalid(
                "request JSON at `messages`: no message has any content",
            ));
        }
        contents.push(Content {
            role: "user",
            parts: std::mem::take(&mut system),
        });
    } else if contents[0].role == "model"
        && contents[0]
            .parts
            .iter()
            .any(|p| matches!(p, Part::FunctionCall { .. }))
    {
        // "Please ensure that function call turn comes immediately after a user turn …"
        contents.insert(
            0,
            Content {
                role: "user",
                parts: vec![Part::Text(Cow::Borrowed("."))],
            },
        );
    }
    let system = (!system.is_empty()).then_some(SystemInstruction { parts: system });
    Ok((system, contents))
}

/// A user (or system) message's content as parts: text, images, audio, files.
fn user_parts<'a>(
    content: &'a Option<Value>,
    msg: usize,
    out: &mut Vec<Part<'a>>,
) -> Result<(), Error> {
    match content {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            if !s.is_empty() {
                out.push(Part::Text(Cow::Borrowed(s)));
            }
            Ok(())
        }
        Some(Value::Array(parts)) => {
            for p in parts {
                if let Some(part) = content_part(p, msg)? {
                    out.push(part);
                }
            }
            Ok(())
        }
        Some(other) => Err(Error::invalid(format!(
            "request JSON at `messages[{msg}].content`: must be a string or an array of parts, not {}",
            json_kind(other)
        ))),
    }
}

/// Keys of a part already in Gemini's shape.
const NATIVE_PART_KEYS: &[&str] = &[
    "text",
    "inlineData",
    "inline_data",
    "fileData",
    "file_data",
    "functionCall",
    "functionResponse",
];

/// One OpenAI content part as a Gemini part.
fn content_part(p: &Value, msg: usize) -> Result<Option<Part<'_>>, Error> {
    let bad =
        |why: String| Error::invalid(format!("request JSON at `messages[{msg}].content`: {why}"));
    let o = match p {
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => return Ok(Some(Part::Text(Cow::Borrowed(s)))),
        Value::Object(o) => o,
        _ => return Ok(None),
    };
    let Some(kind) = o.get("type").and_then(Value::as_str) else {
        if o.keys().any(|k| NATIVE_PART_KEYS.contains(&k.as_str())) {
            return Ok(Some(Part::Raw(p)));
        }
        return Err(bad("a part without `type`".into()));
    };
    Ok(match kind {
        "text" => match o.get("text").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => Some(Part::Text(Cow::Borrowed(t))),
            _ => None,
        },
        "image_url" => {
            let (url, format) = match o.get("image_url") {
                Some(Value::String(u)) => (u.as_str(), None),
                Some(v) => (
                    v.get("url").and_then(Value::as_str).unwrap_or(""),
                    v.get("format").and_then(Value::as_str),
                ),
                None => ("", None),
            };
            Some(media_part(url, format, "image/jpeg", msg, "image_url")?)
        }
        "input_audio" => {
            let a = o.get("input_audio");
            let data = a
                .and_then(|a| a.get("data"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad("input_audio needs `data`".into()))?;
            let format = a
                .and_then(|a| a.get("format"))
                .and_then(Value::as_str)
                .unwrap_or("wav");
            Some(Part::InlineData {
                mime_type: Cow::Owned(format!("audio/{format}")),
                data,
            })
        }
        "file" => {
            let f = o.get("file");
            let format = f.and_then(|f| f.get("format")).and_then(Value::as_str);
            if let Some(data) = f.and_then(|f| f.get("file_data")).and_then(Value::as_str) {
                Some(media_part(
                    data,
                    format,
                    "application/pdf",
                    msg,
                    "file.file_data",
                )?)
            } else if let Some(id) = f.and_then(|f| f.get("file_id")).and_then(Value::as_str) {
                Some(Part::FileData {
                    mime_type: Cow::Owned(
                        format
                            .map(str::to_owned)
                            .unwrap_or_else(|| mime_from_uri(id, "application/pdf").to_owned()),
                    ),
                    file_uri: id,
                })
            } else {
                return Err(bad(
                    "a file part needs `file.file_data` or `file.file_id`".into()
                ));
            }
        }
        other => return Err(bad(format!("part type `{other}` has no Gemini equivalent"))),
    })
}

/// A data URL as inline data; a web, `gs://` or File API URI as file data.
fn media_part<'a>(
    url: &'a str,
    format: Option<&'a str>,
    default_mime: &'static str,
    msg: usize,
    field: &str,
) -> Result<Part<'a>, Error> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "request JSON at `messages[{msg}].content`: {field} {why}"
        ))
    };
    if let Some(rest) = url.strip_prefix("data:") {
        let (head, data) = rest
            .split_once(',')
            .ok_or_else(|| bad("is a data URL without data"))?;
        let mime = head
            .strip_suffix(";base64")
            .ok_or_else(|| bad("must be a base64 data URL (Gemini takes no other inline data)"))?;
        let mime = format
            .filter(|f| f.contains('/'))
            .unwrap_or(if mime.is_empty() { default_mime } else { mime });
        return Ok(Part::InlineData {
            mime_type: Cow::Borrowed(mime),
            data,
        });
    }
    if ["https://", "http://", "gs://"]
        .iter()
        .any(|s| url.starts_with(s))
    {
        let mime = match format.filter(|f| f.contains('/')) {
            Some(f) => f,
            None => mime_from_uri(url, default_mime),
        };
        return Ok(Part::FileData {
            mime_type: Cow::Borrowed(mime),
            file_uri: url,
        });
    }
    Err(bad("must be a data URL, an http(s) URL or a gs:// URI"))
}

/// The MIME type a URI's extension names.
fn mime_from_uri<'a>(uri: &str, default: &'a str) -> &'a str {
    let path = uri.split(['?', '#']).next().unwrap_or("");
    let ext = path
        .rsplit('/')
        .next()
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("heic") => "image/heic",
        Some("heif") => "image/heif",
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("mp3") => "audio/mp3",
        Some("wav") => "audio/wav",
        Some("flac") => "audio/flac",
        Some("mp4") => "video/mp4",
        Some("mov") => "video/mov",
        Some("webm") => "video/webm",
        _ if path.contains("youtube.com/") || path.contains("youtu.be/") => "video/mp4",
        _ => default,
    }
}

/// An assistant message: its text, then its tool calls as `functionCall` parts.
fn model_parts(m: &Message, msg: usize, sign_calls: bool) -> Result<Vec<Part<'_>>, Error> {
    let mut out = Vec::new();
    match &m.content {
        Some(Value::String(s)) if !s.is_empty() => out.push(Part::Text(Cow::Borrowed(s))),
        Some(Value::Array(parts)) => {
            for p in parts {
                // A model turn holds text; refusals and other OpenAI parts carry text too.
                if let Some(t) = p
                    .get("text")
                    .or_else(|| p.get("refusal"))
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    out.push(Part::Text(Cow::Borrowed(t)));
                } else if p.get("type").is_none() && p.is_object() {
                    out.push(Part::Raw(p));
                }
            }
        }
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(other) => {
            return Err(Error::invalid(format!(
                "request JSON at `messages[{msg}].content`: must be a string or an array of parts, not {}",
                json_kind(other)
            )))
        }
    }
    let mut first = true;
    for call in m.tool_calls.iter().flatten() {
        let signature = call
            .id
            .split_once(THOUGHT_SEPARATOR)
            .map(|(_, sig)| sig)
            .filter(|s| !s.is_empty());
        // Gemini 3 checks the signature of the first call of each step.
        let signature = match signature {
            None if first && sign_calls => Some(SKIP_SIGNATURE),
            s => s,
        };
        first = false;
        out.push(Part::FunctionCall {
            name: &call.function.name,
            args: tool_args(&call.function.arguments),
            signature,
        });
    }
    Ok(out)
}

/// Tool-call arguments as the object Gemini requires. Empty, invalid or non-object JSON
/// becomes `{}`: the turn stays valid and the conversation can go on.
fn tool_args(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

/// A `tool` (or legacy `function`) message as a `functionResponse` part.
fn function_response<'a>(m: &'a Message, names: &HashMap<&str, &'a str>) -> Part<'a> {
    let id = m.tool_call_id.as_deref().unwrap_or_default();
    let name = names
        .get(id)
        .copied()
        .or(m.name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or(id);
    let text = match &m.content {
        Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
        Some(Value::Array(_)) => Cow::Owned(crate::types::content_text(&m.content)),
        Some(Value::Null) | None => Cow::Borrowed(""),
        Some(other) => Cow::Owned(other.to_string()),
    };
    // An object result is the response; anything else is wrapped.
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "content": text }),
    };
    Part::FunctionResponse { name, response }
}

// ---------------------------------------------------------------------------------------------
// Response

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    #[serde(default, alias = "prompt_feedback")]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default, alias = "usage_metadata")]
    usage_metadata: Option<WireUsage>,
    #[serde(default, alias = "model_version")]
    model_version: Option<String>,
    #[serde(default, alias = "response_id")]
    response_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    #[serde(default)]
    content: Option<WireContent>,
    #[serde(default, alias = "finish_reason")]
    finish_reason: Option<String>,
    #[serde(default, alias = "finish_message")]
    finish_message: Option<String>,
    #[serde(default)]
    index: Option<u32>,
}

#[derive(Deserialize, Default)]
struct WireContent {
    #[serde(default)]
    parts: Vec<WirePart>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WirePart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default, alias = "thought_signature")]
    thought_signature: Option<String>,
    #[serde(default, alias = "function_call")]
    function_call: Option<WireFunctionCall>,
}

#[derive(Deserialize, Default)]
struct WireFunctionCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default, alias = "block_reason")]
    block_reason: Option<String>,
    #[serde(default, alias = "block_reason_message")]
    block_reason_message: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default, alias = "prompt_token_count")]
    prompt_token_count: Option<u64>,
    #[serde(default, alias = "candidates_token_count")]
    candidates_token_count: Option<u64>,
    #[serde(default, alias = "thoughts_token_count")]
    thoughts_token_count: Option<u64>,
    #[serde(default, alias = "tool_use_prompt_token_count")]
    tool_use_prompt_token_count: Option<u64>,
}

impl WireUsage {
    /// Thoughts are billed as output; tool-use prompt tokens as input.
    fn usage(&self) -> Usage {
        Usage::new(
            self.prompt_token_count
                .unwrap_or(0)
                .saturating_add(self.tool_use_prompt_token_count.unwrap_or(0)),
            self.candidates_token_count
                .unwrap_or(0)
                .saturating_add(self.thoughts_token_count.unwrap_or(0)),
        )
    }
}

/// Finish reasons of an answer cut off by a safety or content filter.
const POLICY_FINISH: &[&str] = &[
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
];

/// Finish reasons of a model that failed to produce a usable tool call.
const BROKEN_CALL_FINISH: &[&str] = &[
    "MALFORMED_FUNCTION_CALL",
    "UNEXPECTED_TOOL_CALL",
    "TOO_MANY_TOOL_CALLS",
];

/// Gemini's `finishReason` as an OpenAI `finish_reason`.
fn finish_reason(reason: &str, tool_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        r if POLICY_FINISH.contains(&r) => "content_filter",
        _ if tool_calls => "tool_calls",
        // STOP, LANGUAGE, OTHER, FINISH_REASON_UNSPECIFIED, and reasons added later.
        _ => "stop",
    }
}

/// The error of a prompt Gemini refused to answer (HTTP 200, `promptFeedback.blockReason`).
fn blocked_prompt(fb: &PromptFeedback) -> Option<Error> {
    let reason = fb.block_reason.as_deref()?;
    let mut message = format!("Gemini blocked the prompt (blockReason {reason})");
    if let Some(m) = fb.block_reason_message.as_deref().filter(|m| !m.is_empty()) {
        message.push_str(": ");
        message.push_str(m);
    }
    Some(Error::new(Status::ContentPolicy, message))
}

/// The error of a candidate that ended with nothing to show: a safety stop is a refusal, a
/// broken tool call a model failure worth retrying.
fn empty_candidate_error(reason: &str, message: Option<&str>) -> Option<Error> {
    let detail = message
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    if POLICY_FINISH.contains(&reason) {
        return Some(Error::new(
            Status::ContentPolicy,
            format!("Gemini stopped the answer (finishReason {reason}){detail}"),
        ));
    }
    if BROKEN_CALL_FINISH.contains(&reason) {
        return Some(Error::upstream(format!(
            "Gemini produced no usable answer (finishReason {reason}){detail}"
        )));
    }
    None
}

/// A fresh tool-call id, with the call's thought signature when it has one.
fn tool_call_id(given: Option<&str>, signature: Option<&str>) -> String {
    let mut id = match given.filter(|g| !g.is_empty()) {
        Some(g) => g.to_owned(),
        None => {
            let mut id = String::with_capacity(29);
            id.push_str("call_");
            id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(24));
            id
        }
    };
    if let Some(sig) = signature.filter(|s| !s.is_empty()) {
        id.push_str(THOUGHT_SEPARATOR);
        id.push_str(sig);
    }
    id
}

/// A function call's `args` as OpenAI's argument string.
fn arguments_of(args: Option<Value>) -> String {
    match args {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(s)) => s,
        Some(v) => v.to_string(),
    }
}

/// What one candidate says, in OpenAI's terms.
#[derive(Default)]
struct Said {
    text: String,
    saw_text: bool,
    reasoning: String,
    tool_calls: Vec<ToolCall>,
}

impl Said {
    fn of(content: Option<WireContent>) -> Said {
        let mut s = Said::default();
        for p in content.map(|c| c.parts).unwrap_or_default() {
            if let Some(call) = p.function_call {
                s.tool_calls.push(ToolCall {
                    id: tool_call_id(call.id.as_deref(), p.thought_signature.as_deref()),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: call.name,
                        arguments: arguments_of(call.args),
                    },
                });
            } else if let Some(t) = p.text {
                if p.thought == Some(true) {
                    s.reasoning.push_str(&t);
                } else {
                    s.saw_text = true;
                    s.text.push_str(&t);
                }
            }
        }
        s
    }

    fn is_empty(&self) -> bool {
        self.text.is_empty() && self.tool_calls.is_empty()
    }
}

/// A 200 body: a `GenerateContentResponse`, or an error that came with a 200.
pub(crate) fn parse_response(model: &str, body: &[u8]) -> Result<ChatResponse, Error> {
    let wire: WireResponse = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => {
            if o.contains_key("error") {
                return Err(error_from(None, body));
            }
            serde_json::from_value(Value::Object(o)).map_err(|e| {
                Error::upstream(format!(
                    "upstream answer is not a Gemini response ({e}): {}",
                    body_excerpt(body)
                ))
            })?
        }
        Ok(Value::Array(_)) if is_error_body(body) => return Err(error_from(None, body)),
        _ => {
            return Err(Error::upstream(format!(
                "upstream answer is not a Gemini response: {}",
                body_excerpt(body)
            )))
        }
    };
    if wire.candidates.is_empty() {
        if let Some(e) = wire.prompt_feedback.as_ref().and_then(blocked_prompt) {
            return Err(e);
        }
        return Err(Error::upstream(format!(
            "Gemini answered without any candidate: {}",
            body_excerpt(body)
        )));
    }
    let mut choices = Vec::with_capacity(wire.candidates.len());
    for (i, c) in wire.candidates.into_iter().enumerate() {
        let index = c.index.unwrap_or(i as u32);
        let said = Said::of(c.content);
        let reason = c.finish_reason.as_deref().unwrap_or("STOP");
        if index == 0 && said.is_empty() {
            if let Some(e) = empty_candidate_error(reason, c.finish_message.as_deref()) {
                return Err(e);
            }
        }
        let has_calls = !said.tool_calls.is_empty();
        choices.push(Choice {
            index,
            message: ResponseMessage {
                content: (said.saw_text || !has_calls).then_some(said.text),
                tool_calls: has_calls.then_some(said.tool_calls),
                reasoning_content: (!said.reasoning.is_empty()).then_some(said.reasoning),
                ..ResponseMessage::default()
            },
            finish_reason: Some(finish_reason(reason, has_calls).to_owned()),
        });
    }
    choices.sort_by_key(|c| c.index);
    Ok(ChatResponse {
        id: wire
            .response_id
            .unwrap_or_else(|| tool_call_id(None, None).replacen("call_", "chatcmpl-", 1)),
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: wire
            .model_version
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| model.to_owned()),
        choices,
        usage: Some(wire.usage_metadata.unwrap_or_default().usage()),
        llmr: None,
    })
}

fn is_error_body(body: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o.contains_key("error"),
        Ok(Value::Array(a)) => a.first().is_some_and(|e| e.get("error").is_some()),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// What a Google error body says beyond its message.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct GoogleError {
    pub parts: ErrorParts,
    /// `error.code`: the HTTP status the error stands for.
    pub http_status: Option<u16>,
    /// `ErrorInfo.reason` (`API_KEY_INVALID`, `RATE_LIMIT_EXCEEDED`, …).
    pub reason: Option<String>,
    /// `RetryInfo.retryDelay`, in seconds.
    pub retry_delay: Option<f64>,
    /// A `QuotaFailure` on a per-day quota: no retry soon can help.
    pub daily_quota: bool,
}

impl PartialEq for ErrorParts {
    fn eq(&self, other: &ErrorParts) -> bool {
        self.code == other.code && self.kind == other.kind && self.message == other.message
    }
}

/// `ErrorInfo.reason`s that mean the key or token is not good (Gemini answers a bad key with 400).
const AUTH_REASONS: &[&str] = &[
    "API_KEY_INVALID",
    "API_KEY_EXPIRED",
    "API_KEY_SERVICE_BLOCKED",
    "API_KEY_HTTP_REFERRER_BLOCKED",
    "API_KEY_IP_ADDRESS_BLOCKED",
    "API_KEY_ANDROID_APP_BLOCKED",
    "API_KEY_IOS_APP_BLOCKED",
    "ACCESS_TOKEN_EXPIRED",
    "ACCESS_TOKEN_TYPE_UNSUPPORTED",
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    "CREDENTIALS_MISSING",
    "SERVICE_DISABLED",
];

/// `{"error":{"code","message","status","details"}}`, also wrapped in a one-element array (the
/// non-SSE stream form). A body of another shape is read as OpenAI's envelopes are.
pub(crate) fn google_error(body: &[u8]) -> GoogleError {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            return GoogleError {
                parts: super::openai::error_parts(body),
                ..GoogleError::default()
            }
        }
    };
    let v = match v {
        Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
        v => v,
    };
    let Some(err) = v.get("error").filter(|e| e.is_object()) else {
        return GoogleError {
            parts: super::openai::error_parts(body),
            ..GoogleError::default()
        };
    };
    let text = |k: &str| err.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut out = GoogleError {
        parts: ErrorParts {
            code: text("status"),
            kind: None,
            message: text("message").unwrap_or_default(),
        },
        http_status: err
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (100..600).contains(c)),
        ..GoogleError::default()
    };
    for d in err
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = d.get("@type").and_then(Value::as_str).unwrap_or("");
        if kind.ends_with("google.rpc.ErrorInfo") {
            out.reason = d.get("reason").and_then(Value::as_str).map(str::to_owned);
        } else if kind.ends_with("google.rpc.RetryInfo") {
            out.retry_delay = d.get("retryDelay").and_then(duration_seconds);
        } else if kind.ends_with("google.rpc.QuotaFailure") {
            let daily = |v: &Value| {
                ["quotaId", "quotaMetric"].iter().any(|k| {
                    v.get(k)
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.to_ascii_lowercase().contains("perday"))
                })
            };
            out.daily_quota |= d
                .get("violations")
                .and_then(Value::as_array)
                .is_some_and(|vs| vs.iter().any(daily));
        }
    }
    out.parts.kind.clone_from(&out.reason);
    if out.parts.message.is_empty() && out.parts.code.is_none() {
        out.parts = super::openai::error_parts(body);
    }
    out
}

/// A protobuf `Duration` in its JSON form (`"12s"`, `"1.5s"`, `"0.250s"`) in seconds; also an
/// object `{"seconds", "nanos"}`.
pub(crate) fn duration_seconds(v: &Value) -> Option<f64> {
    let secs = match v {
        Value::String(s) => s.trim().strip_suffix('s')?.parse::<f64>().ok()?,
        Value::Object(o) => {
            let whole = match o.get("seconds") {
                Some(Value::String(s)) => s.parse::<f64>().ok()?,
                Some(n) => n.as_f64()?,
                None => 0.0,
            };
            whole + o.get("nanos").and_then(Value::as_f64).unwrap_or(0.0) / 1e9
        }
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then_some(secs)
}

/// A Google error classified. `http_status` is `None` for an error inside a 200 (a body or a
/// stream event): it is then classified as the HTTP answer its `code` stands for, so that an
/// `INTERNAL` event is a retryable 500 and a `RESOURCE_EXHAUSTED` one a 429.
pub(crate) fn error_from(http_status: Option<u16>, body: &[u8]) -> Error {
    classify_google(http_status, google_error(body))
}

/// [`classify`] with what only a Google body tells: key errors answered with 400 are auth
/// errors, `RetryInfo` is the retry hint, a per-day quota is a quota refusal.
pub(crate) fn classify_google(http_status: Option<u16>, g: GoogleError) -> Error {
    let status = http_status.or(g.http_status);
    let auth = g
        .reason
        .as_deref()
        .is_some_and(|r| AUTH_REASONS.contains(&r))
        || matches!(
            g.parts.code.as_deref(),
            Some("UNAUTHENTICATED" | "PERMISSION_DENIED")
        );
    let mut e = classify(status, g.parts);
    if auth && e.status != Status::ContextOverflow {
        e.status = Status::Auth;
    }
    if g.retry_delay.is_some() {
        e.retry_after = g.retry_delay;
    }
    e.quota |= g.daily_quota;
    e
}

// ---------------------------------------------------------------------------------------------
// Stream

/// Gemini SSE (`alt=sse`): every event is a whole `GenerateContentResponse` holding new parts;
/// function calls come whole; no terminal event, the stream ends at EOF after the candidate's
/// `finishReason`. Only candidate 0 is streamed.
pub(crate) struct GeminiStream {
    sse: SseDecoder,
    id: Arc<str>,
    model: Arc<str>,
    created: u64,
    started: bool,
    tools: u32,
    payload: bool,
    usage: Option<Usage>,
    finished: bool,
}

impl GeminiStream {
    pub(crate) fn new(model: &str) -> GeminiStream {
        GeminiStream {
            sse: SseDecoder::new(),
            id: Arc::default(),
            model: model.into(),
            created: unix_now(),
            started: false,
            tools: 0,
            payload: false,
            usage: None,
            finished: false,
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

    fn on_event(&mut self, data: &str, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(());
        }
        let value: Value = serde_json::from_str(data).map_err(|e| {
            Error::upstream(format!(
                "malformed stream event ({e}): {}",
                body_excerpt(data.as_bytes())
            ))
        })?;
        if is_error_value(&value) {
            return Err(error_from(None, data.as_bytes()));
        }
        let ev: WireResponse = serde_json::from_value(value).map_err(|e| {
            Error::upstream(format!(
                "malformed stream event ({e}): {}",
                body_excerpt(data.as_bytes())
            ))
        })?;
        if self.id.is_empty() {
            if let Some(id) = ev.response_id.filter(|i| !i.is_empty()) {
                self.id = id.into();
            } else {
                self.id = tool_call_id(None, None)
                    .replacen("call_", "chatcmpl-", 1)
                    .into();
            }
        }
        if let Some(m) = ev.model_version.filter(|m| !m.is_empty()) {
            // Every event names it: kept (and shared by the chunks) while it is the same.
            keep(&mut self.model, &m);
        }
        if let Some(u) = ev.usage_metadata {
            self.usage = Some(u.usage());
        }
        let Some(c) = ev
            .candidates
            .into_iter()
            .find(|c| c.index.unwrap_or(0) == 0)
        else {
            if let Some(e) = ev.prompt_feedback.as_ref().and_then(blocked_prompt) {
                return Err(e);
            }
            return Ok(()); // A usage-only event.
        };
        if !self.started {
            self.started = true;
            out.push_back(self.chunk(
                Delta {
                    role: Some("assistant".to_owned()),
                    ..Delta::default()
                },
                None,
            ));
        }
        for p in c.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(call) = p.function_call {
                let index = self.tools;
                self.tools += 1;
                self.payload = true;
                out.push_back(self.chunk(
                    Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index,
                            id: Some(tool_call_id(
                                call.id.as_deref(),
                                p.thought_signature.as_deref(),
                            )),
                            kind: Some("function".to_owned()),
                            function: Some(FunctionDelta {
                                name: Some(call.name),
                                arguments: Some(arguments_of(call.args)),
                            }),
                        }]),
                        ..Delta::default()
                    },
                    None,
                ));
            } else if let Some(t) = p.text.filter(|t| !t.is_empty()) {
                let delta = if p.thought == Some(true) {
                    Delta {
                        reasoning_content: Some(t),
                        ..Delta::default()
                    }
                } else {
                    self.payload = true;
                    Delta {
                        content: Some(t),
                        ..Delta::default()
                    }
                };
                out.push_back(self.chunk(delta, None));
            }
        }
        if let Some(reason) = c.finish_reason.as_deref() {
            if !self.payload {
                if let Some(e) = empty_candidate_error(reason, c.finish_message.as_deref()) {
                    return Err(e);
                }
            }
            self.finished = true;
            out.push_back(self.chunk(
                Delta::default(),
                Some(finish_reason(reason, self.tools > 0)),
            ));
        }
        Ok(())
    }
}

fn is_error_value(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.contains_key("error"),
        Value::Array(a) => a.first().is_some_and(|e| e.get("error").is_some()),
        _ => false,
    }
}

impl StreamParser for GeminiStream {
    fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<bool, Error> {
        let mut sse = std::mem::take(&mut self.sse);
        let r = sse.feed(
            bytes,
            |ev| self.on_event(&ev.data, out),
            || Error::upstream("stream event larger than 16 MiB"),
        );
        self.sse = sse;
        // Gemini has no terminal event: the stream ends at EOF.
        r.map(|()| false)
    }

    fn finish(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if let Some(ev) = self.sse.finish() {
            self.on_event(&ev.data, out)?;
        }
        if !self.finished {
            return Err(Error::upstream(
                "stream ended before it was complete (no finishReason)",
            ));
        }
        if let Some(u) = self.usage {
            let mut chunk = self.chunk(Delta::default(), None);
            chunk.choices.clear();
            chunk.usage = Some(u);
            out.push_back(chunk);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::types::StreamAssembler;

    fn endpoint_with(model: &str, entry: &str) -> Endpoint {
        let c = config::parse(&format!(
            r#"{{"global_llm_configs":[{{"provider":"GOOGLE","model_name":"{model}","api_key":"AIza-test-key"{entry}}}]}}"#
        ))
        .unwrap();
        Gemini.endpoint(&c.deployments[0], Some(8192)).unwrap()
    }

    fn endpoint() -> Endpoint {
        endpoint_with("gemini-2.5-flash", "")
    }

    fn body_of(ep: &Endpoint, request: &str) -> Value {
        let req = ChatRequest::from_json(request).unwrap();
        serde_json::from_slice(&Gemini.request_body(ep, &req, false).unwrap()).unwrap()
    }

    fn body(request: &str) -> Value {
        body_of(&endpoint(), request)
    }

    #[test]
    fn urls_and_key_header() {
        let ep = endpoint_with("gemini/gemini-2.5-pro", "");
        assert_eq!(
            ep.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"
        );
        assert_eq!(
            ep.stream_url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
        assert_eq!(ep.headers["x-goog-api-key"], "AIza-test-key");
        assert!(ep.headers["x-goog-api-key"].is_sensitive());
        assert!(!format!("{ep:?}").contains("AIza-test-key"));
        // A base that names a version, or the `models` collection, is kept as it is.
        let ep = endpoint_with(
            "gemini-2.0-flash",
            r#","api_base":"http://127.0.0.1:9/t/v1""#,
        );
        assert_eq!(
            ep.url,
            "http://127.0.0.1:9/t/v1/models/gemini-2.0-flash:generateContent"
        );
        let ep = endpoint_with(
            "gemini-2.0-flash",
            r#","litellm_params":{"api_version":"v1alpha"}"#,
        );
        assert!(ep.url.contains("/v1alpha/models/"), "{}", ep.url);
        let c = config::parse(
            r#"{"global_llm_configs":[{"provider":"GOOGLE","model_name":"a/b?c","api_key":"k"}]}"#,
        )
        .unwrap();
        assert!(Gemini.endpoint(&c.deployments[0], None).is_err());
    }

    #[test]
    fn system_roles_and_merged_turns() {
        let b = body(
            r#"{"messages":[
                {"role":"system","content":"Be brief."},
                {"role":"developer","content":[{"type":"text","text":"Use French."}]},
                {"role":"user","content":"Hi"},
                {"role":"user","content":[{"type":"text","text":"there"}]},
                {"role":"assistant","content":"Salut"},
                {"role":"user","content":"Again"}]}"#,
        );
        assert_eq!(
            b["systemInstruction"],
            json!({"parts":[{"text":"Be brief."},{"text":"Use French."}]})
        );
        assert_eq!(
            b["contents"],
            json!([
                {"role":"user","parts":[{"text":"Hi"},{"text":"there"}]},
                {"role":"model","parts":[{"text":"Salut"}]},
                {"role":"user","parts":[{"text":"Again"}]}
            ])
        );
    }

    #[test]
    fn generation_config_from_request_and_deployment() {
        let ep = endpoint_with(
            "gemini-2.5-flash",
            r#","litellm_params":{"temperature":0.3,"top_k":40,"max_tokens":100}"#,
        );
        let b = body_of(
            &ep,
            r#"{"messages":[{"role":"user","content":"x"}],"temperature":0.9,"top_p":0.5,
                "max_completion_tokens":64,"stop":["END","", "STOP"],"seed":7,
                "response_format":{"type":"json_schema","json_schema":{"name":"r","schema":
                    {"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}}}}"#,
        );
        let gc = &b["generationConfig"];
        assert_eq!(gc["temperature"], 0.9, "the request wins");
        assert_eq!(gc["topP"], 0.5);
        assert_eq!(gc["topK"], 40, "the deployment's default");
        assert_eq!(gc["maxOutputTokens"], 64);
        assert_eq!(gc["stopSequences"], json!(["END", "STOP"]));
        assert_eq!(gc["seed"], 7);
        assert_eq!(gc["responseMimeType"], "application/json");
        assert_eq!(
            gc["responseSchema"],
            json!({"type":"object","properties":{"a":{"type":"string"}}})
        );
        assert!(b.get("model").is_none() && b.get("messages").is_none());
    }

    #[test]
    fn tools_calls_and_results_by_name() {
        let b = body(
            r#"{"messages":[
                {"role":"user","content":"Weather in Paris?"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
                    "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                {"role":"tool","tool_call_id":"call_1","content":"{\"temp\":21}"},
                {"role":"tool","tool_call_id":"call_unknown","content":"plain text"}],
              "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather",
                  "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],
                  "$schema":"http://json-schema.org/draft-07/schema#"}}},
                  {"type":"function","function":{"name":"now","parameters":{"type":"object","properties":{}}}}],
              "tool_choice":{"type":"function","function":{"name":"get_weather"}}}"#,
        );
        assert_eq!(
            b["tools"],
            json!([{"functionDeclarations":[
                {"name":"get_weather","description":"Weather","parameters":
                    {"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},
                {"name":"now"}]}])
        );
        assert_eq!(
            b["toolConfig"],
            json!({"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["get_weather"]}})
        );
        let contents = b["contents"].as_array().unwrap();
        assert_eq!(
            contents[1],
            json!({"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}}]})
        );
        assert_eq!(contents[2]["role"], "user");
        assert_eq!(
            contents[2]["parts"][0],
            json!({"functionResponse":{"name":"get_weather","response":{"temp":21}}})
        );
        // An unknown id still answers; a non-object result is wrapped.
        assert_eq!(
            contents[2]["parts"][1]["functionResponse"]["response"],
            json!({"content":"plain text"})
        );
        for (choice, mode) in [("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")] {
            let b = body(&format!(
                r#"{{"messages":[{{"role":"user","content":"x"}}],"tool_choice":"{choice}",
                    "tools":[{{"type":"function","function":{{"name":"f"}}}}]}}"#
            ));
            assert_eq!(b["toolConfig"]["functionCallingConfig"]["mode"], mode);
        }
        // Refused by llmr's schema before any translation.
        let e = ChatRequest::from_json(
            r#"{"messages":[{"role":"user","content":"x"}],"tool_choice":"sometimes",
                "tools":[{"type":"function","function":{"name":"f"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
    }

    #[test]
    fn thought_signatures_ride_in_the_call_id() {
        let ep = endpoint_with("gemini-3-pro-preview", "");
        let resp = parse_response(
            &ep.model,
            br#"{"candidates":[{"content":{"role":"model","parts":[
                {"functionCall":{"name":"f","args":{"a":1}},"thoughtSignature":"SIG123"}]},
                "finishReason":"STOP"}]}"#,
        )
        .unwrap();
        let call = &resp.choices[0].message.tool_calls.as_ref().unwrap()[0];
        assert!(
            call.id.ends_with("__thought__SIG123"),
            "the signature rides in the id: {}",
            call.id
        );
        assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        // Sent back in the history, the signature is restored beside the call.
        let request = json!({"messages":[
            {"role":"user","content":"x"},
            {"role":"assistant","tool_calls":[{"id": call.id, "type":"function",
                "function":{"name":"f","arguments":"{\"a\":1}"}}]},
            {"role":"tool","tool_call_id": call.id, "content":"ok"}]});
        let b = body_of(&ep, &request.to_string());
        assert_eq!(b["contents"][1]["parts"][0]["thoughtSignature"], "SIG123");
        assert_eq!(
            b["contents"][2]["parts"][0]["functionResponse"]["name"],
            "f"
        );
    }

    #[test]
    fn text_response_with_usage() {
        let resp = parse_response(
            "gemini-2.5-flash",
            br#"{"candidates":[{"content":{"role":"model","parts":[
                    {"text":"thinking...","thought":true},{"text":"Hello"},{"text":" world"}]},
                 "finishReason":"STOP","index":0}],
               "usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":5,"thoughtsTokenCount":3,"totalTokenCount":18},
               "modelVersion":"gemini-2.5-flash-001","responseId":"resp-1"}"#,
        )
        .unwrap();
        assert_eq!(resp.id, "resp-1");
        assert_eq!(resp.model, "gemini-2.5-flash-001");
        let m = &resp.choices[0].message;
        assert_eq!(m.content.as_deref(), Some("Hello world"));
        assert_eq!(m.reasoning_content.as_deref(), Some("thinking..."));
        assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("stop"));
        let u = resp.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (10, 8));
        let resp = parse_response(
            "m",
            br#"{"candidates":[{"content":{"parts":[{"text":"cut"}]},"finishReason":"MAX_TOKENS"}]}"#,
        )
        .unwrap();
        assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("length"));
    }

    #[test]
    fn safety_blocks_are_content_policy() {
        let e = parse_response(
            "m",
            br#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},"usageMetadata":{"promptTokenCount":8}}"#,
        )
        .unwrap_err();
        assert_eq!(e.status, Status::ContentPolicy);
        assert!(e.message.contains("SAFETY"), "{}", e.message);
        let e = parse_response(
            "m",
            br#"{"candidates":[{"finishReason":"PROHIBITED_CONTENT","index":0}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.status, Status::ContentPolicy);
        // Text that came before a safety stop is kept, flagged as filtered.
        let r = parse_response(
            "m",
            br#"{"candidates":[{"content":{"parts":[{"text":"partial"}]},"finishReason":"SAFETY"}]}"#,
        )
        .unwrap();
        assert_eq!(
            r.choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );
        let e = parse_response(
            "m",
            br#"{"candidates":[{"finishReason":"MALFORMED_FUNCTION_CALL"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.status, Status::Upstream);
    }

    fn http_error(status: u16, body: &str) -> Error {
        Gemini.parse_error(&endpoint(), status, body.as_bytes())
    }

    #[test]
    fn error_bodies() {
        // Verbatim shapes of the Gemini API's errors.
        let e = http_error(
            400,
            r#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        let e = http_error(
            400,
            r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",
                "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#,
        );
        assert_eq!(e.status, Status::Auth);
        let e = http_error(
            429,
            r#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED",
                "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"27s"}]}}"#,
        );
        assert_eq!(e.status, Status::RateLimited);
        assert_eq!(e.retry_after, Some(27.0));
        let e = http_error(
            429,
            r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[
                {"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}}"#,
        );
        assert_eq!(e.status, Status::RateLimited);
        assert!(e.quota, "a per-day quota is not worth a quick retry");
        let e = http_error(
            503,
            r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
        );
        assert_eq!(e.status, Status::Upstream);
        let e = http_error(
            404,
            r#"{"error":{"code":404,"message":"models/gemini-9 is not found for API version v1beta","status":"NOT_FOUND"}}"#,
        );
        assert_eq!(e.status, Status::BadRequest);
        // The one-element array form, and a body that is not JSON.
        let e = http_error(
            500,
            r#"[{"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}}]"#,
        );
        assert_eq!(e.status, Status::Upstream);
        assert!(e.message.contains("Internal error"), "{}", e.message);
        assert_eq!(
            http_error(502, "<html>bad gateway</html>").status,
            Status::Upstream
        );
        // A 200 with an error inside.
        let e = parse_response(
            "m",
            br#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.status, Status::RateLimited);
    }

    fn run_stream(input: &str, piece: usize) -> (Vec<ChatChunk>, Result<(), Error>) {
        let mut p = Gemini.stream_parser(&endpoint());
        let mut out = VecDeque::new();
        for bytes in input.as_bytes().chunks(piece) {
            if let Err(e) = p.feed(bytes, &mut out) {
                return (out.into_iter().collect(), Err(e));
            }
        }
        let r = p.finish(&mut out);
        (out.into_iter().collect(), r)
    }

    fn assemble(chunks: &[ChatChunk]) -> ChatResponse {
        let mut a = StreamAssembler::default();
        for c in chunks {
            a.push(c);
        }
        a.into_response()
    }

    const TEXT_STREAM: &str = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}],",
        "\"usageMetadata\": {\"promptTokenCount\": 4},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo\\nthere\"}],\"role\": \"model\"},\"index\": 0}]}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],",
        "\"usageMetadata\": {\"promptTokenCount\": 4,\"candidatesTokenCount\": 3,\"totalTokenCount\": 7}}\r\n\r\n",
    );

    #[test]
    fn stream_text_survives_any_split() {
        for piece in 1..=TEXT_STREAM.len().min(64) {
            let (chunks, r) = run_stream(TEXT_STREAM, piece);
            r.unwrap();
            let resp = assemble(&chunks);
            assert_eq!(
                resp.choices[0].message.content.as_deref(),
                Some("Hello\nthere"),
                "piece {piece}"
            );
            assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("stop"));
            let u = resp.usage.unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens), (4, 3));
            assert_eq!(resp.id, "r1");
        }
    }

    #[test]
    fn stream_function_calls_arrive_whole() {
        let input = concat!(
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[",
            "{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Paris\"}}},",
            "{\"functionCall\":{\"name\":\"now\"}}]},\"finishReason\":\"STOP\"}]}\n\n"
        );
        let (chunks, r) = run_stream(input, 7);
        r.unwrap();
        let resp = assemble(&chunks);
        let calls = resp.choices[0].message.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
        assert_eq!(calls[1].function.arguments, "{}");
        assert_ne!(calls[0].id, calls[1].id);
        assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn stream_errors_blocks_and_truncation() {
        // Cut before the finishReason: truncated, what came is kept.
        let cut = &TEXT_STREAM[..TEXT_STREAM
            .find("data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\"}]")
            .unwrap()];
        let (chunks, r) = run_stream(cut, 5);
        assert_eq!(r.unwrap_err().status, Status::Upstream);
        assert_eq!(
            assemble(&chunks).choices[0].message.content.as_deref(),
            Some("Hello\nthere")
        );
        // An error event mid-stream.
        let input = concat!(
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\n\n",
            "data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\n\n"
        );
        let (chunks, r) = run_stream(input, 3);
        assert_eq!(r.unwrap_err().status, Status::Upstream);
        assert!(!chunks.is_empty());
        // A blocked prompt in a stream.
        let input = "data: {\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"}}\n\n";
        let (_, r) = run_stream(input, 4);
        assert_eq!(r.unwrap_err().status, Status::ContentPolicy);
        // Garbage.
        let (_, r) = run_stream("data: {not json\n\n", 2);
        assert_eq!(r.unwrap_err().status, Status::Upstream);
    }

    #[test]
    fn schemas_are_cleaned_into_gemini_s_subset() {
        let s = clean_schema(&json!({
            "$defs": {"Unit": {"type": "string", "enum": ["c", "f"]}},
            "type": "object",
            "properties": {
                "unit": {"$ref": "#/$defs/Unit"},
                "n": {"type": ["integer", "null"], "exclusiveMinimum": 0},
                "k": {"const": "x"},
                "alt": {"oneOf": [{"type": "string"}, {"type": "number"}]}
            },
            "required": ["unit", "missing"],
            "additionalProperties": false
        }));
        assert_eq!(
            s["properties"]["unit"],
            json!({"type": "string", "enum": ["c", "f"]})
        );
        assert_eq!(s["properties"]["n"]["nullable"], true);
        assert_eq!(s["properties"]["n"]["type"], "integer");
        assert!(s["properties"]["n"].get("exclusiveMinimum").is_none());
        assert_eq!(s["properties"]["k"]["enum"], json!(["x"]));
        assert!(s["properties"]["alt"].get("anyOf").is_some());
        assert_eq!(s["required"], json!(["unit"]));
        assert!(s.get("additionalProperties").is_none() && s.get("$defs").is_none());
        // A self-referencing schema ends; it does not recurse forever.
        let s = clean_schema(
            &json!({"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
                                     "$ref": "#/$defs/N"}),
        );
        assert_eq!(s["type"], "object");
    }
}
