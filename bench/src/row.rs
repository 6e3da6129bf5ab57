//! One row, in its own process: set up, warm up, time `requests()` calls, then count the
//! allocations of a short extra pass, and print the result as one `RESULT {json}` line.

use std::time::Instant;

use serde_json::{json, Value};

use crate::measure;
use crate::modes::{Kind, Mode};

/// What a batch of calls gave back.
#[derive(Default)]
pub struct Batch {
    pub latencies_ns: Vec<u64>,
    /// Content chunks received (streams).
    pub chunks: u64,
    pub failures: u64,
}

impl Batch {
    pub fn with_capacity(calls: usize) -> Batch {
        Batch {
            latencies_ns: Vec::with_capacity(calls),
            ..Batch::default()
        }
    }

    /// One call that began at `started`: its content chunks, or `None` when it failed.
    pub fn record(&mut self, started: Instant, chunks: Option<u64>) {
        match chunks {
            Some(c) => self.chunks += c,
            None => self.failures += 1,
        }
        self.latencies_ns.push(started.elapsed().as_nanos() as u64);
    }

    /// Another batch's calls added to these.
    pub fn absorb(&mut self, other: Batch) {
        self.latencies_ns.extend(other.latencies_ns);
        self.chunks += other.chunks;
        self.failures += other.failures;
    }
}

/// Something that runs `n` calls at the row's concurrency.
pub trait Driver {
    fn batch(&mut self, n: usize) -> Batch;
}

/// The request every row sends, built as a program would: a value serialised per call.
pub fn request_value() -> Value {
    json!({"model": "auto", "messages": [{"role": "user", "content": "Say hello"}]})
}

pub fn run(mode: &Mode, base: &str) {
    measure::raise_nofile();
    // The stand-in's TLS side is the same port; llmr trusts its certificate through the file,
    // read when llmr_init builds the first HTTP client.
    let tls_base;
    let base = if mode.tls {
        std::env::set_var("SSL_CERT_FILE", crate::standin::CERT_PEM);
        tls_base = base.replacen("http://", "https://", 1);
        &tls_base
    } else {
        base
    };
    let result = match mode.kind {
        Kind::BareComplete | Kind::BareStream => {
            let mut d = crate::bare::Bare::new(mode, base);
            timed(mode, &mut d)
        }
        Kind::BareHold => crate::bare::hold_streams(mode, base),
        Kind::Complete | Kind::Stream | Kind::CompleteAsync | Kind::StreamAsync | Kind::Select => {
            crate::c_abi::init(&mode.llmr_config(base));
            let mut d = crate::c_abi::Calls::new(mode);
            timed(mode, &mut d)
        }
        Kind::Init => crate::c_abi::time_init(mode, base),
        Kind::HoldStreams => {
            crate::c_abi::init(&mode.llmr_config(base));
            crate::c_abi::hold_streams(mode)
        }
        Kind::LiteLlm => unreachable!("the LiteLLM row runs in Python"),
    };
    println!("RESULT {result}");
}

fn timed(mode: &Mode, d: &mut dyn Driver) -> Value {
    let n = mode.requests();
    let warm = d.batch(mode.warmup());
    let cpu0 = measure::cpu_micros();
    let t0 = Instant::now();
    let mut b = d.batch(n);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (measure::cpu_micros() - cpu0) as f64 / 1e6;
    let (p50, p99) = measure::percentiles_us(&mut b.latencies_ns);
    // Allocations: a pass of its own, so that counting costs the timed phase nothing.
    let a_n = (n / 10).clamp(mode.concurrency.min(1000), 2000);
    measure::counting(true);
    let a = d.batch(a_n);
    measure::counting(false);
    let allocs = measure::allocations() as f64 / a_n as f64;
    json!({
        "name": mode.name, "requests": n, "secs": secs,
        "rps": n as f64 / secs, "chunks_per_s": b.chunks as f64 / secs,
        "p50_us": p50, "p99_us": p99, "cpu_s_per_1k": cpu * 1000.0 / n as f64,
        "peak_rss_kib": measure::peak_rss_kib(), "allocs_per_req": allocs,
        "failures": b.failures + warm.failures + a.failures,
    })
}
