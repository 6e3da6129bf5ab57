//! The router: groups of deployments (`auto`, `auto-large`), selection, and the retry /
//! failover / context-window fallback loop. It knows no wire format and nothing of C.

mod backoff;
pub mod counters;
pub mod deployment;
mod execute;
mod index;
mod outcome;
mod report;
mod select;
pub mod shared;
pub mod state;

use std::sync::Arc;

use crate::config::{Config, RouterSettings};
use crate::errors::Error;
use crate::log;
use crate::providers;

pub use deployment::Deployment;
pub use execute::ChunkSink;

/// The group every usable deployment joins (the seed's `model_name: "auto"`).
pub const AUTO: &str = "auto";
/// Deployments whose context window is larger than the smallest: the fallback of `auto`.
pub const AUTO_LARGE: &str = "auto-large";

pub struct Router {
    pub deployments: Vec<Deployment>,
    /// `auto` and, when some window is larger than the smallest, `auto-large`.
    groups: Vec<(&'static str, Vec<usize>)>,
    pub settings: RouterSettings,
    /// The smallest known context window (the seed's profile).
    pub profile_max_input_tokens: Option<u64>,
    /// Every configured key, to scrub from anything leaving the library.
    secrets: Vec<Arc<str>>,
    /// The Redis store shared with other processes, when `redis_url` is set.
    pub shared: Option<Arc<shared::Shared>>,
    /// The groups' deployments by score, for selection.
    index: index::ScoreIndex,
}

impl Router {
    /// Builds a router from a parsed config. `previous` hands over the live state of
    /// deployments whose id survives (hot reload).
    pub fn build(
        config: Config,
        http: &crate::caller_runtime::Http,
        previous: Option<&Router>,
    ) -> Result<Router, Error> {
        let Config {
            deployments: configs,
            settings,
            warnings,
        } = config;
        for w in &warnings {
            log::warn("config entry skipped", &[("detail", w.as_str().into())]);
        }
        let mut deployments = Vec::with_capacity(configs.len());
        let mut secrets = Vec::new();
        // A reload onto the same Redis namespace keeps its connection and background task.
        let shared = settings.redis_url.as_ref().map(|url| {
            secrets.push(url.shared());
            if let Some(p) = shared::url_password(url.expose()) {
                secrets.push(Arc::from(p));
            }
            previous
                .and_then(|p| p.shared.clone())
                .filter(|s| s.same(url, &settings.redis_prefix, settings.redis_timeout))
                .unwrap_or_else(|| {
                    shared::Shared::start(url, &settings.redis_prefix, settings.redis_timeout)
                })
        });
        let mut skipped = warnings;
        // By id: a reload of 1,000 deployments would otherwise compare ids a million times.
        let previous_by_id: std::collections::HashMap<&str, &Deployment> = previous
            .map(|p| p.deployments.iter().map(|d| (&*d.cfg.id, d)).collect())
            .unwrap_or_default();
        for cfg in configs {
            let facts = deployment::model_facts(&cfg);
            let client = match providers::build_client(&cfg, facts.max_output_tokens, http) {
                Ok(c) => c,
                Err(why) => {
                    let w = format!(
                        "global_llm_configs[{}] (id {}): skipped: {why}",
                        cfg.index, cfg.id
                    );
                    log::warn("config entry skipped", &[("detail", w.as_str().into())]);
                    skipped.push(w);
                    continue;
                }
            };
            secrets.extend(cfg.secrets());
            let carried = previous_by_id
                .get(&*cfg.id)
                .map(|d| (d.state.clone(), d.counters.clone()));
            let state = carry_state(carried, shared.as_ref(), &cfg.id);
            deployments.push(Deployment::new(
                cfg,
                client,
                facts,
                settings.cooldown_time,
                state,
            ));
        }
        if deployments.is_empty() {
            return Err(Error::config(format!(
                "config: no usable deployment in `global_llm_configs`: {}",
                skipped.join("; ")
            )));
        }
        let all: Vec<usize> = (0..deployments.len()).collect();
        let profile_max_input_tokens = deployments.iter().filter_map(|d| d.max_input_tokens).min();
        let mut groups = vec![(AUTO, all)];
        if let Some(min) = profile_max_input_tokens {
            let large: Vec<usize> = (0..deployments.len())
                .filter(|&i| deployments[i].max_input_tokens.is_some_and(|w| w > min))
                .collect();
            if !large.is_empty() {
                groups.push((AUTO_LARGE, large));
            }
        }
        secrets.sort();
        secrets.dedup();
        let members: Vec<&[usize]> = groups.iter().map(|(_, m)| m.as_slice()).collect();
        let index = index::ScoreIndex::new(
            settings.routing_strategy,
            &deployments,
            &members,
            state::now_ms(),
        );
        for (i, d) in deployments.iter().enumerate() {
            d.state.watch(index.watch(i));
        }
        let router = Router {
            deployments,
            groups,
            settings,
            profile_max_input_tokens,
            secrets,
            shared,
            index,
        };
        log::info(
            "router initialized",
            &[
                ("deployments", router.deployments.len().into()),
                (
                    "routing_strategy",
                    router.settings.routing_strategy.name().into(),
                ),
                ("context_window_fallbacks", router.has_large_group().into()),
                ("shared_state", router.shared.is_some().into()),
            ],
        );
        Ok(router)
    }

    /// A group's position and members, by name.
    pub fn group(&self, name: &str) -> Option<(usize, &[usize])> {
        self.groups
            .iter()
            .position(|(n, _)| *n == name)
            .map(|g| (g, self.groups[g].1.as_slice()))
    }

    pub fn has_large_group(&self) -> bool {
        self.groups.len() > 1
    }

    /// `llmr_stats` / `llmr_router_info`: whether state is shared and Redis reachable.
    pub fn shared_state_json(&self) -> serde_json::Value {
        self.shared
            .as_ref()
            .map_or_else(|| serde_json::json!({"enabled": false}), |s| s.to_json())
    }

    /// Scrubs every configured key from an outgoing text.
    pub fn redact(&self, text: &mut String) {
        crate::errors::redact(text, &self.secrets);
    }
}

/// The live state a deployment takes into a new router: its old one when it is of the same
/// store (in process, or the same Redis), else a fresh one of the new store; counters stay.
fn carry_state(
    carried: Option<(Arc<dyn state::LiveState>, Arc<counters::Counters>)>,
    shared: Option<&Arc<shared::Shared>>,
    id: &str,
) -> Option<(Arc<dyn state::LiveState>, Arc<counters::Counters>)> {
    let same_store = |st: &Arc<dyn state::LiveState>| match (st.as_shared(), shared) {
        (None, None) => true,
        (Some(s), Some(sh)) => Arc::ptr_eq(s.shared(), sh),
        _ => false,
    };
    match (carried, shared) {
        (Some(c), _) if same_store(&c.0) => Some(c),
        (c, Some(sh)) => Some((sh.deployment(id), c.map_or_else(Arc::default, |c| c.1))),
        (c, None) => c.map(|(_, counters)| {
            (
                Arc::new(state::LocalState::default()) as Arc<dyn state::LiveState>,
                counters,
            )
        }),
    }
}
