//! A format-neutral view of a chat request, and the answer the `ok`
//! behaviour derives from it.

use serde_json::Value;

use crate::reply::TOOL_ARGUMENTS;

/// What the behaviours need to know about a chat request (OpenAI or
/// Anthropic shaped; anything else reads as an empty prompt).
#[derive(Clone, Debug, Default)]
pub(crate) struct Prompt {
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// Characters of all message contents (and an Anthropic `system`).
    pub chars: usize,
    /// The text of the last user message that has text.
    pub last_user_text: Option<String>,
    /// The name of the first tool offered.
    pub first_tool: Option<String>,
    /// Whether the last message is a user turn (not a tool result).
    pub ends_with_user: bool,
}

impl Prompt {
    /// The prompt of a request; the path says what the body cannot (Vertex's stream methods).
    pub fn from_request(path: &str, body: &Value) -> Prompt {
        if let Some(p) = crate::vertex::prompt(path, body) {
            return p;
        }
        let mut p = Prompt::from_body(body);
        p.stream |= crate::vertex::streams(path);
        if body["model"].is_null() {
            // Claude on Vertex: the model is in the URL.
            if let Some(m) = crate::vertex::model_of(path) {
                p.model = m;
            }
        }
        p
    }

    pub fn from_body(body: &Value) -> Prompt {
        let messages = body["messages"].as_array().map_or(&[][..], Vec::as_slice);
        let mut chars = content_chars(&body["system"]);
        for m in messages {
            chars += content_chars(&m["content"]);
        }
        let last_user_text = messages
            .iter()
            .rev()
            .filter(|m| m["role"] == "user")
            .find_map(|m| content_text(&m["content"]));
        let ends_with_user = messages
            .last()
            .is_some_and(|m| m["role"] == "user" && !has_part(&m["content"], "tool_result"));
        let first_tool = body["tools"].get(0).and_then(|t| {
            t["function"]["name"]
                .as_str()
                .or_else(|| t["name"].as_str())
                .map(str::to_owned)
        });
        Prompt {
            model: body["model"].as_str().unwrap_or("standin").to_owned(),
            stream: body["stream"] == true,
            include_usage: body["stream_options"]["include_usage"] == true,
            chars,
            last_user_text,
            first_tool,
            ends_with_user,
        }
    }

    /// Estimated prompt tokens: characters / 4, rounded up.
    pub fn tokens(&self) -> u64 {
        (self.chars as u64).div_ceil(4)
    }
}

fn content_chars(content: &Value) -> usize {
    match content {
        Value::String(s) => s.chars().count(),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match &p["text"] {
                Value::String(s) => s.chars().count(),
                _ => content_chars(&p["content"]),
            })
            .sum(),
        _ => 0,
    }
}

/// The text of a content: the string, or its text parts joined.
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .collect();
            (!texts.is_empty()).then(|| texts.concat())
        }
        _ => None,
    }
}

fn has_part(content: &Value, kind: &str) -> bool {
    content
        .as_array()
        .is_some_and(|parts| parts.iter().any(|p| p["type"] == kind))
}

/// What a successful response carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Text(String),
    ToolCall { name: String, arguments: String },
}

impl Answer {
    /// The `ok` answer: a call to the first tool when the request offers
    /// tools and ends with a user turn, else an echo of the last user text.
    pub fn auto(prompt: &Prompt, tenant: &str) -> Answer {
        match &prompt.first_tool {
            Some(name) if prompt.ends_with_user => Answer::ToolCall {
                name: name.clone(),
                arguments: TOOL_ARGUMENTS.to_owned(),
            },
            _ => Answer::Text(match &prompt.last_user_text {
                Some(text) => format!("echo: {text}"),
                None => format!("Hello from {tenant}"),
            }),
        }
    }

    /// Completion tokens: words of the text, or arguments' characters / 4.
    pub fn tokens(&self) -> u64 {
        match self {
            Answer::Text(text) => text.split_whitespace().count() as u64,
            Answer::ToolCall { arguments, .. } => (arguments.len() as u64).div_ceil(4).max(1),
        }
    }
}

/// Splits text into streaming pieces, one per word, each word keeping the
/// whitespace after it.
pub(crate) fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut word_seen = false;
    let mut in_space = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_space = true;
        } else {
            if in_space && word_seen {
                out.push(&text[start..i]);
                start = i;
            }
            in_space = false;
            word_seen = true;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Splits tool-call arguments into 2 or 3 fragments (fewer if too short).
pub(crate) fn fragments(arguments: &str) -> Vec<&str> {
    let n = arguments.chars().count();
    let parts = if n >= 9 { 3 } else { n.min(2) };
    if parts <= 1 {
        return vec![arguments];
    }
    let starts: Vec<usize> = arguments.char_indices().map(|(i, _)| i).collect();
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for k in 1..parts {
        let cut = starts[n * k / parts];
        out.push(&arguments[start..cut]);
        start = cut;
    }
    out.push(&arguments[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_prompt() {
        let p = Prompt::from_body(&json!({
            "model": "gpt-x",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "abcd"},
                {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
            ],
            "tools": [{"type": "function", "function": {"name": "weather"}}],
        }));
        assert_eq!(p.model, "gpt-x");
        assert!(p.stream && p.include_usage && p.ends_with_user);
        assert_eq!(p.chars, 12);
        assert_eq!(p.tokens(), 3);
        assert_eq!(p.last_user_text.as_deref(), Some("hi there"));
        assert_eq!(p.first_tool.as_deref(), Some("weather"));
    }

    #[test]
    fn anthropic_prompt_after_tool_result() {
        let p = Prompt::from_body(&json!({
            "system": "sys",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "w", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "sunny"}]},
            ],
            "tools": [{"name": "w", "input_schema": {}}],
        }));
        assert_eq!(p.chars, 3 + 8 + 5);
        assert!(!p.ends_with_user);
        assert_eq!(p.last_user_text.as_deref(), Some("weather?"));
        assert_eq!(Answer::auto(&p, "t"), Answer::Text("echo: weather?".into()));
    }

    #[test]
    fn splitting() {
        assert_eq!(words("echo: hello  world"), ["echo: ", "hello  ", "world"]);
        assert_eq!(words(" a b "), [" a ", "b "]);
        assert!(words("").is_empty());
        let args = r#"{"city":"Paris"}"#;
        let f = fragments(args);
        assert_eq!(f.len(), 3);
        assert_eq!(f.concat(), args);
        assert!(f.iter().all(|s| !s.is_empty()));
        assert_eq!(fragments("{}"), ["{", "}"]);
        assert_eq!(fragments(""), [""]);
    }
}
