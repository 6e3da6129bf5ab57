//! The limit: the same reqwest/hyper/tokio stack llmr uses, no routing. It does what a program
//! must do anyway: serialise the request from a value and parse the response (every SSE event
//! of a stream) as JSON.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use crate::measure;
use crate::modes::{Kind, Mode};
use crate::row::{request_value, Batch, Driver};

pub struct Bare {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    /// For a row on OS threads: one single-threaded runtime and client per thread, kept across
    /// batches (as llmr's caller runtimes are, src/caller_runtime.rs).
    threads: Vec<(tokio::runtime::Runtime, reqwest::Client)>,
    /// A row on OS threads over HTTPS + HTTP/2: each call is spawned on the shared runtime and
    /// its client (one connection for all), the thread waiting for it — as llmr's blocking
    /// calls to an HTTP/2 origin go (src/caller_runtime.rs, `Http::execute`).
    threads_share_h2: bool,
    url: Arc<str>,
    stream: bool,
    concurrency: usize,
}

impl Bare {
    pub fn new(mode: &Mode, base: &str) -> Bare {
        // As llmr's own runtime and client (src/global.rs): one worker per core, no delay.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let threads = if mode.os_threads {
            (0..mode.concurrency)
                .map(|_| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    (rt, new_client(mode.tls))
                })
                .collect()
        } else {
            Vec::new()
        };
        Bare {
            rt,
            client: new_client(mode.tls),
            threads,
            threads_share_h2: mode.os_threads && mode.tls,
            url: if mode.kind == Kind::BareHold {
                format!("{base}/hold-{}/v1/chat/completions", mode.concurrency).into()
            } else {
                format!("{base}/d0/v1/chat/completions").into()
            },
            stream: matches!(mode.kind, Kind::BareStream | Kind::BareHold),
            concurrency: mode.concurrency,
        }
    }
}

/// `tls`: the stand-in's HTTPS side (HTTP/2, negotiated by ALPN), its certificate trusted.
fn new_client(tls: bool) -> reqwest::Client {
    let b = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024);
    let b = if tls {
        let pem = std::fs::read(crate::standin::CERT_PEM).expect("the stand-in's certificate");
        b.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
    } else {
        b
    };
    b.build().expect("client")
}

/// One call; the content chunks it received (0 for a completion), or None on failure.
async fn call(client: &reqwest::Client, url: &str, stream: bool) -> Option<u64> {
    call_seeing_chunks(client, url, stream, || {}).await
}

/// [`call`], running `on_first` when the first content chunk of a stream arrives.
async fn call_seeing_chunks(
    client: &reqwest::Client,
    url: &str,
    stream: bool,
    mut on_first: impl FnMut(),
) -> Option<u64> {
    let mut req = request_value();
    if stream {
        req["stream"] = Value::Bool(true);
    }
    let body = serde_json::to_vec(&req).ok()?;
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-bench")
        .body(body)
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    if !stream {
        let bytes = resp.bytes().await.ok()?;
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        return v["choices"][0]["message"]["content"]
            .is_string()
            .then_some(0);
    }
    let mut events = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunks = 0;
    while let Some(part) = events.next().await {
        buf.extend_from_slice(&part.ok()?);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event = &buf[..end];
            if let Some(data) = event.strip_prefix(b"data: ") {
                if data == b"[DONE]" {
                    return Some(chunks);
                }
                let v: Value = serde_json::from_slice(data).ok()?;
                if v["choices"][0]["delta"]["content"].is_string() {
                    chunks += 1;
                    if chunks == 1 {
                        on_first();
                    }
                }
            }
            buf.drain(..end + 2);
        }
    }
    Some(chunks)
}

impl Driver for Bare {
    fn batch(&mut self, n: usize) -> Batch {
        if !self.threads.is_empty() {
            return self.batch_on_threads(n);
        }
        let next = Arc::new(AtomicUsize::new(0));
        let per = n / self.concurrency.max(1) + 64;
        let workers: Vec<_> = (0..self.concurrency.min(n))
            .map(|_| {
                let (client, url, next, stream) = (
                    self.client.clone(),
                    self.url.clone(),
                    next.clone(),
                    self.stream,
                );
                self.rt.spawn(async move {
                    let mut b = Batch::with_capacity(per);
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        let t = Instant::now();
                        b.record(t, call(&client, &url, stream).await);
                    }
                    b
                })
            })
            .collect();
        self.rt.block_on(async {
            let mut all = Batch::with_capacity(n);
            for w in workers {
                all.absorb(w.await.expect("worker"));
            }
            all
        })
    }
}

impl Bare {
    /// `n` calls from the row's OS threads, each call blocking its thread until the answer (or
    /// the whole stream) is in: the model of `llmr_complete` / `llmr_stream`.
    fn batch_on_threads(&mut self, n: usize) -> Batch {
        let next = AtomicUsize::new(0);
        let per = n / self.threads.len() + 64;
        let (url, stream) = (&*self.url, self.stream);
        let shared = (self.rt.handle(), &self.client, &self.url);
        let share = self.threads_share_h2;
        std::thread::scope(|s| {
            let workers: Vec<_> = self
                .threads
                .iter()
                .map(|(rt, client)| {
                    let next = &next;
                    s.spawn(move || {
                        let mut b = Batch::with_capacity(per);
                        while next.fetch_add(1, Ordering::Relaxed) < n {
                            let t = Instant::now();
                            let got = if share {
                                let (client, url) = (shared.1.clone(), shared.2.clone());
                                let task = shared
                                    .0
                                    .spawn(async move { call(&client, &url, stream).await });
                                rt.block_on(task).ok().flatten()
                            } else {
                                rt.block_on(call(client, url, stream))
                            };
                            b.record(t, got);
                        }
                        b
                    })
                })
                .collect();
            let mut all = Batch::with_capacity(n);
            for w in workers {
                all.absorb(w.join().expect("worker"));
            }
            all
        })
    }
}

/// `concurrency` streams at once, each held open by the stand-in until all are open: what the
/// HTTP stack alone needs for as many streams as `llmr-hold-10000` holds.
pub fn hold_streams(mode: &Mode, base: &str) -> serde_json::Value {
    let bare = Bare::new(mode, base);
    let n = mode.concurrency;
    let rss_before = measure::rss_now_kib();
    let cpu0 = measure::cpu_micros();
    let t0 = Instant::now();
    let opened = Arc::new(AtomicUsize::new(0));
    let rss_all_open = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, url) = (bare.client.clone(), bare.url.clone());
            let (opened, rss_all_open) = (opened.clone(), rss_all_open.clone());
            bare.rt.spawn(async move {
                let first = || {
                    if opened.fetch_add(1, Ordering::SeqCst) + 1 == n {
                        rss_all_open.store(measure::rss_now_kib(), Ordering::SeqCst);
                    }
                };
                call_seeing_chunks(&client, &url, true, first)
                    .await
                    .is_some()
            })
        })
        .collect();
    let failures = bare.rt.block_on(async {
        let mut failures = 0;
        for t in tasks {
            if !matches!(
                tokio::time::timeout(Duration::from_secs(120), t).await,
                Ok(Ok(true))
            ) {
                failures += 1;
            }
        }
        failures
    });
    serde_json::json!({"name": mode.name, "streams": n, "secs": t0.elapsed().as_secs_f64(),
           "done": n, "failures": failures,
           "rss_before_kib": rss_before, "rss_all_open_kib": rss_all_open.load(Ordering::SeqCst),
           "peak_rss_kib": measure::peak_rss_kib(),
           "cpu_s": (measure::cpu_micros() - cpu0) as f64 / 1e6})
}
