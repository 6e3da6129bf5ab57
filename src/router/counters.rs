//! Per-deployment counters of this process, for `llmr_stats` and `llmr_metrics`. Atomics
//! only: recording never takes a lock.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::errors::Status;
use crate::metrics::histogram::{
    AtomicF64, Histogram, DURATION_SECONDS, TIME_TO_FIRST_CHUNK_SECONDS, TOKENS,
};

const STATUSES: usize = Status::ALL.len();

pub struct Counters {
    /// Upstream attempts made.
    pub attempts: AtomicU64,
    /// Attempts that answered.
    pub successes: AtomicU64,
    /// Attempts that failed, by status.
    failures: [AtomicU64; STATUSES],
    /// Routed requests that ended here (answered by this deployment, or failed on it last), by
    /// final status (`Ok` included).
    outcomes: [AtomicU64; STATUSES],
    /// Attempts made again after this deployment failed (on it or on another one).
    pub retries: AtomicU64,
    /// Attempts moved to another deployment after this one failed (not an overflow).
    pub failovers: AtomicU64,
    /// Attempts moved to a larger context window after this one overflowed.
    pub context_window_fallbacks: AtomicU64,
    /// Times this deployment was put in cooldown.
    pub cooldowns: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    cost_usd: AtomicF64,
    /// Attempt durations in seconds, by outcome (index: status code, 0 = answered).
    pub duration: [Histogram; STATUSES],
    /// Time to the first chunk of streams that answered, in seconds.
    pub time_to_first_chunk: Histogram,
    pub input_tokens: Histogram,
    pub output_tokens: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            attempts: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: Default::default(),
            outcomes: Default::default(),
            retries: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            context_window_fallbacks: AtomicU64::new(0),
            cooldowns: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            cost_usd: AtomicF64::default(),
            duration: std::array::from_fn(|_| Histogram::new(DURATION_SECONDS)),
            time_to_first_chunk: Histogram::new(TIME_TO_FIRST_CHUNK_SECONDS),
            input_tokens: Histogram::new(TOKENS),
            output_tokens: Histogram::new(TOKENS),
        }
    }
}

/// Counts by status, the non-zero ones.
fn nonzero(counts: &[AtomicU64; STATUSES]) -> impl Iterator<Item = (Status, u64)> + '_ {
    Status::ALL
        .iter()
        .map(|s| (*s, counts[s.code() as usize].load(Ordering::Relaxed)))
        .filter(|(_, n)| *n > 0)
}

impl Counters {
    /// A failed attempt and how long it took.
    pub fn failure(&self, s: Status, seconds: f64) {
        self.failures[s.code() as usize].fetch_add(1, Ordering::Relaxed);
        self.duration[s.code() as usize].observe(seconds);
    }

    pub fn failures(&self) -> impl Iterator<Item = (Status, u64)> + '_ {
        nonzero(&self.failures)
    }

    /// A routed request that ended on this deployment, with its final status.
    pub fn outcome(&self, s: Status) {
        self.outcomes[s.code() as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn outcomes(&self) -> impl Iterator<Item = (Status, u64)> + '_ {
        nonzero(&self.outcomes)
    }

    /// An attempt that answered: its usage, cost (when the prices are known) and timings.
    pub fn success(&self, answer: &Answered) {
        self.successes.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(answer.prompt_tokens, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(answer.completion_tokens, Ordering::Relaxed);
        if let Some(c) = answer.cost_usd {
            self.cost_usd.add(c);
        }
        self.duration[Status::Ok.code() as usize].observe(answer.seconds);
        if let Some(t) = answer.time_to_first_chunk_seconds {
            self.time_to_first_chunk.observe(t);
        }
        self.input_tokens.observe(answer.prompt_tokens as f64);
        self.output_tokens.observe(answer.completion_tokens as f64);
    }

    /// What this deployment's answers cost, in US dollars (answers of unknown price count 0).
    pub fn cost(&self) -> f64 {
        self.cost_usd.get()
    }
}

/// What one successful attempt used and took.
pub struct Answered {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: Option<f64>,
    pub seconds: f64,
    pub time_to_first_chunk_seconds: Option<f64>,
}
