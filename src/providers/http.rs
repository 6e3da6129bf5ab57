//! The one HTTP driver every wire format shares: send, time out, read with limits, hand bytes to
//! the format's parser. Connection failures and timeouts become statuses here.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use regex::Regex;
use reqwest::header::HeaderMap;

use super::{BoxFuture, ChatClient, ChunkStream, Endpoint, StreamParser, WireFormat};
use crate::client_pool::Slot;
use crate::errors::{Error, Status};
use crate::types::{ChatChunk, ChatRequest, ChatResponse};

/// Largest non-streaming body read; past it the answer is broken, not big.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Largest error body read: enough for any real error message.
pub(crate) const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Cheap to clone (shared parts): a blocking call's exchange with an HTTP/2 origin runs as a
/// task of its own on the shared runtime.
#[derive(Clone)]
pub struct HttpClient {
    wire: &'static dyn WireFormat,
    ep: Arc<Endpoint>,
    http: crate::caller_runtime::Http,
    /// `ep.url` and `ep.stream_url` parsed once: parsing them (IDNA host processing) was ~17%
    /// of a loopback completion's instructions. `None` when they do not parse: then the string
    /// goes to reqwest per request, which reports the error as before.
    parsed: Option<Arc<(reqwest::Url, reqwest::Url)>>,
}

impl HttpClient {
    pub fn new(
        wire: &'static dyn WireFormat,
        ep: Endpoint,
        http: crate::caller_runtime::Http,
    ) -> HttpClient {
        let parsed = reqwest::Url::parse(&ep.url)
            .ok()
            .zip(reqwest::Url::parse(&ep.stream_url).ok())
            .map(Arc::new);
        HttpClient {
            wire,
            ep: Arc::new(ep),
            http,
            parsed,
        }
    }

    /// A non-streaming request sent and its answer read and parsed.
    async fn exchange(&self, body: Vec<u8>) -> Result<ChatResponse, Error> {
        let resp = self.send(body, false).await?;
        let bytes = read_body(resp, MAX_BODY_BYTES, &self.ep, false).await?;
        self.wire
            .parse_response(&self.ep, &bytes)
            .map_err(|e| e.with_provider(&self.ep.provider))
    }

    async fn send(&self, body: Vec<u8>, stream: bool) -> Result<reqwest::Response, Error> {
        let url = if stream {
            &self.ep.stream_url
        } else {
            &self.ep.url
        };
        let mut headers = self.ep.headers.clone();
        // The credential the auth step adds at run time (an OAuth token) is in no secret list:
        // kept to scrub it from an error and to tell its source when it is refused.
        let mut runtime_credential = None;
        if let Some(auth) = &self.ep.auth {
            auth.authorize(url, &body, &mut headers).await?;
            runtime_credential = headers.get(reqwest::header::AUTHORIZATION).cloned();
        }
        let resp = match self.parsed.as_deref() {
            Some((u, su)) => {
                let url = if stream { su } else { u };
                match self.http.plain_http1(url) {
                    Some(h1) => h1
                        .post(url, &headers, &body)
                        .await
                        .map_err(|e| plain_transport_error(&e, &self.ep))?,
                    // The request built whole: its headers are this map, moved in
                    // (`RequestBuilder` would copy them into a second one).
                    None => {
                        let mut r = reqwest::Request::new(reqwest::Method::POST, url.clone());
                        *r.headers_mut() = headers;
                        *r.body_mut() = Some(body.into());
                        self.http
                            .execute(r)
                            .await
                            .map_err(|e| transport_error(e, &self.ep))?
                    }
                }
            }
            None => {
                let r = self.http.request(reqwest::Method::POST, url);
                self.http
                    .send(r.headers(headers).body(body))
                    .await
                    .map_err(|e| transport_error(e, &self.ep))?
            }
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        if resp.status().is_redirection() {
            return Err(redirect_error(&resp, &self.ep));
        }
        let mut e = error_answer(resp, &self.ep, |status, headers, body| {
            self.wire
                .parse_error_with_headers(&self.ep, status, headers, body)
        })
        .await;
        if let (Some(auth), Some(credential)) = (&self.ep.auth, &runtime_credential) {
            if e.http_status == Some(401) {
                auth.rejected(credential);
            }
            redact_credential(&mut e.message, credential);
        }
        Err(e)
    }
}

/// Removes an `Authorization` value (with or without its scheme) from a message.
fn redact_credential(message: &mut String, credential: &reqwest::header::HeaderValue) {
    let Ok(value) = credential.to_str() else {
        return;
    };
    let token = value.split_once(' ').map_or(value, |(_, t)| t);
    for s in [value, token] {
        if s.len() >= 8 && message.contains(s) {
            *message = message.replace(s, "[REDACTED]");
        }
    }
}

/// A 3xx answer: never followed (the client's redirect policy is `none`), since following it
/// would send the request, key included, wherever the answer points.
fn redirect_error(resp: &reqwest::Response, ep: &Endpoint) -> Error {
    let status = resp.status().as_u16();
    // Only the host: a redirect URL may carry tokens of its own in its query.
    let to = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| reqwest::Url::parse(l).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
        .map_or_else(String::new, |h| format!(" to {h}"));
    Error::upstream(format!(
        "the provider answered with a redirect (HTTP {status}{to}), which llmr does not follow: it could carry the API key to another host; check `api_base`"
    ))
    .with_http_status(status)
    .with_provider(&ep.provider)
}

/// A non-2xx answer as an error: its body read (within limits) and classified by `parse`, the
/// retry hint taken from the headers, else from the message.
pub(crate) async fn error_answer(
    resp: reqwest::Response,
    ep: &Endpoint,
    parse: impl FnOnce(u16, &HeaderMap, &[u8]) -> Error,
) -> Error {
    let status = resp.status().as_u16();
    let header_hint = retry_after_from_headers(resp.headers());
    // Kept for the format: reading the body consumes the response.
    let headers = resp.headers().clone();
    let body = read_body(resp, MAX_ERROR_BODY_BYTES, ep, true)
        .await
        .unwrap_or_default();
    let mut e = parse(status, &headers, &body);
    e.http_status = Some(status);
    if e.retry_after.is_none() {
        e.retry_after = header_hint.or_else(|| retry_hint_in_text(&e.message));
    }
    e.with_provider(&ep.provider)
}

impl ChatClient for HttpClient {
    fn complete<'a>(
        &'a self,
        req: &'a ChatRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ChatResponse, Error>> {
        Box::pin(async move {
            let body = self.wire.request_body(&self.ep, req, false)?;
            let exchange = async {
                match self.parsed.as_deref() {
                    Some((u, _)) if self.http.blocking_to_http2(u) => {
                        let me = self.clone();
                        crate::caller_runtime::on_shared(async move { me.exchange(body).await })
                            .await
                    }
                    _ => self.exchange(body).await,
                }
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err(timeout_error(&self.ep, timeout)),
            }
        })
    }

    fn open_stream<'a>(
        &'a self,
        req: &'a ChatRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn ChunkStream>, Error>> {
        Box::pin(async move {
            let body = self.wire.request_body(&self.ep, req, true)?;
            let resp = match tokio::time::timeout(timeout, self.send(body, true)).await {
                Ok(r) => r?,
                Err(_) => return Err(timeout_error(&self.ep, timeout)),
            };
            Ok(Box::new(HttpChunkStream {
                body: Body::of(resp),
                parser: self.wire.stream_parser(&self.ep),
                pending: VecDeque::with_capacity(8),
                done: false,
                idle: timeout,
                ep: self.ep.clone(),
            }) as Box<dyn ChunkStream>)
        })
    }
}

/// A response's body, its headers dropped. hyper parses header values as slices of the
/// connection's read buffer: a `Response` kept while its body streams pins that buffer, and
/// hyper allocates a second one for the next read (8 KiB more for every open stream).
/// It keeps the request's place on its client until the body is dropped.
pub(crate) struct Body {
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    _slot: Option<Slot>,
}

impl Body {
    pub(crate) fn of(mut resp: reqwest::Response) -> Body {
        let slot = resp.extensions_mut().remove::<Slot>();
        Body {
            stream: Box::pin(resp.bytes_stream()),
            _slot: slot,
        }
    }

    /// The next piece of the body; `None` at its end.
    pub(crate) async fn chunk(&mut self) -> reqwest::Result<Option<Bytes>> {
        self.stream.next().await.transpose()
    }
}

struct HttpChunkStream {
    body: Body,
    parser: Box<dyn StreamParser>,
    pending: VecDeque<ChatChunk>,
    done: bool,
    idle: Duration,
    ep: Arc<Endpoint>,
}

impl ChunkStream for HttpChunkStream {
    fn has_ready(&self) -> bool {
        !self.pending.is_empty()
    }

    fn next_chunk(&mut self) -> BoxFuture<'_, Option<Result<ChatChunk, Error>>> {
        Box::pin(async move {
            loop {
                if let Some(c) = self.pending.pop_front() {
                    return Some(Ok(c));
                }
                if self.done {
                    return None;
                }
                let read = match tokio::time::timeout(self.idle, self.body.chunk()).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.done = true;
                        return Some(Err(idle_error(&self.ep, self.idle)));
                    }
                };
                let step = match read {
                    Ok(Some(bytes)) => self.parser.feed(&bytes, &mut self.pending),
                    Ok(None) => self.parser.finish(&mut self.pending).map(|()| true),
                    Err(e) => Err(transport_error(e, &self.ep)),
                };
                match step {
                    Ok(finished) => self.done = finished,
                    Err(e) => {
                        self.done = true;
                        self.pending.clear();
                        return Some(Err(e.with_provider(&self.ep.provider)));
                    }
                }
            }
        })
    }
}

/// Reads a body up to `limit` bytes. `lenient`: on an error answer, what was read is enough.
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    limit: usize,
    ep: &Endpoint,
    lenient: bool,
) -> Result<Vec<u8>, Error> {
    let hint = resp.content_length().unwrap_or(0).min(limit as u64) as usize;
    let mut buf = Vec::with_capacity(hint.max(1024));
    // As [`Body`], without its box: the headers are dropped before the body is read, the
    // request's place on its client kept until it has been.
    let _slot = resp.extensions_mut().remove::<Slot>();
    let body = resp.bytes_stream();
    let mut body = std::pin::pin!(body);
    loop {
        match body.next().await.transpose() {
            Ok(Some(c)) => {
                if buf.len() + c.len() > limit {
                    if lenient {
                        buf.extend_from_slice(&c[..limit - buf.len()]);
                        return Ok(buf);
                    }
                    return Err(Error::upstream(format!(
                        "response body from deployment {} is larger than {} MiB",
                        ep.deployment_id,
                        limit / (1024 * 1024)
                    ))
                    .with_provider(&ep.provider));
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(buf),
            Err(e) if lenient => {
                let _ = e;
                return Ok(buf);
            }
            Err(e) => return Err(transport_error(e, ep)),
        }
    }
}

pub(crate) fn timeout_error(ep: &Endpoint, after: Duration) -> Error {
    Error::new(
        Status::Timeout,
        format!(
            "request to deployment {} timed out after {:.3}s",
            ep.deployment_id,
            after.as_secs_f64()
        ),
    )
    .with_provider(&ep.provider)
}

/// A stream that sent nothing for `idle`.
pub(crate) fn idle_error(ep: &Endpoint, idle: Duration) -> Error {
    let mut e = timeout_error(ep, idle);
    e.message = format!(
        "stream from deployment {} was idle for longer than {:.3}s",
        ep.deployment_id,
        idle.as_secs_f64()
    );
    e
}

/// A failure below HTTP: connect, reset, TLS, a body cut short. The URL is left out of the
/// message (some providers put credentials in URLs).
pub(crate) fn transport_error(e: reqwest::Error, ep: &Endpoint) -> Error {
    let what = if e.is_connect() {
        "could not connect to"
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading the answer of"
    } else {
        "request failed for"
    };
    transport_failure(e.is_timeout(), what, std::error::Error::source(&e), ep)
}

/// The same for a request llmr's HTTP/1.1 client sent ([`crate::http1`]); a body cut short
/// comes through reqwest's body, as [`transport_error`].
fn plain_transport_error(e: &crate::http1::SendError, ep: &Endpoint) -> Error {
    let what = if e.is_connect() {
        "could not connect to"
    } else {
        "request failed for"
    };
    transport_failure(e.is_timeout(), what, Some(e), ep)
}

/// "{what} deployment {id}: {cause}: {its cause}…"
fn transport_failure(
    timed_out: bool,
    what: &str,
    cause: Option<&dyn std::error::Error>,
    ep: &Endpoint,
) -> Error {
    let status = if timed_out {
        Status::Timeout
    } else {
        Status::Upstream
    };
    let mut detail = String::new();
    let mut src = cause;
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    Error::new(
        status,
        format!("{what} deployment {}{detail}", ep.deployment_id),
    )
    .with_provider(&ep.provider)
}

/// `retry-after-ms`, then `retry-after` (seconds or an HTTP date).
pub fn retry_after_from_headers(h: &HeaderMap) -> Option<f64> {
    if let Some(ms) = h
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
    {
        if ms.is_finite() && ms >= 0.0 {
            return Some(ms / 1000.0);
        }
    }
    let v = h.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then_some(s);
    }
    let when = httpdate_to_unix(v)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some((when - now).max(0.0))
}

/// A retry delay written in an error message: "Please try again in 16.24s", "retry after 3 seconds",
/// "Please retry in 20.04s", "try again in 250ms".
pub fn retry_hint_in_text(text: &str) -> Option<f64> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"(?i)(?:try again|retry)(?: (?:in|after))? (\d+(?:\.\d+)?)\s*(ms|milliseconds?|s\b|secs?\b|seconds?)")
            .expect("static regex")
    });
    let c = re.captures(text)?;
    let n: f64 = c[1].parse().ok()?;
    Some(
        if c[2].to_ascii_lowercase().starts_with("ms")
            || c[2].to_ascii_lowercase().starts_with("milli")
        {
            n / 1000.0
        } else {
            n
        },
    )
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to Unix seconds.
fn httpdate_to_unix(s: &str) -> Option<f64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as i64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2]) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_headers() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "12".parse().unwrap());
        assert_eq!(retry_after_from_headers(&h), Some(12.0));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after_from_headers(&h), Some(1.5));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after_from_headers(&h),
            Some(0.0),
            "a past date means now"
        );
        assert_eq!(
            httpdate_to_unix("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777.0)
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after_from_headers(&h), None);
    }

    #[test]
    fn retry_hints_in_messages() {
        assert_eq!(
            retry_hint_in_text("Rate limit reached for model x. Please try again in 16.24s. Visit"),
            Some(16.24)
        );
        assert_eq!(
            retry_hint_in_text("Please retry after 3 seconds."),
            Some(3.0)
        );
        assert_eq!(retry_hint_in_text("Please retry in 20.04s."), Some(20.04));
        assert_eq!(retry_hint_in_text("try again in 250ms"), Some(0.25));
        assert_eq!(retry_hint_in_text("no hint here"), None);
    }
}
