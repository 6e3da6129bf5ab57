//! The logger (`llmr::set_logger`, `llmr_set_logger` in C): structured messages on the
//! `llmr-logger` thread, one debug line per request outcome, warnings for skipped entries and
//! cooldowns, never a key or message content (content only at trace with `log_content`), a
//! logger that blocks never blocks logging, and it may re-enter the library.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use llmr::log::Level;
use llmr_testkit::StandIn;
use serde_json::{json, Value};

/// A word of the prompt (the stand-in echoes it in the answer): never in a log line.
const WORD: &str = "PINEAPPLEPROMPT";

/// What the logger got: level, JSON and the name of the thread it ran on.
#[derive(Clone, Default)]
struct Got(Arc<Mutex<Vec<(Level, Value, String)>>>);

impl Got {
    fn install(&self, max: Level) {
        let got = self.clone();
        llmr::set_logger(
            Some(move |level: Level, line: &str| {
                // No assertion here: a panic in a logger is caught (and would go unseen).
                let v: Value = serde_json::from_str(line).unwrap_or(Value::String(line.into()));
                let thread = std::thread::current().name().unwrap_or("").to_owned();
                got.0.lock().unwrap().push((level, v, thread));
            }),
            Some(max),
        );
    }

    /// The first message with this `msg` (and matching `pred`), waiting up to 10 s for it.
    fn wait(&self, msg: &str, pred: impl Fn(&Value) -> bool) -> (Level, Value, String) {
        let t = Instant::now();
        loop {
            if let Some(m) = self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(_, v, _)| v["msg"] == msg && pred(v))
            {
                return m.clone();
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no {msg:?} message within 10 s: {:?}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every message so far; each one JSON, none with the API key.
    fn all(&self) -> Vec<Value> {
        let all: Vec<Value> = self.0.lock().unwrap().iter().map(|m| m.1.clone()).collect();
        for v in &all {
            assert!(v.is_object(), "a log message is a JSON object: {v}");
            assert!(
                !v.to_string().contains(KEY),
                "a log message holds the API key: {v}"
            );
        }
        all
    }
}

fn no_logger() {
    llmr::set_logger(None::<fn(Level, &str)>, None);
}

#[test]
fn every_request_outcome_is_one_structured_debug_line() {
    let _g = lock();
    let got = Got::default();
    got.install(Level::Debug);
    let s = StandIn::start();
    let mut entries = first_then_priced(&s.base("e503-a"), &s.base("ok-b"));
    entries.push(json!({"id": "broken", "provider": "OPENAI", "api_key": KEY}));
    let cfg = config(entries, settings(json!({"allowed_fails": 0})));
    llmr::init(&cfg).unwrap();
    let w = got.wait("config entry skipped", |_| true);
    assert_eq!(w.0, Level::Warn);
    assert!(
        w.1["detail"].as_str().unwrap().contains("broken"),
        "{}",
        w.1
    );

    let resp = complete(&ask(WORD)).unwrap();
    assert!(
        content(&resp).contains(WORD),
        "the stand-in echoes the prompt"
    );
    let (level, line, thread) = got.wait("request completed", |v| v["stream"] == false);
    assert_eq!(level, Level::Debug);
    assert_eq!(thread, llmr::logger::THREAD_NAME);
    assert_eq!(line["deployment_id"], "b", "{line}");
    assert_eq!(line["provider"], "openai");
    assert_eq!(line["model"], "standin-b");
    assert_eq!(line["attempts"], 2);
    assert_eq!(line["fallbacks"], json!(["retry:a"]));
    assert_eq!(line["status"], "ok");
    assert!(line["latency_ms"].as_f64().unwrap() > 0.0, "{line}");
    assert_eq!(line["prompt_tokens"], resp["usage"]["prompt_tokens"]);
    assert_eq!(
        line["completion_tokens"],
        resp["usage"]["completion_tokens"]
    );
    assert_eq!(line["cost_usd"], resp["llmr"]["cost_usd"]);
    assert!(
        line["time_to_first_chunk_ms"].is_null(),
        "not a stream: {line}"
    );

    let cool = got.wait("deployment cooling down", |_| true);
    assert_eq!(cool.0, Level::Warn);
    assert_eq!(cool.1["deployment_id"], "a");

    // A stream's line has its time to first chunk.
    let st = stream(&ask(WORD), None);
    assert!(st.result.is_ok());
    let (_, line, _) = got.wait("request completed", |v| v["stream"] == true);
    assert!(
        line["time_to_first_chunk_ms"].as_f64().unwrap() > 0.0,
        "{line}"
    );

    // A failure's line has its status.
    let e = complete(&json!({"messages": [{"role": "user", "content": WORD}], "model": "nope"}))
        .unwrap_err();
    let (_, line, _) = got.wait("request failed", |_| true);
    assert_eq!(line["status"], "invalid_argument", "{line}");
    assert_eq!(line["status"], status(&e));

    let all = got.all();
    assert!(
        all.iter().all(|v| !v.to_string().contains(WORD)),
        "message content in the logs: {all:?}"
    );
    no_logger();
}

#[test]
fn content_is_logged_only_at_trace_and_only_when_asked() {
    let _g = lock();
    let got = Got::default();
    got.install(Level::Trace);
    init(vec![mock("m", json!({}))], settings(json!({})));
    complete(&ask(WORD)).unwrap();
    got.wait("request completed", |_| true);
    llmr::shutdown();
    assert!(
        got.all().iter().all(|v| !v.to_string().contains(WORD)),
        "content at trace without log_content"
    );

    init(
        vec![mock("m", json!({}))],
        settings(json!({"log_content": true})),
    );
    complete(&ask(WORD)).unwrap();
    let (level, line, _) = got.wait("request content", |_| true);
    assert_eq!(level, Level::Trace);
    assert_eq!(line["messages"][0]["content"], WORD);
    assert_eq!(line["choices"][0]["message"]["content"], "hello from m");

    // At debug, log_content changes nothing.
    let debug = Got::default();
    debug.install(Level::Debug);
    complete(&ask(WORD)).unwrap();
    debug.wait("request completed", |_| true);
    assert!(debug.all().iter().all(|v| v["msg"] != "request content"));
    no_logger();
}

#[test]
fn a_blocked_logger_never_blocks_logging_and_drops_are_counted() {
    let _g = lock();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let got = Got::default();
    let g2 = got.clone();
    llmr::set_logger(
        Some(move |level: Level, line: &str| {
            // The first call waits until the test lets it go.
            let _ = release_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(20));
            let v: Value = serde_json::from_str(line).unwrap();
            g2.0.lock().unwrap().push((level, v, String::new()));
        }),
        Some(Level::Warn),
    );
    let before = llmr::logger::dropped();
    let n = llmr::logger::QUEUE_CAPACITY as u64 * 2;
    let t = Instant::now();
    for i in 0..n {
        llmr::log::warn("flood", &[("i", i.into())]);
    }
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "logging waited for a blocked logger: {:?}",
        t.elapsed()
    );
    let dropped = llmr::logger::dropped() - before;
    assert!(
        dropped >= n - llmr::logger::QUEUE_CAPACITY as u64 - 1,
        "{dropped} of {n} dropped"
    );
    let text = llmr::metrics_text();
    assert!(
        text.contains(&format!(
            "llmr_log_messages_dropped_total {}",
            llmr::logger::dropped()
        )),
        "{text}"
    );
    drop(release_tx); // every later call returns at once
                      // Every drop is reported: the notes' counts add up to what was dropped (a note may come
                      // while the flood is still going, so there can be more than one).
    const NOTE: &str = "log messages dropped: the logger could not keep up";
    let reported = || -> u64 {
        got.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, v, _)| v["msg"] == NOTE)
            .filter_map(|(_, v, _)| v["dropped"].as_u64())
            .sum()
    };
    let t = Instant::now();
    while reported() < dropped && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(reported(), dropped, "the drop notes do not add up");
    no_logger();
}

#[test]
fn the_logger_may_replace_itself_from_its_own_callback() {
    let _g = lock();
    let calls = Arc::new(Mutex::new(0u32));
    let c2 = calls.clone();
    llmr::set_logger(
        Some(move |_: Level, _: &str| {
            *c2.lock().unwrap() += 1;
            no_logger(); // re-entrant: must not deadlock
            llmr::log::warn("from the callback", &[]);
        }),
        Some(Level::Warn),
    );
    llmr::log::warn("first", &[]);
    let t = Instant::now();
    while llmr::logger::max_level().is_some() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the callback never ran"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    llmr::log::warn("second", &[]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        *calls.lock().unwrap(),
        1,
        "removed loggers get nothing more"
    );
}

#[test]
fn the_level_filters_what_the_logger_gets() {
    let _g = lock();
    let got = Got::default();
    got.install(Level::Warn);
    init(vec![mock("m", json!({}))], settings(json!({})));
    complete(&ask("hi")).unwrap();
    llmr::log::warn("marker", &[]);
    got.wait("marker", |_| true);
    let all = got.all();
    assert!(
        all.iter()
            .all(|v| v["level"] == "warn" || v["level"] == "error"),
        "{all:?}"
    );
    no_logger();
}
