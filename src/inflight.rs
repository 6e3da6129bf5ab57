//! Requests in flight, by id: what `llmr_cancel` and `llmr_shutdown` reach.
//!
//! Ids start at 1 and never repeat within a process (0 means "did not start"). The map is
//! sharded so that many threads starting and finishing requests rarely meet on one lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::cancel::CancelToken;

const SHARDS: usize = 16;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static MAP: [Mutex<Option<HashMap<u64, CancelToken>>>; SHARDS] =
    [const { Mutex::new(None) }; SHARDS];

fn shard(id: u64) -> std::sync::MutexGuard<'static, Option<HashMap<u64, CancelToken>>> {
    MAP[(id as usize) % SHARDS]
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// A registered request; dropping it takes the request out of the registry.
pub struct Registration {
    pub id: u64,
    pub cancel: CancelToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(m) = shard(self.id).as_mut() {
            m.remove(&self.id);
        }
    }
}

/// Registers a new request with a fresh id and cancel token.
pub fn register() -> Registration {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let cancel = CancelToken::new();
    shard(id)
        .get_or_insert_with(HashMap::new)
        .insert(id, cancel.clone());
    Registration { id, cancel }
}

/// Cancels the request `id`. False when no such request is in flight (it finished already,
/// or never existed).
pub fn cancel(id: u64, reason: &'static str) -> bool {
    let token = shard(id).as_ref().and_then(|m| m.get(&id).cloned());
    match token {
        Some(t) => {
            t.cancel_because(reason);
            true
        }
        None => false,
    }
}

/// Cancels every request in flight; returns how many.
pub fn cancel_all(reason: &'static str) -> usize {
    let mut n = 0;
    for s in &MAP {
        let tokens: Vec<CancelToken> = s
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        for t in tokens {
            t.cancel_because(reason);
            n += 1;
        }
    }
    n
}

/// How many requests are in flight.
pub fn count() -> usize {
    MAP.iter()
        .map(|s| {
            s.lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map_or(0, HashMap::len)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_cancel_reaches_the_token() {
        let a = register();
        let b = register();
        assert_ne!(a.id, b.id);
        assert!(a.id > 0);
        assert!(cancel(a.id, "by test"));
        assert!(a.cancel.is_cancelled());
        assert!(!b.cancel.is_cancelled());
        let id = a.id;
        drop(a);
        assert!(!cancel(id, "again"), "a finished request is gone");
        assert!(!cancel(0, "zero"));
    }
}
