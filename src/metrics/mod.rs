//! `llmr_metrics`: the router's counters as Prometheus text exposition.
//!
//! Names and labels follow the OpenTelemetry GenAI semantic conventions where they have one
//! (`gen_ai_client_token_usage`, `gen_ai_client_operation_duration_seconds`,
//! `gen_ai_client_operation_time_to_first_chunk_seconds`; labels `gen_ai_provider_name`,
//! `gen_ai_request_model`, `gen_ai_operation_name`, `gen_ai_token_type`, `error_type`), and
//! are `llmr_*` for the router's own. Every series of a deployment carries `deployment_id`,
//! `gen_ai_provider_name` and `gen_ai_request_model` — never a key: the text is scrubbed of
//! every configured key like every other output.
//!
//! Everything is read from atomics the request path updates (see `router::counters`);
//! rendering takes no lock a request takes.

pub mod exposition;
pub mod histogram;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::errors::Status;
use crate::router::{Deployment, Router};
use exposition::Exposition;

/// Requests that ended before any deployment was tried (every one cooling down, at its limit,
/// or too small), by status.
static UNROUTED: [AtomicU64; Status::ALL.len()] = [const { AtomicU64::new(0) }; Status::ALL.len()];

pub fn count_unrouted(status: Status) {
    UNROUTED[status.code() as usize].fetch_add(1, Ordering::Relaxed);
}

/// The `gen_ai.provider.name` of a LiteLLM prefix: the convention's well-known value where it
/// has one, else the prefix itself.
pub fn otel_provider_name(prefix: &str) -> &str {
    match prefix {
        "azure" => "azure.ai.openai",
        "bedrock" => "aws.bedrock",
        "gemini" => "gcp.gemini",
        "vertex_ai" => "gcp.vertex_ai",
        "mistral" => "mistral_ai",
        "xai" => "x_ai",
        "watsonx" => "ibm.watsonx.ai",
        other => other,
    }
}

const REQUESTS: &str = "llmr_requests_total";
const ATTEMPTS: &str = "llmr_attempts_total";
const RETRIES: &str = "llmr_retries_total";
const FALLBACKS: &str = "llmr_fallbacks_total";
const COOLDOWNS: &str = "llmr_cooldowns_total";
const COOLING: &str = "llmr_cooling_down";
const IN_FLIGHT: &str = "llmr_in_flight";
const COST: &str = "llmr_cost_usd_total";
const TOKENS: &str = "gen_ai_client_token_usage";
const DURATION: &str = "gen_ai_client_operation_duration_seconds";
const TTFT: &str = "gen_ai_client_operation_time_to_first_chunk_seconds";

/// A family with one sample per deployment: name, type, help, value.
type PerDeployment = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Deployment) -> f64,
);

/// A deployment's labels and then `extra`.
fn with<'a>(id: &[(&'a str, &'a str); 3], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    id.iter().chain(extra).copied().collect()
}

/// Renders every metric. Without a router (before `llmr_init`, after `llmr_shutdown`) the
/// process-wide ones are there and the per-deployment families are empty.
pub fn render(router: Option<&Router>, requests_in_flight: usize) -> String {
    let mut e = Exposition::default();
    let deployments = router.map_or(&[][..], |r| &r.deployments[..]);
    let now = crate::router::state::now_ms();
    let ids: Vec<[(&str, &str); 3]> = deployments
        .iter()
        .map(|d| {
            [
                ("deployment_id", &*d.cfg.id),
                ("gen_ai_provider_name", otel_provider_name(&d.cfg.prefix)),
                ("gen_ai_request_model", d.cfg.model.as_str()),
            ]
        })
        .collect();
    e.family(
        "llmr_initialized",
        "gauge",
        "1 while the router is initialised, else 0.",
    );
    e.sample(
        "llmr_initialized",
        &[],
        f64::from(u8::from(router.is_some())),
    );

    e.family(
        REQUESTS,
        "counter",
        "Routed requests by final status, on the deployment that answered or failed last (no deployment: none was tried).",
    );
    for (d, id) in deployments.iter().zip(&ids) {
        let mut ok_seen = false;
        for (s, n) in d.counters.outcomes() {
            ok_seen |= s == Status::Ok;
            e.sample(REQUESTS, &with(id, &[("status", s.name())]), n as f64);
        }
        if !ok_seen {
            e.sample(REQUESTS, &with(id, &[("status", "ok")]), 0.0);
        }
    }
    for s in Status::ALL {
        let n = UNROUTED[s.code() as usize].load(Ordering::Relaxed);
        if n > 0 {
            let l = [
                ("deployment_id", ""),
                ("gen_ai_provider_name", ""),
                ("gen_ai_request_model", ""),
                ("status", s.name()),
            ];
            e.sample(REQUESTS, &l, n as f64);
        }
    }

    e.family(
        ATTEMPTS,
        "counter",
        "Upstream attempts by outcome (retries and fallbacks included).",
    );
    for (d, id) in deployments.iter().zip(&ids) {
        let ok = d.counters.successes.load(Ordering::Relaxed);
        e.sample(ATTEMPTS, &with(id, &[("status", "ok")]), ok as f64);
        for (s, n) in d.counters.failures() {
            e.sample(ATTEMPTS, &with(id, &[("status", s.name())]), n as f64);
        }
    }

    let simple: [PerDeployment; 4] = [
        (
            RETRIES,
            "counter",
            "Attempts made again after this deployment failed (on it or on another one).",
            |d| d.counters.retries.load(Ordering::Relaxed) as f64,
        ),
        (
            COOLDOWNS,
            "counter",
            "Times this deployment was put in cooldown.",
            |d| d.counters.cooldowns.load(Ordering::Relaxed) as f64,
        ),
        (
            IN_FLIGHT,
            "gauge",
            "Upstream attempts running on this deployment now.",
            |d| f64::from(d.state.in_flight()),
        ),
        (
            COST,
            "counter",
            "What this deployment's answers cost, in US dollars, at the model table's (or the config's) prices; answers of unknown price count 0.",
            |d| d.counters.cost(),
        ),
    ];
    for (name, kind, help, value) in simple {
        e.family(name, kind, help);
        for (d, id) in deployments.iter().zip(&ids) {
            e.sample(name, id, value(d));
        }
    }

    e.family(
        COOLING,
        "gauge",
        "1 while this deployment is cooling down, else 0.",
    );
    for (d, id) in deployments.iter().zip(&ids) {
        e.sample(COOLING, id, f64::from(u8::from(d.state.is_cooling(now))));
    }

    e.family(
        FALLBACKS,
        "counter",
        "Attempts moved away from this deployment: to another one after a failure (failover), or to a larger context window after an overflow (context_window).",
    );
    for (d, id) in deployments.iter().zip(&ids) {
        let c = &d.counters;
        for (kind, n) in [
            ("failover", c.failovers.load(Ordering::Relaxed)),
            (
                "context_window",
                c.context_window_fallbacks.load(Ordering::Relaxed),
            ),
        ] {
            e.sample(FALLBACKS, &with(id, &[("kind", kind)]), n as f64);
        }
    }

    e.family(
        "llmr_requests_in_flight",
        "gauge",
        "Requests the library is running now (waiting to retry included).",
    );
    e.sample("llmr_requests_in_flight", &[], requests_in_flight as f64);

    e.family(
        "llmr_log_messages_dropped_total",
        "counter",
        "Log messages dropped because the logger set with llmr_set_logger could not keep up.",
    );
    e.sample(
        "llmr_log_messages_dropped_total",
        &[],
        crate::logger::dropped() as f64,
    );

    e.family(
        TOKENS,
        "histogram",
        "Tokens used per answer (gen_ai.client.token.usage), by gen_ai_token_type input or output.",
    );
    for (d, id) in deployments.iter().zip(&ids) {
        for (ty, h) in [
            ("input", &d.counters.input_tokens),
            ("output", &d.counters.output_tokens),
        ] {
            let l = with(
                id,
                &[("gen_ai_operation_name", "chat"), ("gen_ai_token_type", ty)],
            );
            e.histogram(TOKENS, &l, &h.view());
        }
    }

    e.family(
        DURATION,
        "histogram",
        "Duration of upstream attempts in seconds (gen_ai.client.operation.duration); error_type is the llmr status of a failed one.",
    );
    for (d, id) in deployments.iter().zip(&ids) {
        for s in Status::ALL {
            let h = &d.counters.duration[s.code() as usize];
            if s != Status::Ok && h.is_empty() {
                continue;
            }
            let error_type = if s == Status::Ok { "" } else { s.name() };
            let l = with(
                id,
                &[
                    ("gen_ai_operation_name", "chat"),
                    ("error_type", error_type),
                ],
            );
            e.histogram(DURATION, &l, &h.view());
        }
    }

    e.family(
        TTFT,
        "histogram",
        "Time to the first chunk of streams that answered, in seconds (gen_ai.client.operation.time_to_first_chunk).",
    );
    for (d, id) in deployments.iter().zip(&ids) {
        let h = &d.counters.time_to_first_chunk;
        if !h.is_empty() {
            let l = with(id, &[("gen_ai_operation_name", "chat")]);
            e.histogram(TTFT, &l, &h.view());
        }
    }

    let mut text = e.finish();
    if let Some(r) = router {
        r.redact(&mut text);
    }
    text
}
