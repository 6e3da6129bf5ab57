//! The OpenAI-shaped types every provider translates to and from.
//!
//! A request is parsed once into [`ChatRequest`]: the fields a provider may need to translate are
//! typed; everything else rides in `extra` and passes through untouched to OpenAI-compatible hosts.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::errors::Error;

/// A chat-completion request: the OpenAI body plus llmr's own `timeout`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ChatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// `"none"`, `"auto"`, `"required"` or an object.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tool_choice_value"
    )]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// A string or an array of strings.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "stop_value"
    )]
    pub stop: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Seconds; overrides the router's timeout for this request. Never sent upstream.
    #[serde(default, skip_serializing)]
    pub timeout: Option<f64>,
    /// Ignored (the function called decides), but still a boolean. Never sent as given.
    #[serde(default, skip_serializing)]
    pub stream: Option<bool>,
    /// Every other field, passed through to OpenAI-compatible providers.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Request fields that are typed above; a deployment's default params must not duplicate them.
pub const TYPED_REQUEST_FIELDS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "user",
    "timeout",
    "stream",
];

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Message {
    pub role: String,
    /// A string, an array of content parts, or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "objects"
    )]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ToolCall {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    #[serde(deserialize_with = "object")]
    pub function: FunctionCall,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct FunctionCall {
    #[serde(default)]
    pub name: String,
    /// Always a JSON string on the wire; an object given by the caller is serialised (the seed's
    /// leniency), and text that is not valid JSON is kept as it is.
    #[serde(default, deserialize_with = "arguments_as_string")]
    pub arguments: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Tool {
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionDef,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema: an object.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_value"
    )]
    pub parameters: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

pub(crate) fn function_type() -> String {
    "function".to_owned()
}

/// A struct that must come as a JSON object: serde's derive would also take an array of its
/// fields in order, which no caller means.
fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(ObjectSeed::<T>(std::marker::PhantomData))
}

/// [`object`] for each element of an optional array.
fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    struct Elements<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Elements<T> {
        type Value = Option<Vec<T>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of objects")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(x) = seq.next_element_seed(ObjectSeed::<T>(std::marker::PhantomData))? {
                out.push(x);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_option(Elements::<T>(std::marker::PhantomData))
}

struct ObjectSeed<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> serde::de::DeserializeSeed<'de> for ObjectSeed<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectSeed<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
    }
}

/// The longest request `timeout` accepted, in seconds (the router's own limit): a day.
pub const MAX_TIMEOUT_SECONDS: f64 = 86_400.0;

fn tool_choice_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        // Any case: some providers' own spellings ("NONE") reach them as given.
        Some(Value::String(s))
            if ["none", "auto", "required"]
                .iter()
                .any(|w| s.eq_ignore_ascii_case(w)) =>
        {
            Ok(Some(Value::String(s)))
        }
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err(serde::de::Error::custom(
            "must be \"none\", \"auto\", \"required\" or an object",
        )),
    }
}

fn stop_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::String(_)) => Ok(Some(v)),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(Some(Value::Array(a))),
        Some(_) => Err(serde::de::Error::custom(
            "must be a string or an array of strings",
        )),
    }
}

fn object_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err(serde::de::Error::custom("must be an object")),
    }
}

fn arguments_as_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

impl ChatRequest {
    /// Parses and checks a request body. Errors name the offending field.
    pub fn from_json(json: &str) -> Result<ChatRequest, Error> {
        // The plain parse first: the path-tracking one allocates a segment per key it passes.
        // Only a request that fails is parsed again, with the path, for the message (the same
        // `Deserialize`, so the same outcome).
        let mut de = serde_json::Deserializer::from_str(json);
        if let Ok(mut req) = ChatRequest::deserialize(&mut de) {
            de.end()
                .map_err(|e| Error::invalid(format!("request JSON: {e}")))?;
            req.normalize()?;
            return Ok(req);
        }
        let mut de = serde_json::Deserializer::from_str(json);
        let mut req: ChatRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let path = crate::errors::excerpt(&path, crate::errors::MAX_QUOTED);
            // serde quotes the offending value, which may be the caller's 100 MB string.
            let inner = e.into_inner().to_string();
            let inner = crate::errors::excerpt(&inner, crate::errors::MAX_QUOTED * 2);
            if path == "." || path == "?" || path.is_empty() {
                Error::invalid(format!("request JSON: {inner}"))
            } else {
                Error::invalid(format!("request JSON at `{path}`: {inner}"))
            }
        })?;
        // Text after the request object is malformed input, not something to ignore.
        de.end()
            .map_err(|e| Error::invalid(format!("request JSON: {e}")))?;
        req.normalize()?;
        Ok(req)
    }

    /// The seed's lenient input: a tool message whose content is not a string is sent serialised.
    fn normalize(&mut self) -> Result<(), Error> {
        if self.messages.is_empty() {
            return Err(Error::invalid("request JSON: `messages` must not be empty"));
        }
        for (i, m) in self.messages.iter_mut().enumerate() {
            if m.role.is_empty() {
                return Err(Error::invalid(format!(
                    "request JSON at `messages[{i}].role`: must not be empty"
                )));
            }
            match &m.content {
                None | Some(Value::Null | Value::String(_)) => {}
                Some(c) if m.role == "tool" => m.content = Some(Value::String(c.to_string())),
                Some(Value::Array(_)) => {}
                Some(_) => {
                    return Err(Error::invalid(format!(
                        "request JSON at `messages[{i}].content`: must be a string, an array of content parts or null"
                    )))
                }
            }
        }
        if let Some(t) = self.timeout {
            // Beyond a day it is a typo, and a Duration or deadline that large would overflow.
            if !(t.is_finite() && t > 0.0 && t <= MAX_TIMEOUT_SECONDS) {
                return Err(Error::invalid(
                    "request JSON at `timeout`: must be a positive number of seconds up to 86400",
                ));
            }
        }
        Ok(())
    }

    /// The group asked for; `"auto"` unless the caller named one.
    pub fn group(&self) -> &str {
        self.model.as_deref().unwrap_or("auto")
    }

    /// The output cap the caller asked for, whichever name it used.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// A fast, deliberately generous estimate of the prompt's tokens (about 4 bytes a token),
    /// tools included; used to skip deployments whose window is clearly too small.
    pub fn estimate_prompt_tokens(&self) -> u64 {
        let mut bytes: usize = 0;
        for m in &self.messages {
            bytes += 16; // role and framing
            match &m.content {
                Some(Value::String(s)) => bytes += s.len(),
                Some(Value::Array(parts)) => {
                    for p in parts {
                        if let Some(t) = p.get("text").and_then(Value::as_str) {
                            bytes += t.len();
                        } else {
                            bytes += 256; // images and other parts: a token cost we cannot see
                        }
                    }
                }
                _ => {}
            }
            if let Some(calls) = &m.tool_calls {
                for c in calls {
                    bytes += c.function.name.len() + c.function.arguments.len() + 16;
                }
            }
        }
        if let Some(tools) = &self.tools {
            for t in tools {
                bytes += t.function.name.len() + 16;
                bytes += t.function.description.as_deref().map_or(0, str::len);
                // Schemas are small; a rough size without serialising them.
                bytes += t.function.parameters.as_ref().map_or(0, json_size_hint);
            }
        }
        (bytes as u64).div_ceil(4)
    }
}

/// An approximate serialised size of a JSON value, without allocating.
fn json_size_hint(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|x| json_size_hint(x) + 1).sum::<usize>(),
        Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| k.len() + 4 + json_size_hint(x))
                .sum::<usize>()
        }
    }
}

/// Text of a message's content: a string, or the text parts of an array joined.
pub fn content_text(content: &Option<Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    out.push_str(t);
                }
            }
            out
        }
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ChatResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default = "completion_object")]
    pub object: String,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llmr: Option<LlmrMeta>,
}

fn completion_object() -> String {
    "chat.completion".to_owned()
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub message: ResponseMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ResponseMessage {
    #[serde(default = "assistant_role")]
    pub role: String,
    #[serde(default, deserialize_with = "lenient_content")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

impl Default for ResponseMessage {
    fn default() -> Self {
        ResponseMessage {
            role: assistant_role(),
            content: None,
            tool_calls: None,
            refusal: None,
            reasoning_content: None,
        }
    }
}

fn assistant_role() -> String {
    "assistant".to_owned()
}

/// Some compatible hosts send content as an array of text parts.
fn lenient_content<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(v) => Some(content_text(&Some(v))),
    })
}

pub(crate) fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().map(|f| f as u64))
            .unwrap_or(0),
        _ => 0,
    })
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

impl Usage {
    /// Counts come from providers' answers: absurd ones saturate rather than overflow.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

/// What llmr adds to every answer: who answered and what it took.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct LlmrMeta {
    pub deployment_id: String,
    pub provider: String,
    pub attempts: u32,
    pub latency_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_chunk_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// What this answer cost in US dollars (its usage at the model's prices); omitted when the
    /// prices are unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// Stream chunks

/// One chunk of a stream.
///
/// `id`, `object` and `model` are the same in every chunk of a stream: they are shared, not
/// copied per chunk (three allocations and frees per chunk were ~5% of a stream's
/// instructions). A stream parser keeps the last `id` and `model` and hands out clones while
/// they stay the same ([`share`]); `object` is nearly always [`CHUNK_OBJECT`], borrowed.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ChatChunk {
    #[serde(default)]
    pub id: Arc<str>,
    #[serde(default = "chunk_object")]
    pub object: Cow<'static, str>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub created: u64,
    #[serde(default)]
    pub model: Arc<str>,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// The `object` of every chunk llmr writes.
pub const CHUNK_OBJECT: &str = "chat.completion.chunk";

fn chunk_object() -> Cow<'static, str> {
    Cow::Borrowed(CHUNK_OBJECT)
}

/// `object` as a chunk keeps it: [`CHUNK_OBJECT`] borrowed, anything else copied.
pub fn chunk_object_of(s: &str) -> Cow<'static, str> {
    if s == CHUNK_OBJECT {
        Cow::Borrowed(CHUNK_OBJECT)
    } else {
        Cow::Owned(s.to_owned())
    }
}

/// Makes `slot` hold `s`, replacing it only when `s` differs from what it held, so that the
/// chunks of a stream share one allocation of their `id` (or `model`).
pub fn keep(slot: &mut Arc<str>, s: &str) {
    if **slot != *s {
        *slot = Arc::from(s);
    }
}

/// [`keep`], then a clone of `slot` for a chunk.
pub fn share(slot: &mut Arc<str>, s: &str) -> Arc<str> {
    keep(slot, s);
    slot.clone()
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A string; hosts that stream a list of blocks (Databricks' Claude) get their text.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_content"
    )]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ToolCallDelta {
    #[serde(default)]
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDelta>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct FunctionDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

impl ChatChunk {
    /// A chunk the caller sees: one that carries content or tool-call deltas.
    pub fn has_payload(&self) -> bool {
        self.choices.iter().any(|c| {
            c.delta.content.as_deref().is_some_and(|s| !s.is_empty())
                || c.delta.tool_calls.as_ref().is_some_and(|t| !t.is_empty())
                || c.delta
                    .reasoning_content
                    .as_deref()
                    .is_some_and(|s| !s.is_empty())
        })
    }
}

/// The largest streamed answer kept (content, reasoning and tool calls): a completion's body is
/// read to the same size (`providers::http::MAX_BODY_BYTES`). Past it the stream is broken, not
/// long: no model writes millions of tokens.
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Builds the whole answer of a stream, chunk by chunk, as a `chat.completion`.
#[derive(Debug, Default)]
pub struct StreamAssembler {
    /// Bytes of text kept so far (content, reasoning, tool names and arguments).
    kept: usize,
    id: String,
    created: u64,
    model: String,
    content: String,
    reasoning: String,
    saw_content: bool,
    tool_calls: Vec<ToolCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl StreamAssembler {
    pub fn push(&mut self, chunk: &ChatChunk) {
        if self.id.is_empty() {
            self.id.push_str(&chunk.id);
        }
        if self.created == 0 {
            self.created = chunk.created;
        }
        if self.model.is_empty() {
            self.model.push_str(&chunk.model);
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        for c in &chunk.choices {
            if let Some(t) = &c.delta.content {
                self.saw_content = true;
                self.kept += t.len();
                self.content.push_str(t);
            }
            if let Some(t) = &c.delta.reasoning_content {
                self.kept += t.len();
                self.reasoning.push_str(t);
            }
            if let Some(calls) = &c.delta.tool_calls {
                for d in calls {
                    self.push_tool_delta(d);
                }
            }
            if c.finish_reason.is_some() {
                self.finish_reason.clone_from(&c.finish_reason);
            }
        }
    }

    fn push_tool_delta(&mut self, d: &ToolCallDelta) {
        let i = d.index as usize;
        // Indices are dense in practice; a sparse one gets empty calls filled in before it.
        while self.tool_calls.len() <= i.min(1024) {
            self.tool_calls.push(ToolCall {
                kind: function_type(),
                ..ToolCall::default()
            });
        }
        let Some(call) = self.tool_calls.get_mut(i) else {
            return;
        };
        if let Some(id) = &d.id {
            if call.id.is_empty() {
                call.id.clone_from(id);
            }
        }
        if let Some(f) = &d.function {
            if let Some(n) = &f.name {
                self.kept += n.len();
                call.function.name.push_str(n);
            }
            if let Some(a) = &f.arguments {
                self.kept += a.len();
                call.function.arguments.push_str(a);
            }
        }
    }

    /// Bytes of text the answer holds so far, to hold it to [`MAX_ANSWER_BYTES`].
    pub fn kept_bytes(&self) -> usize {
        self.kept
    }

    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }

    pub fn into_response(self) -> ChatResponse {
        let tool_calls = if self.tool_calls.is_empty() {
            None
        } else {
            Some(self.tool_calls)
        };
        let finish_reason = self.finish_reason.or_else(|| {
            Some(
                if tool_calls.is_some() {
                    "tool_calls"
                } else {
                    "stop"
                }
                .to_owned(),
            )
        });
        ChatResponse {
            id: self.id,
            object: completion_object(),
            created: self.created,
            model: self.model,
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    role: assistant_role(),
                    content: if self.saw_content || tool_calls.is_none() {
                        Some(self.content)
                    } else {
                        None
                    },
                    tool_calls,
                    refusal: None,
                    reasoning_content: if self.reasoning.is_empty() {
                        None
                    } else {
                        Some(self.reasoning)
                    },
                },
                finish_reason,
            }],
            usage: self.usage,
            llmr: None,
        }
    }
}

/// Seconds since the Unix epoch, for `created`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_totals_saturate_instead_of_overflowing() {
        // Found by the cohere fuzz target: a provider reporting absurd token counts.
        let u = Usage::new(u64::MAX, 5);
        assert_eq!(u.total_tokens, u64::MAX);
        assert_eq!(Usage::new(2, 3).total_tokens, 5);
    }

    #[test]
    fn parses_a_request_and_keeps_unknown_fields() {
        let r = ChatRequest::from_json(
            r#"{"messages":[{"role":"user","content":"hi"}],"seed":7,"response_format":{"type":"json_object"},"timeout":3}"#,
        )
        .unwrap();
        assert_eq!(r.group(), "auto");
        assert_eq!(r.extra["seed"], 7);
        assert!(r.extra.contains_key("response_format"));
        assert_eq!(r.timeout, Some(3.0));
        for trailing in [" x", "}", "{}", "[]"] {
            let json = format!(r#"{{"messages":[{{"role":"user","content":"hi"}}]}}{trailing}"#);
            let e = ChatRequest::from_json(&json).unwrap_err();
            assert_eq!(
                e.status,
                crate::errors::Status::InvalidArgument,
                "{trailing}"
            );
        }
        let sent = serde_json::to_value(&r).unwrap();
        assert!(
            sent.get("timeout").is_none(),
            "timeout is llmr's, never sent"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = ChatRequest::from_json(r#"{"messages":[{"role":5}]}"#).unwrap_err();
        assert!(e.message.contains("messages[0].role"), "{}", e.message);
        let e = ChatRequest::from_json(r#"{"model":"auto"}"#).unwrap_err();
        assert!(e.message.contains("messages"), "{}", e.message);
        let e = ChatRequest::from_json(r#"{"messages":[]}"#).unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        let e = ChatRequest::from_json(r#"{"messages":"hi"}"#).unwrap_err();
        assert!(e.message.contains("messages"), "{}", e.message);
        assert!(ChatRequest::from_json("[1,2").is_err());
    }

    #[test]
    fn lenient_input_like_the_seed() {
        let r = ChatRequest::from_json(
            r#"{"messages":[
              {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":{"x":1}}}]},
              {"role":"tool","tool_call_id":"c1","content":{"ok":true}},
              {"role":"narrator","content":"passes through"}]}"#,
        )
        .unwrap();
        let args = &r.messages[0].tool_calls.as_ref().unwrap()[0]
            .function
            .arguments;
        assert_eq!(args, r#"{"x":1}"#);
        assert_eq!(
            r.messages[1].content,
            Some(Value::String(r#"{"ok":true}"#.into()))
        );
        assert_eq!(r.messages[2].role, "narrator");
    }

    #[test]
    fn assembles_text_and_tool_calls_from_chunks() {
        let mut a = StreamAssembler::default();
        let chunks = [
            r#"{"id":"x","created":5,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"get","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        ];
        for c in chunks {
            a.push(&serde_json::from_str::<ChatChunk>(c).unwrap());
        }
        // "Hello", "get", `{"a":1}`: what the answer holds, for MAX_ANSWER_BYTES.
        assert_eq!(a.kept_bytes(), 5 + 3 + 7);
        let r = a.into_response();
        assert_eq!(r.id, "x");
        assert_eq!(r.choices[0].message.content.as_deref(), Some("Hello"));
        let calls = r.choices[0].message.tool_calls.as_ref().unwrap();
        assert_eq!(calls[0].function.name, "get");
        assert_eq!(calls[0].function.arguments, r#"{"a":1}"#);
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(r.usage, Some(Usage::new(3, 4)));
    }

    #[test]
    fn estimate_grows_with_prompt_and_tools() {
        let small =
            ChatRequest::from_json(r#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        let big = ChatRequest::from_json(&format!(
            r#"{{"messages":[{{"role":"user","content":"{}"}}],"tools":[{{"type":"function","function":{{"name":"f","parameters":{{"type":"object"}}}}}}]}}"#,
            "a".repeat(4000)
        ))
        .unwrap();
        assert!(small.estimate_prompt_tokens() < 10);
        assert!(big.estimate_prompt_tokens() >= 1000);
    }
}
