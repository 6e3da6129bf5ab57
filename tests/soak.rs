//! The soak: 20,000 requests (half completions, half streams) at 64 in flight through the
//! asynchronous API, over four deployments of which two fail in rotating ways (429 with
//! Retry-After, 5xx, resets before and after the head, hangs and stalls past a short timeout,
//! truncated streams, error events). It checks that every request gets exactly one answer —
//! its own answer, or a typed error that only a stream broken after it began may give — that
//! the failing deployments are cooled down and serve again once their cooldown is over, and
//! that memory stays flat.
//!
//! `LLMR_SOAK_REQUESTS` sets another number of requests (the default is the full run).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use llmr_testkit::{Fault, Reply, StandIn};
use serde_json::{json, Value};

const IN_FLIGHT: usize = 64;
const FULL_RUN: usize = 20_000;
/// The failing deployments' own timeout, for hangs and stalls.
const FLAKY_TIMEOUT: f64 = 0.5;
/// The cooldown of every deployment, in seconds (a 429's Retry-After is the same): short, so
/// that the failing deployments go through many cooldowns in a run of seconds.
const COOLDOWN_S: f64 = 0.1;
/// A failing deployment answers this many requests in a row with one fault, then …
const BURST: usize = 3;
/// … this many successfully, then the next fault of its rotation.
const HEALTHY_RUN: usize = 20;
/// Memory growth allowed between the end of the warm-up and the end of the run.
const MAX_GROWTH: u64 = 64 << 20;
/// Nothing may take longer than this to answer: a request that hangs shows up here.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

const STEADY: [&str; 2] = ["steady-1", "steady-2"];
const FLAKY: [&str; 2] = ["flaky-1", "flaky-2"];

/// The ways the failing deployments fail, in turn.
fn rotation() -> Vec<Reply> {
    vec![
        Reply::status(429).header("retry-after", COOLDOWN_S.to_string()),
        Reply::status(503),
        Reply::fault(Fault::Reset),
        Reply::fault(Fault::Hang),
        Reply::status(500),
        Reply::fault(Fault::MidStreamError),
        Reply::fault(Fault::ResetAfterHead),
        Reply::fault(Fault::Stall),
        Reply::status(502),
        Reply::fault(Fault::Truncated),
    ]
}

/// A failing deployment's replies, one per request it gets: bursts of one fault between runs
/// of answers, the faults in turn from `offset`. Long enough for every request of the run.
fn flaky_script(offset: usize, len: usize) -> Vec<Reply> {
    let faults = rotation();
    let mut script = Vec::with_capacity(len);
    let mut turn = offset;
    while script.len() < len {
        let f = &faults[turn % faults.len()];
        script.extend(std::iter::repeat(f.clone()).take(BURST));
        script.extend(std::iter::repeat(Reply::ok()).take(HEALTHY_RUN));
        turn += 1;
    }
    script.truncate(len);
    script
}

fn requests() -> usize {
    std::env::var("LLMR_SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FULL_RUN)
}

/// The process's resident set in bytes: `VmRSS` of `/proc/self/status` (what `statm` counts in
/// pages, in kB, so no page size is assumed).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// What the answers said.
#[derive(Default)]
struct Tally {
    /// Answers per request: each must end at exactly 1.
    answers: Vec<AtomicU8>,
    /// Outcomes by kind and status name ("ok" for an answer).
    outcomes: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// Answers by deployment.
    served: Mutex<BTreeMap<String, u64>>,
    /// When the requests that the failing deployments answered started.
    flaky_answer_starts: [Mutex<Vec<Instant>>; 2],
    /// What was wrong with an answer (wrong content, an error that should not be, …).
    problems: Mutex<Vec<String>>,
    /// Time from start to answer, per request, in microseconds.
    latency_us: Vec<std::sync::atomic::AtomicU64>,
}

impl Tally {
    fn new(n: usize) -> Tally {
        Tally {
            answers: (0..n).map(|_| AtomicU8::new(0)).collect(),
            latency_us: (0..n).map(|_| Default::default()).collect(),
            ..Tally::default()
        }
    }

    fn problem(&self, p: String) {
        let mut list = self.problems.lock().unwrap();
        if list.len() < 20 {
            list.push(p);
        }
    }

    /// Records the answer of request `i`, which asked for `echo: q{i}`.
    fn answer(
        &self,
        i: usize,
        kind: &'static str,
        since: Instant,
        r: Result<String, llmr::Error>,
        text: &str,
    ) {
        self.latency_us[i].store(since.elapsed().as_micros() as u64, Ordering::Relaxed);
        if self.answers[i].fetch_add(1, Ordering::SeqCst) != 0 {
            self.problem(format!("request {i} answered twice"));
        }
        let want = format!("echo: q{i}");
        let status = match r {
            Ok(json) => {
                let v: Value = serde_json::from_str(&json).expect("a response is JSON");
                let got = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
                if got != want {
                    self.problem(format!("request {i} ({kind}) got {got:?}"));
                }
                if kind == "stream" && text != want {
                    self.problem(format!("request {i}: chunks say {text:?}"));
                }
                let by = v["llmr"]["deployment_id"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                if let Some(n) = FLAKY.iter().position(|f| *f == by) {
                    self.flaky_answer_starts[n].lock().unwrap().push(since);
                }
                *self.served.lock().unwrap().entry(by).or_default() += 1;
                "ok".to_owned()
            }
            Err(e) => {
                // Only a stream that broke after it began may fail: everything else has a
                // healthy deployment to fail over to.
                let broke_after_start = kind == "stream"
                    && !text.is_empty()
                    && want.starts_with(text)
                    && matches!(e.status, llmr::Status::Upstream | llmr::Status::Timeout);
                if !broke_after_start {
                    self.problem(format!(
                        "request {i} ({kind}, {text:?} delivered) failed: {}",
                        e.to_json()
                    ));
                }
                e.status.name().to_owned()
            }
        };
        *self
            .outcomes
            .lock()
            .unwrap()
            .entry((kind, status))
            .or_default() += 1;
    }
}

/// A semaphore of `IN_FLIGHT` slots: a request takes one to start and gives it back from its
/// `on_done`.
fn slots() -> (SyncSender<()>, Receiver<()>) {
    let (tx, rx) = sync_channel(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        tx.send(()).unwrap();
    }
    (tx, rx)
}

fn take_slot(rx: &Receiver<()>, started: usize) {
    rx.recv_timeout(ANSWER_WITHIN).unwrap_or_else(|_| {
        panic!("no request of the {IN_FLIGHT} in flight was answered within {ANSWER_WITHIN:?} ({started} started)")
    });
}

fn start_request(i: usize, tally: &Arc<Tally>, slot: &SyncSender<()>) {
    let req = json!({"messages": [{"role": "user", "content": format!("q{i}")}]}).to_string();
    let (tally, slot) = (tally.clone(), slot.clone());
    let since = Instant::now();
    if i % 2 == 0 {
        let id = llmr::complete_async(&req, move |r| {
            tally.answer(i, "completion", since, r, "");
            let _ = slot.send(());
        });
        assert_ne!(id, 0, "request {i} did not start");
    } else {
        let text = Arc::new(Mutex::new(String::new()));
        let seen = text.clone();
        let id = llmr::stream_async(
            &req,
            move |chunk| {
                let v: Value = serde_json::from_str(chunk).expect("a chunk is JSON");
                if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                    seen.lock().unwrap().push_str(c);
                }
                true
            },
            move |r| {
                let text = std::mem::take(&mut *text.lock().unwrap());
                tally.answer(i, "stream", since, r, &text);
                let _ = slot.send(());
            },
        );
        assert_ne!(id, 0, "request {i} did not start");
    }
}

/// The cooldowns of the failing deployments seen by sampling their stats every 20 ms until
/// `stop`: for each, when each cooldown was first seen (just after the sample that showed it)
/// and about when it ends.
fn monitor(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<[Vec<(Instant, Instant)>; 2]> {
    std::thread::spawn(move || {
        let mut seen: [Vec<(Instant, Instant)>; 2] = Default::default();
        while !stop.load(Ordering::Relaxed) {
            let stats = llmr::stats().expect("stats");
            // Taken after the sample: a cooldown it shows was in effect before `now`, so a
            // request started after `now` cannot have reached the deployment before it.
            let now = Instant::now();
            let s: Value = serde_json::from_str(&stats).unwrap();
            for (n, id) in FLAKY.iter().enumerate() {
                let d = s["deployments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|d| d["id"] == *id)
                    .expect("the deployment is in the stats");
                if d["cooling_down"] != true {
                    continue;
                }
                let left = d["cooldown"]["remaining_s"].as_f64().unwrap_or(0.0);
                let until = now + Duration::from_secs_f64(left);
                // The same cooldown as the last one seen, or a new one.
                let same = seen[n]
                    .last()
                    .is_some_and(|&(_, u)| u.max(until) - u.min(until) < Duration::from_millis(10));
                if !same {
                    seen[n].push((now, until));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    })
}

/// How many of `cooldowns` the deployment came back from: it answered a request that started
/// after the cooldown was seen in effect and before the next one was seen. Such a request's
/// first attempt could not go to the cooling deployment (the steady ones never cool down), so
/// the attempt that deployment answered came after its cooldown was over.
///
/// Not "started after the cooldown's end": that end is estimated from a sample (`remaining_s`
/// read some time after `now`), and the requests that take a deployment back start within
/// a millisecond of the real end — so the estimate, a little late, missed them now and then.
fn recoveries(cooldowns: &[(Instant, Instant)], answered_starts: &[Instant]) -> usize {
    cooldowns
        .iter()
        .enumerate()
        .filter(|&(k, &(seen, _))| {
            let next = cooldowns.get(k + 1).map(|&(seen, _)| seen);
            answered_starts
                .iter()
                .any(|&t| t > seen && next.map_or(true, |n| t < n))
        })
        .count()
}

#[test]
fn soak_over_four_deployments_two_of_them_failing() {
    let _g = lock();
    let total = requests();
    let warm_up = (total / 10).max(1);
    // Counts only: recording 20,000 requests would be memory the library did not use.
    let s = StandIn::builder()
        .record_limit(0)
        .start()
        .expect("the stand-in starts");
    for (n, t) in FLAKY.iter().enumerate() {
        s.script(t, flaky_script(n * 5, total));
    }
    let flaky_params =
        json!({"litellm_params": {"timeout": FLAKY_TIMEOUT, "stream_timeout": FLAKY_TIMEOUT}});
    let mut entries: Vec<Value> = STEADY
        .iter()
        .map(|t| openai(t, &s.base(t), json!({})))
        .collect();
    entries.extend(
        FLAKY
            .iter()
            .map(|t| openai(t, &s.base(t), flaky_params.clone())),
    );
    init(
        entries,
        settings(json!({
            "routing_strategy": "usage-based-routing",
            "num_retries": 3,
            "allowed_fails": 1,
            "cooldown_time": COOLDOWN_S,
            "retry_after": 0,
            "timeout": 10,
        })),
    );

    let tally = Arc::new(Tally::new(total));
    let (slot, free) = slots();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = monitor(stop.clone());
    let started = Instant::now();
    let mut rss_warm = 0;
    let mut warm_at = Duration::ZERO;
    for i in 0..total {
        if i == warm_up {
            // Wait for the warm-up to be answered, then take the baseline.
            for _ in 0..IN_FLIGHT {
                take_slot(&free, i);
            }
            rss_warm = rss_bytes();
            warm_at = started.elapsed();
            for _ in 0..IN_FLIGHT {
                slot.send(()).unwrap();
            }
        }
        take_slot(&free, i);
        start_request(i, &tally, &slot);
    }
    for _ in 0..IN_FLIGHT {
        take_slot(&free, total);
    }
    let took = started.elapsed();
    let rss_end = rss_bytes();
    stop.store(true, Ordering::Relaxed);
    let cooldowns = sampler.join().expect("the monitor");

    // Every request answered exactly once (and nothing after the end).
    std::thread::sleep(Duration::from_millis(200));
    let unanswered = tally
        .answers
        .iter()
        .filter(|a| a.load(Ordering::SeqCst) == 0)
        .count();
    let outcomes = tally.outcomes.lock().unwrap().clone();
    let served = tally.served.lock().unwrap().clone();
    let answered: u64 = outcomes.values().sum();
    eprintln!(
        "soak: {total} requests in {took:.1?} ({:.0}/s), warm-up {warm_up} in {warm_at:.1?}",
        total as f64 / took.as_secs_f64()
    );
    eprintln!("soak: outcomes {outcomes:?}");
    let mut lat: Vec<u64> = tally
        .latency_us
        .iter()
        .map(|l| l.load(Ordering::Relaxed))
        .collect();
    lat.sort_unstable();
    let pct = |p: usize| lat[(lat.len() - 1) * p / 100] as f64 / 1000.0;
    eprintln!(
        "soak: latency ms p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1}",
        pct(50),
        pct(90),
        pct(99),
        pct(100)
    );
    eprintln!("soak: answered by {served:?}");
    eprintln!(
        "soak: stand-in requests {:?}",
        STEADY
            .iter()
            .chain(&FLAKY)
            .map(|t| (*t, s.count(t)))
            .collect::<Vec<_>>()
    );
    let growth = rss_end.saturating_sub(rss_warm);
    eprintln!(
        "soak: RSS after warm-up {:.1} MiB, at the end {:.1} MiB, growth {:.1} MiB",
        rss_warm as f64 / 1048576.0,
        rss_end as f64 / 1048576.0,
        growth as f64 / 1048576.0
    );
    let problems = tally.problems.lock().unwrap().clone();
    assert!(
        problems.is_empty(),
        "wrong answers:\n  {}",
        problems.join("\n  ")
    );
    assert_eq!(unanswered, 0, "requests never answered");
    assert_eq!(answered, total as u64);
    assert_eq!(llmr::global::in_flight(), 0);

    // Completions always found a healthy deployment; streams failed only when they broke
    // after they began — rarely.
    let count = |kind: &str, status: &str| {
        outcomes
            .get(&(kind, status.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(count("completion", "ok"), total.div_ceil(2) as u64);
    let stream_failures = total as u64 / 2 - count("stream", "ok");
    assert!(
        stream_failures * 10 < total as u64 / 2,
        "{stream_failures} of {} streams failed",
        total / 2
    );

    // The failing deployments failed, were cooled down, and served again after their cooldowns.
    let failed_at = |id: &str| -> u64 {
        stats_of(id)["failures"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
    };
    for (n, id) in FLAKY.iter().enumerate() {
        let starts = tally.flaky_answer_starts[n].lock().unwrap().clone();
        let back = recoveries(&cooldowns[n], &starts);
        eprintln!(
            "soak: {id}: {} failures, {} answers, {} cooldowns seen, {back} of them followed by answers",
            failed_at(id),
            starts.len(),
            cooldowns[n].len()
        );
        assert!(failed_at(id) > 0, "{id} never failed");
        assert!(
            back >= 2,
            "{id} did not serve again after its cooldowns ({} seen, {back} followed by answers)",
            cooldowns[n].len()
        );
    }
    for id in STEADY {
        assert_eq!(failed_at(id), 0, "{id} failed");
        assert!(
            served.get(id).copied().unwrap_or(0) > 0,
            "{id} never answered"
        );
    }
    // Once the faults are over, every deployment is back within its cooldown.
    assert!(
        eventually(Duration::from_secs_f64(COOLDOWN_S + 3.0), || {
            STEADY
                .iter()
                .chain(&FLAKY)
                .all(|id| stats_of(id)["cooling_down"] == false)
        }),
        "a deployment stayed cooling down"
    );

    assert!(
        growth < MAX_GROWTH,
        "memory grew by {} MiB over the run",
        growth >> 20
    );
}
