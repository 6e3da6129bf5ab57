//! Carrying out a [`Reply`] on a connection, faults included.

use std::io;
use std::time::Duration;

use serde_json::Value;
use tokio::time::sleep;

use crate::format::{Format, Refusal};
use crate::http::{chunk, head, Conn, Framing, LAST_CHUNK};
use crate::prompt::{Answer, Prompt};
use crate::reply::{Fault, Kind, Reply};

const JSON: &str = "application/json";

/// Size of the `huge` body before its closing `{}`.
pub const HUGE_PADDING: u64 = 64 * 1024 * 1024;
/// The text of each content event of an `endless` stream.
pub const ENDLESS_PIECE: usize = 16 * 1024;
/// How often `trickle` sends a byte.
const TRICKLE_EVERY: Duration = Duration::from_secs(1);
/// How long `resethead` waits between its head and the RST, so the client has read the head.
const HEAD_BEFORE_RESET: Duration = Duration::from_millis(50);
/// What `garbage` sends.
const GARBAGE: &[u8] = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n{\"choices\": [";

/// What the connection does after a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    KeepAlive,
    Close,
}

/// One request as the behaviours see it.
pub(crate) struct Exchange {
    pub format: Format,
    pub prompt: Prompt,
    pub tenant: String,
    /// The client asked for the connection to close after this response.
    pub close: bool,
}

/// Answers one request as `reply` says.
pub(crate) async fn perform(conn: &mut Conn, ex: &Exchange, reply: Reply) -> io::Result<Next> {
    let Reply {
        kind,
        delay,
        chunk_interval,
        headers,
    } = reply;
    if !delay.is_zero() {
        sleep(delay).await;
    }
    let format = ex.format;
    let mut out = Out {
        conn,
        headers: &headers,
        close: ex.close,
        interval: chunk_interval,
        stream_type: format.stream_content_type(),
    };
    let tokens = ex.prompt.tokens();
    match kind {
        Kind::Ok => out.success(ex, &Answer::auto(&ex.prompt, &ex.tenant)).await,
        Kind::Text(text) => out.success(ex, &Answer::Text(text)).await,
        Kind::ToolCall { name, arguments } => {
            let name = name
                .or_else(|| ex.prompt.first_tool.clone())
                .unwrap_or_else(|| "tool".to_owned());
            out.success(ex, &Answer::ToolCall { name, arguments }).await
        }
        Kind::ContextWindow(limit) if tokens > limit => {
            out.error(format, 400, &format.overflow(limit, tokens))
                .await
        }
        Kind::ContextWindow(_) => out.success(ex, &Answer::auto(&ex.prompt, &ex.tenant)).await,
        Kind::Overflow(limit) => {
            out.error(format, 400, &format.overflow(limit, tokens.max(limit + 1)))
                .await
        }
        Kind::Policy => match format.policy() {
            Refusal::Error(status, body) => out.error(format, status, &body).await,
            Refusal::Blocked(body) if ex.prompt.stream => {
                out.events(vec![crate::format::event(None, &body)], true)
                    .await?;
                Ok(out.after())
            }
            Refusal::Blocked(body) => out.json(200, &body).await,
            Refusal::Text(text) => out.success(ex, &Answer::Text(text.to_owned())).await,
        },
        Kind::Status(status) => out.error(format, status, &format.error(status)).await,
        Kind::Raw { status, body } => out.full(status, JSON, body.as_bytes()).await,
        Kind::Fault(fault) => out.fault(ex, fault).await,
    }
}

/// Writes responses for one reply.
struct Out<'a> {
    conn: &'a mut Conn,
    headers: &'a [(String, String)],
    close: bool,
    interval: Duration,
    /// The content type of a stream in this format.
    stream_type: &'static str,
}

impl Out<'_> {
    fn after(&self) -> Next {
        if self.close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    fn head(&self, status: u16, content_type: &str, framing: Framing) -> Vec<u8> {
        head(status, content_type, framing, self.headers, self.close)
    }

    /// A complete Content-Length response.
    async fn full(&mut self, status: u16, content_type: &str, body: &[u8]) -> io::Result<Next> {
        let mut bytes = self.head(status, content_type, Framing::Length(body.len() as u64));
        bytes.extend_from_slice(body);
        self.conn.write_all(&bytes).await?;
        Ok(self.after())
    }

    async fn json(&mut self, status: u16, body: &Value) -> io::Result<Next> {
        self.full(status, JSON, &to_bytes(body)).await
    }

    /// An error answer, with the header that names the error where the format has one.
    async fn error(&mut self, format: Format, status: u16, body: &Value) -> io::Result<Next> {
        let Some(named) = format.error_header(status) else {
            return self.json(status, body).await;
        };
        let body = to_bytes(body);
        let mut headers = self.headers.to_vec();
        headers.push(named);
        let framing = Framing::Length(body.len() as u64);
        let mut bytes = head(status, JSON, framing, &headers, self.close);
        bytes.extend_from_slice(&body);
        self.conn.write_all(&bytes).await?;
        Ok(self.after())
    }

    /// A 200 chunked stream response (SSE or NDJSON) carrying `events`; `end` writes the last
    /// chunk, otherwise the body is left unfinished.
    async fn events(&mut self, events: Vec<Vec<u8>>, end: bool) -> io::Result<()> {
        let mut bytes = self.head(200, self.stream_type, Framing::Chunked);
        if self.interval.is_zero() {
            for e in &events {
                chunk(&mut bytes, e);
            }
        } else {
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    self.conn.write_all(&bytes).await?;
                    bytes.clear();
                    sleep(self.interval).await;
                }
                chunk(&mut bytes, e);
            }
        }
        if end {
            bytes.extend_from_slice(LAST_CHUNK);
        }
        self.conn.write_all(&bytes).await
    }

    async fn success(&mut self, ex: &Exchange, answer: &Answer) -> io::Result<Next> {
        if ex.prompt.stream {
            self.events(ex.format.stream(&ex.prompt, answer).all(), true)
                .await?;
            Ok(self.after())
        } else {
            self.json(200, &ex.format.response(&ex.prompt, answer))
                .await
        }
    }

    /// The 200 head and the first half of the success body, then close.
    async fn half_body(&mut self, ex: &Exchange) -> io::Result<Next> {
        let body = to_bytes(&ok_response(ex));
        let mut bytes = self.head(200, JSON, Framing::Length(body.len() as u64));
        bytes.extend_from_slice(&body[..body.len() / 2]);
        self.conn.write_all(&bytes).await?;
        Ok(Next::Close)
    }

    /// `n` spaces, written a piece at a time.
    async fn spaces(&mut self, n: u64) -> io::Result<()> {
        static SPACES: [u8; 64 * 1024] = [b' '; 64 * 1024];
        let mut left = n;
        while left > 0 {
            let piece = left.min(SPACES.len() as u64);
            self.conn.write_all(&SPACES[..piece as usize]).await?;
            left -= piece;
        }
        Ok(())
    }

    async fn fault(&mut self, ex: &Exchange, fault: Fault) -> io::Result<Next> {
        let (format, prompt) = (ex.format, &ex.prompt);
        match fault {
            Fault::Hang => {
                self.conn.drain_until_eof().await;
                Ok(Next::Close)
            }
            Fault::Reset => {
                self.conn.set_abortive_close();
                Ok(Next::Close)
            }
            Fault::ResetMid => self.half_body(ex).await,
            Fault::Truncated if prompt.stream => {
                let sse = format.stream(prompt, &ok_answer(ex));
                let mut events = sse.head;
                events.extend(sse.body.into_iter().take(2));
                self.events(events, false).await?;
                Ok(Next::Close)
            }
            Fault::Truncated => self.half_body(ex).await,
            Fault::MidStreamError if prompt.stream => {
                let sse = format.stream(prompt, &ok_answer(ex));
                let mut events = sse.head;
                events.extend(sse.body.into_iter().take(1));
                events.push(format.stream_error());
                self.events(events, true).await?;
                Ok(self.after())
            }
            Fault::ErrorFirst if prompt.stream => {
                self.events(vec![format.stream_error()], true).await?;
                Ok(self.after())
            }
            Fault::MidStreamError | Fault::ErrorFirst => {
                self.json(200, &format.inline_error()).await
            }
            Fault::ResetAfterHead => {
                let head = if prompt.stream {
                    self.head(200, self.stream_type, Framing::Chunked)
                } else {
                    let len = to_bytes(&ok_response(ex)).len() as u64;
                    self.head(200, JSON, Framing::Length(len))
                };
                self.conn.write_all(&head).await?;
                sleep(HEAD_BEFORE_RESET).await;
                self.conn.set_abortive_close();
                Ok(Next::Close)
            }
            Fault::MidEvent if prompt.stream => {
                let sse = format.stream(prompt, &ok_answer(ex));
                let mut events = sse.head;
                let mut rest = sse.body.into_iter().chain(sse.tail);
                events.extend(rest.next());
                if let Some(next) = rest.next() {
                    events.push(next[..next.len() / 2].to_vec());
                }
                self.events(events, true).await?;
                Ok(self.after())
            }
            Fault::NoDone if prompt.stream => {
                let mut events = format.stream(prompt, &ok_answer(ex)).all();
                events.pop();
                self.events(events, true).await?;
                Ok(self.after())
            }
            Fault::NoDone => self.success(ex, &ok_answer(ex)).await,
            Fault::EarlyEnd if prompt.stream => {
                let sse = format.stream(prompt, &ok_answer(ex));
                let mut events = sse.head;
                events.extend(sse.body.into_iter().take(2));
                self.events(events, true).await?;
                Ok(self.after())
            }
            Fault::MidEvent | Fault::EarlyEnd => {
                let body = to_bytes(&ok_response(ex));
                self.full(200, JSON, &body[..body.len() / 2]).await
            }
            Fault::Stall if prompt.stream => {
                let sse = format.stream(prompt, &ok_answer(ex));
                let mut events = sse.head;
                events.extend(sse.body.into_iter().take(2));
                self.events(events, false).await?;
                self.conn.drain_until_eof().await;
                Ok(Next::Close)
            }
            Fault::Stall => {
                let body = to_bytes(&ok_response(ex));
                let mut bytes = self.head(200, JSON, Framing::Length(body.len() as u64));
                bytes.extend_from_slice(&body[..body.len() / 2]);
                self.conn.write_all(&bytes).await?;
                self.conn.drain_until_eof().await;
                Ok(Next::Close)
            }
            Fault::HugeError => {
                let error = to_bytes(&format.error(503));
                let length = error.len() as u64 + HUGE_PADDING;
                let mut bytes = self.head(503, JSON, Framing::Length(length));
                bytes.extend_from_slice(&error);
                self.conn.write_all(&bytes).await?;
                self.spaces(HUGE_PADDING).await?;
                Ok(self.after())
            }
            Fault::Endless if prompt.stream => {
                let sse = format.stream(prompt, &Answer::Text("x".repeat(ENDLESS_PIECE)));
                let mut bytes = self.head(200, self.stream_type, Framing::Chunked);
                for e in &sse.head {
                    chunk(&mut bytes, e);
                }
                self.conn.write_all(&bytes).await?;
                let mut piece = Vec::new();
                for e in &sse.body {
                    chunk(&mut piece, e);
                }
                loop {
                    self.conn.write_all(&piece).await?;
                    if !self.interval.is_zero() {
                        sleep(self.interval).await;
                    }
                }
            }
            Fault::Endless => {
                static SPACES: [u8; 64 * 1024] = [b' '; 64 * 1024];
                let head = self.head(200, JSON, Framing::Chunked);
                self.conn.write_all(&head).await?;
                let mut piece = Vec::with_capacity(SPACES.len() + 16);
                chunk(&mut piece, &SPACES);
                loop {
                    self.conn.write_all(&piece).await?;
                }
            }
            Fault::Garbage => self.full(200, JSON, GARBAGE).await,
            Fault::Huge => {
                let head = self.head(200, JSON, Framing::Length(HUGE_PADDING + 2));
                self.conn.write_all(&head).await?;
                self.spaces(HUGE_PADDING).await?;
                self.conn.write_all(b"{}").await?;
                Ok(self.after())
            }
            Fault::Trickle => {
                let (head, body) = if prompt.stream {
                    let body = format.stream(prompt, &ok_answer(ex)).all().concat();
                    (self.head(200, self.stream_type, Framing::Chunked), body)
                } else {
                    let body = to_bytes(&ok_response(ex));
                    let framing = Framing::Length(body.len() as u64);
                    (self.head(200, JSON, framing), body)
                };
                self.conn.write_all(&head).await?;
                let mut piece = Vec::with_capacity(8);
                for byte in body {
                    sleep(TRICKLE_EVERY).await;
                    piece.clear();
                    if prompt.stream {
                        chunk(&mut piece, &[byte]);
                    } else {
                        piece.push(byte);
                    }
                    self.conn.write_all(&piece).await?;
                }
                if prompt.stream {
                    self.conn.write_all(LAST_CHUNK).await?;
                }
                Ok(Next::Close)
            }
        }
    }
}

fn ok_answer(ex: &Exchange) -> Answer {
    Answer::auto(&ex.prompt, &ex.tenant)
}

fn ok_response(ex: &Exchange) -> Value {
    ex.format.response(&ex.prompt, &ok_answer(ex))
}

fn to_bytes(body: &Value) -> Vec<u8> {
    // Serialising a Value cannot fail.
    serde_json::to_vec(body).unwrap_or_default()
}
