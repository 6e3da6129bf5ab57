//! A cancellation signal: set once from any thread, awaited by the request it stops. It keeps
//! the first reason given, so the error says who cancelled (the callback, `llmr_cancel`,
//! `llmr_shutdown`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

use crate::errors::{Error, Status};

#[derive(Clone, Default)]
pub struct CancelToken(Arc<Inner>);

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    reason: OnceLock<&'static str>,
    notify: Notify,
}

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    pub fn cancel(&self) {
        self.cancel_because("the request was cancelled");
    }

    /// Cancels; the first reason given wins.
    pub fn cancel_because(&self, reason: &'static str) {
        let _ = self.0.reason.set(reason);
        if !self.0.cancelled.swap(true, Ordering::AcqRel) {
            self.0.notify.notify_waiters();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Acquire)
    }

    /// The `LLMR_ERR_CANCELLED` error this token's cancellation stands for.
    pub fn error(&self) -> Error {
        let reason = self
            .0
            .reason
            .get()
            .copied()
            .unwrap_or("the request was cancelled");
        Error::new(Status::Cancelled, reason)
    }

    /// Completes once cancelled.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins_and_waiters_wake() {
        let t = CancelToken::new();
        let waiter = t.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let h = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            t.cancel_because("first");
            t.cancel_because("second");
        });
        rt.block_on(waiter.cancelled());
        h.join().unwrap();
        assert!(waiter.is_cancelled());
        assert_eq!(waiter.error().message, "first");
        assert_eq!(waiter.error().status, Status::Cancelled);
    }
}
