//! How long to wait before trying the same deployment again.

use std::time::Duration;

/// The provider's Retry-After when it is at most this; beyond it, it is not a retry hint.
const MAX_HONOURED_RETRY_AFTER: f64 = 60.0;
const BACKOFF_START: f64 = 0.5;
const BACKOFF_CAP: f64 = 8.0;

/// The wait before retry number `retry` (0-based) of the same deployment: the provider's
/// Retry-After when it is at most 60 s, else exponential backoff from 0.5 s capped at 8 s with
/// ±20% jitter — never below the router's `retry_after`.
pub fn wait_before_retry(retry: u32, provider_hint: Option<f64>, floor: Duration) -> Duration {
    let base = match provider_hint {
        Some(s) if s.is_finite() && (0.0..=MAX_HONOURED_RETRY_AFTER).contains(&s) => s,
        _ => {
            let exp = (BACKOFF_START * 2f64.powi(retry.min(16) as i32)).min(BACKOFF_CAP);
            exp * (0.8 + 0.4 * fastrand::f64())
        }
    };
    Duration::from_secs_f64(base).max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honours_short_retry_after_and_the_floor() {
        assert_eq!(
            wait_before_retry(0, Some(2.0), Duration::ZERO),
            Duration::from_secs(2)
        );
        assert_eq!(
            wait_before_retry(0, Some(2.0), Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        let w = wait_before_retry(0, Some(3600.0), Duration::ZERO);
        assert!(
            w >= Duration::from_millis(400) && w <= Duration::from_millis(600),
            "{w:?}"
        );
    }

    #[test]
    fn grows_exponentially_to_a_cap_with_jitter() {
        for (retry, lo, hi) in [
            (0, 0.4, 0.6),
            (1, 0.8, 1.2),
            (2, 1.6, 2.4),
            (3, 3.2, 4.8),
            (4, 6.4, 9.6),
            (10, 6.4, 9.6),
        ] {
            for _ in 0..50 {
                let w = wait_before_retry(retry, None, Duration::ZERO).as_secs_f64();
                assert!(w >= lo && w <= hi, "retry {retry}: {w}");
            }
        }
    }
}
