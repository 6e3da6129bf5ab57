//! An answer's body as it comes off the connection: its framing decoded, the connection handed
//! back to its pool once the body has been read to its end.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use reqwest::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use reqwest::StatusCode;
use tokio::net::TcpStream;

use super::pool::{Http1, Origin};
use super::response_head::{Head, FIRST_READ};
use super::SendError;

/// Reads grow to this when they keep filling the buffer (a long answer).
const MAX_READ: usize = 64 * 1024;
/// A chunk-size line or a trailer section longer than this is not HTTP.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// How the body's end is known.
#[derive(Debug, PartialEq)]
pub(super) enum Framing {
    /// No body (204, 304).
    Empty,
    /// `Content-Length`: the bytes still to come.
    Length(u64),
    Chunked(Chunked),
    /// Neither: the body ends when the server closes the connection.
    UntilClose,
}

/// Where a chunked body's decoding is.
#[derive(Debug, PartialEq)]
pub(super) enum Chunked {
    Size,
    Data(u64),
    DataEnd,
    Trailers {
        read: usize,
    },
    Done,
    /// Found broken while looking past a chunk's data: the error the next read gives.
    Broken(io::ErrorKind, String),
}

pub(super) enum Piece {
    Data(Bytes),
    End,
    NeedMore,
}

impl Framing {
    /// The framing `head` gives its body, and whether the connection may be reused after it
    /// (RFC 9112 §6.3: both `Transfer-Encoding` and `Content-Length` mean close after).
    pub(super) fn of(head: &Head) -> Result<(Framing, bool), SendError> {
        if head.status == StatusCode::NO_CONTENT || head.status == StatusCode::NOT_MODIFIED {
            return Ok((Framing::Empty, true));
        }
        let h = &head.headers;
        if let Some(last) = h.get_all(TRANSFER_ENCODING).iter().next_back() {
            let chunked = last
                .as_bytes()
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            return Ok(if chunked {
                (
                    Framing::Chunked(Chunked::Size),
                    !h.contains_key(CONTENT_LENGTH),
                )
            } else {
                (Framing::UntilClose, false)
            });
        }
        let mut length = None;
        for v in h.get_all(CONTENT_LENGTH) {
            for part in v.as_bytes().split(|b| *b == b',') {
                let n = parse_decimal(part.trim_ascii())
                    .ok_or(SendError::Protocol("invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(SendError::Protocol("conflicting Content-Length"));
                }
                length = Some(n);
            }
        }
        Ok(match length {
            Some(n) => (Framing::Length(n), true),
            None => (Framing::UntilClose, false),
        })
    }

    /// The next piece of the body that `buf` holds.
    pub(super) fn next(&mut self, buf: &mut BytesMut) -> io::Result<Piece> {
        match self {
            Framing::Empty => Ok(Piece::End),
            Framing::Length(0) => Ok(Piece::End),
            Framing::Length(_) if buf.is_empty() => Ok(Piece::NeedMore),
            Framing::Length(rest) => Ok(Piece::Data(take(rest, buf))),
            Framing::UntilClose if buf.is_empty() => Ok(Piece::NeedMore),
            Framing::UntilClose => Ok(Piece::Data(buf.split().freeze())),
            Framing::Chunked(state) => state.next(buf),
        }
    }

    /// Whether the body has ended (all of it taken).
    fn is_complete(&self) -> bool {
        matches!(
            self,
            Framing::Empty | Framing::Length(0) | Framing::Chunked(Chunked::Done)
        )
    }

    /// The connection ended (EOF): the body's end, or an answer cut short.
    pub(super) fn at_eof(&mut self) -> io::Result<()> {
        match self {
            Framing::UntilClose | Framing::Empty | Framing::Length(0) => {
                *self = Framing::Empty;
                Ok(())
            }
            Framing::Chunked(Chunked::Done) => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before the answer was complete",
            )),
        }
    }
}

impl Chunked {
    fn next(&mut self, buf: &mut BytesMut) -> io::Result<Piece> {
        self.settle(buf)?;
        match self {
            Chunked::Data(rest) => {
                if buf.is_empty() {
                    return Ok(Piece::NeedMore);
                }
                let data = take(rest, buf);
                if *rest == 0 {
                    *self = Chunked::DataEnd;
                    // What follows may already be here: the body's end, so that the connection
                    // is free as soon as its last data is (a stream's reader stops at its last
                    // event and never asks for the end). An error waits for the next call.
                    if let Err(e) = self.settle(buf) {
                        *self = Chunked::Broken(e.kind(), e.to_string());
                    }
                }
                Ok(Piece::Data(data))
            }
            Chunked::Done => Ok(Piece::End),
            _ => Ok(Piece::NeedMore),
        }
    }

    /// Reads size lines, chunk ends and trailers from `buf` until data is next (or the end, or
    /// `buf` runs out).
    fn settle(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        loop {
            match self {
                Chunked::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(());
                    };
                    // `1a;name=value`: extensions are ignored.
                    let digits = line.split(|b| *b == b';').next().unwrap_or_default();
                    let size = parse_hex(digits.trim_ascii())
                        .ok_or_else(|| invalid("invalid chunk size"))?;
                    *self = if size == 0 {
                        Chunked::Trailers { read: 0 }
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|b| *b != b'\r') {
                            return Err(invalid("chunk not followed by CRLF"));
                        }
                        return Ok(());
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(invalid("chunk not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers { read } => {
                    let before = buf.len();
                    let Some(line) = take_line(buf)? else {
                        return Ok(());
                    };
                    if line.is_empty() {
                        *self = Chunked::Done;
                        return Ok(());
                    }
                    *read += before - buf.len();
                    if *read > MAX_TRAILERS {
                        return Err(invalid("trailers larger than 16 KiB"));
                    }
                }
                Chunked::Broken(kind, what) => {
                    return Err(io::Error::new(*kind, std::mem::take(what)));
                }
                Chunked::Data(_) | Chunked::Done => return Ok(()),
            }
        }
    }
}

/// As much of the `rest` bytes still to come as `buf` holds.
fn take(rest: &mut u64, buf: &mut BytesMut) -> Bytes {
    let n = (*rest).min(buf.len() as u64) as usize;
    *rest -= n as u64;
    buf.split_to(n).freeze()
}

/// A line (CRLF, or a bare LF, ended) taken from `buf`, without its end.
fn take_line(buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
    match memchr::memchr(b'\n', buf) {
        Some(i) if i <= MAX_LINE => {
            let mut line = buf.split_to(i + 1).freeze();
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() <= MAX_LINE => Ok(None),
        _ => Err(invalid("chunk line longer than 4 KiB")),
    }
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 15 {
        return None;
    }
    s.iter().try_fold(0u64, |n, d| {
        let v = (*d as char).to_digit(16)?;
        Some(n << 4 | u64::from(v))
    })
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The body of one answer, read from its connection as the caller asks for it. Dropped before
/// its end, it closes the connection (what is left of the answer would be in the way).
pub(super) struct AnswerBody {
    io: Option<TcpStream>,
    buf: BytesMut,
    framing: Framing,
    /// The next read's room; doubles while reads fill it.
    read_size: usize,
    /// Where the connection goes back when the body is read to its end; `None`: it closes.
    home: Option<(Http1, Origin)>,
}

impl AnswerBody {
    pub(super) fn new(
        io: TcpStream,
        buf: BytesMut,
        framing: Framing,
        home: Option<(Http1, Origin)>,
    ) -> AnswerBody {
        AnswerBody {
            io: Some(io),
            buf,
            framing,
            read_size: FIRST_READ,
            home,
        }
    }

    /// At the body's end: the connection goes back to its pool if it may carry another
    /// request and nothing beyond this answer came on it.
    fn finish(&mut self) {
        self.framing = Framing::Empty;
        let io = self.io.take();
        if let (Some(io), Some((pool, origin))) = (io, self.home.take()) {
            if self.buf.is_empty() {
                pool.give_back(origin, io);
            }
        }
        self.buf = BytesMut::new();
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        self.io = None;
        self.home = None;
        self.framing = Framing::Empty;
        Poll::Ready(Some(Err(e)))
    }
}

impl http_body::Body for AnswerBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        loop {
            match this.framing.next(&mut this.buf) {
                Ok(Piece::Data(b)) => {
                    // The body's last data: the connection is free now, not when (if ever)
                    // the reader asks for the end.
                    if this.framing.is_complete() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Ok(Piece::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Piece::NeedMore) => {}
                Err(e) => return this.fail(e),
            }
            let Some(io) = &this.io else {
                return Poll::Ready(None);
            };
            if this.buf.capacity() - this.buf.len() < this.read_size / 2 {
                this.buf.reserve(this.read_size);
            }
            let room = this.buf.capacity() - this.buf.len();
            let read = loop {
                if let Err(e) = ready!(io.poll_read_ready(cx)) {
                    break Err(e);
                }
                match io.try_read_buf(&mut this.buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => break r,
                }
            };
            match read {
                Ok(0) => match this.framing.at_eof() {
                    Ok(()) => {
                        // The server closed it: nothing to give back.
                        this.home = None;
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Err(e) => return this.fail(e),
                },
                Ok(n) => {
                    if n == room {
                        this.read_size = (this.read_size * 2).min(MAX_READ);
                    }
                }
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing.is_complete()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `step` bytes; the data, or the error.
    fn decode(wire: &[u8], step: usize) -> Result<(Vec<u8>, bool), String> {
        let mut f = Framing::Chunked(Chunked::Size);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match f.next(&mut buf).map_err(|e| e.to_string())? {
                Piece::Data(d) => out.extend_from_slice(&d),
                Piece::End => return Ok((out, buf.is_empty())),
                Piece::NeedMore if fed == wire.len() => {
                    f.at_eof().map_err(|e| e.to_string())?;
                    return Ok((out, false));
                }
                Piece::NeedMore => {
                    let n = step.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_however_they_are_split() {
        let wire =
            b"5\r\nhello\r\n1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";
        for step in 1..=wire.len() {
            let (data, clean) = decode(wire, step).unwrap();
            assert_eq!(data, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
            assert!(clean);
        }
        // Bare LF line ends, as hyper also accepts them in size lines.
        assert_eq!(decode(b"3\nabc\r\n0\n\n", 4).unwrap().0, b"abc");
    }

    #[test]
    fn broken_chunked_bodies_are_errors() {
        for bad in [
            &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"fffffffffffffffff\r\n",
            b"\r\n",
        ] {
            assert!(
                decode(bad, 3).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(5000));
        assert!(decode(long.as_bytes(), 512).is_err());
        // Cut short: an error, never a quiet end.
        for cut in [1, 4, 8, 12, 14] {
            let e = decode(&b"5\r\nhello\r\n0\r\n\r\n"[..cut], 2).unwrap_err();
            assert!(e.contains("before the answer was complete"), "{cut}: {e}");
        }
    }

    #[test]
    fn framing_follows_the_headers() {
        let head = |status: u16, headers: &[(&str, &str)]| {
            let mut h = reqwest::header::HeaderMap::new();
            for (k, v) in headers {
                h.append(
                    reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            Head {
                status: StatusCode::from_u16(status).unwrap(),
                version: reqwest::Version::HTTP_11,
                headers: h,
                keep_alive: true,
            }
        };
        let of = |status, h: &[(&str, &str)]| Framing::of(&head(status, h)).map_err(|_| ());
        assert_eq!(
            of(200, &[("content-length", "12")]),
            Ok((Framing::Length(12), true))
        );
        assert_eq!(
            of(200, &[("content-length", "12, 12")]),
            Ok((Framing::Length(12), true))
        );
        assert_eq!(
            of(200, &[("content-length", "12"), ("content-length", "13")]),
            Err(())
        );
        assert_eq!(of(200, &[("content-length", "-1")]), Err(()));
        assert_eq!(of(200, &[("content-length", "+1")]), Err(()));
        assert_eq!(
            of(200, &[("transfer-encoding", "chunked")]),
            Ok((Framing::Chunked(Chunked::Size), true))
        );
        assert_eq!(
            of(
                200,
                &[("transfer-encoding", "chunked"), ("content-length", "3")]
            ),
            Ok((Framing::Chunked(Chunked::Size), false))
        );
        assert_eq!(
            of(200, &[("transfer-encoding", "gzip")]),
            Ok((Framing::UntilClose, false))
        );
        assert_eq!(of(200, &[]), Ok((Framing::UntilClose, false)));
        assert_eq!(
            of(204, &[("content-length", "5")]),
            Ok((Framing::Empty, true))
        );
    }
}
