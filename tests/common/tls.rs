//! The test certificate (tests/data/tls: a self-signed one for 127.0.0.1 and localhost) as a
//! TLS server's configuration.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::PrivateKeyDer;
use tokio_rustls::rustls::ServerConfig;

pub fn dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls")
}

/// A server configuration with the test certificate, offering `alpn` (none: no ALPN).
pub fn server_config(alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let cert = std::fs::read(dir().join("selfsigned-cert.der")).unwrap();
    let key = std::fs::read(dir().join("selfsigned-key.der")).unwrap();
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.into()], PrivateKeyDer::Pkcs8(key.into()))
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS server on 127.0.0.1 with the test certificate; stopped (its runtime, so every
/// connection, gone) when dropped.
pub struct Server {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a server offering `alpn` that runs `serve` (as a task of its own two-thread
/// runtime) for every connection whose TLS handshake completed.
pub fn serve<F, Fut>(alpn: &[&[u8]], serve: F) -> Server
where
    F: Fn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(alpn));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let serve = Arc::new(serve);
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let tcp = tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(_) => return,
                    },
                };
                let (acceptor, serve) = (acceptor.clone(), serve.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls).await;
                    }
                });
            }
        });
        // Dropping the runtime here ends every connection's task.
    });
    Server {
        port,
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// Answers every request on an HTTP/1.1 keep-alive connection (`tls`) with a completion saying
/// `content`, until the client closes it; `before_each` runs (and is awaited) before each
/// answer, once the request has been read.
pub async fn answer_completions<S, F, Fut>(tls: S, content: &str, mut before_each: F)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let mut tls = tokio::io::BufReader::new(tls);
    loop {
        let mut length = 0;
        loop {
            let mut line = String::new();
            if tls.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if tls.read_exact(&mut body).await.is_err() {
            return;
        }
        before_each().await;
        let answer = serde_json::json!({"id": "chatcmpl-h1", "object": "chat.completion",
            "created": 1, "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})
        .to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        let w = tls.get_mut();
        if w.write_all(head.as_bytes()).await.is_err()
            || w.write_all(answer.as_bytes()).await.is_err()
            || w.flush().await.is_err()
        {
            return;
        }
    }
}
