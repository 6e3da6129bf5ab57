//! Small conversions several wire formats share (Anthropic, Bedrock Converse, Gemini): how
//! OpenAI's tool-call strings become JSON objects and back, and how a JSON value is named in an
//! error.

use serde_json::{Map, Value};

/// Blank text (empty or only whitespace): formats that refuse such text blocks (Anthropic's
/// "text content blocks must contain non-whitespace text", Converse alike) get none.
pub fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Tool-call arguments as the object these formats require. Empty, invalid or non-object JSON
/// (a truncated earlier answer, say) becomes `{}`: the turn stays valid and the conversation can
/// go on, where refusing it would fail the whole request on this deployment.
pub fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

/// A tool's input as OpenAI's argument string; a string input is taken as the arguments text.
pub fn arguments_of(input: Option<Value>) -> String {
    match input {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(s)) => s,
        Some(v) => v.to_string(),
    }
}

/// A JSON value's kind, for error messages ("… is a number").
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
