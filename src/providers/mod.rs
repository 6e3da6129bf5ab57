//! Providers: one module per wire family. Each translates between the OpenAI-shaped types of
//! [`crate::types`] and its own wire format, and classifies its own errors — nothing else.
//! Routing, retries and cooldowns live in [`crate::router`] and never see a wire format.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod classify;
pub mod cohere;
pub mod convert;
pub mod eventstream;
pub mod gemini;
pub mod google_auth;
pub mod http;
pub mod mock;
pub mod ollama;
pub mod openai;
pub mod openai_hosts;
mod openai_scan;
pub mod registry;
pub mod replicate;
pub mod sigv4;
pub mod vertex;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

use crate::config::{DeploymentConfig, RESERVED_PARAMS};
use crate::errors::Error;
use crate::types::{ChatChunk, ChatRequest, ChatResponse, TYPED_REQUEST_FIELDS};
use registry::Family;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A deployment's way to answer: over HTTP through a wire format, or in-process (MOCK).
pub trait ChatClient: Send + Sync {
    /// One completion. `timeout` bounds the whole exchange.
    fn complete<'a>(
        &'a self,
        req: &'a ChatRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ChatResponse, Error>>;

    /// Opens a stream. `timeout` bounds the wait for the response head and every idle gap.
    fn open_stream<'a>(
        &'a self,
        req: &'a ChatRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn ChunkStream>, Error>>;
}

/// An open stream of chunks. `None` is the clean end; an error ends it too.
pub trait ChunkStream: Send {
    fn next_chunk(&mut self) -> BoxFuture<'_, Option<Result<ChatChunk, Error>>>;
    /// A chunk is ready without waiting (parsed from a read already made).
    fn has_ready(&self) -> bool {
        false
    }
}

/// Everything a wire format needs to reach one deployment, prepared once at init.
#[derive(Debug)]
pub struct Endpoint {
    pub deployment_id: Arc<str>,
    pub provider: Arc<str>,
    /// The model name sent upstream.
    pub model: String,
    pub url: String,
    pub stream_url: String,
    /// Auth and fixed headers.
    pub headers: HeaderMap,
    /// `litellm_params` sent with every request; the request's own fields win.
    pub defaults: Map<String, Value>,
    pub stream_usage: bool,
    /// The model's output cap, for formats that require `max_tokens`.
    pub max_output_tokens: Option<u64>,
    /// Per-request authentication that cannot be fixed at init (request signing, expiring
    /// tokens); `None` when `headers` say it all.
    pub auth: Option<Arc<dyn RequestAuth>>,
}

/// Authentication computed for each request: SigV4 signs the body; OAuth tokens expire and are
/// refreshed. Runs just before the request is sent; adds headers.
pub trait RequestAuth: Send + Sync + std::fmt::Debug {
    fn authorize<'a>(
        &'a self,
        url: &'a str,
        body: &'a [u8],
        headers: &'a mut HeaderMap,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// The provider answered 401 to a request authorised with `authorization` (the header this
    /// source added): a cached token it gave must not be given again (revoked or expired
    /// early), so the next request fetches a fresh one.
    fn rejected(&self, _authorization: &reqwest::header::HeaderValue) {}
}

impl Endpoint {
    /// A request field, else the deployment's `litellm_params` default (the request wins);
    /// `null` counts as absent.
    pub fn param<'a>(&'a self, req: &'a ChatRequest, key: &str) -> Option<&'a Value> {
        req.extra
            .get(key)
            .or_else(|| self.defaults.get(key))
            .filter(|v| !v.is_null())
    }

    /// The parts every family shares; the family fills in URLs and headers.
    pub fn common(d: &DeploymentConfig, max_output_tokens: Option<u64>) -> Endpoint {
        let defaults = d
            .params
            .iter()
            .filter(|(k, _)| !RESERVED_PARAMS.contains(&k.as_str()) && k.as_str() != "messages")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Endpoint {
            deployment_id: d.id.clone(),
            provider: d.prefix.clone(),
            model: d.model.clone(),
            url: String::new(),
            stream_url: String::new(),
            headers: HeaderMap::new(),
            defaults,
            stream_usage: d.spec.stream_usage,
            max_output_tokens,
            auth: None,
        }
    }

    /// Whether a default param is overridden by the request (then the request's value is sent).
    pub fn request_sets(req: &ChatRequest, key: &str) -> bool {
        match key {
            "model" | "messages" | "stream" | "timeout" => true,
            "tools" => req.tools.is_some(),
            "tool_choice" => req.tool_choice.is_some(),
            "parallel_tool_calls" => req.parallel_tool_calls.is_some(),
            "stop" => req.stop.is_some(),
            "max_tokens" => req.max_tokens.is_some(),
            "max_completion_tokens" => req.max_completion_tokens.is_some(),
            "temperature" => req.temperature.is_some(),
            "top_p" => req.top_p.is_some(),
            "user" => req.user.is_some(),
            _ => {
                debug_assert!(!TYPED_REQUEST_FIELDS.contains(&key));
                req.extra.contains_key(key)
            }
        }
    }
}

/// Stream decoding for one wire format: bytes in, OpenAI chunks out.
pub trait StreamParser: Send {
    /// Feeds bytes as they arrive. Returns `Ok(true)` once the format's terminal event was seen.
    fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut std::collections::VecDeque<ChatChunk>,
    ) -> Result<bool, Error>;

    /// The connection ended: an error if the stream was cut short.
    fn finish(&mut self, out: &mut std::collections::VecDeque<ChatChunk>) -> Result<(), Error>;
}

/// A provider's wire format: pure translation, no I/O.
pub trait WireFormat: Send + Sync {
    /// URLs and headers of one deployment (called at init).
    fn endpoint(
        &self,
        d: &DeploymentConfig,
        max_output_tokens: Option<u64>,
    ) -> Result<Endpoint, String>;
    fn request_body(
        &self,
        ep: &Endpoint,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<Vec<u8>, Error>;
    /// A 2xx body. A 200 that carries an error object is an error.
    fn parse_response(&self, ep: &Endpoint, body: &[u8]) -> Result<ChatResponse, Error>;
    /// A non-2xx answer, classified.
    fn parse_error(&self, ep: &Endpoint, http_status: u16, body: &[u8]) -> Error;
    /// The same with the answer's headers, for formats that name the error in a header
    /// (Bedrock's `x-amzn-ErrorType`). The driver calls this one; by default it ignores the
    /// headers.
    fn parse_error_with_headers(
        &self,
        ep: &Endpoint,
        http_status: u16,
        _headers: &HeaderMap,
        body: &[u8],
    ) -> Error {
        self.parse_error(ep, http_status, body)
    }
    fn stream_parser(&self, ep: &Endpoint) -> Box<dyn StreamParser>;
}

/// Builds the client of one deployment.
pub fn build_client(
    d: &DeploymentConfig,
    max_output_tokens: Option<u64>,
    http: &crate::caller_runtime::Http,
) -> Result<Arc<dyn ChatClient>, String> {
    let wire: &'static dyn WireFormat = match d.spec.family {
        Family::Mock => return Ok(Arc::new(mock::MockClient::new(d)?)),
        Family::OpenAiCompatible => &openai::OpenAi,
        Family::Azure => &openai::AzureOpenAi,
        Family::Anthropic => &anthropic::Anthropic,
        Family::Gemini => &gemini::Gemini,
        Family::Vertex => &vertex::Vertex,
        Family::Ollama => &ollama::Ollama,
        Family::Cohere => &cohere::Cohere,
        Family::Bedrock => &bedrock::Bedrock,
        Family::Replicate => return replicate::client(d, max_output_tokens, http),
    };
    let ep = wire.endpoint(d, max_output_tokens)?;
    Ok(Arc::new(http::HttpClient::new(wire, ep, http.clone())))
}

/// Extra headers from `litellm_params.extra_headers` (an object of strings).
pub fn extra_headers(d: &DeploymentConfig, headers: &mut HeaderMap) -> Result<(), String> {
    use reqwest::header::{HeaderName, HeaderValue};
    let Some(v) = d.params.get("extra_headers") else {
        return Ok(());
    };
    let Value::Object(map) = v else {
        return Err("`litellm_params.extra_headers` must be an object of strings".into());
    };
    for (k, v) in map {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("`extra_headers`: `{k}` is not a header name"))?;
        let value = v
            .as_str()
            .and_then(|s| HeaderValue::from_str(s).ok())
            .ok_or_else(|| format!("`extra_headers.{k}` must be a header-safe string"))?;
        headers.insert(name, value);
    }
    Ok(())
}

/// A header value holding a secret: marked sensitive so that no debug output shows it.
pub fn secret_header(value: &str) -> Result<reqwest::header::HeaderValue, String> {
    let mut v = reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| "`api_key` holds characters a header cannot carry".to_owned())?;
    v.set_sensitive(true);
    Ok(v)
}
