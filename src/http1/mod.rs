//! llmr's own HTTP/1.1 client, for chat requests to plain-HTTP origins: the local and in-cluster
//! model servers (Ollama, vLLM, llama.cpp, LM Studio, a gateway) that speak HTTP/1.1 without
//! TLS, one connection per request in flight.
//!
//! Why not hyper through reqwest, as every other request goes: hyper holds ~25 KiB per HTTP/1.1
//! connection — its request channel (a block of 32 request slots, 8.9 KiB), an 8 KiB read
//! buffer and an 8 KiB header buffer — and reqwest 0.12 lets none of them be sized. 10,000
//! streams open to such a server took ~300 MB in hyper alone. Here a connection is its socket
//! and a read buffer that starts at 2 KiB and grows only for an answer that needs it.
//!
//! What it does, as reqwest did for these requests: the pool (idle connections kept 90 s, at
//! most 1,024 per origin, the newest reused first, each checked for a close the server sent
//! while it was idle), `Host`, `User-Agent`, `Accept: */*` and `Content-Length`, a 30 s connect
//! timeout with `TCP_NODELAY`, and every framing an answer may have (`Content-Length`,
//! `chunked`, until the server closes; 1xx answers skipped), and an answer the server gives
//! before it has read the whole request (see `request_send`). The answer comes back as a
//! `reqwest::Response`, so everything after the send is the same code for both clients.
//! Not here: TLS and HTTP/2 (HTTPS keeps going through reqwest) and proxies (with an HTTP proxy
//! set, every request goes through reqwest, which honours it and `NO_PROXY`).
//!
//! A connection belongs to the runtime it was opened on (see `caller_runtime`): each runtime
//! has its own [`Http1`].

mod body;
mod pool;
mod request_head;
mod request_send;
mod response_head;

use std::io;

use reqwest::header::HeaderMap;
use reqwest::ResponseBuilderExt;
use reqwest::Url;
use tokio::net::TcpStream;

use body::{AnswerBody, Framing};
pub use pool::Http1;

use crate::global::CONNECT_TIMEOUT;

/// Why a request got no answer. Its text never holds the URL (some carry credentials).
#[derive(Debug)]
pub enum SendError {
    /// No connection: refused, unreachable, the name did not resolve.
    Connect(io::Error),
    /// No connection within [`CONNECT_TIMEOUT`].
    ConnectTimeout,
    /// The connection failed while the request went out or before the answer's head was in.
    Io(io::Error),
    /// The server's answer is not HTTP/1.x as it must be.
    Protocol(&'static str),
}

impl SendError {
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_) | SendError::ConnectTimeout)
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, SendError::ConnectTimeout)
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "tcp connect error: {e}"),
            SendError::ConnectTimeout => write!(
                f,
                "tcp connect timed out after {}s",
                CONNECT_TIMEOUT.as_secs()
            ),
            SendError::Io(e) => write!(f, "connection error: {e}"),
            SendError::Protocol(what) => write!(f, "invalid HTTP answer: {what}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Whether requests to `url` go out here: plain HTTP, no proxy configured for it.
pub fn serves(url: &Url) -> bool {
    url.scheme() == "http" && url.host_str().is_some() && !http_proxy_set()
}

/// Whether an HTTP proxy is configured. Read once: reqwest reads the variables when a client is
/// built, and the clients are built once.
fn http_proxy_set() -> bool {
    static SET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SET.get_or_init(|| crate::global::proxy_set("http"))
}

impl Http1 {
    /// POSTs `body` to `url` (which [`serves`]) and returns the answer once its head is in; its
    /// body streams from the connection as it is read.
    pub async fn post(
        &self,
        url: &Url,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<reqwest::Response, SendError> {
        let origin = pool::Origin::of(url).ok_or(SendError::Protocol("no host"))?;
        let request = request_head::write(url, headers, body);
        // A pooled connection passed its check when it was taken, but the server may still have
        // closed it since (and one another request gave back was not checked): a write that
        // fails with no answer to read goes out again on a new connection. Once written,
        // the request is not sent twice: a POST is not idempotent, and the router decides what
        // to retry.
        let mut io = match self.take(&origin) {
            Some(io) => io,
            None => self.open(&origin).await?,
        };
        let sent = match request_send::send(&io, &request).await {
            Ok(sent) => sent,
            Err(SendError::Io(_)) => {
                io = connect(&origin).await?;
                request_send::send(&io, &request).await?
            }
            Err(e) => return Err(e),
        };
        drop(request);
        let (head, buf) = match sent.early {
            Some(head) => (head, sent.buf),
            None => response_head::read_on(&io, sent.buf).await?,
        };
        let (framing, reusable) = Framing::of(&head)?;
        let keep_alive = head.keep_alive && reusable && sent.whole;
        let answer = AnswerBody::new(io, buf, framing, keep_alive.then(|| (self.clone(), origin)));
        // The URL given: reqwest parses a placeholder one for an answer that has none.
        let mut b = http::Response::builder()
            .status(head.status)
            .version(head.version)
            .url(url.clone());
        if let Some(h) = b.headers_mut() {
            *h = head.headers;
        }
        let resp = b
            .body(reqwest::Body::wrap(answer))
            .map_err(|_| SendError::Protocol("head"))?;
        Ok(reqwest::Response::from(resp))
    }
}

/// The answer decoding over in-memory pieces, for the fuzz target (`fuzz/`, `http1`).
#[doc(hidden)]
pub mod fuzzing {
    use bytes::BytesMut;

    use super::body::{Framing, Piece};
    use super::response_head;

    /// Reads an answer from `pieces` as they would arrive on a connection, the end of the
    /// pieces being the server's close: its status and body, or why it is not an answer.
    pub fn read_answer(pieces: &[&[u8]]) -> Result<(u16, Vec<u8>), String> {
        let mut rest = pieces.iter();
        let mut buf = BytesMut::new();
        let head = loop {
            if let Some(h) = response_head::parse(&mut buf).map_err(|e| e.to_string())? {
                break h;
            }
            match rest.next() {
                Some(p) => buf.extend_from_slice(p),
                None => return Err("closed in the head".into()),
            }
        };
        let (mut framing, _) = Framing::of(&head).map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        loop {
            match framing.next(&mut buf).map_err(|e| e.to_string())? {
                Piece::Data(d) => body.extend_from_slice(&d),
                Piece::End => return Ok((head.status.as_u16(), body)),
                Piece::NeedMore => match rest.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => {
                        framing.at_eof().map_err(|e| e.to_string())?;
                        return Ok((head.status.as_u16(), body));
                    }
                },
            }
        }
    }
}

async fn connect(origin: &pool::Origin) -> Result<TcpStream, SendError> {
    let io = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((origin.host(), origin.port())),
    )
    .await
    {
        Ok(r) => r.map_err(SendError::Connect)?,
        Err(_) => return Err(SendError::ConnectTimeout),
    };
    // Requests go out in one write; an answer's chunks must not wait for Nagle.
    let _ = io.set_nodelay(true);
    Ok(io)
}
