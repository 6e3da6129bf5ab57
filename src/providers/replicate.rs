//! Replicate predictions (PROVIDERS.md §10). Not one request per answer: a prediction is created,
//! then waited for (`Prefer: wait`), polled (`urls.get`) or streamed (`urls.stream`, SSE), and
//! cancelled (`urls.cancel`) when the caller stops waiting. So this is a [`ChatClient`] of its
//! own; it reuses the HTTP driver's limits, timeouts and error reading from [`super::http`].
//!
//! Model forms: `owner/name` (official models, `POST /models/{owner}/{name}/predictions`),
//! `owner/name:version` or a 64-hex version id (`POST /predictions` with `version`),
//! `deployments/owner/name` or `litellm_params.replicate_deployment: true`
//! (`POST /deployments/{owner}/{name}/predictions`).
//!
//! Input: language models on Replicate take a `prompt`, not messages. System messages become
//! `system_prompt`; a single user turn is sent as the prompt verbatim (the model applies its own
//! chat template, as in Replicate's playground); a longer conversation is flattened into a
//! `User: …` / `Assistant: …` transcript. litellm's custom prompt keys in `litellm_params`
//! (`roles` with `pre_message`/`post_message`, `initial_prompt_value`, `final_prompt_value`,
//! `bos_token`, `eos_token`) replace that with an exact template (system messages included,
//! no `system_prompt`). A model's own `prompt_template` input passes through untouched.
//! `max_tokens` is sent as both `max_tokens` and `max_new_tokens` (models know one or the other),
//! `stop` as the comma-separated `stop_sequences`; other `litellm_params` go into `input`.
//!
//! Tools: Replicate has no tool calling, and emulating it in a prompt is unreliable across
//! arbitrary models, so a request offering tools is refused with `LLMR_ERR_BAD_REQUEST`
//! (unless `tool_choice` is `"none"`, which drops them). Tool calls and results already in the
//! history are flattened into the transcript as text.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::classify::{body_excerpt, classify, ErrorParts};
use super::http::{
    error_answer, idle_error, read_body, timeout_error, transport_error, Body, MAX_BODY_BYTES,
};
use super::{extra_headers, secret_header, BoxFuture, ChatClient, ChunkStream, Endpoint};
use crate::config::DeploymentConfig;
use crate::errors::{Error, Status};
use crate::sse::{SseDecoder, SseEvent};
use crate::types::{
    content_text, unix_now, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta,
    Message, ResponseMessage, Usage,
};

/// `litellm_params` that configure this client and are never sent as model input.
const CONFIG_KEYS: &[&str] = &[
    "replicate_deployment",
    "roles",
    "initial_prompt_value",
    "final_prompt_value",
    "bos_token",
    "eos_token",
    "input",
];

/// OpenAI request fields a Replicate model has no input for (or that are mapped here).
const NOT_INPUT: &[&str] = &[
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "user",
    "n",
    "stream",
    "stream_options",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "messages",
];

/// Request fields (beyond the typed ones) that Replicate language models take as input.
const REQUEST_INPUTS: &[&str] = &[
    "top_k",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "length_penalty",
    "min_tokens",
    "min_new_tokens",
    "max_new_tokens",
    "prompt_template",
];

/// The longest `Prefer: wait` Replicate honours.
const MAX_WAIT_SECS: u64 = 60;
/// Polling backoff: first delay, cap.
const POLL_FIRST: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(2);
/// The best-effort cancel and the usage look-up after a stream may take this long at most.
const SIDE_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Replicate is not one request per answer (create, then wait or poll), so it is a client of
/// its own rather than a [`super::WireFormat`].
pub fn client(
    d: &DeploymentConfig,
    max_output_tokens: Option<u64>,
    http: &crate::caller_runtime::Http,
) -> Result<Arc<dyn ChatClient>, String> {
    Ok(Arc::new(ReplicateClient {
        shared: Arc::new(Shared::new(d, max_output_tokens, http)?),
    }))
}

/// What one deployment needs, prepared at init and shared with its streams.
#[derive(Debug)]
struct Shared {
    ep: Endpoint,
    /// `version` of the create body, for `POST /predictions`.
    version: Option<String>,
    template: Option<Template>,
    /// Host (and port) of the base URL: the only place, with Replicate's own hosts, that gets
    /// the token when a prediction's URLs are followed.
    base_origin: Option<(String, Option<u16>)>,
    http: crate::caller_runtime::Http,
}

impl Shared {
    fn new(
        d: &DeploymentConfig,
        max_output_tokens: Option<u64>,
        http: &crate::caller_runtime::Http,
    ) -> Result<Shared, String> {
        let mut ep = Endpoint::common(d, max_output_tokens);
        let base = match &d.api_base {
            Some(b) => b.as_str(),
            None => d.spec.default_base.ok_or_else(|| d.spec.note.to_owned())?,
        };
        let base = base.trim_end_matches('/');
        let deployment = d.params.get("replicate_deployment") == Some(&Value::Bool(true));
        let (url, version) = create_target(base, &d.model, deployment)?;
        ep.url = url;
        ep.stream_url = ep.url.clone();
        for k in CONFIG_KEYS {
            ep.defaults.remove(*k);
        }
        if let Some(Value::Object(input)) = d.params.get("input") {
            // The deployment's `input` object: model inputs given as they are.
            for (k, v) in input {
                ep.defaults.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        ep.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(k) = &d.api_key {
            ep.headers.insert(
                AUTHORIZATION,
                secret_header(&format!("Bearer {}", k.expose()))?,
            );
        }
        extra_headers(d, &mut ep.headers)?;
        let base_origin = reqwest::Url::parse(base)
            .ok()
            .and_then(|u| Some((u.host_str()?.to_ascii_lowercase(), u.port())));
        Ok(Shared {
            ep,
            version,
            template: Template::from_params(&d.params)?,
            base_origin,
            http: http.clone(),
        })
    }

    /// Headers for a URL a prediction gave: the token only where it belongs.
    fn headers_for(&self, url: &str) -> HeaderMap {
        let mut h = self.ep.headers.clone();
        let trusted = reqwest::Url::parse(url).ok().is_some_and(|u| {
            let Some(host) = u.host_str().map(str::to_ascii_lowercase) else {
                return false;
            };
            self.base_origin
                .as_ref()
                .is_some_and(|(h, p)| *h == host && *p == u.port())
                || u.scheme() == "https"
                    && ["replicate.com", "replicate.net"]
                        .iter()
                        .any(|d| host == *d || host.ends_with(&format!(".{d}")))
        });
        if !trusted {
            h.remove(AUTHORIZATION);
        }
        h
    }

    fn error(&self, e: Error) -> Error {
        e.with_provider(&self.ep.provider)
    }

    /// `POST` the create body; `wait`: seconds of `Prefer: wait`.
    async fn create(&self, body: Vec<u8>, wait: Option<u64>) -> Result<Prediction, Error> {
        let mut headers = self.ep.headers.clone();
        if let Some(n) = wait {
            if let Ok(v) = HeaderValue::from_str(&format!("wait={n}")) {
                headers.insert("prefer", v);
            }
        }
        let resp = self
            .http
            .send(
                self.http
                    .request(Method::POST, &self.ep.url)
                    .headers(headers)
                    .body(body),
            )
            .await
            .map_err(|e| transport_error(e, &self.ep))?;
        self.prediction_of(resp).await
    }

    /// `GET` a prediction (its `urls.get`).
    async fn get(&self, url: &str) -> Result<Prediction, Error> {
        let resp = self
            .http
            .send(
                self.http
                    .request(Method::GET, url)
                    .headers(self.headers_for(url)),
            )
            .await
            .map_err(|e| transport_error(e, &self.ep))?;
        self.prediction_of(resp).await
    }

    async fn prediction_of(&self, resp: reqwest::Response) -> Result<Prediction, Error> {
        if !resp.status().is_success() {
            return Err(self.error_of(resp).await);
        }
        let bytes = read_body(resp, MAX_BODY_BYTES, &self.ep, false).await?;
        parse_prediction(&bytes).map_err(|e| self.error(e))
    }

    async fn error_of(&self, resp: reqwest::Response) -> Error {
        let mut e = error_answer(resp, &self.ep, |status, _, body| parse_error(status, body)).await;
        if e.retry_after.is_none() {
            e.retry_after = throttle_hint(&e.message);
        }
        e
    }

    /// Polls until the prediction is over, with a small growing delay.
    async fn poll(&self, mut p: Prediction) -> Result<Prediction, Error> {
        let mut delay = POLL_FIRST;
        while !p.is_over() {
            let Some(url) = p.urls.get.clone() else {
                return Err(self.error(Error::upstream(format!(
                    "prediction {} is {} and has no `urls.get` to poll",
                    p.id, p.status
                ))));
            };
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(POLL_MAX);
            p = self.get(&url).await?;
        }
        Ok(p)
    }

    /// The create body: `input`, `version` when versioned, `stream` when streaming.
    fn body(&self, req: &ChatRequest, stream: bool) -> Result<(Vec<u8>, Option<u64>), Error> {
        let (input, max_tokens) = build_input(&self.ep, self.template.as_ref(), req)?;
        let mut body = Map::new();
        if let Some(v) = &self.version {
            body.insert("version".into(), Value::from(v.as_str()));
        }
        body.insert("input".into(), Value::Object(input));
        if stream {
            // Older models stream only when asked; newer ones ignore it.
            body.insert("stream".into(), Value::Bool(true));
        }
        let bytes = serde_json::to_vec(&Value::Object(body))
            .map_err(|e| Error::invalid(format!("request could not be encoded: {e}")))?;
        Ok((bytes, max_tokens))
    }
}

struct ReplicateClient {
    shared: Arc<Shared>,
}

impl ChatClient for ReplicateClient {
    fn complete<'a>(
        &'a self,
        req: &'a ChatRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ChatResponse, Error>> {
        Box::pin(async move {
            let s = &self.shared;
            let (body, max_tokens) = s.body(req, false)?;
            // A second short of the timeout: an unfinished prediction comes back with its
            // cancel URL before the caller gives up, so it can be cancelled.
            let wait = timeout.as_secs().saturating_sub(1).clamp(1, MAX_WAIT_SECS);
            let exchange = async {
                let p = s.create(body, Some(wait)).await?;
                // Dropped unfinished (timeout, caller gone): the prediction is cancelled.
                let mut guard = CancelGuard::new(s, &p);
                let p = s.poll(p).await?;
                guard.disarm();
                response_of(&s.ep, p, max_tokens).map_err(|e| s.error(e))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err(timeout_error(&s.ep, timeout)),
            }
        })
    }

    fn open_stream<'a>(
        &'a self,
        req: &'a ChatRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn ChunkStream>, Error>> {
        Box::pin(async move {
            let s = &self.shared;
            let (body, max_tokens) = s.body(req, true)?;
            let open = async {
                let p = s.create(body, None).await?;
                let guard = CancelGuard::new(s, &p);
                let mut stream = PredictionStream {
                    shared: s.clone(),
                    chunker: Chunker::new(&s.ep.model, &p.id),
                    pending: VecDeque::new(),
                    source: Source::Done,
                    idle: timeout,
                    guard,
                    get_url: p.urls.get.clone(),
                    max_tokens,
                };
                match p.urls.stream.clone().filter(|_| !p.is_over()) {
                    Some(url) => {
                        let resp = s
                            .http
                            .send(
                                s.http
                                    .request(Method::GET, &url)
                                    .headers(s.headers_for(&url))
                                    .header(ACCEPT, "text/event-stream")
                                    .header(CACHE_CONTROL, "no-store"),
                            )
                            .await
                            .map_err(|e| transport_error(e, &s.ep))?;
                        if !resp.status().is_success() {
                            return Err(s.error_of(resp).await);
                        }
                        stream.source = Source::Sse {
                            body: Body::of(resp),
                            parser: SseParser::default(),
                        };
                    }
                    // No stream URL (or already over): poll, giving out new output as it comes.
                    None => {
                        if !p.is_over() {
                            stream.source = Source::Poll {
                                seen: OutputSeen::default(),
                                delay: POLL_FIRST,
                                quiet: Duration::ZERO,
                            };
                        }
                        stream.absorb(&p)?;
                    }
                }
                Ok(Box::new(stream) as Box<dyn ChunkStream>)
            };
            match tokio::time::timeout(timeout, open).await {
                Ok(r) => r.map_err(|e| s.error(e)),
                Err(_) => Err(timeout_error(&s.ep, timeout)),
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Cancellation

/// Cancels a prediction when dropped armed: the caller stopped waiting (timeout, cancel) before
/// it was over, and Replicate would otherwise keep running (and billing) it.
struct CancelGuard {
    armed: Option<(String, Arc<Shared>)>,
}

impl CancelGuard {
    fn new(s: &Arc<Shared>, p: &Prediction) -> CancelGuard {
        CancelGuard {
            armed: p
                .urls
                .cancel
                .clone()
                .filter(|_| !p.is_over())
                .map(|u| (u, s.clone())),
        }
    }

    fn disarm(&mut self) {
        self.armed = None;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        let Some((url, s)) = self.armed.take() else {
            return;
        };
        // Best effort, off the caller's path: on the shared runtime, since a blocking call's own
        // runtime stops when the call returns; outside a runtime there is nothing to run it on.
        let rt = if crate::caller_runtime::is_driving() {
            Ok(crate::global::runtime().handle().clone())
        } else {
            tokio::runtime::Handle::try_current()
        };
        if let Ok(rt) = rt {
            rt.spawn(async move {
                let send = s.http.send(
                    s.http
                        .request(Method::POST, &url)
                        .headers(s.headers_for(&url)),
                );
                let _ = tokio::time::timeout(SIDE_REQUEST_TIMEOUT, send).await;
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Model forms

/// The create URL and the `version` of the body, from the configured model.
fn create_target(
    base: &str,
    model: &str,
    deployment: bool,
) -> Result<(String, Option<String>), String> {
    let model = model.trim();
    let bad = || {
        format!(
            "REPLICATE model `{model}` must be `owner/name`, `owner/name:version`, a 64-hex version id or `deployments/owner/name`"
        )
    };
    if let Some(rest) = model.strip_prefix("deployments/") {
        let (o, n) = owner_name(rest).ok_or_else(bad)?;
        return Ok((format!("{base}/deployments/{o}/{n}/predictions"), None));
    }
    if is_version_id(model) {
        return Ok((format!("{base}/predictions"), Some(model.to_owned())));
    }
    if let Some((name, version)) = model.split_once(':') {
        owner_name(name).ok_or_else(bad)?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad());
        }
        return Ok((format!("{base}/predictions"), Some(version.to_owned())));
    }
    let (o, n) = owner_name(model).ok_or_else(bad)?;
    let kind = if deployment { "deployments" } else { "models" };
    Ok((format!("{base}/{kind}/{o}/{n}/predictions"), None))
}

fn is_version_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `owner/name`, each a safe path segment.
fn owner_name(s: &str) -> Option<(&str, &str)> {
    let (o, n) = s.split_once('/')?;
    let ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    (ok(o) && ok(n)).then_some((o, n))
}

// ---------------------------------------------------------------------------------------------
// Input

/// litellm's custom prompt format: text around each role's messages, and around the whole.
#[derive(Debug, Default)]
struct Template {
    roles: Vec<(String, String, String)>,
    initial: String,
    last: String,
    bos: String,
    eos: String,
}

impl Template {
    fn from_params(params: &Map<String, Value>) -> Result<Option<Template>, String> {
        let text = |k: &str| -> Result<String, String> {
            match params.get(k) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("`litellm_params.{k}` must be a string")),
            }
        };
        let mut t = Template {
            initial: text("initial_prompt_value")?,
            last: text("final_prompt_value")?,
            bos: text("bos_token")?,
            eos: text("eos_token")?,
            ..Template::default()
        };
        match params.get("roles") {
            None | Some(Value::Null) => {}
            Some(Value::Object(roles)) => {
                for (role, v) in roles {
                    let part = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    if !v.is_object() {
                        return Err(format!(
                            "`litellm_params.roles.{role}` must be an object with `pre_message` / `post_message`"
                        ));
                    }
                    t.roles
                        .push((role.clone(), part("pre_message"), part("post_message")));
                }
            }
            Some(_) => return Err("`litellm_params.roles` must be an object".into()),
        }
        let any = !t.roles.is_empty()
            || !t.initial.is_empty()
            || !t.last.is_empty()
            || !t.bos.is_empty()
            || !t.eos.is_empty();
        Ok(any.then_some(t))
    }

    fn render(&self, turns: &[(&str, String)]) -> String {
        let mut out = String::new();
        out.push_str(&self.bos);
        out.push_str(&self.initial);
        for (role, text) in turns {
            let (pre, post) = self
                .roles
                .iter()
                .find(|(r, _, _)| r == role)
                .map_or(("", ""), |(_, pre, post)| (pre.as_str(), post.as_str()));
            out.push_str(pre);
            out.push_str(text);
            out.push_str(post);
        }
        out.push_str(&self.last);
        out.push_str(&self.eos);
        out
    }
}

/// The prediction's `input`, and the output cap it carries (for the finish reason).
fn build_input(
    ep: &Endpoint,
    template: Option<&Template>,
    req: &ChatRequest,
) -> Result<(Map<String, Value>, Option<u64>), Error> {
    let choice_none = req
        .tool_choice
        .as_ref()
        .or_else(|| ep.defaults.get("tool_choice"))
        .and_then(Value::as_str)
        == Some("none");
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) && !choice_none {
        return Err(Error::new(
            Status::BadRequest,
            format!(
                "deployment {} is a Replicate prediction model, which has no tool calling; send the request without `tools` or route it to a deployment that has them",
                ep.deployment_id
            ),
        ));
    }
    let mut input: Map<String, Value> = ep
        .defaults
        .iter()
        .filter(|(k, _)| !NOT_INPUT.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for key in REQUEST_INPUTS {
        if let Some(v) = req.extra.get(*key).filter(|v| !v.is_null()) {
            input.insert((*key).into(), v.clone());
        }
    }
    // Model-specific inputs given with the request itself.
    if let Some(Value::Object(extra)) = req.extra.get("input") {
        input.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    let (prompt, system) = flatten(&req.messages, template)?;
    input.insert("prompt".into(), Value::from(prompt));
    if let Some(system) = system {
        input.insert("system_prompt".into(), Value::from(system));
    }

    let max_tokens = req
        .max_output_tokens()
        .or_else(|| {
            ep.defaults
                .get("max_completion_tokens")
                .and_then(Value::as_u64)
        })
        .or_else(|| ep.defaults.get("max_tokens").and_then(Value::as_u64));
    if let Some(n) = max_tokens {
        input.insert("max_tokens".into(), Value::from(n));
        input.insert("max_new_tokens".into(), Value::from(n));
    }
    if let Some(t) = req
        .temperature
        .map(Value::from)
        .or_else(|| ep.param(req, "temperature").cloned())
    {
        input.insert("temperature".into(), t);
    }
    if let Some(p) = req
        .top_p
        .map(Value::from)
        .or_else(|| ep.param(req, "top_p").cloned())
    {
        input.insert("top_p".into(), p);
    }
    let stop = req
        .stop
        .as_ref()
        .filter(|v| !v.is_null())
        .or_else(|| ep.defaults.get("stop"));
    if let Some(stop) = stop.map(stop_sequences).filter(|s| !s.is_empty()) {
        input.insert("stop_sequences".into(), Value::from(stop));
    }
    let cap = max_tokens.or_else(|| {
        input
            .get("max_tokens")
            .or_else(|| input.get("max_new_tokens"))
            .and_then(Value::as_u64)
    });
    Ok((input, cap))
}

/// `stop` (a string or an array) as Replicate's comma-separated `stop_sequences`.
fn stop_sequences(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

/// The conversation as `prompt` and `system_prompt` (see the module documentation).
fn flatten(
    messages: &[Message],
    template: Option<&Template>,
) -> Result<(String, Option<String>), Error> {
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(&str, String)> = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let text = text_of(m, i)?;
        let role = match m.role.as_str() {
            "developer" => "system",
            "function" => "tool",
            r => r,
        };
        if role == "system" && template.is_none() {
            system.push(text);
        } else {
            turns.push((role, text));
        }
    }
    if let Some(t) = template {
        return Ok((t.render(&turns), None));
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    if let [("user", text)] = turns.as_slice() {
        return Ok((text.clone(), system));
    }
    let mut prompt = String::new();
    for (role, text) in &turns {
        if !prompt.is_empty() {
            prompt.push_str("\n\n");
        }
        let label = match *role {
            "user" => "User",
            "assistant" => "Assistant",
            "tool" => "Tool result",
            "system" => "System",
            other => other,
        };
        prompt.push_str(label);
        prompt.push_str(": ");
        prompt.push_str(text);
    }
    Ok((prompt, system))
}

/// A message's text: its text parts, and any tool calls it made, written out.
fn text_of(m: &Message, index: usize) -> Result<String, Error> {
    if let Some(Value::Array(parts)) = &m.content {
        if let Some(p) = parts.iter().find(|p| {
            p.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t != "text")
        }) {
            let kind = p.get("type").and_then(Value::as_str).unwrap_or("?");
            return Err(Error::invalid(format!(
                "request JSON at `messages[{index}].content`: Replicate deployments take text only, not `{kind}` parts"
            )));
        }
    }
    let mut text = content_text(&m.content);
    for call in m.tool_calls.iter().flatten() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!(
            "[called {}({})]",
            call.function.name, call.function.arguments
        ));
    }
    Ok(text)
}

// ---------------------------------------------------------------------------------------------
// Predictions

#[derive(Deserialize, Default, Debug)]
struct Prediction {
    #[serde(default)]
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    error: Value,
    #[serde(default)]
    metrics: Metrics,
    #[serde(default)]
    urls: Urls,
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
struct Metrics {
    #[serde(default, deserialize_with = "lenient_count")]
    input_token_count: Option<u64>,
    #[serde(default, deserialize_with = "lenient_count")]
    output_token_count: Option<u64>,
}

#[derive(Deserialize, Default, Debug)]
struct Urls {
    #[serde(default)]
    get: Option<String>,
    #[serde(default)]
    cancel: Option<String>,
    #[serde(default)]
    stream: Option<String>,
}

fn lenient_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        _ => None,
    })
}

impl Prediction {
    fn is_over(&self) -> bool {
        matches!(
            self.status.as_str(),
            "succeeded" | "failed" | "canceled" | "aborted"
        )
    }

    /// Succeeded: Ok; failed or canceled: the error it ended with; still running: Ok too.
    fn outcome(&self) -> Result<(), Error> {
        match self.status.as_str() {
            "failed" => Err(failure(&text_value(&self.error), &self.id)),
            "canceled" | "aborted" => Err(Error::upstream(format!(
                "prediction {} was {} before it finished",
                self.id, self.status
            ))),
            _ => Ok(()),
        }
    }

    fn usage(&self) -> Option<Usage> {
        match (
            self.metrics.input_token_count,
            self.metrics.output_token_count,
        ) {
            (None, None) => None,
            (i, o) => Some(Usage::new(i.unwrap_or(0), o.unwrap_or(0))),
        }
    }
}

fn parse_prediction(body: &[u8]) -> Result<Prediction, Error> {
    let p: Prediction = serde_json::from_slice(body).map_err(|e| {
        Error::upstream(format!(
            "upstream answer is not a Replicate prediction ({e}): {}",
            body_excerpt(body)
        ))
    })?;
    if p.status.is_empty() {
        return Err(Error::upstream(format!(
            "upstream answer is not a Replicate prediction (no status): {}",
            body_excerpt(body)
        )));
    }
    Ok(p)
}

/// Text of an `output` or `error`: a string, an array of token strings joined, else its JSON.
fn text_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let mut out = String::new();
            for item in items {
                match item {
                    Value::String(s) => out.push_str(s),
                    Value::Null => {}
                    other => out.push_str(&other.to_string()),
                }
            }
            out
        }
        other => other.to_string(),
    }
}

/// `stop`, or `length` when the model produced as many tokens as it was allowed.
fn finish_reason(metrics: &Metrics, max_tokens: Option<u64>) -> &'static str {
    match (metrics.output_token_count, max_tokens) {
        (Some(n), Some(max)) if n >= max => "length",
        _ => "stop",
    }
}

fn completion_id(prediction_id: &str) -> String {
    if prediction_id.is_empty() {
        let mut id = String::from("chatcmpl-");
        id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(24));
        id
    } else {
        format!("chatcmpl-{prediction_id}")
    }
}

/// A finished prediction as a chat completion.
fn response_of(
    ep: &Endpoint,
    p: Prediction,
    max_tokens: Option<u64>,
) -> Result<ChatResponse, Error> {
    p.outcome()?;
    Ok(ChatResponse {
        id: completion_id(&p.id),
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: ep.model.clone(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                content: Some(text_value(&p.output)),
                ..ResponseMessage::default()
            },
            finish_reason: Some(finish_reason(&p.metrics, max_tokens).to_owned()),
        }],
        usage: p.usage(),
        llmr: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Failure texts of models that refused the content (safety checkers, Replicate's E005).
fn is_policy_text(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "nsfw",
        "flagged as sensitive",
        "(e005)",
        "safety checker",
        "flagged by the safety",
        "content policy",
        "unsafe content",
    ]
    .iter()
    .any(|w| m.contains(w))
}

fn parts_of(message: String) -> ErrorParts {
    ErrorParts {
        code: None,
        kind: is_policy_text(&message).then(|| "content_policy_violation".to_owned()),
        message,
    }
}

/// A prediction that failed (inside a 200/201, or a stream's error): classified by its text.
fn failure(error_text: &str, id: &str) -> Error {
    let message = if error_text.trim().is_empty() {
        format!("prediction {id} failed with no error message")
    } else {
        error_text.trim().to_owned()
    };
    classify(None, parts_of(message))
}

/// A non-2xx answer: problem details `{"title", "detail", "status"}` (or `{"detail"}`).
fn parse_error(http_status: u16, body: &[u8]) -> Error {
    #[derive(Deserialize)]
    struct Problem {
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        detail: Option<Value>,
    }
    let message = match serde_json::from_slice::<Problem>(body) {
        Ok(p) => match (p.detail.as_ref().map(text_value), p.title) {
            (Some(d), _) if !d.is_empty() => d,
            (_, Some(t)) if !t.is_empty() => t,
            _ => body_excerpt(body),
        },
        Err(_) => body_excerpt(body),
    };
    classify(Some(http_status), parts_of(message))
}

/// Replicate's throttling texts: "Request was throttled. Expected available in 1 second." and
/// "… Your rate limit resets in ~30s."
fn throttle_hint(message: &str) -> Option<f64> {
    let m = message.to_ascii_lowercase();
    let at = ["expected available in ", "resets in "]
        .iter()
        .find_map(|k| m.find(k).map(|i| i + k.len()))?;
    let rest = m[at..].trim_start_matches(['~', ' ']);
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse::<f64>().ok().filter(|s| s.is_finite())
}

// ---------------------------------------------------------------------------------------------
// Streams

/// Builds the chunks of one answer.
struct Chunker {
    id: Arc<str>,
    created: u64,
    model: Arc<str>,
    started: bool,
}

impl Chunker {
    fn new(model: &str, prediction_id: &str) -> Chunker {
        Chunker {
            id: completion_id(prediction_id).into(),
            created: unix_now(),
            model: model.into(),
            started: false,
        }
    }

    fn chunk(&mut self, content: Option<String>, finish: Option<&str>) -> ChatChunk {
        let role = (!self.started).then(|| "assistant".to_owned());
        self.started = true;
        ChatChunk {
            id: self.id.clone(),
            object: crate::types::CHUNK_OBJECT.into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    role,
                    content,
                    ..Delta::default()
                },
                finish_reason: finish.map(str::to_owned),
            }],
            usage: None,
        }
    }

    fn content(&mut self, text: String) -> ChatChunk {
        self.chunk(Some(text), None)
    }

    /// The finish chunk, then the usage chunk when the prediction reported its token counts.
    fn end(&mut self, metrics: &Metrics, max_tokens: Option<u64>, out: &mut VecDeque<ChatChunk>) {
        let finish = self.chunk(None, Some(finish_reason(metrics, max_tokens)));
        out.push_back(finish);
        let p = Prediction {
            metrics: *metrics,
            ..Prediction::default()
        };
        if let Some(usage) = p.usage() {
            let mut c = self.chunk(None, None);
            c.choices.clear();
            c.usage = Some(usage);
            out.push_back(c);
        }
    }
}

/// Replicate's SSE stream: `output` events carry raw text, `error` a failure, `done` the end
/// (`{}`, or `{"reason": "error" | "canceled"}`); `logs` and others are ignored.
#[derive(Default)]
struct SseParser {
    decoder: SseDecoder,
    state: SseState,
}

#[derive(Default)]
struct SseState {
    /// `done` came: the answer is whole.
    done: bool,
    /// The prediction is over (`done` or `error` came): nothing left to cancel.
    over: bool,
}

impl SseState {
    fn on_event(
        &mut self,
        ev: &SseEvent,
        chunker: &mut Chunker,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        match ev.event.as_str() {
            "output" if !ev.data.is_empty() => out.push_back(chunker.content(ev.data.clone())),
            "error" => {
                self.over = true;
                return Err(failure(&event_error_text(&ev.data), ""));
            }
            "done" => {
                self.over = true;
                let reason = serde_json::from_str::<Value>(&ev.data)
                    .ok()
                    .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default();
                match reason.as_str() {
                    "" => self.done = true,
                    "canceled" => {
                        return Err(Error::upstream(
                            "prediction was canceled before it finished",
                        ))
                    }
                    other => {
                        return Err(Error::upstream(format!(
                            "prediction ended with reason `{other}` and no error message"
                        )))
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// An `error` event's text: plain, or a JSON object's `detail` / `error` / `message`.
fn event_error_text(data: &str) -> String {
    match serde_json::from_str::<Value>(data) {
        Ok(Value::Object(o)) => ["detail", "error", "message", "title"]
            .iter()
            .find_map(|k| o.get(*k).map(text_value).filter(|t| !t.is_empty()))
            .unwrap_or_else(|| data.to_owned()),
        Ok(Value::String(s)) => s,
        _ => data.to_owned(),
    }
}

impl SseParser {
    /// Feeds bytes; `Ok(true)` once `done` came.
    fn feed(
        &mut self,
        bytes: &[u8],
        chunker: &mut Chunker,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<bool, Error> {
        let state = &mut self.state;
        self.decoder.feed(
            bytes,
            |ev| state.on_event(ev, chunker, out),
            || Error::upstream("stream event larger than 16 MiB"),
        )?;
        Ok(self.state.done)
    }

    /// The connection ended: fine only after `done`.
    fn finish(
        &mut self,
        chunker: &mut Chunker,
        out: &mut VecDeque<ChatChunk>,
    ) -> Result<(), Error> {
        if let Some(ev) = self.decoder.finish() {
            self.state.on_event(&ev, chunker, out)?;
        }
        if self.state.done {
            Ok(())
        } else {
            Err(Error::upstream(
                "stream ended before it was complete (no `done` event)",
            ))
        }
    }
}

/// How much of a polled prediction's output was given out already.
#[derive(Default)]
struct OutputSeen {
    items: usize,
    bytes: usize,
}

impl OutputSeen {
    /// The output added since the last look.
    fn new_text(&mut self, output: &Value) -> Vec<String> {
        match output {
            Value::Array(items) => {
                let new: Vec<String> = items
                    .iter()
                    .skip(self.items)
                    .map(|v| text_value(&Value::Array(vec![v.clone()])))
                    .filter(|t| !t.is_empty())
                    .collect();
                self.items = self.items.max(items.len());
                new
            }
            Value::String(s) => {
                let from = self.bytes.min(s.len());
                self.bytes = s.len();
                match s.get(from..) {
                    Some(t) if !t.is_empty() => vec![t.to_owned()],
                    _ => Vec::new(),
                }
            }
            Value::Null => Vec::new(),
            other => {
                let t = other.to_string();
                let from = self.bytes.min(t.len());
                self.bytes = t.len();
                t.get(from..)
                    .filter(|t| !t.is_empty())
                    .map(|t| vec![t.to_owned()])
                    .unwrap_or_default()
            }
        }
    }
}

enum Source {
    Sse {
        body: Body,
        parser: SseParser,
    },
    Poll {
        seen: OutputSeen,
        delay: Duration,
        /// Time since output last grew.
        quiet: Duration,
    },
    Done,
}

struct PredictionStream {
    shared: Arc<Shared>,
    chunker: Chunker,
    pending: VecDeque<ChatChunk>,
    source: Source,
    idle: Duration,
    guard: CancelGuard,
    get_url: Option<String>,
    max_tokens: Option<u64>,
}

impl PredictionStream {
    /// Takes in a polled prediction: new output as chunks; its end, or its failure.
    fn absorb(&mut self, p: &Prediction) -> Result<bool, Error> {
        let grew = if let Source::Poll { seen, .. } = &mut self.source {
            let new = seen.new_text(&p.output);
            let grew = !new.is_empty();
            for t in new {
                let c = self.chunker.content(t);
                self.pending.push_back(c);
            }
            grew
        } else if p.is_over() {
            // Over at creation: all of its output at once.
            let t = text_value(&p.output);
            if !t.is_empty() {
                let c = self.chunker.content(t);
                self.pending.push_back(c);
            }
            true
        } else {
            false
        };
        if p.is_over() {
            self.guard.disarm();
            p.outcome()?;
            self.source = Source::Done;
            self.chunker
                .end(&p.metrics, self.max_tokens, &mut self.pending);
        }
        Ok(grew)
    }

    /// After `done`: the token counts are on the prediction, not in the stream.
    async fn end_of_sse(&mut self) {
        self.guard.disarm();
        let mut metrics = Metrics::default();
        if let Some(url) = self.get_url.clone() {
            let limit = self.idle.min(SIDE_REQUEST_TIMEOUT);
            if let Ok(Ok(p)) = tokio::time::timeout(limit, self.shared.get(&url)).await {
                metrics = p.metrics;
            }
        }
        self.chunker
            .end(&metrics, self.max_tokens, &mut self.pending);
    }

    async fn step(&mut self) -> Result<(), Error> {
        let ep = &self.shared.ep;
        match &mut self.source {
            Source::Done => Ok(()),
            Source::Sse { body, parser } => {
                let read = tokio::time::timeout(self.idle, body.chunk())
                    .await
                    .map_err(|_| idle_error(ep, self.idle))?;
                let finished = match read.map_err(|e| transport_error(e, ep))? {
                    Some(bytes) => parser.feed(&bytes, &mut self.chunker, &mut self.pending),
                    None => parser
                        .finish(&mut self.chunker, &mut self.pending)
                        .map(|()| true),
                };
                if parser.state.over {
                    self.guard.disarm();
                }
                if finished? {
                    self.source = Source::Done;
                    self.end_of_sse().await;
                }
                Ok(())
            }
            Source::Poll { delay, quiet, .. } => {
                if *quiet >= self.idle {
                    return Err(idle_error(ep, self.idle));
                }
                let wait = *delay;
                tokio::time::sleep(wait).await;
                *delay = (*delay * 2).min(POLL_MAX);
                *quiet += wait;
                let Some(url) = self.get_url.clone() else {
                    return Err(Error::upstream("prediction has no `urls.get` to poll"));
                };
                let p = tokio::time::timeout(self.idle, self.shared.get(&url))
                    .await
                    .map_err(|_| idle_error(ep, self.idle))??;
                if self.absorb(&p)? {
                    if let Source::Poll { quiet, .. } = &mut self.source {
                        *quiet = Duration::ZERO;
                    }
                }
                Ok(())
            }
        }
    }
}

impl ChunkStream for PredictionStream {
    fn next_chunk(&mut self) -> BoxFuture<'_, Option<Result<ChatChunk, Error>>> {
        Box::pin(async move {
            loop {
                if let Some(c) = self.pending.pop_front() {
                    return Some(Ok(c));
                }
                if matches!(self.source, Source::Done) {
                    return None;
                }
                if let Err(e) = self.step().await {
                    self.source = Source::Done;
                    self.pending.clear();
                    return Some(Err(e.with_provider(&self.shared.ep.provider)));
                }
            }
        })
    }
}

/// Replicate's parsers for the fuzz targets and their corpus replay (`llmr::fuzzing`): the
/// prediction, error and SSE parsing above, without a client or a connection.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// A create/poll answer as the completion it ends with (`max_tokens` decides `length`).
    pub fn prediction_response(
        model: &str,
        body: &[u8],
        max_tokens: Option<u64>,
    ) -> Result<ChatResponse, Error> {
        let ep = Endpoint {
            deployment_id: Arc::from("fuzz"),
            provider: Arc::from("replicate"),
            model: model.to_owned(),
            url: String::new(),
            stream_url: String::new(),
            headers: HeaderMap::new(),
            defaults: Map::new(),
            stream_usage: false,
            max_output_tokens: None,
            auth: None,
        };
        response_of(&ep, parse_prediction(body)?, max_tokens)
    }

    /// Successive polls of one prediction: the text each poll adds, until one is over.
    pub fn polled_output(bodies: &[&[u8]]) -> Result<Vec<String>, Error> {
        let mut seen = OutputSeen::default();
        let mut texts = Vec::new();
        for body in bodies {
            let p = parse_prediction(body)?;
            texts.extend(seen.new_text(&p.output));
            if p.is_over() {
                p.outcome()?;
                break;
            }
        }
        Ok(texts)
    }

    /// A non-2xx answer, classified, and the retry hint its text may carry.
    pub fn error(http_status: u16, body: &[u8]) -> (Error, Option<f64>) {
        let e = parse_error(http_status, body);
        let hint = throttle_hint(&e.message);
        (e, hint)
    }

    /// The SSE stream of one prediction, as a [`StreamParser`] like every other format's.
    pub struct SseStream {
        parser: SseParser,
        chunker: Chunker,
    }

    impl SseStream {
        pub fn new(model: &str) -> SseStream {
            SseStream {
                parser: SseParser::default(),
                chunker: Chunker::new(model, "fuzz"),
            }
        }
    }

    impl crate::providers::StreamParser for SseStream {
        fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<bool, Error> {
            self.parser.feed(bytes, &mut self.chunker, out)
        }

        fn finish(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
            self.parser.finish(&mut self.chunker, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::types::StreamAssembler;
    use serde_json::json;

    const KEY: &str = "r8_test_token_0123456789";

    fn shared_with(model: &str, entry: &str) -> Shared {
        let c = config::parse(&format!(
            r#"{{"global_llm_configs":[{{"provider":"REPLICATE","model_name":"{model}","api_key":"{KEY}"{entry}}}]}}"#
        ))
        .unwrap();
        Shared::new(
            &c.deployments[0],
            None,
            &crate::caller_runtime::Http::new(reqwest::Client::new()),
        )
        .unwrap()
    }

    fn shared() -> Shared {
        shared_with("meta/meta-llama-3-70b-instruct", "")
    }

    fn body_of(s: &Shared, request: &str, stream: bool) -> (Value, Option<u64>) {
        let req = ChatRequest::from_json(request).unwrap();
        let (bytes, cap) = s.body(&req, stream).unwrap();
        (serde_json::from_slice(&bytes).unwrap(), cap)
    }

    fn input(request: &str) -> Value {
        body_of(&shared(), request, false).0["input"].clone()
    }

    #[test]
    fn model_forms_pick_the_create_url() {
        let base = "https://api.replicate.com/v1";
        let version = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa";
        assert_eq!(
            create_target(base, "meta/meta-llama-3-8b-instruct", false).unwrap(),
            (
                format!("{base}/models/meta/meta-llama-3-8b-instruct/predictions"),
                None
            )
        );
        assert_eq!(
            create_target(
                base,
                &format!("replicate/llama-2-70b-chat:{version}"),
                false
            )
            .unwrap(),
            (format!("{base}/predictions"), Some(version.to_owned()))
        );
        assert_eq!(
            create_target(base, version, false).unwrap(),
            (format!("{base}/predictions"), Some(version.to_owned()))
        );
        assert_eq!(
            create_target(base, "deployments/acme/my-llama", false).unwrap(),
            (
                format!("{base}/deployments/acme/my-llama/predictions"),
                None
            )
        );
        assert_eq!(
            create_target(base, "acme/my-llama", true).unwrap().0,
            format!("{base}/deployments/acme/my-llama/predictions")
        );
        for bad in [
            "llama",
            "a/b/c",
            "../x",
            "a/..",
            "a/b:",
            "a/b:v?x=1",
            "a b/c",
            "",
        ] {
            let e = create_target(base, bad, false).unwrap_err();
            assert!(e.contains("owner/name"), "{bad}: {e}");
        }
    }

    #[test]
    fn endpoint_auth_and_default_base() {
        let s = shared();
        assert_eq!(
            s.ep.url,
            "https://api.replicate.com/v1/models/meta/meta-llama-3-70b-instruct/predictions"
        );
        assert_eq!(
            s.ep.headers[AUTHORIZATION],
            format!("Bearer {KEY}").as_str()
        );
        assert!(s.ep.headers[AUTHORIZATION].is_sensitive());
        assert!(!format!("{s:?}").contains(KEY), "no key in Debug output");
        let s = shared_with(
            "acme/llama",
            r#","api_base":"http://127.0.0.1:9/t/v1/","litellm_params":{"replicate_deployment":true}"#,
        );
        assert_eq!(
            s.ep.url,
            "http://127.0.0.1:9/t/v1/deployments/acme/llama/predictions"
        );
        // The token goes to the base's host and Replicate's own, nowhere else.
        let auth = |url: &str| s.headers_for(url).contains_key(AUTHORIZATION);
        assert!(auth("http://127.0.0.1:9/t/v1/predictions/abc"));
        assert!(!auth("http://127.0.0.1:10/t/v1/predictions/abc"));
        assert!(auth("https://stream.replicate.com/v1/files/abc"));
        assert!(!auth("http://stream.replicate.com/v1/files/abc"));
        assert!(!auth("https://replicate.com.evil.example/x"));
        assert!(!auth("not a url"));
    }

    #[test]
    fn single_turn_prompt_system_prompt_and_sampling() {
        let (b, cap) = body_of(
            &shared_with(
                "meta/meta-llama-3-70b-instruct",
                r#","litellm_params":{"top_k":40,"prompt_template":"{prompt}","temperature":0.1,"input":{"min_tokens":2},"tags":["x"]}"#,
            ),
            r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"developer","content":"Use English."},
                {"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]}],
                "max_tokens":64,"stop":["END","\n\n"],"temperature":0.7,"top_p":0.9,"seed":42,
                "presence_penalty":1.1,"frequency_penalty":0.2,"user":"u1","response_format":{"type":"json_object"},
                "logprobs":true}"#,
            false,
        );
        assert!(b.get("version").is_none());
        assert!(b.get("stream").is_none());
        assert_eq!(cap, Some(64));
        assert_eq!(
            b["input"],
            json!({"prompt":"Hi there","system_prompt":"Be brief.\n\nUse English.",
                   "max_tokens":64,"max_new_tokens":64,"stop_sequences":"END,\n\n",
                   "temperature":0.7,"top_p":0.9,"seed":42,"presence_penalty":1.1,
                   "frequency_penalty":0.2,"top_k":40,"prompt_template":"{prompt}","min_tokens":2})
        );
    }

    #[test]
    fn defaults_fill_in_and_versions_and_stream_go_in_the_body() {
        let version = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa";
        let s = shared_with(
            &format!("replicate/llama-2-70b-chat:{version}"),
            r#","litellm_params":{"max_tokens":300,"stop":"END","temperature":0.2}"#,
        );
        let (b, cap) = body_of(&s, r#"{"messages":[{"role":"user","content":"hi"}]}"#, true);
        assert_eq!(b["version"], version);
        assert_eq!(b["stream"], true);
        assert_eq!(cap, Some(300));
        assert_eq!(
            b["input"],
            json!({"prompt":"hi","max_tokens":300,"max_new_tokens":300,"stop_sequences":"END","temperature":0.2})
        );
        // A cap given as a model input still decides the finish reason.
        let s = shared_with("a/b", r#","litellm_params":{"max_new_tokens":50}"#);
        let (b, cap) = body_of(
            &s,
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            false,
        );
        assert_eq!(
            (b["input"]["max_new_tokens"].clone(), cap),
            (json!(50), Some(50))
        );
    }

    #[test]
    fn a_conversation_is_flattened_into_a_transcript() {
        let i = input(
            r#"{"messages":[{"role":"system","content":"sys"},{"role":"user","content":"Weather?"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"sunny"},
                {"role":"assistant","content":"It is sunny."},{"role":"user","content":"Thanks"}]}"#,
        );
        assert_eq!(i["system_prompt"], "sys");
        assert_eq!(
            i["prompt"],
            "User: Weather?\n\nAssistant: [called get_weather({\"city\":\"Paris\"})]\n\nTool result: sunny\n\nAssistant: It is sunny.\n\nUser: Thanks"
        );
    }

    #[test]
    fn litellm_prompt_template_keys_render_the_whole_prompt() {
        let s = shared_with(
            "a/b",
            r#","litellm_params":{"roles":{"system":{"pre_message":"<<SYS>>","post_message":"<</SYS>>"},
                "user":{"pre_message":"[INST] ","post_message":" [/INST]"},"assistant":{"post_message":"</s>"}},
                "initial_prompt_value":"<s>","final_prompt_value":"\n","bos_token":"","eos_token":""}"#,
        );
        let (b, _) = body_of(
            &s,
            r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"U1"},{"role":"assistant","content":"A1"},{"role":"user","content":"U2"}]}"#,
            false,
        );
        assert_eq!(
            b["input"]["prompt"],
            "<s><<SYS>>S<</SYS>>[INST] U1 [/INST]A1</s>[INST] U2 [/INST]\n"
        );
        assert!(b["input"].get("system_prompt").is_none());
        assert!(
            b["input"].get("roles").is_none(),
            "config keys are not model input"
        );
        let c = config::parse(
            r#"{"global_llm_configs":[{"provider":"REPLICATE","model_name":"a/b","api_key":"k","litellm_params":{"roles":"x"}}]}"#,
        )
        .unwrap();
        let e = Shared::new(
            &c.deployments[0],
            None,
            &crate::caller_runtime::Http::new(reqwest::Client::new()),
        )
        .unwrap_err();
        assert!(e.contains("roles"), "{e}");
    }

    #[test]
    fn tools_are_refused_and_images_too() {
        let s = shared();
        let req = ChatRequest::from_json(
            r#"{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#,
        )
        .unwrap();
        let e = s.body(&req, false).unwrap_err();
        assert_eq!(e.status, Status::BadRequest);
        assert!(e.message.contains("no tool calling"), "{}", e.message);
        let i = input(
            r#"{"messages":[{"role":"user","content":"hi"}],"tool_choice":"none","tools":[{"type":"function","function":{"name":"f"}}]}"#,
        );
        assert_eq!(i["prompt"], "hi");
        let req = ChatRequest::from_json(
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
        )
        .unwrap();
        let e = s.body(&req, false).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(e.message.contains("image_url"), "{}", e.message);
    }

    // -----------------------------------------------------------------------------------------
    // Predictions (shapes of Replicate's API reference)

    const SUCCEEDED: &str = r#"{"id":"gm3qorzdhgbfurvjtvhg6dckhu","model":"meta/meta-llama-3-70b-instruct",
        "version":"hidden","input":{"prompt":"Hi"},"logs":"","output":["Hello", "!", " How", " can I help?"],
        "data_removed":false,"error":null,"status":"succeeded","created_at":"2024-04-18T14:14:03.162Z",
        "metrics":{"input_token_count":12,"output_token_count":6,"predict_time":0.4,"time_to_first_token":0.1,"tokens_per_second":40.5},
        "urls":{"cancel":"https://api.replicate.com/v1/predictions/gm3qorzdhgbfurvjtvhg6dckhu/cancel",
                "get":"https://api.replicate.com/v1/predictions/gm3qorzdhgbfurvjtvhg6dckhu",
                "stream":"https://streaming-api.svc.rno2.c.replicate.net/v1/streams/abc"}}"#;

    fn ep() -> Endpoint {
        shared().ep
    }

    #[test]
    fn a_succeeded_prediction_is_a_completion() {
        let p = parse_prediction(SUCCEEDED.as_bytes()).unwrap();
        assert!(p.is_over());
        assert_eq!(
            p.urls.get.as_deref(),
            Some("https://api.replicate.com/v1/predictions/gm3qorzdhgbfurvjtvhg6dckhu")
        );
        let r = response_of(&ep(), p, Some(64)).unwrap();
        assert_eq!(r.id, "chatcmpl-gm3qorzdhgbfurvjtvhg6dckhu");
        assert_eq!(r.model, "meta/meta-llama-3-70b-instruct");
        assert_eq!(
            r.choices[0].message.content.as_deref(),
            Some("Hello! How can I help?")
        );
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!(r.usage, Some(Usage::new(12, 6)));
        let p = parse_prediction(SUCCEEDED.as_bytes()).unwrap();
        let r = response_of(&ep(), p, Some(6)).unwrap();
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));

        let p = parse_prediction(br#"{"id":"x","status":"succeeded","output":"one string","metrics":{"predict_time":1}}"#).unwrap();
        let r = response_of(&ep(), p, None).unwrap();
        assert_eq!(r.choices[0].message.content.as_deref(), Some("one string"));
        assert_eq!(r.usage, None, "no counts: the router estimates");

        let p = parse_prediction(
            br#"{"id":"x","status":"starting","output":null,"urls":{"get":"g","cancel":"c"}}"#,
        )
        .unwrap();
        assert!(!p.is_over());
        assert!(parse_prediction(br#"{"detail":"x"}"#).is_err());
        assert!(parse_prediction(b"<html>")
            .unwrap_err()
            .message
            .contains("not a Replicate prediction"));
    }

    fn failed(error: &str) -> Error {
        let body = json!({"id":"p1","status":"failed","output":null,"error":error}).to_string();
        let p = parse_prediction(body.as_bytes()).unwrap();
        response_of(&ep(), p, None).unwrap_err()
    }

    #[test]
    fn failed_predictions_are_classified_by_their_text() {
        // TensorRT-LLM behind meta/llama-2-70b (replicate-python issue #264).
        let e = failed("[TensorRT-LLM][ERROR] Cannot process new request: Prompt length (1240) exceeds maximum input length (1024). (/home/jenkins/agent/workspace/LLM/main/L0_PostMerge/llm/cpp/tensorrt_llm/batch_manager/GptManager.cpp:246)");
        assert_eq!(e.status, Status::ContextOverflow);
        assert_eq!(e.http_status, None);
        for text in [
            "E1002 PromptTooLong: Prompt length exceeds maximum input length",
            "input is too long",
            "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens",
            "prompt is too long: 210000 tokens > 200000 maximum",
        ] {
            assert_eq!(failed(text).status, Status::ContextOverflow, "{text}");
        }
        for text in [
            "NSFW content detected. Try running it again, or try a different prompt.",
            "The input or output was flagged as sensitive. Please try again with different inputs. (E005)",
        ] {
            assert_eq!(failed(text).status, Status::ContentPolicy, "{text}");
        }
        let e = failed(
            "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 39.59 GiB total capacity)",
        );
        assert_eq!(e.status, Status::Upstream);
        assert!(e.message.starts_with("CUDA out of memory"));
        let e = failed("");
        assert_eq!(e.status, Status::Upstream);
        assert!(e.message.contains("p1 failed"), "{}", e.message);
        let p = parse_prediction(br#"{"id":"p2","status":"canceled","output":["a"]}"#).unwrap();
        let e = response_of(&ep(), p, None).unwrap_err();
        assert_eq!(e.status, Status::Upstream);
        assert!(e.message.contains("canceled"));
    }

    #[test]
    fn problem_details_errors() {
        let e = parse_error(401, br#"{"title":"Unauthenticated","detail":"You did not pass a valid authentication token","status":401}"#);
        assert_eq!(e.status, Status::Auth);
        assert_eq!(e.message, "You did not pass a valid authentication token");
        let e = parse_error(402, br#"{"title":"Insufficient credit","detail":"You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase credit. Once you purchase credit, please wait a few minutes before trying again.","status":402}"#);
        assert_eq!(e.status, Status::BadRequest);
        assert!(e.quota, "payment: retrying the same deployment cannot help");
        let e = parse_error(404, br#"{"title":"Not found","detail":"The requested resource could not be found.","status":404}"#);
        assert_eq!(e.status, Status::BadRequest);
        let e = parse_error(422, br#"{"title":"Input validation failed","detail":"- input.max_tokens: Must be less than or equal to 4096\n","status":422,"invalid_fields":[{"type":"less_than_equal","field":"input.max_tokens"}]}"#);
        assert_eq!(e.status, Status::BadRequest);
        let e = parse_error(422, br#"{"detail":"Prompt length (9000) exceeds maximum input length (8192)","status":422}"#);
        assert_eq!(e.status, Status::ContextOverflow);
        let e = parse_error(
            429,
            br#"{"detail":"Request was throttled. Expected available in 1 second.","status":429}"#,
        );
        assert_eq!(e.status, Status::RateLimited);
        assert_eq!(throttle_hint(&e.message), Some(1.0));
        assert_eq!(
            throttle_hint("Request was throttled. Your rate limit for prediction creation is reduced to 6 requests per minute with a burst of 1 requests while you have less than $5.0 in credit. Your rate limit resets in ~30s."),
            Some(30.0)
        );
        assert_eq!(throttle_hint("Request was throttled."), None);
        assert_eq!(
            parse_error(500, b"<html>oops</html>").status,
            Status::Upstream
        );
        assert_eq!(
            parse_error(500, b"<html>oops</html>").message,
            "<html>oops</html>"
        );
        assert_eq!(
            parse_error(503, br#"{"title":"Service Unavailable"}"#).message,
            "Service Unavailable"
        );
    }

    // -----------------------------------------------------------------------------------------
    // Streams

    fn run_sse(input: &str, piece: usize) -> (Vec<ChatChunk>, bool, Result<(), Error>) {
        let mut p = SseParser::default();
        let mut c = Chunker::new("m", "p1");
        let mut out = VecDeque::new();
        let mut done = false;
        for bytes in input.as_bytes().chunks(piece) {
            match p.feed(bytes, &mut c, &mut out) {
                Ok(d) => done = d,
                Err(e) => return (out.into_iter().collect(), done, Err(e)),
            }
        }
        let r = p.finish(&mut c, &mut out);
        (out.into_iter().collect(), done, r)
    }

    fn texts(chunks: &[ChatChunk]) -> Vec<String> {
        chunks
            .iter()
            .filter_map(|c| c.choices.first()?.delta.content.clone())
            .collect()
    }

    const STREAM: &str = "event: output\nid: 1690212292:0\ndata: Once\n\nevent: logs\nid: 1\ndata: loading\n\n: keep-alive\n\nevent: output\nid: 1690212292:1\ndata:  upon\r\n\r\nevent: output\ndata: a\ndata: time\n\nevent: done\ndata: {}\n\n";

    #[test]
    fn stream_survives_every_split() {
        for piece in 1..=STREAM.len() {
            let (chunks, done, r) = run_sse(STREAM, piece);
            r.unwrap();
            assert!(done, "piece {piece}");
            assert_eq!(
                texts(&chunks),
                ["Once", " upon", "a\ntime"],
                "piece {piece}"
            );
            assert_eq!(
                chunks[0].choices[0].delta.role.as_deref(),
                Some("assistant")
            );
            assert!(chunks[1].choices[0].delta.role.is_none());
        }
    }

    #[test]
    fn stream_end_gives_finish_and_usage() {
        let (chunks, _, r) = run_sse(STREAM, 7);
        r.unwrap();
        let mut c = Chunker::new("m", "p1");
        let mut out: VecDeque<ChatChunk> = chunks.into();
        let m = Metrics {
            input_token_count: Some(9),
            output_token_count: Some(3),
        };
        c.end(&m, Some(3), &mut out);
        let mut a = StreamAssembler::default();
        for ch in &out {
            a.push(ch);
        }
        let r = a.into_response();
        assert_eq!(
            r.choices[0].message.content.as_deref(),
            Some("Once upona\ntime")
        );
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(r.usage, Some(Usage::new(9, 3)));
        assert_eq!(r.id, "chatcmpl-p1");
        let mut out = VecDeque::new();
        Chunker::new("m", "p1").end(&Metrics::default(), None, &mut out);
        assert_eq!(out.len(), 1, "no usage chunk without counts");
        assert_eq!(out[0].choices[0].finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn stream_errors_and_truncation() {
        let input = "event: output\ndata: a\n\nevent: error\ndata: {\"detail\":\"CUDA out of memory. Tried to allocate 20.00 MiB\"}\n\nevent: done\ndata: {\"reason\":\"error\"}\n\n";
        let (chunks, _, r) = run_sse(input, 5);
        assert_eq!(texts(&chunks), ["a"]);
        let e = r.unwrap_err();
        assert_eq!(e.status, Status::Upstream);
        assert!(e.message.starts_with("CUDA out of memory"), "{}", e.message);

        let (_, _, r) = run_sse(
            "event: error\ndata: Prompt length (5000) exceeds maximum input length (4096)\n\n",
            3,
        );
        assert_eq!(r.unwrap_err().status, Status::ContextOverflow);
        let (_, _, r) = run_sse("event: error\ndata: NSFW content detected. Try running it again, or try a different prompt.\n\n", 3);
        assert_eq!(r.unwrap_err().status, Status::ContentPolicy);

        let (_, _, r) = run_sse(
            "event: output\ndata: a\n\nevent: done\ndata: {\"reason\":\"canceled\"}\n\n",
            4,
        );
        assert!(r.unwrap_err().message.contains("canceled"));
        let (_, _, r) = run_sse("event: done\ndata: {\"reason\":\"error\"}\n\n", 4);
        assert_eq!(r.unwrap_err().status, Status::Upstream);

        let (chunks, done, r) = run_sse("event: output\ndata: a\n\nevent: output\ndata: b", 3);
        assert!(!done);
        assert_eq!(
            texts(&chunks),
            ["a", "b"],
            "the last event without its blank line counts"
        );
        assert!(r.unwrap_err().message.contains("no `done` event"));
        // The last `done` without its blank line still ends the stream.
        let (_, done, r) = run_sse("event: output\ndata: a\n\nevent: done\ndata: {}", 3);
        r.unwrap();
        assert!(!done, "seen only at the end of input");
    }

    #[test]
    fn polled_output_is_given_out_once() {
        let mut seen = OutputSeen::default();
        assert!(seen.new_text(&Value::Null).is_empty());
        assert_eq!(seen.new_text(&json!(["He", "llo"])), ["He", "llo"]);
        assert_eq!(seen.new_text(&json!(["He", "llo", " you", ""])), [" you"]);
        assert!(seen.new_text(&json!(["He", "llo", " you", ""])).is_empty());
        let mut seen = OutputSeen::default();
        assert_eq!(seen.new_text(&json!("Hel")), ["Hel"]);
        assert_eq!(seen.new_text(&json!("Hello")), ["lo"]);
        assert!(seen.new_text(&json!("Hello")).is_empty());
        assert!(
            seen.new_text(&json!("H")).is_empty(),
            "a shorter string gives nothing"
        );
    }
}
