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
    /// US dollars per prompt and per completion token: the config's (`input_cost_per_token`,
    /// `output_cost_per_token` in `litellm_params`), else the model table's; `None` when neither
    /// knows the model.
    pub prices: Option<(f64, f64)>,
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
    pub prices: Option<(f64, f64)>,
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
        prices: price(
            num("input_cost_per_token"),
            num("output_cost_per_token"),
            info.as_ref(),
        ),
    }
}

/// The per-token prices: each one the config's if given, else the model table's; `None` when
/// the config gives neither and the table publishes none for the model (0 and 0 there means
/// unpublished; a config's explicit 0 means free).
fn price(
    input: Option<f64>,
    output: Option<f64>,
    info: Option<&model_info::ModelInfo>,
) -> Option<(f64, f64)> {
    let valid = |p: f64| p.is_finite() && p >= 0.0;
    let input = input.filter(|p| valid(*p));
    let output = output.filter(|p| valid(*p));
    let info = info.filter(|i| i.input_cost_per_token > 0.0 || i.output_cost_per_token > 0.0);
    if input.is_none() && output.is_none() && info.is_none() {
        return None;
    }
    Some((
        input
            .or(info.map(|i| i.input_cost_per_token))
            .unwrap_or(0.0),
        output
            .or(info.map(|i| i.output_cost_per_token))
            .unwrap_or(0.0),
    ))
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
            prices: facts.prices,
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

    /// The cost of an answer from its usage, in US dollars; `None` when the prices are unknown.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> Option<f64> {
        self.prices
            .map(|(input, output)| prompt_tokens as f64 * input + completion_tokens as f64 * output)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn info(input: f64, output: f64) -> model_info::ModelInfo {
        model_info::ModelInfo {
            max_input_tokens: 1000,
            max_output_tokens: 100,
            input_cost_per_token: input,
            output_cost_per_token: output,
            supports_tools: true,
        }
    }

    #[test]
    fn prices_come_from_the_config_then_the_table() {
        let table = info(2e-6, 8e-6);
        assert_eq!(price(None, None, Some(&table)), Some((2e-6, 8e-6)));
        assert_eq!(price(Some(1e-6), None, Some(&table)), Some((1e-6, 8e-6)));
        assert_eq!(
            price(Some(0.0), Some(0.0), None),
            Some((0.0, 0.0)),
            "free, said so"
        );
        assert_eq!(price(None, Some(3e-6), None), Some((0.0, 3e-6)));
    }

    #[test]
    fn unknown_prices_give_no_cost() {
        assert_eq!(
            price(None, None, None),
            None,
            "a model the table does not know"
        );
        assert_eq!(
            price(None, None, Some(&info(0.0, 0.0))),
            None,
            "0 and 0: unpublished"
        );
        assert_eq!(
            price(Some(f64::NAN), Some(-1.0), None),
            None,
            "nonsense is ignored"
        );
    }
}
