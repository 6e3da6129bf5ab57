//! A deployment as the router sees it: its config, its client, what the model table says of
//! it, and its live state.

use std::sync::Arc;
use std::time::Duration;

use crate::config::DeploymentConfig;
use crate::model_info;
use crate::providers::ChatClient;

use super::counters::Counters;
use super::state::{LiveState, LocalState};

pub struct Deployment {
    pub cfg: DeploymentConfig,
    pub client: Arc<dyn ChatClient>,
    /// The context window: the config's override, else the model table's.
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub input_cost_per_token: f64,
    pub output_cost_per_token: f64,
    /// Relative share for `simple-shuffle`: `weight`, else rpm, else tpm, else 1.
    pub share: f64,
    pub cooldown_time: Duration,
    pub state: Arc<dyn LiveState>,
    /// This process's counters (stats), kept across a reload like the state.
    pub counters: Arc<Counters>,
}

/// What the model table knows of a deployment, with the config's overrides applied.
pub struct ModelFacts {
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub input_cost_per_token: f64,
    pub output_cost_per_token: f64,
}

pub fn model_facts(cfg: &DeploymentConfig) -> ModelFacts {
    let info = model_info::lookup_deployment(cfg.base_model.as_deref(), &cfg.prefix, &cfg.model);
    let num = |k: &str| cfg.params.get(k).and_then(serde_json::Value::as_f64);
    ModelFacts {
        max_input_tokens: cfg
            .max_input_tokens
            .or(info.map(|i| u64::from(i.max_input_tokens)))
            .filter(|n| *n > 0),
        max_output_tokens: cfg
            .max_output_tokens
            .or(info.map(|i| u64::from(i.max_output_tokens)))
            .filter(|n| *n > 0),
        input_cost_per_token: num("input_cost_per_token")
            .or(info.map(|i| i.input_cost_per_token))
            .unwrap_or(0.0),
        output_cost_per_token: num("output_cost_per_token")
            .or(info.map(|i| i.output_cost_per_token))
            .unwrap_or(0.0),
    }
}

impl Deployment {
    pub fn new(
        cfg: DeploymentConfig,
        client: Arc<dyn ChatClient>,
        facts: ModelFacts,
        default_cooldown: Duration,
        carried: Option<(Arc<dyn LiveState>, Arc<Counters>)>,
    ) -> Deployment {
        let share = cfg
            .weight
            .or(cfg.rpm.map(|r| r as f64))
            .or(cfg.tpm.map(|t| t as f64))
            .unwrap_or(1.0);
        Deployment {
            cooldown_time: cfg.cooldown_time.unwrap_or(default_cooldown),
            max_input_tokens: facts.max_input_tokens,
            max_output_tokens: facts.max_output_tokens,
            input_cost_per_token: facts.input_cost_per_token,
            output_cost_per_token: facts.output_cost_per_token,
            share,
            client,
            state: carried.as_ref().map_or_else(
                || Arc::new(LocalState::default()) as Arc<dyn LiveState>,
                |c| c.0.clone(),
            ),
            counters: carried.map_or_else(Arc::default, |c| c.1),
            cfg,
        }
    }

    pub fn id(&self) -> &Arc<str> {
        &self.cfg.id
    }

    /// The cost of an answer from its usage, in US dollars.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        prompt_tokens as f64 * self.input_cost_per_token
            + completion_tokens as f64 * self.output_cost_per_token
    }
}

/// Holds a deployment's in-flight count up for as long as it lives, even if the request's future
/// is dropped (cancelled) half-way.
pub struct InFlight<'a>(&'a dyn LiveState);

impl<'a> InFlight<'a> {
    pub fn enter(state: &'a dyn LiveState) -> InFlight<'a> {
        state.enter();
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}
