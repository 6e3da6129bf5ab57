//! The user's logger (`llmr_set_logger`): log messages go through a bounded queue to one
//! dedicated thread, `llmr-logger`, which calls the user's function.
//!
//! Why a thread of its own: a binding's log function may block (koffi relays a foreign-thread
//! call to the JS thread and waits for it; Go may be slow to schedule). Called on a runtime
//! worker it would stall requests; called on the thread that logged — which may be a JS thread
//! inside `llmr_init`, or a thread holding a lock — it could deadlock. So the request path only
//! ever `try_send`s: when the queue is full the message is dropped and counted, never waited for.
//! The count is reported in the next message delivered and in `llmr_metrics`.
//!
//! Replacing or removing the logger never waits for the logger thread either (a JS thread that
//! calls `setLogger` while the logger thread waits for it would deadlock): a delivery already
//! under way finishes with the function it started with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;

use crate::log::Level;

/// The name the logger thread carries (visible in debuggers and `ps -L`).
pub const THREAD_NAME: &str = "llmr-logger";

/// Messages that may wait for the logger thread before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 4096;

/// A user's log function: the level and one JSON object, valid for the call only.
pub type LogFn = Box<dyn Fn(Level, &str) + Send + Sync>;

/// The installed logger: its function and the most detailed level it wants.
pub struct Sink {
    pub on_log: LogFn,
    pub max_level: Level,
}

static SINK: ArcSwapOption<Sink> = ArcSwapOption::const_empty();
static QUEUE: OnceLock<SyncSender<(Level, String)>> = OnceLock::new();
/// Messages dropped because the queue was full, in all.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Of those, the ones not yet reported in a delivered message.
static UNREPORTED: AtomicU64 = AtomicU64::new(0);

/// Installs `sink` (or, with `None`, goes back to stderr). Returns at once: a message the logger
/// thread is delivering right now still goes to the previous function.
pub fn set(sink: Option<Sink>) {
    if sink.is_some() {
        queue(); // start the thread now, not on the request path
    }
    SINK.store(sink.map(Arc::new));
}

/// The most detailed level the installed logger wants; `None` when there is none.
pub fn max_level() -> Option<Level> {
    SINK.load().as_ref().map(|s| s.max_level)
}

/// Hands a message to the logger thread; gives it back when no logger is installed (the
/// caller writes it to stderr). Never blocks: a full queue drops the message.
pub fn offer(level: Level, line: String) -> Result<(), String> {
    if SINK.load().is_none() {
        return Err(line);
    }
    match queue().try_send((level, line)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            UNREPORTED.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Log messages dropped so far because the logger could not keep up.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn queue() -> &'static SyncSender<(Level, String)> {
    QUEUE.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || deliver(rx))
            .expect("llmr: the logger thread could not start");
        tx
    })
}

fn deliver(rx: Receiver<(Level, String)>) {
    for (level, line) in rx {
        let lost = UNREPORTED.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let note = crate::log::line(
                Level::Warn,
                "log messages dropped: the logger could not keep up",
                &[("dropped", lost.into())],
            );
            call(Level::Warn, &note);
        }
        call(level, &line);
    }
}

/// Calls the logger installed now; without one (it was removed after the message was queued),
/// the message goes where it would have gone without a logger.
fn call(level: Level, line: &str) {
    match SINK.load_full() {
        Some(sink) if level <= sink.max_level => {
            // A panic in a Rust-side function (a bug in a binding's glue) must not stop the
            // delivery of every later message.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (sink.on_log)(level, line)
            }));
        }
        Some(_) => {}
        None => crate::log::to_stderr(level, line),
    }
}

/// True on the logger thread.
pub fn on_logger_thread() -> bool {
    std::thread::current().name() == Some(THREAD_NAME)
}
