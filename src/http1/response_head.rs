//! An answer's status line and headers, read from the connection.

use bytes::{Buf, BytesMut};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};
use reqwest::{StatusCode, Version};
use tokio::net::TcpStream;

use super::SendError;

/// A head larger than this is not an answer (hyper's limit is about as large).
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// As hyper's default.
const MAX_HEADERS: usize = 100;
/// The read buffer a connection starts with: an answer's head and a stream's chunks fit.
pub(super) const FIRST_READ: usize = 2048;

pub(super) struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    /// The connection may carry another request after this answer's body (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`).
    pub keep_alive: bool,
}

/// Reads until a final answer's head is in (1xx answers are skipped), after what `buf` holds
/// of it already. Returns it and the buffer, which holds whatever of the body came with it.
pub(super) async fn read_on(
    io: &TcpStream,
    mut buf: BytesMut,
) -> Result<(Head, BytesMut), SendError> {
    loop {
        if let Some(head) = parse(&mut buf)? {
            return Ok((head, buf));
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(SendError::Protocol("head larger than 64 KiB"));
        }
        buf.reserve(FIRST_READ);
        let n = read_buf(io, &mut buf).await.map_err(SendError::Io)?;
        if n == 0 {
            return Err(SendError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                if buf.is_empty() {
                    "the server closed the connection without answering"
                } else {
                    "the server closed the connection in the middle of the answer's head"
                },
            )));
        }
    }
}

/// One read into `buf`'s spare room, through a shared reference (the request may still be
/// going out on the same connection).
async fn read_buf(io: &TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    loop {
        io.readable().await?;
        match io.try_read_buf(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// The final head at the start of `buf`, taken out of it; `None` if it is not all in yet.
pub(super) fn parse(buf: &mut BytesMut) -> Result<Option<Head>, SendError> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut slots);
        let len = match r.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(SendError::Protocol("more than 100 headers"))
            }
            // A TLS alert (content type 21, version 3.x): the port speaks HTTPS, and the usual
            // cause is an `api_base` written with http://.
            Err(_) if buf.starts_with(&[0x15, 0x03]) => {
                return Err(SendError::Protocol(
                    "the server answered in TLS (an https:// api_base?)",
                ))
            }
            Err(_) => return Err(SendError::Protocol("malformed status line or header")),
        };
        let code = r.code.unwrap_or(0);
        if code == 101 {
            return Err(SendError::Protocol("101 Switching Protocols to a POST"));
        }
        if (100..200).contains(&code) {
            // 100 Continue, 103 Early Hints: the final answer follows.
            buf.advance(len);
            continue;
        }
        let status = StatusCode::from_u16(code).map_err(|_| SendError::Protocol("status code"))?;
        let version = if r.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let mut keep_alive = version == Version::HTTP_11;
        let mut headers = HeaderMap::with_capacity(r.headers.len());
        for h in r.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| SendError::Protocol("header name"))?;
            let value = HeaderValue::from_bytes(h.value)
                .map_err(|_| SendError::Protocol("header value"))?;
            if name == CONNECTION {
                for token in h.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive")
                        && version == Version::HTTP_10
                    {
                        keep_alive = true;
                    }
                }
            }
            headers.append(name, value);
        }
        buf.advance(len);
        return Ok(Some(Head {
            status,
            version,
            headers,
            keep_alive,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Option<(Head, String)>, SendError> {
        let mut buf = BytesMut::from(text.as_bytes());
        Ok(parse(&mut buf)?.map(|h| (h, String::from_utf8(buf.to_vec()).unwrap())))
    }

    #[test]
    fn a_head_is_taken_and_what_follows_is_the_body() {
        let (h, rest) = parsed("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: 1\r\nX-A: 2\r\n\r\ndata: {}\n\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.version, Version::HTTP_11);
        assert!(h.keep_alive);
        assert_eq!(h.headers["content-type"], "text/event-stream");
        assert_eq!(h.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(rest, "data: {}\n\n");
    }

    #[test]
    fn informational_answers_are_skipped() {
        let (h, rest) = parsed(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\n\r\nx",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(h.headers["retry-after"], "3");
        assert_eq!(rest, "x");
    }

    #[test]
    fn a_partial_head_waits_for_more() {
        for cut in 0.."HTTP/1.1 200 OK\r\nA: b\r\n\r\n".len() {
            let text = &"HTTP/1.1 200 OK\r\nA: b\r\n\r\n"[..cut];
            assert!(parsed(text).unwrap().is_none(), "{text:?}");
        }
    }

    #[test]
    fn connection_tokens_decide_reuse() {
        let close = |t: &str| !parsed(t).unwrap().unwrap().0.keep_alive;
        assert!(close("HTTP/1.1 200 OK\r\nConnection: Close\r\n\r\n"));
        assert!(close(
            "HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\n\r\n"
        ));
        assert!(!close("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n"));
        assert!(close("HTTP/1.0 200 OK\r\n\r\n"));
        assert!(!close("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn a_tls_alert_says_the_server_wants_https() {
        // rustls's answer to a plain-text request: a fatal decode_error alert.
        let mut buf = BytesMut::from(&[0x15u8, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32][..]);
        let e = parse(&mut buf).err().expect("an error");
        assert!(e.to_string().contains("https://"), "{e}");
        let mut buf = BytesMut::from(&b"\x00\x01garbage\r\n\r\n"[..]);
        let e = parse(&mut buf).err().expect("an error");
        assert!(!e.to_string().contains("https://"), "{e}");
    }

    #[test]
    fn what_is_not_an_answer_is_refused() {
        for bad in [
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            assert!(parsed(bad).is_err(), "{bad:?}");
        }
        let many: String = (0..101).map(|i| format!("h{i}: v\r\n")).collect();
        assert!(parsed(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")).is_err());
    }
}
