//! llmr's HTTP/1.1 client for plain-HTTP origins (`llmr::http1`) against servers that answer in
//! every framing and break in the ways servers do: what it sends, when it reuses a connection
//! and when it must not, and that a body cut short is an error, never a short answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use llmr::http1::{Http1, SendError};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server that reads each request whole (head and `Content-Length` body) and answers with
/// what `answer` gives for the connection's n-th request, then closes or keeps the connection
/// as told. It counts connections and keeps every request's text.
struct Server {
    url: Url,
    connections: Arc<AtomicUsize>,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

/// An answer: the pieces written (with a pause between them, and `wait` before the first),
/// and whether the server closes the connection after it.
struct Answer {
    pieces: Vec<Vec<u8>>,
    close: bool,
    wait: Duration,
}

fn answer(text: &str) -> Answer {
    Answer {
        pieces: vec![text.as_bytes().to_vec()],
        close: false,
        wait: Duration::ZERO,
    }
}

impl Server {
    async fn start(answer: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Server {
        Server::on(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            usize::MAX,
            answer,
        )
    }

    /// On `listener`, accepting at most `accept` connections.
    fn on(
        listener: TcpListener,
        accept: usize,
        answer: impl Fn(usize) -> Answer + Send + Sync + 'static,
    ) -> Server {
        let url = Url::parse(&format!(
            "http://{}/v1/chat/completions",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let (c, r) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                if c.load(Ordering::SeqCst) == accept {
                    // Listening still, accepting no more.
                    std::future::pending::<()>().await;
                }
                let Ok((io, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (answer, r) = (answer.clone(), r.clone());
                tokio::spawn(async move {
                    let _ = serve(io, &*answer, &r).await;
                });
            }
        });
        Server {
            url,
            connections,
            requests,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut io: TcpStream,
    answer: &(dyn Fn(usize) -> Answer + Send + Sync),
    requests: &std::sync::Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        // One request: its head, then Content-Length bytes.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let got = io.read(&mut chunk).await?;
            if got == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..got]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let got = io.read(&mut chunk).await?;
            if got == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..got]);
        }
        let request: Vec<u8> = buf.drain(..head_end + length).collect();
        requests
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&request).to_string());
        let a = answer(n);
        n += 1;
        tokio::time::sleep(a.wait).await;
        for (i, p) in a.pieces.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            io.write_all(p).await?;
        }
        if a.close {
            return Ok(());
        }
    }
}

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer sk-test"));
    h
}

/// The answer's status and body, read to its end.
async fn post(client: &Http1, s: &Server) -> Result<(u16, String), String> {
    let resp = client
        .post(&s.url, &headers(), b"{\"model\":\"m\"}")
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| format!("{e:?}"))?;
    Ok((status, String::from_utf8(body.to_vec()).unwrap()))
}

const OK_LENGTH: &str = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

#[tokio::test]
async fn a_request_goes_out_whole_and_its_connection_is_reused() {
    let s = Server::start(|_| answer(OK_LENGTH)).await;
    let c = Http1::default();
    for _ in 0..3 {
        assert_eq!(post(&c, &s).await.unwrap(), (200, "hello".into()));
    }
    assert_eq!(s.connections(), 1, "one connection for three requests");
    assert_eq!(c.idle_count(), 1);
    let req = s.requests.lock().unwrap()[0].clone();
    let port = s.url.port().unwrap();
    assert_eq!(
        req,
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer sk-test\r\n\
             user-agent: llmr/{}\r\naccept: */*\r\ncontent-length: 13\r\n\r\n{{\"model\":\"m\"}}",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[tokio::test]
async fn every_framing_is_read_to_its_end() {
    let answers = [
        // chunked, one byte at a time
        Answer {
            pieces: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nchunky\r\n3;x=y\r\nbod\r\n0\r\nt: 1\r\n\r\n"
                .bytes()
                .map(|b| vec![b])
                .collect(),
            close: false,
            wait: Duration::ZERO,
        },
        // Content-Length, head and body apart
        Answer {
            pieces: vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec(), b"hello".to_vec()],
            close: false,
            wait: Duration::ZERO,
        },
        // until the server closes
        Answer {
            pieces: vec![b"HTTP/1.1 200 OK\r\n\r\nto the end".to_vec()],
            close: true,
            wait: Duration::ZERO,
        },
        // 100 Continue first; no body
        answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"),
    ];
    let answers = Arc::new(std::sync::Mutex::new(answers.into_iter()));
    let s = Server::start(move |_| answers.lock().unwrap().next().unwrap()).await;
    let c = Http1::default();
    assert_eq!(post(&c, &s).await.unwrap(), (200, "chunkybod".into()));
    assert_eq!(post(&c, &s).await.unwrap(), (200, "hello".into()));
    assert_eq!(post(&c, &s).await.unwrap(), (200, "to the end".into()));
    assert_eq!(
        s.connections(),
        1,
        "chunked and Content-Length bodies leave it reusable"
    );
    assert_eq!(
        c.idle_count(),
        0,
        "a body that ended with the connection leaves nothing"
    );
    assert_eq!(post(&c, &s).await.unwrap(), (204, String::new()));
    assert_eq!(s.connections(), 2);
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_and_its_connection_is_gone() {
    for cut in [
        "HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nonly this",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n20\r\nnot thirty-two",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nfull\r\n",
    ] {
        let s = Server::start(move |_| Answer {
            pieces: vec![cut.as_bytes().to_vec()],
            close: true,
            wait: Duration::ZERO,
        })
        .await;
        let c = Http1::default();
        let e = post(&c, &s).await.unwrap_err();
        assert!(e.contains("before the answer was complete"), "{cut:?}: {e}");
        assert_eq!(c.idle_count(), 0);
    }
}

#[tokio::test]
async fn a_server_that_closes_an_idle_connection_costs_no_request() {
    // The first answer's connection is closed by the server right after it (as a server with
    // a short keep-alive does); the next request must not go out on it.
    let s = Server::start(|n| Answer {
        pieces: vec![OK_LENGTH.as_bytes().to_vec()],
        close: n == 0,
        wait: Duration::ZERO,
    })
    .await;
    let c = Http1::default();
    assert_eq!(post(&c, &s).await.unwrap(), (200, "hello".into()));
    assert_eq!(c.idle_count(), 1, "the answer said nothing of closing");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(post(&c, &s).await.unwrap(), (200, "hello".into()));
    assert_eq!(s.connections(), 2);
}

#[tokio::test]
async fn connections_that_must_not_carry_another_request_are_not_kept() {
    for head in [
        "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello",
        "HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        // More than the answer: what follows would be read as the next answer.
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n\r\n",
    ] {
        let s = Server::start(move |_| answer(head)).await;
        let c = Http1::default();
        assert_eq!(
            post(&c, &s).await.unwrap(),
            (200, "hello".into()),
            "{head:?}"
        );
        assert_eq!(c.idle_count(), 0, "{head:?}");
    }
    // HTTP/1.0 that asks to keep it.
    let s = Server::start(|_| {
        answer("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 5\r\n\r\nhello")
    })
    .await;
    let c = Http1::default();
    post(&c, &s).await.unwrap();
    post(&c, &s).await.unwrap();
    assert_eq!(s.connections(), 1);
}

#[tokio::test]
async fn a_stream_dropped_before_its_end_closes_its_connection() {
    let s = Server::start(|_| Answer {
        pieces: vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\ndata: 1\r\n".to_vec(),
            b"7\r\ndata: 2\r\n".to_vec(),
            b"0\r\n\r\n".to_vec(),
        ],
        close: false,
        wait: Duration::ZERO,
    })
    .await;
    let c = Http1::default();
    let resp = c.post(&s.url, &headers(), b"{}").await.unwrap();
    let mut body = resp.bytes_stream();
    assert_eq!(&body.next().await.unwrap().unwrap()[..], b"data: 1");
    drop(body);
    assert_eq!(c.idle_count(), 0);
    assert_eq!(post(&c, &s).await.unwrap(), (200, "data: 1data: 2".into()));
    assert_eq!(s.connections(), 2);
    assert_eq!(c.idle_count(), 1, "read to its end, kept");
}

#[tokio::test]
async fn what_is_not_http_is_refused_with_a_reason() {
    let s = Server::start(|_| Answer {
        pieces: vec![b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()],
        close: true,
        wait: Duration::ZERO,
    })
    .await;
    let e = Http1::default()
        .post(&s.url, &headers(), b"{}")
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Protocol(_)), "{e}");
    // Nothing listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/v1/chat/completions")).unwrap();
    let e = Http1::default()
        .post(&url, &headers(), b"{}")
        .await
        .unwrap_err();
    assert!(e.is_connect() && !e.is_timeout(), "{e}");
    assert!(!e.to_string().contains("sk-test"));
}

#[tokio::test]
async fn a_reader_that_stops_at_the_last_data_still_frees_the_connection() {
    // A stream's reader stops at its last event (`data: [DONE]`) and never asks for the body's
    // end: the connection must be free for the next request all the same.
    for wire in [
        "HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\ndata: [DONE]",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nc\r\ndata: [DONE]\r\n0\r\n\r\n",
    ] {
        let s = Server::start(move |_| answer(wire)).await;
        let c = Http1::default();
        for _ in 0..2 {
            let resp = c.post(&s.url, &headers(), b"{}").await.unwrap();
            let mut body = resp.bytes_stream();
            assert_eq!(&body.next().await.unwrap().unwrap()[..], b"data: [DONE]");
            assert_eq!(c.idle_count(), 1, "{wire:?}");
            drop(body);
        }
        assert_eq!(s.connections(), 1, "{wire:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_a_connect_takes_a_connection_freed_meanwhile() {
    // A server that takes one connection, ever, and answers its first request after 300 ms;
    // its accept queue (room for 2) is then filled, so that a second connect hangs (the kernel
    // drops its SYNs). The second request must go out on the first connection once that one's
    // answer is in, as hyper's pool would send it, not wait on its own connect.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let s = Server::on(listener, 1, |n| Answer {
        wait: if n == 0 {
            Duration::from_millis(300)
        } else {
            Duration::ZERO
        },
        ..answer(OK_LENGTH)
    });
    let c = Http1::default();
    let first = {
        let (c, url) = (c.clone(), s.url.clone());
        tokio::spawn(async move {
            let resp = c.post(&url, &headers(), b"{}").await.unwrap();
            resp.bytes().await.unwrap()
        })
    };
    while s.connections() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let fillers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(TcpStream::connect(addr)))
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = tokio::time::timeout(Duration::from_secs(10), post(&c, &s))
        .await
        .expect("answered on the freed connection, not left waiting on its own connect");
    assert_eq!(second.unwrap(), (200, "hello".into()));
    assert_eq!(&first.await.unwrap()[..], b"hello");
    assert_eq!(s.connections(), 1);
    for f in fillers {
        f.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_every_connection_leaves_nothing_behind() {
    let s = Server::start(|_| {
        answer("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello")
    })
    .await;
    let c = Http1::default();
    for _ in 0..50 {
        assert_eq!(post(&c, &s).await.unwrap(), (200, "hello".into()));
    }
    assert_eq!(s.connections(), 50);
    assert_eq!(c.idle_count(), 0);
    assert!(c.waiting_count() <= 1, "{} places left", c.waiting_count());
}

/// What a server does with a request whose body it does not want (`early_server`).
#[derive(Clone, Copy, Debug)]
enum Early {
    /// Answers 413 after the request's head and closes without reading the body, as Go's
    /// net/http does past 256 KiB: its side shut at once, the connection closed 500 ms later
    /// (a reset then, with the body unread): the rest of the write fails.
    RefuseAndClose,
    /// Answers 413 and neither reads nor closes: the write can never finish.
    RefuseAndStall,
    /// Answers 413, waits, then reads the body to its end and serves the next request: the
    /// client must not send another request on a connection whose body it stopped sending
    /// (the server would read it as the rest of the body, and never answer).
    RefuseThenRead,
    /// Sends a 200 head at once, then reads the whole body, then the answer's body.
    HeadThenRead,
}

const TOO_LARGE: &str = "HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\n\
    content-length: 40\r\n\r\n{\"error\":{\"message\":\"prompt too large\"}}";

/// A server that reads each request's head and then does what `how` says; it counts
/// connections and the body bytes it read.
async fn early_server(how: Early) -> (Url, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!(
        "http://{}/v1/chat",
        listener.local_addr().unwrap()
    ))
    .unwrap();
    let (connections, body_read) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, b) = (connections.clone(), body_read.clone());
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_early(io, how, b.clone()));
        }
    });
    (url, connections, body_read)
}

async fn serve_early(mut io: TcpStream, how: Early, body_read: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        buf.drain(..head_end);
        match how {
            Early::RefuseAndClose => {
                let _ = io.write_all(TOO_LARGE.as_bytes()).await;
                let _ = io.shutdown().await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                return;
            }
            Early::RefuseAndStall => {
                let _ = io.write_all(TOO_LARGE.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            Early::RefuseThenRead => {
                let _ = io.write_all(TOO_LARGE.as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Early::HeadThenRead => {
                let _ = io
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
                    .await;
            }
        }
        // The body, to its end; what came past it is the next request's.
        while buf.len() < length {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..length);
        body_read.fetch_add(length, Ordering::SeqCst);
        if matches!(how, Early::HeadThenRead) && io.write_all(b"hello").await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_given_before_the_request_was_read_is_the_answer() {
    // 32 MiB: more than the sockets' buffers hold, so the server's choice shows in the write.
    let big = vec![b'a'; 32 << 20];
    for how in [
        Early::RefuseAndClose,
        Early::RefuseAndStall,
        Early::RefuseThenRead,
        Early::HeadThenRead,
    ] {
        let (url, connections, body_read) = early_server(how).await;
        let client = Http1::default();
        let post = |body: Vec<u8>| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let resp = tokio::time::timeout(
                    Duration::from_secs(20),
                    client.post(&url, &headers(), &body),
                )
                .await
                .map_err(|_| "no answer in 20 s".to_string())?
                .map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let text = resp.text().await.map_err(|e| format!("{e:?}"))?;
                Ok::<_, String>((status, text))
            }
        };
        let got = post(big.clone()).await;
        match how {
            Early::HeadThenRead => {
                assert_eq!(got, Ok((200, "hello".to_string())), "{how:?}");
                assert_eq!(body_read.load(Ordering::SeqCst), big.len(), "{how:?}");
            }
            _ => assert_eq!(
                got,
                Ok((
                    413,
                    "{\"error\":{\"message\":\"prompt too large\"}}".to_string()
                )),
                "{how:?}"
            ),
        }
        if matches!(how, Early::RefuseThenRead | Early::HeadThenRead) {
            // The next request: on the same connection only when the first went out whole.
            let again = post(b"{}".to_vec()).await;
            let expect_connections = if matches!(how, Early::HeadThenRead) {
                1
            } else {
                2
            };
            let status = if matches!(how, Early::HeadThenRead) {
                200
            } else {
                413
            };
            assert_eq!(again.map(|(s, _)| s), Ok(status), "{how:?}");
            assert_eq!(
                connections.load(Ordering::SeqCst),
                expect_connections,
                "{how:?}"
            );
        }
    }
}
