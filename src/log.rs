//! Structured logs: one JSON object a message, never an API key or message content (content
//! only at trace, and only when `router_settings.log_content` asks for it).
//!
//! Without a logger, lines go to stderr at the level `LLMR_LOG` names (error, warn, info,
//! debug, trace; default warn). With one (`llmr_set_logger`), messages up to its level go to
//! [`crate::logger`], which delivers them on its own thread.

use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }

    /// The level of a number of the C ABI (1 error … 5 trace).
    pub fn from_number(n: i32) -> Option<Level> {
        Some(match n {
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            5 => Level::Trace,
            _ => return None,
        })
    }

    fn parse(s: &str) -> Option<Level> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "error" | "1" => Level::Error,
            "warn" | "warning" | "2" => Level::Warn,
            "info" | "3" => Level::Info,
            "debug" | "4" => Level::Debug,
            "trace" | "5" => Level::Trace,
            "off" | "none" | "0" => return None,
            _ => Level::Warn,
        })
    }
}

/// The most detailed level written anywhere right now (0 = off); -1 until first use.
static MAX_LEVEL: AtomicI32 = AtomicI32::new(-1);
static ENV_LEVEL: OnceLock<i32> = OnceLock::new();

/// The level `LLMR_LOG` names (0 = off), read once.
pub fn env_level() -> Option<Level> {
    let n = *ENV_LEVEL.get_or_init(|| match std::env::var("LLMR_LOG") {
        Ok(v) => Level::parse(&v).map_or(0, |l| l as i32),
        Err(_) => Level::Warn as i32,
    });
    Level::from_number(n)
}

fn max_level() -> i32 {
    let l = MAX_LEVEL.load(Ordering::Relaxed);
    if l >= 0 {
        return l;
    }
    refresh_max_level();
    MAX_LEVEL.load(Ordering::Relaxed)
}

/// Recomputes the level filter after the logger changed.
fn refresh_max_level() {
    let l = crate::logger::max_level().or_else(env_level);
    MAX_LEVEL.store(l.map_or(0, |l| l as i32), Ordering::Relaxed);
}

/// Installs a logger for messages up to `max_level` (`None`: the level of `LLMR_LOG`), or,
/// with `on_log` `None`, goes back to stderr.
pub fn set_logger(on_log: Option<crate::logger::LogFn>, max_level: Option<Level>) {
    let sink = on_log.map(|on_log| crate::logger::Sink {
        on_log,
        // A logger with LLMR_LOG=off still gets errors: it was installed to get something.
        max_level: max_level.or_else(env_level).unwrap_or(Level::Error),
    });
    // Serialised, so that the level filter always matches the logger last installed. Held for
    // two stores only, never while a logger runs: a logger may call this.
    static SETTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = SETTING.lock().unwrap_or_else(|p| p.into_inner());
    crate::logger::set(sink);
    refresh_max_level();
}

/// Whether a message at `level` would be written: check before building costly fields.
pub fn enabled(level: Level) -> bool {
    (level as i32) <= max_level()
}

/// One message as its JSON line: `ts_ms`, `level`, `msg`, then the fields.
pub fn line(level: Level, msg: &str, fields: &[(&str, Value)]) -> String {
    let mut m = Map::with_capacity(fields.len() + 3);
    m.insert("ts_ms".into(), crate::router::state::now_ms().into());
    m.insert("level".into(), level.name().into());
    m.insert("msg".into(), msg.into());
    for (k, v) in fields {
        m.insert((*k).into(), v.clone());
    }
    Value::Object(m).to_string()
}

pub fn emit(level: Level, msg: &str, fields: &[(&str, Value)]) {
    if !enabled(level) {
        return;
    }
    let line = line(level, msg, fields);
    if let Err(line) = crate::logger::offer(level, line) {
        to_stderr(level, &line);
    }
}

/// Writes a line to stderr if `LLMR_LOG` lets its level through.
pub fn to_stderr(level: Level, line: &str) {
    if env_level().is_some_and(|max| level <= max) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "llmr: {line}");
    }
}

pub fn warn(msg: &str, fields: &[(&str, Value)]) {
    emit(Level::Warn, msg, fields);
}

pub fn info(msg: &str, fields: &[(&str, Value)]) {
    emit(Level::Info, msg, fields);
}

pub fn debug(msg: &str, fields: &[(&str, Value)]) {
    emit(Level::Debug, msg, fields);
}

pub fn trace(msg: &str, fields: &[(&str, Value)]) {
    emit(Level::Trace, msg, fields);
}
