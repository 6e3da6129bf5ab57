//! [`Reply`]: what the stand-in answers to one request, and the preset
//! names that select one from a tenant name.

use std::time::Duration;

use serde_json::Value;

/// The context window of the `overflow` preset and of [`Reply::overflow`].
pub const OVERFLOW_LIMIT: u64 = 8192;

/// The tool-call arguments of the `ok` behaviour when the request has tools.
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Paris"}"#;

/// What the stand-in answers to one request.
///
/// Build one from a constructor and refine it with the combinators:
///
/// ```
/// use std::time::Duration;
/// use llmr_testkit::Reply;
///
/// let throttled = Reply::status(429).header("retry-after", "1");
/// let late = Reply::text("fine").delay(Duration::from_millis(50));
/// let stuck = Reply::preset("hang");
/// # let _ = (throttled, late, stuck);
/// ```
///
/// The wire format (OpenAI or Anthropic) and streaming come from the request,
/// so the same reply fits either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub(crate) kind: Kind,
    pub(crate) delay: Duration,
    pub(crate) chunk_interval: Duration,
    pub(crate) headers: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Echo the last user message, or call the first tool.
    Ok,
    Text(String),
    ToolCall {
        name: Option<String>,
        arguments: String,
    },
    /// `Ok` unless the prompt's estimated tokens exceed the window.
    ContextWindow(u64),
    /// The format's context-overflow error, whatever the prompt.
    Overflow(u64),
    Policy,
    /// The status with the format's error body.
    Status(u16),
    Raw {
        status: u16,
        body: String,
    },
    Fault(Fault),
}

/// A way of misbehaving at the HTTP or stream level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Sends a 200 head, then the body one byte per second.
    Trickle,
    /// Reads the request and never answers, until the client goes away.
    Hang,
    /// Closes the connection with a TCP RST right after reading the request.
    Reset,
    /// Sends a 200 head and part of a JSON body, then closes.
    ResetMid,
    /// A 200 `application/json` response whose body is not JSON.
    Garbage,
    /// A 200 response with a 64 MiB body of spaces, then `{}`.
    Huge,
    /// Streaming: two content chunks then close, without the end of the
    /// stream; non-streaming: half a JSON body then close.
    Truncated,
    /// Streaming: one content chunk then an error event; non-streaming: a
    /// 200 whose body is an error.
    MidStreamError,
    /// Streaming: an error event before any content; non-streaming: as
    /// `MidStreamError`.
    ErrorFirst,
    /// Sends the 200 head (and nothing of the body), then closes with a TCP RST.
    ResetAfterHead,
    /// Streaming: one content chunk and the first half of the next event, then a clean end of
    /// the body; non-streaming: a complete 200 whose body is the first half of the JSON.
    MidEvent,
    /// Streaming: the whole answer but the stream's last event (OpenAI's `data: [DONE]`), then a
    /// clean end of the body; non-streaming: as `ok`.
    NoDone,
    /// Streaming: two content chunks, then a clean end of the body (no finish, no end event);
    /// non-streaming: as `MidEvent`.
    EarlyEnd,
    /// Streaming: two content chunks, then silence with the connection open until the client
    /// goes away; non-streaming: the 200 head and half the body, then the same silence.
    Stall,
    /// A 503 whose body is the format's error followed by 64 MiB of spaces.
    HugeError,
    /// Never ends, until the client goes away. Streaming: content events of 16 KiB of text, as
    /// fast as the client reads; non-streaming: a chunked 200 body of spaces.
    Endless,
}

impl Fault {
    /// Every fault with its preset name.
    pub const ALL: [(&'static str, Fault); 16] = [
        ("trickle", Fault::Trickle),
        ("hang", Fault::Hang),
        ("reset", Fault::Reset),
        ("resetmid", Fault::ResetMid),
        ("garbage", Fault::Garbage),
        ("huge", Fault::Huge),
        ("truncated", Fault::Truncated),
        ("midstreamerror", Fault::MidStreamError),
        ("errorfirst", Fault::ErrorFirst),
        ("resethead", Fault::ResetAfterHead),
        ("midevent", Fault::MidEvent),
        ("nodone", Fault::NoDone),
        ("earlyend", Fault::EarlyEnd),
        ("stall", Fault::Stall),
        ("hugeerror", Fault::HugeError),
        ("endless", Fault::Endless),
    ];
}

impl Reply {
    fn of(kind: Kind) -> Reply {
        Reply {
            kind,
            delay: Duration::ZERO,
            chunk_interval: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// Success: `echo: <last user message>` (or `Hello from <tenant>`), or,
    /// when the request has tools and ends with a user turn, one call to the
    /// first tool with arguments [`TOOL_ARGUMENTS`].
    pub fn ok() -> Reply {
        Reply::of(Kind::Ok)
    }

    /// Success with this answer text.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::of(Kind::Text(text.into()))
    }

    /// Success with one call to the tool `name` with these JSON arguments.
    pub fn tool_call(name: impl Into<String>, arguments: impl Into<String>) -> Reply {
        Reply::of(Kind::ToolCall {
            name: Some(name.into()),
            arguments: arguments.into(),
        })
    }

    /// This status with the wire format's error body for it.
    pub fn status(code: u16) -> Reply {
        Reply::of(Kind::Status(code))
    }

    /// This status with this body verbatim (`content-type: application/json`
    /// unless a `content-type` header is added).
    pub fn body(code: u16, raw: impl Into<String>) -> Reply {
        Reply::of(Kind::Raw {
            status: code,
            body: raw.into(),
        })
    }

    /// The format's context-overflow error for a window of [`OVERFLOW_LIMIT`].
    pub fn overflow() -> Reply {
        Reply::of(Kind::Overflow(OVERFLOW_LIMIT))
    }

    /// [`Reply::ok`] while the prompt fits `tokens` (characters / 4, rounded
    /// up), the format's context-overflow error beyond.
    pub fn context_window(tokens: u64) -> Reply {
        Reply::of(Kind::ContextWindow(tokens))
    }

    /// The format's content-policy refusal (a 400).
    pub fn policy() -> Reply {
        Reply::of(Kind::Policy)
    }

    /// A transport- or stream-level fault.
    pub fn fault(fault: Fault) -> Reply {
        Reply::of(Kind::Fault(fault))
    }

    /// The behaviour of a preset tenant name, e.g. `"hang"`, `"e503"`,
    /// `"slow-250"`, `"ctx-1000"`.
    ///
    /// # Panics
    /// If `name` is not a preset (see [`Reply::parse_preset`] for the
    /// non-panicking form).
    pub fn preset(name: &str) -> Reply {
        Reply::parse_preset(name)
            .unwrap_or_else(|| panic!("llmr-testkit: no preset named {name:?}"))
    }

    /// The behaviour of a preset name, if it is one.
    ///
    /// Names are case-insensitive. A preset word may be followed by `-` or
    /// `_` and a parameter where it takes one (`ctx-N`, `slow-MS`), then by
    /// any label (`e429-b`, `ok_primary`, `ctx-1000-x`) so several tenants
    /// can share a behaviour and still be counted apart.
    pub fn parse_preset(name: &str) -> Option<Reply> {
        let lower = name.to_ascii_lowercase();
        let mut parts = lower.split(['-', '_']);
        let word = parts.next()?;
        let mut param = || parts.next().and_then(|p| p.parse::<u64>().ok());
        let reply = match word {
            "ok" => Reply::ok(),
            "ctx" => Reply::context_window(param()?),
            "slow" => Reply::ok().delay(Duration::from_millis(param()?)),
            "overflow" => Reply::overflow(),
            "policy" => Reply::policy(),
            "e429" => Reply::status(429).header("retry-after", "2"),
            "e429noretry" => Reply::status(429),
            _ => {
                if let Some(&(_, fault)) = Fault::ALL.iter().find(|(n, _)| *n == word) {
                    Reply::fault(fault)
                } else {
                    let code = word.strip_prefix('e').filter(|c| c.len() == 3)?;
                    let code = code
                        .parse::<u16>()
                        .ok()
                        .filter(|c| (400..600).contains(c))?;
                    Reply::status(code)
                }
            }
        };
        Some(reply)
    }

    /// Waits this long after reading the request before answering (adds up
    /// when applied twice).
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay += delay;
        self
    }

    /// When streaming, waits this long between events.
    pub fn chunk_interval(mut self, interval: Duration) -> Reply {
        self.chunk_interval = interval;
        self
    }

    /// Adds a response header (sent with whatever head the reply sends; a
    /// `content-type` here replaces the default one).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A reply from JSON, as `POST /_script/<tenant>` takes it: a preset name
    /// (`"e429"`), or an object with at most one of `preset`, `text`,
    /// `status`, `body` (with `status`, default 200; a string is sent
    /// verbatim, anything else serialised), `tool_call` (`{"name",
    /// "arguments"}`), plus optional `headers` (object), `delay_ms`,
    /// `chunk_interval_ms`.
    pub fn from_json(spec: &Value) -> Result<Reply, String> {
        if let Some(name) = spec.as_str() {
            return Reply::parse_preset(name).ok_or_else(|| format!("no preset named {name:?}"));
        }
        let obj = spec
            .as_object()
            .ok_or("a reply is a preset name or an object")?;
        let status = match obj.get("status") {
            None => None,
            Some(s) => Some(
                s.as_u64()
                    .and_then(|s| u16::try_from(s).ok())
                    .ok_or("status must be a number")?,
            ),
        };
        let mut reply = if let Some(name) = obj.get("preset") {
            let name = name.as_str().ok_or("preset must be a string")?;
            Reply::parse_preset(name).ok_or_else(|| format!("no preset named {name:?}"))?
        } else if let Some(text) = obj.get("text") {
            Reply::text(text.as_str().ok_or("text must be a string")?)
        } else if let Some(call) = obj.get("tool_call") {
            let name = call["name"]
                .as_str()
                .ok_or("tool_call.name must be a string")?;
            let arguments = match &call["arguments"] {
                Value::Null => TOOL_ARGUMENTS.to_owned(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Reply::tool_call(name, arguments)
        } else if let Some(body) = obj.get("body") {
            let raw = match body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Reply::body(status.unwrap_or(200), raw)
        } else if let Some(status) = status {
            Reply::status(status)
        } else {
            Reply::ok()
        };
        if let Some(headers) = obj.get("headers") {
            let headers = headers.as_object().ok_or("headers must be an object")?;
            for (k, v) in headers {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                reply = reply.header(k.as_str(), v);
            }
        }
        if let Some(ms) = obj.get("delay_ms") {
            let ms = ms.as_u64().ok_or("delay_ms must be a number")?;
            reply = reply.delay(Duration::from_millis(ms));
        }
        if let Some(ms) = obj.get("chunk_interval_ms") {
            let ms = ms.as_u64().ok_or("chunk_interval_ms must be a number")?;
            reply = reply.chunk_interval(Duration::from_millis(ms));
        }
        Ok(reply)
    }
}

impl Default for Reply {
    fn default() -> Reply {
        Reply::ok()
    }
}

impl From<Fault> for Reply {
    fn from(fault: Fault) -> Reply {
        Reply::fault(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse() {
        assert_eq!(Reply::preset("ok"), Reply::ok());
        assert_eq!(Reply::preset("OK_primary"), Reply::ok());
        assert_eq!(Reply::preset("ctx-1000"), Reply::context_window(1000));
        assert_eq!(Reply::preset("ctx_1000-b"), Reply::context_window(1000));
        assert_eq!(
            Reply::preset("slow-250"),
            Reply::ok().delay(Duration::from_millis(250))
        );
        assert_eq!(
            Reply::preset("e429-b"),
            Reply::status(429).header("retry-after", "2")
        );
        assert_eq!(Reply::preset("e429noretry"), Reply::status(429));
        assert_eq!(Reply::preset("e503"), Reply::status(503));
        assert_eq!(Reply::preset("e529"), Reply::status(529));
        assert_eq!(Reply::preset("overflow"), Reply::overflow());
        assert_eq!(Reply::preset("policy"), Reply::policy());
        for (name, fault) in Fault::ALL {
            assert_eq!(Reply::preset(name), Reply::fault(fault));
        }
        for name in [
            "primary", "ctx", "ctx-x", "slow", "e42", "e4299", "e200", "",
        ] {
            assert_eq!(Reply::parse_preset(name), None, "{name}");
        }
    }

    #[test]
    fn from_json() {
        let r = |v: Value| Reply::from_json(&v).unwrap();
        assert_eq!(r(serde_json::json!("hang")), Reply::fault(Fault::Hang));
        assert_eq!(
            r(serde_json::json!({"status": 429, "headers": {"retry-after": 1}})),
            Reply::status(429).header("retry-after", "1")
        );
        assert_eq!(
            r(serde_json::json!({"status": 500, "body": {"x": 1}})),
            Reply::body(500, r#"{"x":1}"#)
        );
        assert_eq!(
            r(serde_json::json!({"text": "hi", "delay_ms": 5})),
            Reply::text("hi").delay(Duration::from_millis(5))
        );
        assert!(Reply::from_json(&serde_json::json!("nope")).is_err());
        assert!(Reply::from_json(&serde_json::json!(5)).is_err());
    }
}
