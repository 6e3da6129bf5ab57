//! The live state of one deployment: usage this minute, in-flight count, recent failures,
//! cooldown, latency. Behind [`LiveState`] so that a store shared between processes (Redis) can
//! replace the in-process one without touching the routing logic.
//!
//! Times are wall-clock Unix milliseconds, so that state can be shared between processes.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use crate::errors::Status;

use super::index::Watch;

/// Wall-clock Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why a deployment is cooling down, and until when.
#[derive(Clone, Debug, PartialEq)]
pub struct Cooldown {
    pub until_ms: u64,
    pub status: Status,
    pub http_status: Option<u16>,
    pub reason: String,
}

/// Usage in the current minute window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MinuteUsage {
    pub requests: u64,
    pub tokens: u64,
}

/// Latency figures, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencyView {
    /// Exponentially weighted latency per output token (completions) — the latency strategy's key.
    pub per_token_ewma_ms: Option<f64>,
    /// Exponentially weighted time to first chunk (streams).
    pub ttft_ewma_ms: Option<f64>,
    pub last_ms: Option<f64>,
    pub avg_ms: Option<f64>,
    pub last_ttft_ms: Option<f64>,
    pub avg_ttft_ms: Option<f64>,
    pub last_connect_ms: Option<f64>,
}

/// One finished request's timings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    pub total_ms: f64,
    pub output_tokens: u64,
    pub ttft_ms: Option<f64>,
    pub connect_ms: Option<f64>,
}

/// The state operations the router needs, per deployment.
pub trait LiveState: Send + Sync {
    /// Reserves one request and `tokens` against the limits of this minute, before the request
    /// is sent, so that concurrent requests cannot overshoot. `Err(seconds)` says when the
    /// window frees up.
    fn reserve(&self, rpm: Option<u64>, tpm: Option<u64>, tokens: u64, now: u64)
        -> Result<(), f64>;
    /// Replaces a reservation's estimate with what the request really used.
    fn settle(&self, reserved: u64, actual: u64, now: u64);
    /// Gives a reservation back whole: the request was never sent.
    fn release(&self, reserved: u64, now: u64);
    fn usage(&self, now: u64) -> MinuteUsage;
    fn in_flight(&self) -> u32;
    fn enter(&self);
    fn leave(&self);
    /// Counts a failure; returns the failures within the last minute, this one included.
    fn note_failure(&self, now: u64) -> u32;
    fn cool_down(&self, cooldown: Cooldown);
    /// The cooldown in force at `now`, if any.
    fn cooldown(&self, now: u64) -> Option<Cooldown>;
    /// Fast check used on every selection.
    fn is_cooling(&self, now: u64) -> bool;
    fn record_timing(&self, t: Timing);
    fn latency(&self) -> LatencyView;
    /// Who to tell when the score this state gives a deployment may have changed (the router's
    /// selection index); a new router replaces the previous one's.
    fn watch(&self, watch: Watch);
    /// The Redis-backed store, whose reservation the router awaits (one round trip).
    fn as_shared(&self) -> Option<&super::shared::SharedState> {
        None
    }
}

pub const MINUTE_MS: u64 = 60_000;
/// Weight of the newest sample in the moving averages.
const EWMA_ALPHA: f64 = 0.3;

#[derive(Default)]
struct Window {
    minute: u64,
    usage: MinuteUsage,
}

impl Window {
    fn roll(&mut self, now: u64) {
        let m = now / MINUTE_MS;
        if m != self.minute {
            self.minute = m;
            self.usage = MinuteUsage::default();
        }
    }
}

#[derive(Default)]
struct Latency {
    view: LatencyView,
    samples: u64,
    sum_ms: f64,
    ttft_samples: u64,
    ttft_sum_ms: f64,
}

/// The in-process state: a small lock per deployment, held for a few instructions, never
/// across an await.
#[derive(Default)]
pub struct LocalState {
    window: Mutex<Window>,
    in_flight: AtomicU32,
    /// Failure times within the last minute (capped: only the count matters).
    failures: Mutex<std::collections::VecDeque<u64>>,
    cooldown_until: AtomicU64,
    cooldown: Mutex<Option<Cooldown>>,
    latency: Mutex<Latency>,
    watch: RwLock<Option<Watch>>,
}

impl LocalState {
    /// Tells the index that this deployment's score may have changed (never called with one
    /// of this state's locks held).
    pub(super) fn changed(&self) {
        if let Some(w) = self
            .watch
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            w.changed();
        }
    }

    /// Counts a request and its tokens without checking the limits: the shared store
    /// reserved them already (this process's own usage, should Redis be lost later).
    pub fn add(&self, tokens: u64, now: u64) {
        {
            let mut w = lock(&self.window);
            w.roll(now);
            w.usage.requests += 1;
            w.usage.tokens = w.usage.tokens.saturating_add(tokens);
        }
        self.changed();
    }

    /// Failures within the last minute.
    pub fn failures(&self, now: u64) -> u32 {
        let f = lock(&self.failures);
        f.iter()
            .filter(|t| now.saturating_sub(**t) < MINUTE_MS)
            .count() as u32
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these tiny locks leaves consistent data: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One step of the moving averages (the shared store's view of other processes' samples too).
pub(super) fn ewma(old: Option<f64>, sample: f64) -> f64 {
    match old {
        Some(o) => o + EWMA_ALPHA * (sample - o),
        None => sample,
    }
}

impl LiveState for LocalState {
    fn reserve(
        &self,
        rpm: Option<u64>,
        tpm: Option<u64>,
        tokens: u64,
        now: u64,
    ) -> Result<(), f64> {
        let mut w = lock(&self.window);
        w.roll(now);
        let rpm_full = rpm.is_some_and(|l| w.usage.requests + 1 > l);
        // A request larger than the whole tpm still goes when the window is empty: it could never
        // go otherwise, and the provider is the judge of it.
        let tpm_full =
            tpm.is_some_and(|l| w.usage.tokens.saturating_add(tokens) > l && w.usage.tokens > 0);
        if rpm_full || tpm_full {
            let next = (w.minute + 1) * MINUTE_MS;
            return Err(next.saturating_sub(now) as f64 / 1000.0);
        }
        w.usage.requests += 1;
        w.usage.tokens = w.usage.tokens.saturating_add(tokens);
        drop(w);
        self.changed();
        Ok(())
    }

    fn settle(&self, reserved: u64, actual: u64, now: u64) {
        let mut w = lock(&self.window);
        #[cfg(test)]
        crate::fault::state_point();
        if w.minute == now / MINUTE_MS {
            // `actual` is what the provider reported: it may be absurd.
            w.usage.tokens = w
                .usage
                .tokens
                .saturating_add(actual)
                .saturating_sub(reserved);
        } else {
            w.roll(now);
            w.usage.tokens = w
                .usage
                .tokens
                .saturating_add(actual.saturating_sub(reserved));
        }
        drop(w);
        self.changed();
    }

    fn release(&self, reserved: u64, now: u64) {
        let mut w = lock(&self.window);
        // A reservation of a past minute is already gone with its window.
        if w.minute == now / MINUTE_MS {
            w.usage.requests = w.usage.requests.saturating_sub(1);
            w.usage.tokens = w.usage.tokens.saturating_sub(reserved);
        }
        drop(w);
        self.changed();
    }

    fn usage(&self, now: u64) -> MinuteUsage {
        let w = lock(&self.window);
        if w.minute == now / MINUTE_MS {
            w.usage
        } else {
            MinuteUsage::default()
        }
    }

    fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.changed();
    }

    fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.changed();
    }

    fn note_failure(&self, now: u64) -> u32 {
        let mut f = lock(&self.failures);
        while f
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= MINUTE_MS)
        {
            f.pop_front();
        }
        if f.len() < 10_000 {
            f.push_back(now);
        }
        f.len() as u32
    }

    fn cool_down(&self, c: Cooldown) {
        let mut slot = lock(&self.cooldown);
        // A longer cooldown already in force stays.
        if slot.as_ref().is_some_and(|old| old.until_ms >= c.until_ms) {
            return;
        }
        self.cooldown_until.store(c.until_ms, Ordering::Release);
        *slot = Some(c);
        drop(slot);
        // A cooled-down deployment starts its failure count afresh when it comes back.
        lock(&self.failures).clear();
        self.changed();
    }

    fn cooldown(&self, now: u64) -> Option<Cooldown> {
        if !self.is_cooling(now) {
            return None;
        }
        lock(&self.cooldown).clone().filter(|c| c.until_ms > now)
    }

    fn is_cooling(&self, now: u64) -> bool {
        self.cooldown_until.load(Ordering::Acquire) > now
    }

    fn record_timing(&self, t: Timing) {
        let mut l = lock(&self.latency);
        l.samples += 1;
        l.sum_ms += t.total_ms;
        l.view.last_ms = Some(t.total_ms);
        l.view.avg_ms = Some(l.sum_ms / l.samples as f64);
        let per_token = t.total_ms / t.output_tokens.max(1) as f64;
        l.view.per_token_ewma_ms = Some(ewma(l.view.per_token_ewma_ms, per_token));
        if let Some(ttft) = t.ttft_ms {
            l.ttft_samples += 1;
            l.ttft_sum_ms += ttft;
            l.view.last_ttft_ms = Some(ttft);
            l.view.avg_ttft_ms = Some(l.ttft_sum_ms / l.ttft_samples as f64);
            l.view.ttft_ewma_ms = Some(ewma(l.view.ttft_ewma_ms, ttft));
        }
        if let Some(c) = t.connect_ms {
            l.view.last_connect_ms = Some(c);
        }
        drop(l);
        self.changed();
    }

    fn latency(&self) -> LatencyView {
        lock(&self.latency).view
    }

    fn watch(&self, watch: Watch) {
        *self.watch.write().unwrap_or_else(|p| p.into_inner()) = Some(watch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_is_reserved_before_sending() {
        let s = LocalState::default();
        let t0 = 120 * MINUTE_MS + 1_000;
        assert!(s.reserve(Some(2), None, 10, t0).is_ok());
        assert!(s.reserve(Some(2), None, 10, t0).is_ok());
        let wait = s.reserve(Some(2), None, 10, t0).unwrap_err();
        assert!((wait - 59.0).abs() < 0.01, "{wait}");
        assert_eq!(
            s.usage(t0),
            MinuteUsage {
                requests: 2,
                tokens: 20
            }
        );
        assert!(
            s.reserve(Some(2), None, 10, t0 + MINUTE_MS).is_ok(),
            "a new minute"
        );
    }

    #[test]
    fn tpm_and_settling() {
        let s = LocalState::default();
        let t0 = 5 * MINUTE_MS;
        assert!(
            s.reserve(None, Some(100), 500, t0).is_ok(),
            "alone in the window it may go"
        );
        s.settle(500, 40, t0);
        assert_eq!(s.usage(t0).tokens, 40);
        assert!(s.reserve(None, Some(100), 50, t0).is_ok());
        assert!(s.reserve(None, Some(100), 50, t0).is_err());
    }

    #[test]
    fn absurd_reported_usage_fills_the_window_without_overflow() {
        let s = LocalState::default();
        let t0 = 9 * MINUTE_MS;
        assert!(s.reserve(None, Some(100), 10, t0).is_ok());
        s.settle(10, u64::MAX, t0);
        s.settle(0, u64::MAX, t0);
        assert_eq!(s.usage(t0).tokens, u64::MAX);
        assert!(
            s.reserve(None, Some(100), 10, t0).is_err(),
            "the minute is full"
        );
        s.settle(0, u64::MAX, t0 + MINUTE_MS);
        assert_eq!(s.usage(t0 + MINUTE_MS).tokens, u64::MAX);
    }

    #[test]
    fn a_released_reservation_frees_its_request() {
        let s = LocalState::default();
        let t0 = 7 * MINUTE_MS;
        assert!(s.reserve(Some(1), None, 30, t0).is_ok());
        s.release(30, t0);
        assert_eq!(s.usage(t0), MinuteUsage::default());
        assert!(s.reserve(Some(1), None, 30, t0).is_ok());
        s.release(30, t0 + MINUTE_MS);
        assert_eq!(
            s.usage(t0).requests,
            1,
            "another minute's release changes nothing"
        );
    }

    #[test]
    fn failures_count_within_a_minute_and_cooldowns_hold() {
        let s = LocalState::default();
        assert_eq!(s.note_failure(1_000), 1);
        assert_eq!(s.note_failure(2_000), 2);
        assert_eq!(s.note_failure(61_500), 2, "the first has aged out");
        s.cool_down(Cooldown {
            until_ms: 70_000,
            status: Status::RateLimited,
            http_status: Some(429),
            reason: "429".into(),
        });
        assert!(s.is_cooling(69_999));
        assert!(!s.is_cooling(70_000));
        assert_eq!(s.cooldown(65_000).unwrap().status, Status::RateLimited);
        s.cool_down(Cooldown {
            until_ms: 66_000,
            status: Status::Upstream,
            http_status: None,
            reason: "shorter".into(),
        });
        assert_eq!(
            s.cooldown(65_000).unwrap().until_ms,
            70_000,
            "a shorter one does not shorten it"
        );
    }

    #[test]
    fn latency_averages() {
        let s = LocalState::default();
        s.record_timing(Timing {
            total_ms: 100.0,
            output_tokens: 10,
            ttft_ms: Some(20.0),
            connect_ms: Some(5.0),
        });
        s.record_timing(Timing {
            total_ms: 200.0,
            output_tokens: 10,
            ttft_ms: None,
            connect_ms: None,
        });
        let l = s.latency();
        assert_eq!(l.avg_ms, Some(150.0));
        assert_eq!(l.last_ms, Some(200.0));
        assert!((l.per_token_ewma_ms.unwrap() - 13.0).abs() < 1e-9);
        assert_eq!(l.avg_ttft_ms, Some(20.0));
    }
}
