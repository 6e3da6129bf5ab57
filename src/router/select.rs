//! Choosing a deployment for one attempt.
//!
//! Every strategy is "lowest score wins" over the deployments that can take the request; ties go
//! to a random one so that equal deployments share the load. The winner's rpm/tpm are reserved
//! before the request is sent; if that fails, the next best is tried.

use crate::config::RoutingStrategy;

use super::deployment::Deployment;
use super::index::{Candidates, CANDIDATES};

/// The outcome of a selection.
#[derive(Debug, PartialEq)]
pub enum Selection {
    /// This deployment, its rpm/tpm already reserved.
    Picked(usize),
    /// Every deployment that could take the request is cooling down; the first is back in this
    /// many seconds.
    AllCooling(f64),
    /// Every one is at its rpm/tpm for this minute; the window frees up in this many seconds.
    AllAtLimit(f64),
    /// None has a context window that can take the request.
    NoWindow,
    /// Every one that could take it refused it already (401/403, quota).
    AllRefused,
}

/// What the request needs of a deployment.
pub struct Needs<'a> {
    /// Estimated prompt tokens (also what gets reserved against tpm).
    pub tokens: u64,
    /// After an overflow: only windows strictly larger than this.
    pub window_above: Option<u64>,
    /// Deployments that failed this request: avoided while another is healthy.
    pub failed: &'a [usize],
    /// Deployments that refused this request (401/403, quota): never tried again for it.
    pub refused: &'a [usize],
    /// A stream: latency-based routing ranks by time to first chunk.
    pub stream: bool,
}

/// Picks a deployment of `members` for one attempt: the first of the index's candidates
/// (`candidates(n)`: the best `n`, see [`super::index::ScoreIndex::candidates`]) that can take
/// the request, else the best of a scan of the whole group.
pub async fn select(
    strategy: RoutingStrategy,
    deployments: &[Deployment],
    members: &[usize],
    candidates: &mut (dyn FnMut(usize) -> Candidates + Send),
    needs: &Needs<'_>,
    now: u64,
) -> Selection {
    // 0. The index's best (or weighted draws): the first of them that fits, is not cooling and
    // has not failed or refused this request is what the scan below would choose. The best
    // alone first — it is usually taken, and finding it costs the index no update —, then the
    // next best.
    let mut at_limit = Candidates::default();
    let mut soonest_free = f64::INFINITY;
    let first = candidates(1);
    if let Some(&best) = first.as_slice().first() {
        let (limit, free) = (&mut at_limit, &mut soonest_free);
        if take(deployments, best, needs, now, limit, free).await {
            return Selection::Picked(best);
        }
        for &i in candidates(CANDIDATES).as_slice() {
            if i != best && take(deployments, i, needs, now, limit, free).await {
                return Selection::Picked(i);
            }
        }
    }
    scan(
        strategy,
        deployments,
        members,
        &at_limit,
        soonest_free,
        needs,
        now,
    )
    .await
}

/// Whether candidate `i` takes the request: it fits, is not cooling, has not failed or refused
/// it, and its rpm/tpm are now reserved. One at its limit is noted in `at_limit`, with when its
/// window frees up.
async fn take(
    deployments: &[Deployment],
    i: usize,
    needs: &Needs<'_>,
    now: u64,
    at_limit: &mut Candidates,
    soonest_free: &mut f64,
) -> bool {
    let d = &deployments[i];
    if at_limit.contains(i)
        || !fits(d, needs)
        || d.state.is_cooling(now)
        || needs.failed.contains(&i)
        || needs.refused.contains(&i)
    {
        return false;
    }
    match reserve(d, needs.tokens, now).await {
        Ok(()) => true,
        Err(secs) => {
            *soonest_free = soonest_free.min(secs);
            at_limit.push(i);
            false
        }
    }
}

/// Every member scored: for what the index's candidates cannot settle (all of them cooling,
/// failed, too small or at their limits).
async fn scan(
    strategy: RoutingStrategy,
    deployments: &[Deployment],
    members: &[usize],
    at_limit: &Candidates,
    mut soonest_free: f64,
    needs: &Needs<'_>,
    now: u64,
) -> Selection {
    // 1. The context window. After an overflow only strictly larger windows qualify (the seed's
    // auto-large); before it, the pre-call check skips windows clearly too small — unless none is
    // large enough, when the largest are tried and the provider decides.
    let fits = |d: &Deployment| fits(d, needs);
    // Sized for the whole group up front: a filter's collect would grow it step by step.
    let mut eligible: Vec<usize> = Vec::with_capacity(members.len());
    eligible.extend(members.iter().copied().filter(|&i| fits(&deployments[i])));
    if eligible.is_empty() {
        if needs.window_above.is_some() {
            return Selection::NoWindow;
        }
        let largest = members
            .iter()
            .filter_map(|&i| deployments[i].max_input_tokens)
            .max();
        eligible = members
            .iter()
            .copied()
            .filter(|&i| deployments[i].max_input_tokens == largest)
            .collect();
        if eligible.is_empty() {
            return Selection::NoWindow;
        }
    }

    // 2. Cooldowns.
    let before = eligible.len();
    let mut first_back: Option<u64> = None;
    eligible.retain(|&i| {
        let s = &deployments[i].state;
        if s.is_cooling(now) {
            if let Some(c) = s.cooldown(now) {
                first_back = Some(first_back.map_or(c.until_ms, |f| f.min(c.until_ms)));
            }
            false
        } else {
            true
        }
    });
    if eligible.is_empty() && before > 0 {
        let secs = first_back.map_or(0.0, |t| t.saturating_sub(now) as f64 / 1000.0);
        return Selection::AllCooling(secs);
    }

    // 3. Never the ones that refused this request.
    let before = eligible.len();
    eligible.retain(|i| !needs.refused.contains(i));
    if eligible.is_empty() && before > 0 {
        return Selection::AllRefused;
    }

    // 4. Best score first, but the ones that failed this request only after every other
    // (a deployment at its rpm/tpm limit is no healthy alternative); reserve; on a full window,
    // the next.
    let mut scored: Vec<(bool, f64, u32, usize)> = eligible
        .iter()
        .map(|&i| {
            (
                needs.failed.contains(&i),
                score(strategy, &deployments[i], needs.stream, now),
                fastrand::u32(..),
                i,
            )
        })
        .collect();
    let order = |a: &(bool, f64, u32, usize), b: &(bool, f64, u32, usize)| {
        a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2))
    };
    // Those found at their limit a moment ago are not asked again.
    scored.retain(|s| !at_limit.contains(s.3));
    // The best first, found in one pass: it nearly always has room, and then no sort is needed
    // (sorting was most of a request's cost with 1,000 deployments).
    if let Some(best) = (0..scored.len()).min_by(|&a, &b| order(&scored[a], &scored[b])) {
        match reserve(&deployments[scored[best].3], needs.tokens, now).await {
            Ok(()) => return Selection::Picked(scored[best].3),
            Err(secs) => soonest_free = secs,
        }
        scored.swap_remove(best);
    }
    scored.sort_unstable_by(order);
    for (_, _, _, i) in scored {
        match reserve(&deployments[i], needs.tokens, now).await {
            Ok(()) => return Selection::Picked(i),
            Err(secs) => soonest_free = soonest_free.min(secs),
        }
    }
    Selection::AllAtLimit(if soonest_free.is_finite() {
        soonest_free
    } else {
        0.0
    })
}

/// After an overflow only strictly larger windows qualify (the seed's auto-large); before it,
/// the pre-call check skips windows clearly too small.
fn fits(d: &Deployment, needs: &Needs<'_>) -> bool {
    match (needs.window_above, d.max_input_tokens) {
        (Some(above), Some(w)) => w > above,
        (Some(_), None) => false,
        (None, Some(w)) => w >= needs.tokens,
        (None, None) => true,
    }
}

/// Reserves one request and `tokens` on `d`; `Err(seconds)` until its window frees up. A shared
/// store's reservation is one Redis round trip (bounded by `redis_timeout`); a local one is not.
async fn reserve(d: &Deployment, tokens: u64, now: u64) -> Result<(), f64> {
    match d.state.as_shared() {
        Some(s) => s.reserve_shared(d.cfg.rpm, d.cfg.tpm, tokens, now).await,
        None => d.state.reserve(d.cfg.rpm, d.cfg.tpm, tokens, now),
    }
}

pub(super) fn score(strategy: RoutingStrategy, d: &Deployment, stream: bool, now: u64) -> f64 {
    match strategy {
        // Lowest tokens used this minute.
        RoutingStrategy::UsageBased => d.state.usage(now).tokens as f64,
        // Weighted random: an exponential race (the lowest of Exp(share) draws) picks each
        // deployment with probability proportional to its share.
        RoutingStrategy::SimpleShuffle => {
            let u = fastrand::f64().max(f64::MIN_POSITIVE);
            -u.ln() / d.share.max(f64::MIN_POSITIVE)
        }
        RoutingStrategy::LeastBusy => f64::from(d.state.in_flight()),
        // Lowest recent latency per output token (time to first chunk for streams); unmeasured
        // deployments first, so that they get measured.
        RoutingStrategy::LatencyBased => {
            let l = d.state.latency();
            let v = if stream {
                l.ttft_ewma_ms.or(l.per_token_ewma_ms)
            } else {
                l.per_token_ewma_ms.or(l.ttft_ewma_ms)
            };
            v.unwrap_or(0.0)
        }
    }
}
