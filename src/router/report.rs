//! `llmr_router_info` (what the router is) and `llmr_stats` (what it is doing). Neither ever
//! holds an API key: only ids, providers, models and base URLs go in.

use std::sync::atomic::Ordering;

use serde_json::{json, Map, Value};

use super::state::now_ms;
use super::{Router, AUTO, AUTO_LARGE};

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Router {
    /// The static view: deployments, groups, settings, fallbacks, profile.
    pub fn info_json(&self) -> String {
        let deployments: Vec<Value> = self
            .deployments
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let groups: Vec<&str> = self
                    .groups
                    .iter()
                    .filter(|(_, m)| m.contains(&i))
                    .map(|(n, _)| *n)
                    .collect();
                json!({
                    "id": &*d.cfg.id,
                    "provider": &*d.cfg.prefix,
                    "provider_key": d.cfg.spec.key,
                    "model": d.cfg.model_string(),
                    "api_base": d.cfg.api_base.as_deref().or(d.cfg.spec.default_base),
                    "rpm": d.cfg.rpm,
                    "tpm": d.cfg.tpm,
                    "max_input_tokens": d.max_input_tokens,
                    "max_output_tokens": d.max_output_tokens,
                    "groups": groups,
                })
            })
            .collect();
        let fallbacks: Vec<Value> = if self.has_large_group() {
            vec![json!({ AUTO: [AUTO_LARGE] })]
        } else {
            Vec::new()
        };
        let mut v = json!({
            "deployments": deployments,
            "routing_strategy": self.settings.routing_strategy.name(),
            "router_settings": self.settings.to_json(),
            "context_window_fallbacks": fallbacks,
            "profile": { "max_input_tokens": self.profile_max_input_tokens },
            "shared_state": self.shared_state_json(),
        });
        let mut s = v.take().to_string();
        self.redact(&mut s);
        s
    }

    /// The live view: per-deployment counters, usage this minute, latency, cooldowns.
    pub fn stats_json(&self) -> String {
        let now = now_ms();
        let mut totals = (0u64, 0u64, 0u64, 0u64, 0u64, 0.0f64);
        let deployments: Vec<Value> = self
            .deployments
            .iter()
            .map(|d| {
                let c = &d.counters;
                let usage = d.state.usage(now);
                let lat = d.state.latency();
                let mut failures = Map::new();
                let mut failed = 0;
                for (s, n) in c.failures() {
                    failures.insert(s.name().into(), n.into());
                    failed += n;
                }
                let attempts = c.attempts.load(Ordering::Relaxed);
                let successes = c.successes.load(Ordering::Relaxed);
                let (pt, ct) = (
                    c.prompt_tokens.load(Ordering::Relaxed),
                    c.completion_tokens.load(Ordering::Relaxed),
                );
                totals.0 += attempts;
                totals.1 += successes;
                totals.2 += failed;
                totals.3 += pt;
                totals.4 += ct;
                totals.5 += c.cost();
                let cooldown = d.state.cooldown(now).map(|cd| {
                    json!({
                        "until_unix_ms": cd.until_ms,
                        "remaining_s": round3(cd.until_ms.saturating_sub(now) as f64 / 1000.0),
                        "status": cd.status.name(),
                        "http_status": cd.http_status,
                        "reason": cd.reason,
                    })
                });
                let r = |x: Option<f64>| x.map(round3);
                json!({
                    "id": &*d.cfg.id,
                    "provider": &*d.cfg.prefix,
                    "model": d.cfg.model_string(),
                    "requests": attempts,
                    "successes": successes,
                    "failures": failures,
                    "in_flight": d.state.in_flight(),
                    "requests_this_minute": usage.requests,
                    "tokens_this_minute": usage.tokens,
                    "rpm": d.cfg.rpm,
                    "tpm": d.cfg.tpm,
                    "prompt_tokens": pt,
                    "completion_tokens": ct,
                    "cost_usd": c.cost(),
                    "latency_ms": {
                        "last": r(lat.last_ms),
                        "avg": r(lat.avg_ms),
                        "per_output_token_ewma": r(lat.per_token_ewma_ms),
                    },
                    "time_to_first_chunk_ms": {
                        "last": r(lat.last_ttft_ms),
                        "avg": r(lat.avg_ttft_ms),
                        "ewma": r(lat.ttft_ewma_ms),
                    },
                    "connect_ms": { "last": r(lat.last_connect_ms) },
                    "cooling_down": cooldown.is_some(),
                    "cooldown": cooldown,
                })
            })
            .collect();
        let mut s = json!({
            "deployments": deployments,
            "totals": {
                "requests": totals.0,
                "successes": totals.1,
                "failures": totals.2,
                "prompt_tokens": totals.3,
                "completion_tokens": totals.4,
                "cost_usd": totals.5,
            },
            "shared_state": self.shared_state_json(),
        })
        .to_string();
        self.redact(&mut s);
        s
    }
}
