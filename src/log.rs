//! Structured logs: one JSON object a line to stderr, at the level `LLMR_LOG` names
//! (error, warn, info, debug, trace; default warn). Never an API key or message content.

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

/// 0 = off; unset until first use.
static MAX_LEVEL: AtomicI32 = AtomicI32::new(-1);
static ENV_LEVEL: OnceLock<i32> = OnceLock::new();

fn max_level() -> i32 {
    let l = MAX_LEVEL.load(Ordering::Relaxed);
    if l >= 0 {
        return l;
    }
    let env = *ENV_LEVEL.get_or_init(|| match std::env::var("LLMR_LOG") {
        Ok(v) => Level::parse(&v).map_or(0, |l| l as i32),
        Err(_) => Level::Warn as i32,
    });
    MAX_LEVEL.store(env, Ordering::Relaxed);
    env
}

/// Whether a message at `level` would be written: check before building costly fields.
pub fn enabled(level: Level) -> bool {
    (level as i32) <= max_level()
}

pub fn emit(level: Level, msg: &str, fields: &[(&str, Value)]) {
    if !enabled(level) {
        return;
    }
    let mut m = Map::with_capacity(fields.len() + 3);
    m.insert("ts_ms".into(), crate::router::state::now_ms().into());
    m.insert("level".into(), level.name().into());
    m.insert("msg".into(), msg.into());
    for (k, v) in fields {
        m.insert((*k).into(), v.clone());
    }
    let line = Value::Object(m).to_string();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "llmr: {line}");
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
