//! Per-deployment counters of this process, for `llmr_stats`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::errors::Status;

#[derive(Default)]
pub struct Counters {
    pub attempts: AtomicU64,
    pub successes: AtomicU64,
    failures: [AtomicU64; 13],
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    /// In micro-dollars, so that it can be an atomic.
    cost_micros: AtomicU64,
}

impl Counters {
    pub fn failure(&self, s: Status) {
        self.failures[s.code() as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn failures(&self) -> impl Iterator<Item = (Status, u64)> + '_ {
        Status::ALL
            .iter()
            .map(|s| (*s, self.failures[s.code() as usize].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
    }

    pub fn success(&self, prompt: u64, completion: u64, cost: f64) {
        self.successes.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion, Ordering::Relaxed);
        self.cost_micros
            .fetch_add((cost * 1e6).round() as u64, Ordering::Relaxed);
    }

    pub fn cost(&self) -> f64 {
        self.cost_micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}
