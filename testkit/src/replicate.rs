//! Replicate predictions: create (`POST …/predictions`, `…/models/{o}/{n}/predictions`,
//! `…/deployments/{o}/{n}/predictions`, with or without `Prefer: wait`), then `GET` the
//! prediction, `GET` its SSE stream and `POST` its cancel — URLs the stand-in hands out in
//! `urls`, pointing back at itself under the same tenant.
//!
//! The reply is chosen when the prediction is created (the follow-up requests are recorded
//! but take no scripted reply) and decides how the prediction ends: succeeded, or failed with
//! Replicate's own texts (overflow, E005 content flag, interrupted). Transport faults (`hang`,
//! `reset`, `garbage`, …) and error statuses hit the create request; the stream faults
//! (`truncated`, `midstreamerror`, `errorfirst`, `trickle`) hit the stream URL when the
//! create asked to stream.
//!
//! Tenant names add two Replicate behaviours: `poll-N` answers the first N `GET`s with
//! `processing` (output growing) even after `Prefer: wait`; `nostream` hands out no
//! `urls.stream` (a model that cannot stream).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::sleep;

use crate::behaviour::{perform, Exchange, Next};
use crate::format::{next_id, Format, Sse};
use crate::http::{chunk, head, Conn, Framing, Request, LAST_CHUNK};
use crate::prompt::{words, Answer, Prompt};
use crate::record::{tenant_of, RecordedRequest, Registry};
use crate::reply::{Fault, Kind};

/// Predictions kept for their follow-up requests; the oldest are forgotten past this.
const MAX_PREDICTIONS: usize = 10_000;
/// The version id every prediction reports when none was asked for.
const VERSION: &str = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa";
const TRICKLE_EVERY: Duration = Duration::from_secs(1);

/// What a failed prediction says when it was interrupted (the `midstreamerror`/`errorfirst`
/// faults): Replicate's own wording, a retryable failure.
pub(crate) const INTERRUPTED: &str = "Prediction interrupted; please retry (code: PA)";

fn overflow_text(limit: u64, tokens: u64) -> String {
    format!("[TensorRT-LLM][ERROR] Cannot process new request: Prompt length ({tokens}) exceeds maximum input length ({limit}).")
}

const POLICY_TEXT: &str =
    "The input or output was flagged as sensitive. Please try again with different inputs. (E005)";

/// Which Replicate request a path is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// `model`: `owner/name` from the path, if it names one.
    Create {
        model: Option<String>,
    },
    Get(String),
    Stream(String),
    Cancel(String),
}

impl Call {
    pub fn from_path(method: &str, path: &str) -> Option<Call> {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let at = segs.iter().rposition(|s| *s == "predictions")?;
        let model = match segs.get(at.wrapping_sub(3)..at) {
            Some([kind, o, n]) if *kind == "models" || *kind == "deployments" => {
                Some(format!("{o}/{n}"))
            }
            _ => None,
        };
        match (&segs[at + 1..], method) {
            ([], "POST") => Some(Call::Create { model }),
            ([id], "GET") => Some(Call::Get((*id).to_owned())),
            ([id, "stream"], "GET") => Some(Call::Stream((*id).to_owned())),
            ([id, "cancel"], "POST") => Some(Call::Cancel((*id).to_owned())),
            _ => None,
        }
    }
}

/// How a prediction ends.
#[derive(Clone, Debug)]
enum End {
    Succeed,
    Fail(String),
}

#[derive(Clone, Debug)]
struct Prediction {
    id: String,
    base: String,
    model: String,
    version: String,
    input: Value,
    pieces: Vec<String>,
    tokens_in: u64,
    end: End,
    polls_left: u32,
    polls_total: u32,
    streams: bool,
    stream_fault: Option<Fault>,
    interval: Duration,
    canceled: bool,
}

impl Prediction {
    fn json(&self, status: &str, output_pieces: usize) -> Value {
        let output: Vec<&String> = self.pieces.iter().take(output_pieces).collect();
        let mut urls = json!({
            "get": format!("{}/predictions/{}", self.base, self.id),
            "cancel": format!("{}/predictions/{}/cancel", self.base, self.id),
            "web": format!("https://replicate.com/p/{}", self.id),
        });
        if self.streams {
            urls["stream"] = Value::from(format!("{}/predictions/{}/stream", self.base, self.id));
        }
        let mut p = json!({
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "input": self.input,
            "logs": "",
            "output": if status == "starting" { Value::Null } else { json!(output) },
            "data_removed": false,
            "error": null,
            "status": status,
            "created_at": "2024-04-18T14:14:03.162Z",
            "urls": urls,
        });
        match (status, &self.end) {
            ("succeeded", _) => {
                p["completed_at"] = Value::from("2024-04-18T14:14:04.001Z");
                p["metrics"] = json!({
                    "input_token_count": self.tokens_in,
                    "output_token_count": self.pieces.len(),
                    "predict_time": 0.8,
                    "time_to_first_token": 0.1,
                    "tokens_per_second": 40.0,
                    "total_time": 0.9,
                });
            }
            ("failed", End::Fail(text)) => {
                p["error"] = Value::from(text.as_str());
                p["logs"] = Value::from(text.as_str());
            }
            _ => {}
        }
        p
    }

    /// As it is when over.
    fn finished(&self) -> Value {
        match (&self.end, self.canceled) {
            (_, true) => self.json("canceled", 0),
            (End::Succeed, _) => self.json("succeeded", self.pieces.len()),
            (End::Fail(_), _) => self.json("failed", 0),
        }
    }

    /// As a `GET` sees it: `processing` for the first polls, output growing.
    fn poll(&mut self) -> Value {
        if self.canceled || self.polls_left == 0 {
            return self.finished();
        }
        self.polls_left -= 1;
        let round = (self.polls_total - self.polls_left) as usize;
        let shown = match self.end {
            End::Succeed => self.pieces.len() * round / (self.polls_total as usize + 1),
            End::Fail(_) => 0,
        };
        self.json("processing", shown)
    }
}

/// The predictions of one stand-in.
#[derive(Default)]
pub(crate) struct Store {
    inner: Mutex<(HashMap<String, Prediction>, VecDeque<String>)>,
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, (HashMap<String, Prediction>, VecDeque<String>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, p: Prediction) {
        let mut g = self.lock();
        let (map, order) = &mut *g;
        if order.len() >= MAX_PREDICTIONS {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
        order.push_back(p.id.clone());
        map.insert(p.id.clone(), p);
    }

    fn with<R>(&self, id: &str, f: impl FnOnce(&mut Prediction) -> R) -> Option<R> {
        self.lock().0.get_mut(id).map(f)
    }

    pub fn clear(&self) {
        let mut g = self.lock();
        g.0.clear();
        g.1.clear();
    }
}

/// The prompt of a create body: `input.prompt` (the last `User:` turn of a flattened
/// transcript is what the `ok` answer echoes) and `input.system_prompt`.
pub(crate) fn prompt_of(body: &Value) -> Prompt {
    let input = &body["input"];
    let text = input["prompt"].as_str().unwrap_or("");
    let system = input["system_prompt"].as_str().unwrap_or("");
    let last = match text.rfind("User: ") {
        Some(i) if i == 0 || text[..i].ends_with("\n\n") => &text[i + "User: ".len()..],
        _ => text,
    };
    Prompt {
        model: body["version"].as_str().unwrap_or("standin").to_owned(),
        stream: body["stream"] == true,
        include_usage: false,
        chars: text.chars().count() + system.chars().count(),
        last_user_text: (!text.is_empty()).then(|| last.to_owned()),
        first_tool: None,
        ends_with_user: true,
    }
}

fn problem(status: u16) -> Value {
    let (title, detail) = match status {
        400 => ("Bad request", "The request could not be understood."),
        401 => (
            "Unauthenticated",
            "You did not pass a valid authentication token",
        ),
        402 => (
            "Insufficient credit",
            "You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase credit. Once you purchase credit, please wait a few minutes before trying again.",
        ),
        403 => (
            "Forbidden",
            "You do not have permission to perform this action.",
        ),
        404 => ("Not found", "The requested resource could not be found."),
        422 => ("Input validation failed", "- input: prompt is required"),
        429 => (
            "Request was throttled",
            "Request was throttled. Expected available in 2 seconds.",
        ),
        s if s >= 500 => ("Internal Server Error", "Internal server error"),
        _ => ("Request failed", "The request failed."),
    };
    json!({"title": title, "detail": detail, "status": status})
}

/// Format hooks: the bodies the generic behaviours send for Replicate.
pub(crate) fn error(status: u16) -> Value {
    problem(status)
}

fn static_prediction(prompt: &Prompt, status: &str, output: Value, error: Option<&str>) -> Value {
    json!({"id": format!("standin{}", next_id()), "model": prompt.model, "version": VERSION,
           "status": status, "output": output, "error": error, "logs": "",
           "metrics": {"input_token_count": prompt.tokens()}})
}

pub(crate) fn overflow(limit: u64, tokens: u64) -> Value {
    static_prediction(
        &Prompt::default(),
        "failed",
        Value::Null,
        Some(&overflow_text(limit, tokens)),
    )
}

pub(crate) fn policy() -> Value {
    static_prediction(&Prompt::default(), "failed", Value::Null, Some(POLICY_TEXT))
}

pub(crate) fn inline_error() -> Value {
    static_prediction(&Prompt::default(), "failed", Value::Null, Some(INTERRUPTED))
}

fn answer_text(answer: &Answer) -> String {
    match answer {
        Answer::Text(t) => t.clone(),
        // Replicate has no tool calls: a scripted call comes out as its JSON text.
        Answer::ToolCall { name, arguments } => {
            json!({"name": name, "arguments": arguments}).to_string()
        }
    }
}

pub(crate) fn response(prompt: &Prompt, answer: &Answer) -> Value {
    let text = answer_text(answer);
    let mut p = static_prediction(prompt, "succeeded", json!(words(&text)), None);
    p["metrics"]["output_token_count"] = Value::from(words(&text).len());
    p
}

/// An SSE event of Replicate's stream: text data, one `data:` line per line of it.
pub(crate) fn event(name: &str, data: &str) -> Vec<u8> {
    let mut out = format!("event: {name}\nid: {}:0\n", next_id());
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out.into_bytes()
}

pub(crate) fn stream_error() -> Vec<u8> {
    event("error", &json!({"detail": INTERRUPTED}).to_string())
}

pub(crate) fn stream(_prompt: &Prompt, answer: &Answer) -> Sse {
    stream_of(
        &words(&answer_text(answer))
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    )
}

fn stream_of(pieces: &[String]) -> Sse {
    Sse {
        head: Vec::new(),
        body: pieces.iter().map(|p| event("output", p)).collect(),
        tail: vec![event("done", "{}")],
    }
}

fn failed_stream(text: &str) -> Vec<Vec<u8>> {
    vec![
        event("error", &json!({"detail": text}).to_string()),
        event("done", r#"{"reason":"error"}"#),
    ]
}

// ---------------------------------------------------------------------------------------------
// Serving

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `poll-N` and `nostream` in a tenant name (either, both, in any order: `poll-2-nostream`).
fn tenant_traits(tenant: &str) -> (u32, bool) {
    let lower = tenant.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split(['-', '_']).collect();
    let mut polls = 0;
    let mut streams = true;
    for (i, part) in parts.iter().enumerate() {
        match *part {
            "poll" => polls = parts.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(3),
            "nostream" => streams = false,
            _ => {}
        }
    }
    (polls, streams)
}

/// Answers one Replicate request.
pub(crate) async fn exchange(
    conn: &mut Conn,
    registry: &Registry,
    req: Request,
    call: Call,
    body: Value,
) -> io::Result<Next> {
    let close = !req.keep_alive;
    let tenant = tenant_of(&req.path).to_owned();
    let host = header(&req, "host").unwrap_or("127.0.0.1").to_owned();
    let prefer_wait = header(&req, "prefer").is_some_and(|v| v.trim_start().starts_with("wait"));
    let record = RecordedRequest {
        method: req.method,
        path: req.path,
        headers: req.headers,
        body,
        raw_body: req.body,
    };
    let mut w = Writer {
        conn,
        close,
        headers: Vec::new(),
        interval: Duration::ZERO,
    };
    let store = &registry.replicate;
    match call {
        Call::Create { model } => {
            let prompt = prompt_of(&record.body);
            let input = record.body["input"].clone();
            let version = record.body["version"].as_str().map(str::to_owned);
            let reply = registry.arrive(record);
            let ex = Exchange {
                format: Format::Replicate,
                prompt,
                tenant: tenant.clone(),
                close,
            };
            let end = match &reply.kind {
                Kind::Ok | Kind::Text(_) | Kind::ToolCall { .. } => End::Succeed,
                Kind::ContextWindow(limit) if ex.prompt.tokens() <= *limit => End::Succeed,
                Kind::ContextWindow(limit) | Kind::Overflow(limit) => {
                    End::Fail(overflow_text(*limit, ex.prompt.tokens().max(limit + 1)))
                }
                Kind::Policy => End::Fail(POLICY_TEXT.to_owned()),
                Kind::Fault(Fault::MidStreamError | Fault::ErrorFirst) if !ex.prompt.stream => {
                    End::Fail(INTERRUPTED.to_owned())
                }
                Kind::Fault(
                    Fault::Truncated | Fault::MidStreamError | Fault::ErrorFirst | Fault::Trickle,
                ) if ex.prompt.stream => End::Succeed,
                // Statuses, raw bodies and transport faults: the create request gets them.
                _ => return perform(w.conn, &ex, reply).await,
            };
            let answer = match &reply.kind {
                Kind::Text(t) => Answer::Text(t.clone()),
                Kind::ToolCall { name, arguments } => Answer::ToolCall {
                    name: name.clone().unwrap_or_else(|| "tool".to_owned()),
                    arguments: arguments.clone(),
                },
                _ => Answer::auto(&ex.prompt, &tenant),
            };
            let mut pieces: Vec<String> = words(&answer_text(&answer))
                .into_iter()
                .map(str::to_owned)
                .collect();
            let cap = input["max_tokens"]
                .as_u64()
                .or_else(|| input["max_new_tokens"].as_u64());
            if let Some(cap) = cap {
                pieces.truncate(cap as usize);
            }
            let (polls, streams) = tenant_traits(&tenant);
            let p = Prediction {
                id: format!("standin{:020}", next_id()),
                base: format!("http://{host}/{tenant}/v1"),
                model: model.unwrap_or_else(|| "standin/model".to_owned()),
                version: version.unwrap_or_else(|| VERSION.to_owned()),
                input,
                pieces,
                tokens_in: ex.prompt.tokens(),
                end,
                polls_left: polls,
                polls_total: polls,
                streams,
                stream_fault: match reply.kind {
                    Kind::Fault(f) if ex.prompt.stream => Some(f),
                    _ => None,
                },
                interval: reply.chunk_interval,
                canceled: false,
            };
            if !reply.delay.is_zero() {
                sleep(reply.delay).await;
            }
            w.headers = reply.headers;
            // `Prefer: wait` returns the finished prediction, unless it needs polling.
            let answer = if prefer_wait && polls == 0 {
                p.finished()
            } else {
                p.json("starting", 0)
            };
            store.insert(p);
            w.json(201, &answer).await
        }
        Call::Get(id) => {
            registry.record(record);
            match store.with(&id, Prediction::poll) {
                Some(p) => w.json(200, &p).await,
                None => w.json(404, &problem(404)).await,
            }
        }
        Call::Cancel(id) => {
            registry.record(record);
            let p = store.with(&id, |p| {
                p.canceled = true;
                p.polls_left = 0;
                p.finished()
            });
            match p {
                Some(p) => w.json(200, &p).await,
                None => w.json(404, &problem(404)).await,
            }
        }
        Call::Stream(id) => {
            registry.record(record);
            let Some(p) = store.with(&id, |p| p.clone()) else {
                return w.json(404, &problem(404)).await;
            };
            w.interval = p.interval;
            let sse = stream_of(&p.pieces);
            match (p.stream_fault, &p.end) {
                (_, End::Fail(text)) => w.events(failed_stream(text), true).await,
                (Some(Fault::Truncated), _) => {
                    w.events(sse.body.into_iter().take(2).collect(), false)
                        .await?;
                    Ok(Next::Close)
                }
                (Some(Fault::MidStreamError), _) => {
                    let mut events: Vec<Vec<u8>> = sse.body.into_iter().take(1).collect();
                    events.extend(failed_stream(INTERRUPTED));
                    w.events(events, true).await
                }
                (Some(Fault::ErrorFirst), _) => w.events(failed_stream(INTERRUPTED), true).await,
                (Some(Fault::Trickle), _) => w.trickle(sse.all().concat()).await,
                _ => w.events(sse.all(), true).await,
            }
        }
    }
}

struct Writer<'a> {
    conn: &'a mut Conn,
    close: bool,
    headers: Vec<(String, String)>,
    interval: Duration,
}

impl Writer<'_> {
    fn after(&self) -> Next {
        if self.close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    async fn json(&mut self, status: u16, body: &Value) -> io::Result<Next> {
        let body = serde_json::to_vec(body).unwrap_or_default();
        let mut bytes = head(
            status,
            "application/json",
            Framing::Length(body.len() as u64),
            &self.headers,
            self.close,
        );
        bytes.extend_from_slice(&body);
        self.conn.write_all(&bytes).await?;
        Ok(self.after())
    }

    /// A 200 SSE response; `end` finishes the chunked body, otherwise it is left open.
    async fn events(&mut self, events: Vec<Vec<u8>>, end: bool) -> io::Result<Next> {
        let mut bytes = head(
            200,
            "text/event-stream",
            Framing::Chunked,
            &self.headers,
            self.close,
        );
        for (i, e) in events.iter().enumerate() {
            if i > 0 && !self.interval.is_zero() {
                self.conn.write_all(&bytes).await?;
                bytes.clear();
                sleep(self.interval).await;
            }
            chunk(&mut bytes, e);
        }
        if end {
            bytes.extend_from_slice(LAST_CHUNK);
        }
        self.conn.write_all(&bytes).await?;
        Ok(self.after())
    }

    async fn trickle(&mut self, body: Vec<u8>) -> io::Result<Next> {
        let head = head(
            200,
            "text/event-stream",
            Framing::Chunked,
            &self.headers,
            self.close,
        );
        self.conn.write_all(&head).await?;
        let mut piece = Vec::with_capacity(8);
        for byte in body {
            sleep(TRICKLE_EVERY).await;
            piece.clear();
            chunk(&mut piece, &[byte]);
            self.conn.write_all(&piece).await?;
        }
        self.conn.write_all(LAST_CHUNK).await?;
        Ok(Next::Close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let c = |m: &str, p: &str| Call::from_path(m, p);
        assert_eq!(
            c("POST", "/t/v1/models/meta/llama/predictions"),
            Some(Call::Create {
                model: Some("meta/llama".into())
            })
        );
        assert_eq!(
            c("POST", "/t/v1/deployments/acme/x/predictions"),
            Some(Call::Create {
                model: Some("acme/x".into())
            })
        );
        assert_eq!(
            c("POST", "/t/v1/predictions"),
            Some(Call::Create { model: None })
        );
        assert_eq!(
            c("GET", "/t/v1/predictions/abc"),
            Some(Call::Get("abc".into()))
        );
        assert_eq!(
            c("GET", "/t/v1/predictions/abc/stream"),
            Some(Call::Stream("abc".into()))
        );
        assert_eq!(
            c("POST", "/t/v1/predictions/abc/cancel"),
            Some(Call::Cancel("abc".into()))
        );
        assert_eq!(c("GET", "/t/v1/chat/completions"), None);
        assert_eq!(c("DELETE", "/t/v1/predictions/abc"), None);
    }

    #[test]
    fn a_prediction_needs_polls_then_succeeds() {
        let mut p = Prediction {
            id: "p".into(),
            base: "http://h/t/v1".into(),
            model: "a/b".into(),
            version: VERSION.into(),
            input: json!({}),
            pieces: vec!["a ".into(), "b ".into(), "c".into()],
            tokens_in: 4,
            end: End::Succeed,
            polls_left: 2,
            polls_total: 2,
            streams: true,
            stream_fault: None,
            interval: Duration::ZERO,
            canceled: false,
        };
        let s = p.json("starting", 0);
        assert_eq!(s["urls"]["get"], "http://h/t/v1/predictions/p");
        assert_eq!(s["urls"]["stream"], "http://h/t/v1/predictions/p/stream");
        assert!(s["output"].is_null());
        let first = p.poll();
        assert_eq!(first["status"], "processing");
        assert_eq!(first["output"], json!(["a "]));
        assert_eq!(p.poll()["status"], "processing");
        let done = p.poll();
        assert_eq!(done["status"], "succeeded");
        assert_eq!(done["output"], json!(["a ", "b ", "c"]));
        assert_eq!(done["metrics"]["output_token_count"], 3);
        p.end = End::Fail(POLICY_TEXT.into());
        let f = p.finished();
        assert_eq!(
            (f["status"].clone(), f["error"].clone()),
            (json!("failed"), json!(POLICY_TEXT))
        );
        p.canceled = true;
        assert_eq!(p.poll()["status"], "canceled");
    }

    #[test]
    fn create_bodies_read_as_prompts() {
        let p = prompt_of(
            &json!({"input": {"prompt": "User: a\n\nAssistant: b\n\nUser: c d", "system_prompt": "sys"}, "stream": true}),
        );
        assert!(p.stream);
        assert_eq!(p.last_user_text.as_deref(), Some("c d"));
        assert_eq!(p.chars, 32 + 3);
        let p = prompt_of(&json!({"input": {"prompt": "Say hello"}}));
        assert_eq!(p.last_user_text.as_deref(), Some("Say hello"));
        assert!(!p.stream);
    }

    #[test]
    fn tenant_names() {
        assert_eq!(tenant_traits("t"), (0, true));
        assert_eq!(tenant_traits("poll-5"), (5, true));
        assert_eq!(tenant_traits("poll"), (3, true));
        assert_eq!(tenant_traits("nostream"), (0, false));
        assert_eq!(tenant_traits("poll-2-nostream"), (2, false));
    }

    #[test]
    fn multi_line_output_is_several_data_lines() {
        assert_eq!(
            String::from_utf8(event("output", "a\nb"))
                .unwrap()
                .split_once('\n')
                .unwrap()
                .1
                .split_once('\n')
                .unwrap()
                .1,
            "data: a\ndata: b\n\n"
        );
    }
}
