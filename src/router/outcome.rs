//! One routed request's record: its attempts and fallbacks as they happen, then its outcome —
//! counted (stats, metrics), put in the answer's `llmr` object, and logged as one structured
//! line at debug. Never the prompt or the answer, except at trace when
//! `router_settings.log_content` asks for it.
//!
//! A request whose future is dropped half-way (`llmr_cancel`, `llmr_shutdown`) still gets its
//! outcome: `cancelled`, when the record is dropped unfinished.

use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::Value;

use super::counters::Answered;
use super::state::Timing;
use super::Router;
use crate::errors::{Error, Status};
use crate::log::{self, Level};
use crate::types::{ChatRequest, ChatResponse, LlmrMeta};

pub(super) struct Outcome<'r> {
    router: &'r Router,
    started: Instant,
    stream: bool,
    pub attempts: u32,
    /// `kind:deployment_id` for each retry or fallback taken (the answer's `llmr.fallbacks`).
    pub fallbacks: Vec<String>,
    /// The deployment of the attempt under way, or of the last one.
    current: Option<usize>,
    done: bool,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl<'r> Outcome<'r> {
    pub fn new(router: &'r Router, stream: bool) -> Outcome<'r> {
        Outcome {
            router,
            started: Instant::now(),
            stream,
            attempts: 0,
            fallbacks: Vec::new(),
            current: None,
            done: false,
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// An attempt on deployment `i` begins; `previous` is the failure that led to it, if any:
    /// a retry, and a failover when it moves to another deployment — or, after an overflow, a
    /// context-window fallback.
    pub fn attempt(&mut self, i: usize, previous: Option<&(Error, usize)>) {
        if let Some((e, j)) = previous {
            let c = &self.router.deployments[*j].counters;
            if e.status == Status::ContextOverflow {
                c.context_window_fallbacks.fetch_add(1, Ordering::Relaxed);
            } else {
                c.retries.fetch_add(1, Ordering::Relaxed);
                if i != *j {
                    c.failovers.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.attempts += 1;
        self.current = Some(i);
        self.router.deployments[i]
            .counters
            .attempts
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Deployment `i` answered: counts it, fills in the answer's `llmr` object, logs it.
    pub fn answered(
        &mut self,
        i: usize,
        resp: &mut ChatResponse,
        timing: &Timing,
        req: &ChatRequest,
    ) {
        self.done = true;
        let d = &self.router.deployments[i];
        let usage = resp.usage.unwrap_or_default();
        let cost_usd = d.cost(usage.prompt_tokens, usage.completion_tokens);
        d.counters.success(&Answered {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cost_usd,
            seconds: timing.total_ms / 1000.0,
            time_to_first_chunk_seconds: timing.ttft_ms.map(|t| t / 1000.0),
        });
        d.counters.outcome(Status::Ok);
        let latency_ms = round3(self.started.elapsed().as_secs_f64() * 1000.0);
        let ttft_ms = timing.ttft_ms.map(round3);
        if log::enabled(Level::Debug) {
            log::debug(
                "request completed",
                &[
                    ("deployment_id", (&*d.cfg.id).into()),
                    ("provider", (&*d.cfg.prefix).into()),
                    ("model", d.cfg.model.as_str().into()),
                    ("stream", self.stream.into()),
                    ("attempts", self.attempts.into()),
                    ("fallbacks", self.fallbacks.clone().into()),
                    ("status", Status::Ok.name().into()),
                    ("latency_ms", latency_ms.into()),
                    ("time_to_first_chunk_ms", ttft_ms.into()),
                    ("connect_ms", timing.connect_ms.map(round3).into()),
                    ("prompt_tokens", usage.prompt_tokens.into()),
                    ("completion_tokens", usage.completion_tokens.into()),
                    ("cost_usd", cost_usd.into()),
                ],
            );
        }
        if self.router.settings.log_content && log::enabled(Level::Trace) {
            let content = |v: Result<Value, _>| v.unwrap_or(Value::Null);
            log::trace(
                "request content",
                &[
                    ("deployment_id", (&*d.cfg.id).into()),
                    ("messages", content(serde_json::to_value(&req.messages))),
                    ("choices", content(serde_json::to_value(&resp.choices))),
                ],
            );
        }
        resp.llmr = Some(LlmrMeta {
            deployment_id: d.cfg.id.to_string(),
            provider: d.cfg.prefix.to_string(),
            attempts: self.attempts,
            latency_ms,
            time_to_first_chunk_ms: ttft_ms,
            fallbacks: std::mem::take(&mut self.fallbacks),
            cost_usd,
        });
    }

    /// The request failed for good; `last` is the deployment that failed last, if any was
    /// tried. Fills in who failed and how often, scrubs keys, counts and logs it.
    pub fn failed(&mut self, mut e: Error, last: Option<usize>) -> Error {
        self.done = true;
        if let Some(i) = last {
            let d = &self.router.deployments[i];
            if e.deployment_id.is_none() {
                e.deployment_id = Some(d.cfg.id.clone());
            }
            if e.provider.is_none() {
                e.provider = Some(d.cfg.prefix.clone());
            }
        }
        if self.attempts > 0 {
            e.attempts = Some(self.attempts);
        }
        self.router.redact(&mut e.message);
        self.count(last, e.status);
        if log::enabled(Level::Debug) {
            let d = last.map(|i| &self.router.deployments[i]);
            log::debug(
                "request failed",
                &[
                    ("deployment_id", e.deployment_id.as_deref().into()),
                    ("provider", d.map(|d| &*d.cfg.prefix).into()),
                    ("model", d.map(|d| d.cfg.model.as_str()).into()),
                    ("stream", self.stream.into()),
                    ("attempts", self.attempts.into()),
                    ("fallbacks", self.fallbacks.clone().into()),
                    ("status", e.status.name().into()),
                    ("http_status", e.http_status.into()),
                    (
                        "latency_ms",
                        round3(self.started.elapsed().as_secs_f64() * 1000.0).into(),
                    ),
                    ("error", e.message.as_str().into()),
                ],
            );
        }
        e
    }

    fn count(&self, deployment: Option<usize>, status: Status) {
        match deployment {
            Some(i) => self.router.deployments[i].counters.outcome(status),
            None => crate::metrics::count_unrouted(status),
        }
    }
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The request's future was dropped: cancelled from outside, mid-way.
        self.count(self.current, Status::Cancelled);
        if log::enabled(Level::Debug) {
            let d = self.current.map(|i| &self.router.deployments[i]);
            log::debug(
                "request cancelled",
                &[
                    ("deployment_id", d.map(|d| &*d.cfg.id).into()),
                    ("provider", d.map(|d| &*d.cfg.prefix).into()),
                    ("stream", self.stream.into()),
                    ("attempts", self.attempts.into()),
                    ("fallbacks", self.fallbacks.clone().into()),
                    ("status", Status::Cancelled.name().into()),
                    (
                        "latency_ms",
                        round3(self.started.elapsed().as_secs_f64() * 1000.0).into(),
                    ),
                ],
            );
        }
    }
}
