//! A request written to its connection while the answer is watched for: a server may answer
//! before it has read the whole request (a 413 to a prompt with large images, a 401 from a
//! gateway) and close the connection, so that the rest of the write fails. That answer is what
//! the caller must see (the router reads a 413 as a context overflow), not a broken pipe. hyper
//! reads while it writes for the same reason.

use std::io;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::response_head::{self, Head, FIRST_READ};
use super::SendError;

/// How a request went out.
pub(super) struct Sent {
    /// The answer's head, when it came while the request was going out.
    pub early: Option<Head>,
    /// What came of the answer while the request was going out (after `early`'s head).
    pub buf: BytesMut,
    /// The server has the whole request: the connection may carry another one after the
    /// answer. Not so when the server answered before taking all of it.
    pub whole: bool,
}

/// Writes `request` on `io`. An error means no answer came: the write failed with nothing to
/// read, so a request on a connection from the pool may go out again on a new one.
pub(super) async fn send(io: &TcpStream, request: &[u8]) -> Result<Sent, SendError> {
    let mut buf = BytesMut::new();
    let mut early = None;
    // Most requests fit the socket's buffer: one write, nothing to watch.
    let mut at = match io.try_write(request) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return failed(io, early, buf, e).await,
    };
    // Watching for the answer until its head is in (or the server has closed its side).
    let mut watching = true;
    while at < request.len() {
        tokio::select! {
            biased;
            ready = io.writable() => {
                match ready.and_then(|()| io.try_write(&request[at..])) {
                    Ok(0) => return failed(io, early, buf, io::ErrorKind::WriteZero.into()).await,
                    Ok(n) => at += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return failed(io, early, buf, e).await,
                }
            }
            ready = io.readable(), if watching => {
                if buf.capacity() == buf.len() {
                    buf.reserve(FIRST_READ);
                }
                match ready.and_then(|()| io.try_read_buf(&mut buf)) {
                    Ok(0) => watching = false,
                    Ok(_) => {
                        if let Some(head) = response_head::parse(&mut buf)? {
                            if head.status.as_u16() >= 400 {
                                // Refused without reading the rest: stop sending it.
                                return Ok(Sent { early: Some(head), buf, whole: false });
                            }
                            // A server that answers before it reads the body, then reads it:
                            // the body goes on, the answer waits in the buffer.
                            early = Some(head);
                            watching = false;
                        } else if buf.len() >= response_head::MAX_HEAD_BYTES {
                            return Err(SendError::Protocol("head larger than 64 KiB"));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The write will fail too, and tell why.
                    Err(_) => watching = false,
                }
            }
        }
    }
    Ok(Sent {
        early,
        buf,
        whole: true,
    })
}

/// The write failed: the answer the server sent before it stopped reading, if one is there;
/// else the write's error.
async fn failed(
    io: &TcpStream,
    early: Option<Head>,
    buf: BytesMut,
    write_error: io::Error,
) -> Result<Sent, SendError> {
    let answer = match early {
        Some(head) => Ok((head, buf)),
        None => response_head::read_on(io, buf).await,
    };
    match answer {
        Ok((head, buf)) => Ok(Sent {
            early: Some(head),
            buf,
            whole: false,
        }),
        Err(_) => Err(SendError::Io(write_error)),
    }
}
