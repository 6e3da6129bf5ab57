//! The callback thread: every callback of an asynchronous request runs here, one at a time.
//!
//! Why one dedicated thread, not the runtime's workers: a callback may block (koffi relays a
//! foreign-thread call to the JS thread and waits; Go may be slow to schedule). On a worker it
//! would stall unrelated requests' network I/O or deadlock the runtime; here it only delays
//! other callbacks, while every request keeps making progress. One thread also gives users the
//! simplest rule: callbacks never run concurrently with each other, and a request's callbacks
//! run in order (its chunks, then its `on_done`).

use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

static QUEUE: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();

/// The name the callback thread carries (visible in debuggers and `ps -L`).
pub const THREAD_NAME: &str = "llmr-callbacks";

fn queue() -> Sender<Job> {
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            std::thread::Builder::new()
                .name(THREAD_NAME.into())
                .spawn(move || {
                    let mut idle = 0;
                    loop {
                        let job = match rx.try_recv() {
                            Ok(job) => job,
                            Err(std::sync::mpsc::TryRecvError::Empty) if idle < SPINS => {
                                idle += 1;
                                std::thread::yield_now();
                                continue;
                            }
                            Err(std::sync::mpsc::TryRecvError::Empty) => match rx.recv() {
                                Ok(job) => job,
                                Err(_) => break,
                            },
                            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                        };
                        idle = 0;
                        // A panic in one job (a bug in llmr's glue) must not stop the delivery
                        // of every later callback.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .expect("llmr: the callback thread could not start");
            Mutex::new(tx)
        })
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// How many times the callback thread yields its core, finding no job, before it sleeps. Most
/// callbacks come within microseconds of the last one under load: a worker posting to a thread
/// that is still yielding needs no futex wake-up (a syscall, and on busy cores a switch to the
/// woken thread). An idle stretch costs at most these few yields. Few: a job that is coming
/// soon comes within the first yields, and each further one is a syscall for nothing (30 made
/// 4–6 `sched_yield`s per request at 64 in flight; 3 make ~0.35, with as many context switches
/// and futex calls, and 5 of 6 paired rounds were faster — bench/README.md, session 16).
const SPINS: u32 = 3;

thread_local! {
    // Each thread keeps its own sender, so posting takes no lock after the first time.
    static SENDER: Sender<Job> = queue();
}

/// Runs `job` on the callback thread, after every job posted before it.
pub fn post(job: impl FnOnce() + Send + 'static) {
    let mut job: Option<Job> = Some(Box::new(job));
    // The receiver lives as long as the process, so a send cannot fail; the thread-local is
    // gone only while this thread is being torn down: then send through a fresh sender.
    let _ = SENDER.try_with(|s| {
        if let Some(j) = job.take() {
            let _ = s.send(j);
        }
    });
    if let Some(j) = job {
        let _ = queue().send(j);
    }
}

/// True on the callback thread.
pub fn on_callback_thread() -> bool {
    std::thread::current().name() == Some(THREAD_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_on_the_callback_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..100 {
            let tx = tx.clone();
            post(move || tx.send((i, on_callback_thread())).unwrap());
        }
        let got: Vec<_> = (0..100).map(|_| rx.recv().unwrap()).collect();
        assert!(got.iter().all(|(_, on)| *on));
        assert_eq!(
            got.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..100).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_panicking_job_does_not_stop_later_ones() {
        post(|| panic!("boom"));
        let (tx, rx) = std::sync::mpsc::channel();
        post(move || tx.send(()).unwrap());
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
    }
}
