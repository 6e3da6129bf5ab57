//! The rows of the bench: a list of named modes, each with what it runs and its config. A row
//! runs alone in its own child process (`llmr-bench row NAME`), so that its CPU seconds and
//! peak RSS are its own. To add a row (e.g. "llmr + Redis"), add a mode here: `router_settings`
//! is merged into the llmr config's `router_settings`.

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kind {
    /// The limit: reqwest, no routing; serialises each request, parses each response.
    BareComplete,
    /// reqwest streaming; parses every SSE event's JSON, counts the content chunks.
    BareStream,
    /// `llmr_complete` from `concurrency` OS threads.
    Complete,
    /// `llmr_complete_async`, `concurrency` requests kept in flight.
    CompleteAsync,
    /// `llmr_stream` from `concurrency` OS threads.
    Stream,
    /// `llmr_stream_async`, `concurrency` streams kept in flight.
    StreamAsync,
    /// `llmr_init` with `deployments` deployments: its time.
    Init,
    /// `llmr_complete` from 1 thread over `deployments` MOCK deployments of one group: the
    /// per-request cost of selection, without the network.
    Select,
    /// `concurrency` `llmr_stream_async` streams held open at once: RSS.
    HoldStreams,
    /// The same with the bare client: what the HTTP stack alone needs.
    BareHold,
    /// LiteLLM's Router in Python (bench/litellm_row.py).
    LiteLlm,
}

#[derive(Clone, Copy, Debug)]
pub struct Mode {
    pub name: &'static str,
    pub what: &'static str,
    pub kind: Kind,
    pub concurrency: usize,
    /// Deployments in the group `auto` (2 for the rows that talk to the stand-in).
    pub deployments: usize,
    /// Requests of the timed phase, in units of `BENCH_REQUESTS` / 20 (default 1,000).
    pub twentieths: usize,
    /// Extra `router_settings` (a JSON object's members, e.g. `"redis_url": "…"`). `$REDIS_URL`
    /// stands for the Redis server the suite started for the run.
    pub router_settings: &'static str,
    /// Extra members of every deployment entry (e.g. `"rpm": …`).
    pub entry: &'static str,
    /// Needs the Redis server the suite starts (skipped when there is none).
    pub redis: bool,
    /// Over HTTPS with HTTP/2 (the stand-in's TLS side), not plain HTTP/1.1.
    pub tls: bool,
    /// A bare row whose calls each block an OS thread of its own (`concurrency` threads, each
    /// driving a single-threaded runtime and client), as `llmr_complete` does: what the
    /// threads cost the HTTP stack alone, apart from routing.
    pub os_threads: bool,
    /// The bare-client row it is compared with, and the LiteLLM one.
    pub bare: Option<&'static str>,
    /// For a row of blocking calls from OS threads: the bare row on as many OS threads, which
    /// tells the threads' cost from routing's (reported beside the target ratio, not instead).
    pub threads_bare: Option<&'static str>,
    pub litellm: Option<&'static str>,
}

const fn mode(name: &'static str, what: &'static str, kind: Kind, concurrency: usize) -> Mode {
    Mode {
        name,
        what,
        kind,
        concurrency,
        deployments: 2,
        twentieths: 20,
        router_settings: "",
        entry: "",
        redis: false,
        tls: false,
        os_threads: false,
        bare: None,
        threads_bare: None,
        litellm: None,
    }
}

/// Limits no row reaches: every request is reserved, none refused.
const LIMITS: &str = r#""rpm": 1000000000, "tpm": 1000000000000"#;
/// Shared state in the run's Redis; a generous bound so that a loaded machine's slow answer is
/// measured, not replaced by the local fallback.
const REDIS: &str = r#""redis_url": "$REDIS_URL", "redis_prefix": "bench", "redis_timeout": 1"#;

pub const MODES: &[Mode] = &[
    mode("bare-c1", "reqwest, 1 in flight", Kind::BareComplete, 1),
    Mode {
        bare: Some("bare-c1"),
        litellm: Some("litellm-c1"),
        ..mode(
            "llmr-complete-1t",
            "llmr_complete, 1 thread",
            Kind::Complete,
            1,
        )
    },
    mode("bare-c64", "reqwest, 64 in flight", Kind::BareComplete, 64),
    Mode {
        os_threads: true,
        ..mode(
            "bare-64t",
            "reqwest, 64 OS threads, a blocking call each",
            Kind::BareComplete,
            64,
        )
    },
    Mode {
        bare: Some("bare-c64"),
        threads_bare: Some("bare-64t"),
        litellm: Some("litellm-c64"),
        ..mode(
            "llmr-complete-64t",
            "llmr_complete, 64 threads",
            Kind::Complete,
            64,
        )
    },
    Mode {
        bare: Some("bare-c64"),
        litellm: Some("litellm-c64"),
        ..mode(
            "llmr-async-64",
            "llmr_complete_async, 64 in flight",
            Kind::CompleteAsync,
            64,
        )
    },
    // What shared state costs: the same rows with rpm/tpm limits (each request reserves its
    // window before it is sent), in process and through Redis on loopback.
    Mode {
        bare: Some("bare-c1"),
        entry: LIMITS,
        ..mode(
            "llmr-limits-1t",
            "llmr_complete, 1 thread, rpm/tpm in process",
            Kind::Complete,
            1,
        )
    },
    Mode {
        bare: Some("bare-c1"),
        entry: LIMITS,
        router_settings: REDIS,
        redis: true,
        ..mode(
            "llmr-redis-1t",
            "llmr_complete, 1 thread, rpm/tpm in Redis",
            Kind::Complete,
            1,
        )
    },
    Mode {
        bare: Some("bare-c64"),
        entry: LIMITS,
        ..mode(
            "llmr-limits-async-64",
            "llmr_complete_async, 64 in flight, rpm/tpm in process",
            Kind::CompleteAsync,
            64,
        )
    },
    Mode {
        bare: Some("bare-c64"),
        entry: LIMITS,
        router_settings: REDIS,
        redis: true,
        ..mode(
            "llmr-redis-async-64",
            "llmr_complete_async, 64 in flight, rpm/tpm in Redis",
            Kind::CompleteAsync,
            64,
        )
    },
    // Over HTTPS + HTTP/2, as cloud providers are reached: there llmr sends through reqwest (its
    // own HTTP/1.1 client is for plain-HTTP origins, which the rows above use).
    Mode {
        tls: true,
        ..mode(
            "bare-c64-h2",
            "reqwest, 64 in flight, HTTPS + HTTP/2",
            Kind::BareComplete,
            64,
        )
    },
    Mode {
        tls: true,
        os_threads: true,
        ..mode(
            "bare-64t-h2",
            "reqwest, 64 OS threads waiting for calls on a shared runtime, HTTPS + HTTP/2",
            Kind::BareComplete,
            64,
        )
    },
    Mode {
        tls: true,
        bare: Some("bare-c64-h2"),
        threads_bare: Some("bare-64t-h2"),
        ..mode(
            "llmr-complete-64t-h2",
            "llmr_complete, 64 threads, HTTPS + HTTP/2",
            Kind::Complete,
            64,
        )
    },
    Mode {
        tls: true,
        bare: Some("bare-c64-h2"),
        ..mode(
            "llmr-async-64-h2",
            "llmr_complete_async, 64 in flight, HTTPS + HTTP/2",
            Kind::CompleteAsync,
            64,
        )
    },
    Mode {
        tls: true,
        ..mode(
            "bare-stream-c64-h2",
            "reqwest SSE, 64 in flight, HTTPS + HTTP/2",
            Kind::BareStream,
            64,
        )
    },
    Mode {
        tls: true,
        os_threads: true,
        ..mode(
            "bare-stream-64t-h2",
            "reqwest SSE, 64 OS threads waiting for streams on a shared runtime, HTTPS + HTTP/2",
            Kind::BareStream,
            64,
        )
    },
    Mode {
        tls: true,
        bare: Some("bare-stream-c64-h2"),
        threads_bare: Some("bare-stream-64t-h2"),
        ..mode(
            "llmr-stream-64t-h2",
            "llmr_stream, 64 threads, HTTPS + HTTP/2",
            Kind::Stream,
            64,
        )
    },
    Mode {
        tls: true,
        bare: Some("bare-stream-c64-h2"),
        ..mode(
            "llmr-stream-async-64-h2",
            "llmr_stream_async, 64 in flight, HTTPS + HTTP/2",
            Kind::StreamAsync,
            64,
        )
    },
    mode(
        "bare-c1000",
        "reqwest, 1,000 in flight",
        Kind::BareComplete,
        1000,
    ),
    Mode {
        bare: Some("bare-c1000"),
        litellm: Some("litellm-c64"),
        ..mode(
            "llmr-async-1000",
            "llmr_complete_async, 1,000 in flight",
            Kind::CompleteAsync,
            1000,
        )
    },
    mode(
        "bare-stream-c64",
        "reqwest SSE, 64 in flight",
        Kind::BareStream,
        64,
    ),
    Mode {
        os_threads: true,
        ..mode(
            "bare-stream-64t",
            "reqwest SSE, 64 OS threads, a blocking stream each",
            Kind::BareStream,
            64,
        )
    },
    Mode {
        bare: Some("bare-stream-c64"),
        threads_bare: Some("bare-stream-64t"),
        ..mode(
            "llmr-stream-64t",
            "llmr_stream, 64 threads",
            Kind::Stream,
            64,
        )
    },
    Mode {
        bare: Some("bare-stream-c64"),
        ..mode(
            "llmr-stream-async-64",
            "llmr_stream_async, 64 in flight",
            Kind::StreamAsync,
            64,
        )
    },
    Mode {
        twentieths: 1,
        ..mode(
            "litellm-c1",
            "LiteLLM Router, 1 in flight",
            Kind::LiteLlm,
            1,
        )
    },
    Mode {
        twentieths: 2,
        ..mode(
            "litellm-c64",
            "LiteLLM Router, 64 in flight",
            Kind::LiteLlm,
            64,
        )
    },
    Mode {
        deployments: 1000,
        ..mode(
            "llmr-init-1000",
            "llmr_init, 1,000 deployments",
            Kind::Init,
            1,
        )
    },
    Mode {
        deployments: 1,
        twentieths: 10,
        ..mode("select-1", "MOCK, 1 deployment", Kind::Select, 1)
    },
    Mode {
        deployments: 10,
        twentieths: 10,
        ..mode("select-10", "MOCK, 10 deployments", Kind::Select, 1)
    },
    Mode {
        deployments: 100,
        twentieths: 10,
        ..mode("select-100", "MOCK, 100 deployments", Kind::Select, 1)
    },
    Mode {
        deployments: 1000,
        twentieths: 10,
        ..mode("select-1000", "MOCK, 1,000 deployments", Kind::Select, 1)
    },
    mode(
        "bare-hold-10000",
        "10,000 reqwest streams open at once",
        Kind::BareHold,
        10_000,
    ),
    mode(
        "llmr-hold-10000",
        "10,000 llmr_stream_async open at once",
        Kind::HoldStreams,
        10_000,
    ),
    Mode {
        tls: true,
        ..mode(
            "llmr-hold-10000-h2",
            "10,000 llmr_stream_async open at once, HTTPS + HTTP/2 (100 streams per connection)",
            Kind::HoldStreams,
            10_000,
        )
    },
];

pub fn find(name: &str) -> Option<&'static Mode> {
    MODES.iter().find(|m| m.name == name)
}

/// `BENCH_REQUESTS` (default 20,000): requests of a full-size row's timed phase.
pub fn base_requests() -> usize {
    std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

impl Mode {
    pub fn requests(&self) -> usize {
        match self.kind {
            Kind::HoldStreams | Kind::BareHold => self.concurrency,
            Kind::Init => 5,
            _ => (base_requests() * self.twentieths / 20).max(1),
        }
    }

    pub fn warmup(&self) -> usize {
        (self.requests() / 10)
            .clamp(1, 500)
            .max(self.concurrency.min(1000))
    }

    /// The llmr config: the deployments (at the stand-in, or MOCK), usage-based routing.
    pub fn llmr_config(&self, base: &str) -> String {
        let tenant = if matches!(self.kind, Kind::HoldStreams | Kind::BareHold) {
            format!("hold-{}", self.concurrency)
        } else {
            String::new()
        };
        let entries: Vec<String> = (0..self.deployments)
            .map(|i| {
                if self.kind == Kind::Select {
                    format!(
                        r#"{{"id": {i}, "provider": "MOCK", "model_name": "mock-{i}",
                            "litellm_params": {{"mock_response": "Hello! How can I help you today?"}}}}"#
                    )
                } else {
                    let t = if tenant.is_empty() { format!("d{i}") } else { tenant.clone() };
                    let entry = if self.entry.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", self.entry)
                    };
                    format!(
                        r#"{{"id": {i}, "provider": "OPENAI", "model_name": "gpt-4o-mini",
                            "api_key": "sk-bench", "api_base": "{base}/{t}/v1"{entry}}}"#
                    )
                }
            })
            .collect();
        let extra = if self.router_settings.is_empty() {
            String::new()
        } else {
            let redis = std::env::var("LLMR_BENCH_REDIS_URL").unwrap_or_default();
            format!(", {}", self.router_settings.replace("$REDIS_URL", &redis))
        };
        format!(
            r#"{{"global_llm_configs": [{}],
                "router_settings": {{"routing_strategy": "usage-based-routing", "timeout": 120{extra}}}}}"#,
            entries.join(",")
        )
    }
}
