//! Just enough HTTP/1.1: reading requests off a keep-alive connection
//! (Content-Length or chunked bodies, pipelining-safe) and writing response
//! heads and chunked bodies.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers a request may carry.
const MAX_HEADERS: usize = 96;
/// Largest request body accepted.
const MAX_BODY: usize = 512 * 1024 * 1024;
/// How much the read buffer grows by at a time.
const READ_CHUNK: usize = 16 * 1024;

/// One parsed request.
pub(crate) struct Request {
    pub method: String,
    /// The request target as sent, query string included.
    pub path: String,
    /// Header names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
}

/// A server-side connection: the socket and the bytes read but not yet used.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes written since the last [`Conn::take_written`].
    written: u64,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
            written: 0,
        }
    }

    /// Reads the next request; `Ok(None)` when the peer closed between requests.
    pub async fn read_request(&mut self) -> io::Result<Option<Request>> {
        let (head_len, method, path, headers, version) = loop {
            if !self.buf.is_empty() {
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut slots);
                match req.parse(&self.buf).map_err(invalid)? {
                    httparse::Status::Complete(n) => {
                        let headers = req
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_ascii_lowercase(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect::<Vec<_>>();
                        break (
                            n,
                            req.method.unwrap_or("GET").to_owned(),
                            req.path.unwrap_or("/").to_owned(),
                            headers,
                            req.version.unwrap_or(1),
                        );
                    }
                    httparse::Status::Partial if self.buf.len() > MAX_HEAD => {
                        return Err(invalid("request head too large"));
                    }
                    httparse::Status::Partial => {}
                }
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        };

        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let has_token = |name: &str, token: &str| {
            header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        let keep_alive = if version == 0 {
            has_token("connection", "keep-alive")
        } else {
            !has_token("connection", "close")
        };
        let chunked = has_token("transfer-encoding", "chunked");
        let length = match header("content-length") {
            Some(v) if !chunked => v.trim().parse::<usize>().map_err(invalid)?,
            _ => 0,
        };
        if length > MAX_BODY {
            return Err(invalid("request body too large"));
        }
        if has_token("expect", "100-continue") && self.buf.len() < head_len + length.max(1) {
            self.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await?;
        }

        let body = if chunked {
            self.read_chunked(head_len).await?
        } else {
            while self.buf.len() < head_len + length {
                if self.fill().await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            let body = self.buf[head_len..head_len + length].to_vec();
            self.buf.drain(..head_len + length);
            body
        };

        Ok(Some(Request {
            method,
            path,
            headers,
            body,
            keep_alive,
        }))
    }

    /// Decodes a chunked body that starts at `pos` in the buffer, trailers included.
    async fn read_chunked(&mut self, mut pos: usize) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let (used, size) = match httparse::parse_chunk_size(&self.buf[pos..]) {
                Ok(httparse::Status::Complete(found)) => found,
                Ok(httparse::Status::Partial) => {
                    self.fill_or_eof().await?;
                    continue;
                }
                Err(_) => return Err(invalid("bad chunk size")),
            };
            let size = usize::try_from(size).map_err(invalid)?;
            if body.len() + size > MAX_BODY {
                return Err(invalid("request body too large"));
            }
            if size == 0 {
                pos += used;
                // Trailers: header lines up to an empty line.
                loop {
                    match find_crlf(&self.buf[pos..]) {
                        Some(0) => {
                            pos += 2;
                            self.buf.drain(..pos);
                            return Ok(body);
                        }
                        Some(end) => pos += end + 2,
                        None => self.fill_or_eof().await?,
                    }
                }
            }
            while self.buf.len() < pos + used + size + 2 {
                self.fill_or_eof().await?;
            }
            pos += used;
            body.extend_from_slice(&self.buf[pos..pos + size]);
            pos += size + 2;
        }
    }

    /// Reads more bytes into the buffer; returns how many (0 at end of stream).
    async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    async fn fill_or_eof(&mut self) -> io::Result<()> {
        match self.fill().await? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }

    /// Writes all of `bytes`, counting what the socket took even when it fails half-way.
    pub async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = self.stream.write(bytes).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.written += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// The bytes written since the last call.
    pub fn take_written(&mut self) -> u64 {
        std::mem::take(&mut self.written)
    }

    /// Reads and discards until the peer goes away.
    pub async fn drain_until_eof(&mut self) {
        loop {
            self.buf.clear();
            match self.fill().await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Makes the coming close abortive: the peer sees a TCP RST.
    pub fn set_abortive_close(&self) {
        let _ = self.stream.set_zero_linger();
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

fn invalid<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(u64),
    Chunked,
}

/// A response head. `extra` headers come from the reply; a `content-type`
/// among them replaces the default one.
pub(crate) fn head(
    status: u16,
    content_type: &str,
    framing: Framing,
    extra: &[(String, String)],
    close: bool,
) -> Vec<u8> {
    use std::fmt::Write;
    let mut out = String::with_capacity(160);
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", status, reason(status));
    if !extra
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        let _ = write!(out, "content-type: {content_type}\r\n");
    }
    match framing {
        Framing::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked => out.push_str("transfer-encoding: chunked\r\n"),
    }
    if content_type.starts_with("text/event-stream") {
        out.push_str("cache-control: no-cache\r\n");
    }
    for (k, v) in extra {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    if close {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Appends `data` to `out` as one chunk of a chunked body.
pub(crate) fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The chunk that ends a chunked body.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Status",
    }
}
