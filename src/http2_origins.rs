//! Which HTTPS origins speak HTTP/2, learnt once per origin, so that a burst of requests to one
//! shares a connection instead of each opening its own.
//!
//! A client learns that a server speaks HTTP/2 only when a TLS handshake has finished (ALPN).
//! Until then hyper cannot know that requests could share a connection, so every request started
//! meanwhile opens its own: 10,000 streams started together opened 7,118 TLS connections to one
//! host. A client that speaks HTTP/2 only ("prior knowledge") lets one request connect and the
//! others wait for that connection. So the first request to an HTTPS origin starts a handshake
//! whose only purpose is to ask which protocol the server picks (the request itself goes on as
//! before, not waiting); requests arriving meanwhile wait for the answer, about as long as they
//! would have spent connecting, and then go out on HTTP/2-only clients if the server picked h2,
//! else as before.
//!
//! The probe completes a handshake, reads the server's choice and closes: no request, no header,
//! no credential goes over it. It checks the certificate against the roots reqwest's
//! connections trust, so a server llmr would refuse never sees a handshake completed; a probe
//! that fails leaves the origin to go out as before (and to be refused there, with reqwest's
//! error).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::sync::watch;
use tokio_rustls::rustls;

/// A probe that has not been answered in this time counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed probe (the host down, a handshake refused) requests go out as before and the
/// origin is asked again after this long.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// By host, then port: a lookup borrows the request's host, no key is built per request.
type Table = HashMap<String, Vec<(u16, Known)>>;

#[derive(Default)]
pub struct Origins {
    known: Arc<Mutex<Table>>,
}

#[derive(Clone)]
enum Known {
    /// A probe is running; its answer (whether the server picked h2) comes on the channel.
    Asking(watch::Receiver<Option<bool>>),
    Http2,
    /// Not HTTP/2; after a failed probe, until the time it is asked again.
    Other {
        ask_again: Option<Instant>,
    },
}

impl Origins {
    /// Whether a request to `url` should go out on an HTTP/2-only client: its origin is HTTPS
    /// and known to speak HTTP/2. The first request to an origin starts the probe and gets
    /// `false` at once; the ones after it wait for the probe's answer.
    pub async fn speaks_http2(&self, url: &Url) -> bool {
        if url.scheme() != "https" {
            return false;
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        let mut answer = {
            let mut known = lock(&self.known);
            let ports = match known.get_mut(host) {
                Some(ports) => ports,
                None => known.entry(host.to_owned()).or_default(),
            };
            let at = ports.iter().position(|(p, _)| *p == port);
            match at.map(|i| &ports[i].1) {
                Some(Known::Http2) => return true,
                // (A probe whose runtime went away before it answered is started again.)
                Some(Known::Asking(answer)) if answer.has_changed().is_ok() => answer.clone(),
                Some(Known::Other { ask_again: None }) => return false,
                Some(Known::Other {
                    ask_again: Some(at),
                }) if Instant::now() < *at => return false,
                _ => {
                    let (tx, rx) = watch::channel(None);
                    match at {
                        Some(i) => ports[i].1 = Known::Asking(rx),
                        None => ports.push((port, Known::Asking(rx))),
                    }
                    tokio::spawn(ask(self.known.clone(), url.clone(), port, tx));
                    return false;
                }
            }
        };
        let h2 = match answer.wait_for(Option::is_some).await {
            Ok(h2) => h2.unwrap_or(false),
            Err(_) => false,
        };
        h2
    }

    /// Whether `url`'s origin is known to speak HTTP/2 right now, without waiting for or
    /// starting a probe: `None` when no probe has answered and none is running (then
    /// [`Origins::speaks_http2`], called on the shared runtime, would start one).
    pub fn known_http2(&self, url: &Url) -> Option<bool> {
        if url.scheme() != "https" {
            return Some(false);
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Some(false);
        };
        let known = lock(&self.known);
        let ports = known.get(host)?;
        match &ports.iter().find(|(p, _)| *p == port)?.1 {
            Known::Http2 => Some(true),
            Known::Asking(answer) if answer.has_changed().is_ok() => Some(false),
            Known::Other { ask_again: None } => Some(false),
            Known::Other {
                ask_again: Some(at),
            } if Instant::now() < *at => Some(false),
            _ => None,
        }
    }

    /// A request sent as HTTP/2 failed: the origin is asked again by the next request (the
    /// server may have stopped speaking HTTP/2, or be another one now).
    pub fn forget(&self, url: &Url) {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return;
        };
        if let Some(ports) = lock(&self.known).get_mut(host) {
            ports.retain(|(p, k)| *p != port || !matches!(k, Known::Http2));
        }
    }
}

fn lock(known: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    known.lock().unwrap_or_else(|p| p.into_inner())
}

fn set(known: &Mutex<Table>, host: &str, port: u16, to: Known) {
    let mut known = lock(known);
    let ports = known.entry(host.to_owned()).or_default();
    match ports.iter_mut().find(|(p, _)| *p == port) {
        Some(entry) => entry.1 = to,
        None => ports.push((port, to)),
    }
}

/// The probe of `url`'s origin; its answer goes into the table and to `tx`.
async fn ask(known: Arc<Mutex<Table>>, url: Url, port: u16, tx: watch::Sender<Option<bool>>) {
    let picked = tokio::time::timeout(PROBE_TIMEOUT, picks_http2(&url, port)).await;
    let answer = match picked {
        Ok(Ok(true)) => Known::Http2,
        Ok(Ok(false)) => Known::Other { ask_again: None },
        Ok(Err(e)) => {
            crate::log::debug(
                "HTTP/2 probe failed",
                &[
                    ("host", url.host_str().unwrap_or("").into()),
                    ("error", e.to_string().into()),
                ],
            );
            Known::Other {
                ask_again: Some(Instant::now() + ASK_AGAIN_AFTER),
            }
        }
        Err(_) => Known::Other {
            ask_again: Some(Instant::now() + ASK_AGAIN_AFTER),
        },
    };
    let h2 = matches!(answer, Known::Http2);
    if let Some(host) = url.host_str() {
        set(&known, host, port, answer);
    }
    tx.send_replace(Some(h2));
}

/// Opens a TLS connection offering h2 and http/1.1 and says whether the server picked h2.
async fn picks_http2(url: &Url, port: u16) -> std::io::Result<bool> {
    // An IPv6 host comes in brackets.
    let host = url.host_str().unwrap_or("");
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let tls = tokio_rustls::TlsConnector::from(probe_config())
        .connect(name, tcp)
        .await?;
    Ok(tls.get_ref().1.alpn_protocol() == Some(b"h2"))
}

fn probe_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| Arc::new(crate::tls_config::h2_or_http1()))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn state(o: &Origins, host: &str, port: u16) -> Option<Known> {
        lock(&o.known)
            .get(host)
            .and_then(|ports| ports.iter().find(|(p, _)| *p == port))
            .map(|(_, k)| k.clone())
    }

    #[test]
    fn plain_http_is_never_probed() {
        let o = Origins::default();
        let url = Url::parse("http://127.0.0.1:9/v1/chat/completions").unwrap();
        assert!(!rt().block_on(o.speaks_http2(&url)));
        assert!(lock(&o.known).is_empty());
    }

    #[test]
    fn an_origin_whose_probe_failed_is_asked_again_only_after_a_while() {
        // A port nothing listens on: the probe's connect is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Url::parse(&format!("https://127.0.0.1:{port}/v1")).unwrap();
        let o = Origins::default();
        rt().block_on(async {
            assert!(!o.speaks_http2(&url).await, "the first goes on at once");
            assert!(matches!(
                state(&o, "127.0.0.1", port),
                Some(Known::Asking(_))
            ));
            assert!(
                !o.speaks_http2(&url).await,
                "the second waits for the answer"
            );
            let Some(Known::Other {
                ask_again: Some(at),
            }) = state(&o, "127.0.0.1", port)
            else {
                panic!("a failed probe is asked again later");
            };
            assert!(at > Instant::now() + ASK_AGAIN_AFTER / 2);
            // Until then no probe starts.
            assert!(!o.speaks_http2(&url).await);
            assert!(matches!(
                state(&o, "127.0.0.1", port),
                Some(Known::Other { .. })
            ));
            // After it, the next request asks again.
            let past = Known::Other {
                ask_again: Some(Instant::now()),
            };
            set(&o.known, "127.0.0.1", port, past);
            assert!(!o.speaks_http2(&url).await);
            assert!(matches!(
                state(&o, "127.0.0.1", port),
                Some(Known::Asking(_))
            ));
        });
    }

    #[test]
    fn forgetting_drops_only_what_was_known_of_http2() {
        let o = Origins::default();
        set(&o.known, "a.example", 443, Known::Http2);
        set(&o.known, "a.example", 8443, Known::Http2);
        set(&o.known, "b.example", 443, Known::Other { ask_again: None });
        rt().block_on(async {
            let a = Url::parse("https://a.example/v1").unwrap();
            assert!(o.speaks_http2(&a).await);
            o.forget(&a);
            o.forget(&Url::parse("https://b.example/v1").unwrap());
        });
        assert!(state(&o, "a.example", 443).is_none());
        assert!(matches!(state(&o, "a.example", 8443), Some(Known::Http2)));
        assert!(matches!(
            state(&o, "b.example", 443),
            Some(Known::Other { ask_again: None })
        ));
    }
}
