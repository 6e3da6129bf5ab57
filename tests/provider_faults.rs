//! The provider-fault matrix: every way a provider fails (status answers, broken connections,
//! broken bodies and streams, silence, slowness, oversize bodies, errors inside a 200), for a
//! completion and a stream, against a lone deployment and against a pair (the faulty one
//! first, a healthy one second). For each it asserts the final status, whether it failed over
//! (`llmr.attempts`, who answered, the stand-in's counts), whether the faulty deployment was
//! cooled down (`llmr::stats()`), and a generous bound on the time taken, so that nothing hangs.
//!
//! The table is [`faults`]; the checks are in [`alone`] and [`pair`]. Router settings are fixed
//! for the whole matrix: `num_retries` 1, `allowed_fails` 1, `retry_after` 0. Faults that are
//! silence or slowness get a 0.3 s deployment `timeout` (completions) or `stream_timeout`
//! (streams), the other of the two set to 30 s, so that each shows it bounds its own kind.

mod common;

use std::time::{Duration, Instant};

use common::*;
use llmr::providers::http::MAX_BODY_BYTES;
use llmr::sse::MAX_EVENT_BYTES;
use llmr_testkit::{refusing_base, Reply, StandIn, ENDLESS_PIECE, HUGE_PADDING};
use serde_json::{json, Value};

const FIRST: f64 = 1e6;
const LAST: f64 = 1e-3;
const NUM_RETRIES: u64 = 1;
const ALLOWED_FAILS: u64 = 1;
/// The deployment timeout of the silent and slow faults.
const QUICK: f64 = 0.3;
/// Generous bounds: a case over them hangs somewhere.
const ALONE_WITHIN: Duration = Duration::from_secs(6);
const PAIR_WITHIN: Duration = Duration::from_secs(6);
const PROMPT: &str = "alpha beta gamma";
const ANSWER: &str = "echo: alpha beta gamma";

/// What a request meets.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Then {
    /// A failure that is retried: a healthy deployment answers at once; alone, the deployment
    /// is tried `1 + num_retries` times and the request ends with this status (and HTTP status).
    Retried(&'static str, Option<u16>),
    /// A refusal (the key): another deployment answers; alone, it ends at once with this.
    Refused(&'static str, Option<u16>),
    /// A stream that broke after this many chunks went out: final where it happened (what was
    /// delivered stays delivered, nothing is sent twice), with this status.
    BrokeAfter(&'static str, usize),
    /// The faulty deployment answers after all.
    Answered,
}

/// When the faulty deployment of a pair is cooled down.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cools {
    /// At its first failure.
    Now,
    /// Once it failed more than `allowed_fails` times (here: at its second failure).
    AfterAllowedFails,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Completion,
    Stream,
}

/// Who stands in for the faulty deployment.
enum Provider {
    /// The stand-in tenant of the fault's name (its preset).
    Preset,
    /// The stand-in tenant of the fault's name, always answering this.
    Always(Reply),
    /// A port where nothing listens.
    Refusing,
}

struct Fault {
    name: &'static str,
    provider: Provider,
    /// Silence or slowness: give the deployment a short timeout.
    quick: bool,
    completion: (Then, Cools),
    stream: (Then, Cools),
}

fn fault(name: &'static str, completion: (Then, Cools), stream: (Then, Cools)) -> Fault {
    Fault {
        name,
        provider: Provider::Preset,
        quick: false,
        completion,
        stream,
    }
}

fn both(name: &'static str, then: (Then, Cools)) -> Fault {
    fault(name, then, then)
}

impl Fault {
    fn answering(mut self, reply: Reply) -> Fault {
        self.provider = Provider::Always(reply);
        self
    }

    fn refusing(mut self) -> Fault {
        self.provider = Provider::Refusing;
        self
    }

    fn quick(mut self) -> Fault {
        self.quick = true;
        self
    }

    fn expect(&self, kind: Kind) -> (Then, Cools) {
        match kind {
            Kind::Completion => self.completion,
            Kind::Stream => self.stream,
        }
    }
}

use Cools::{AfterAllowedFails, Never, Now};
use Then::{Answered, BrokeAfter, Refused, Retried};

/// The matrix. Preset names are the stand-in's (see `llmr_testkit`).
fn faults() -> Vec<Fault> {
    let upstream = |http| (Retried("upstream", http), AfterAllowedFails);
    let broken = (Retried("upstream", None), AfterAllowedFails);
    let timeout = (Retried("timeout", None), AfterAllowedFails);
    vec![
        // Status answers.
        both("e429-retryafter", (Retried("rate_limited", Some(429)), Now))
            .answering(Reply::status(429).header("retry-after", "1")),
        both("e429noretry", (Retried("rate_limited", Some(429)), Now)),
        both("e500", upstream(Some(500))),
        both("e502", upstream(Some(502))),
        both("e503", upstream(Some(503))),
        both("e504", upstream(Some(504))),
        both("e401", (Refused("auth", Some(401)), Now)),
        both("e403", (Refused("auth", Some(403)), AfterAllowedFails)),
        // Connections.
        both("refused", broken).refusing(),
        both("reset", broken),
        both("resethead", broken),
        // Bodies and streams cut short.
        fault(
            "resetmid", broken,
            broken, // a JSON body where a stream was asked for, cut: nothing went out
        ),
        fault(
            "truncated",
            broken,
            (BrokeAfter("upstream", 2), AfterAllowedFails),
        ),
        fault(
            "midevent",
            broken,
            (BrokeAfter("upstream", 1), AfterAllowedFails),
        ),
        fault(
            "earlyend",
            broken,
            (BrokeAfter("upstream", 2), AfterAllowedFails),
        ),
        // The finishing chunk came, `[DONE]` did not: the answer is whole.
        both("nodone", (Answered, Never)),
        // Silence and slowness.
        both("hang", timeout).quick(),
        both("trickle", timeout).quick(),
        fault(
            "stall",
            timeout,
            (BrokeAfter("timeout", 2), AfterAllowedFails),
        )
        .quick(),
        // Nonsense and size.
        both("garbage", broken),
        both("huge", broken),
        both("hugeerror", upstream(Some(503))),
        // An error inside a 200 (a stream's error event: before or after content).
        fault(
            "errorfirst",
            (Retried("upstream", None), AfterAllowedFails),
            (Retried("upstream", None), AfterAllowedFails),
        ),
        fault(
            "midstreamerror",
            (Retried("upstream", None), AfterAllowedFails),
            (BrokeAfter("upstream", 1), AfterAllowedFails),
        ),
    ]
}

/// What one request gave.
struct Outcome {
    result: Result<Value, Value>,
    chunks: usize,
    text: String,
}

fn call(kind: Kind) -> Outcome {
    let req = ask(PROMPT);
    match kind {
        Kind::Completion => {
            let result = complete(&req);
            let text = result.as_ref().map(content).unwrap_or_default();
            Outcome {
                result,
                chunks: 0,
                text,
            }
        }
        Kind::Stream => {
            let st = stream(&req, None);
            Outcome {
                chunks: st.chunks.len(),
                text: st.text(),
                result: st.result,
            }
        }
    }
}

/// The faulty deployment `a` (and, for a pair, the healthy `b`), initialised.
fn start(s: &StandIn, f: &Fault, kind: Kind, pair: bool) {
    let base = match &f.provider {
        Provider::Preset => s.base(f.name),
        Provider::Always(reply) => {
            s.always(f.name, reply.clone());
            s.base(f.name)
        }
        Provider::Refusing => refusing_base(),
    };
    let params = match (f.quick, kind) {
        (false, _) => json!({}),
        (true, Kind::Completion) => json!({"timeout": QUICK, "stream_timeout": 30}),
        (true, Kind::Stream) => json!({"timeout": 30, "stream_timeout": QUICK}),
    };
    let mut entries = vec![openai(
        "a",
        &base,
        json!({"weight": FIRST, "litellm_params": params}),
    )];
    if pair {
        entries.push(openai("b", &s.base(&healthy(f)), json!({"weight": LAST})));
    }
    init(
        entries,
        settings(json!({
            "num_retries": NUM_RETRIES,
            "allowed_fails": ALLOWED_FAILS,
            "cooldown_time": 30,
            "retry_after": 0,
        })),
    );
}

fn healthy(f: &Fault) -> String {
    format!("ok-{}", f.name)
}

/// Requests the faulty deployment received (a refusing port receives none).
fn reached(s: &StandIn, f: &Fault) -> Option<u64> {
    match f.provider {
        Provider::Refusing => None,
        _ => Some(s.count(f.name) as u64),
    }
}

fn failures_of(id: &str) -> u64 {
    stats_of(id)["failures"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// Collects the matrix's mismatches, so that one run shows every cell that is wrong.
#[derive(Default)]
struct Report {
    problems: Vec<String>,
}

impl Report {
    fn check(&mut self, cell: &str, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(format!("{cell}: {}", what()));
        }
    }

    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, cell: &str, what: &str, got: T, want: T) {
        if got != want {
            self.problems
                .push(format!("{cell}: {what} is {got:?}, expected {want:?}"));
        }
    }

    fn finish(self, title: &str) {
        assert!(
            self.problems.is_empty(),
            "{title}: {} mismatches:\n  {}",
            self.problems.len(),
            self.problems.join("\n  ")
        );
    }
}

/// The error of an outcome, checked against a status and an HTTP status.
fn check_error(r: &mut Report, cell: &str, o: &Outcome, status_name: &str, http: Option<u16>) {
    match &o.result {
        Ok(resp) => r.check(cell, false, || {
            format!("answered, expected {status_name}: {resp}")
        }),
        Err(e) => {
            r.eq(cell, "status", status(e), status_name);
            r.eq(
                cell,
                "http_status",
                e["error"]["http_status"].as_u64(),
                http.map(u64::from),
            );
            r.eq(
                cell,
                "deployment_id",
                e["error"]["deployment_id"].as_str(),
                Some("a"),
            );
        }
    }
}

/// An answer of `id`, after `attempts` attempts, whole.
fn check_answer(r: &mut Report, cell: &str, o: &Outcome, id: &str, attempts_: u64, kind: Kind) {
    match &o.result {
        Err(e) => r.check(cell, false, || {
            format!("failed, expected an answer of {id}: {e}")
        }),
        Ok(resp) => {
            r.eq(cell, "answered by", served_by(resp), id.to_owned());
            r.eq(cell, "llmr.attempts", attempts(resp), attempts_);
            r.eq(cell, "content", content(resp), ANSWER.to_owned());
            if kind == Kind::Stream {
                r.eq(cell, "streamed text", o.text.clone(), ANSWER.to_owned());
            }
        }
    }
}

fn check_broke_after(r: &mut Report, cell: &str, o: &Outcome, status_name: &str, n: usize) {
    check_error(r, cell, o, status_name, None);
    if let Err(e) = &o.result {
        r.eq(cell, "attempts", e["error"]["attempts"].as_u64(), Some(1));
    }
    r.eq(cell, "chunks delivered", o.chunks, n);
    r.check(
        cell,
        ANSWER.starts_with(&o.text) && !o.text.is_empty(),
        || format!("delivered {:?}, not a beginning of the answer", o.text),
    );
}

/// A lone deployment: never cooled down; retried after a backoff when the failure is retryable.
fn alone(kind: Kind) {
    let _g = lock();
    let s = StandIn::start();
    let mut r = Report::default();
    for f in faults() {
        let cell = format!("{} ({kind:?}, alone)", f.name);
        let cell = cell.as_str();
        let (then, _) = f.expect(kind);
        start(&s, &f, kind, false);
        let t = Instant::now();
        let o = call(kind);
        let took = t.elapsed();
        r.check(cell, took < ALONE_WITHIN, || format!("took {took:?}"));
        let tries = match then {
            Retried(st, http) => {
                check_error(&mut r, cell, &o, st, http);
                1 + NUM_RETRIES
            }
            Refused(st, http) => {
                check_error(&mut r, cell, &o, st, http);
                1
            }
            BrokeAfter(st, n) => {
                check_broke_after(&mut r, cell, &o, st, n);
                1
            }
            Answered => {
                check_answer(&mut r, cell, &o, "a", 1, kind);
                1
            }
        };
        if let Err(e) = &o.result {
            r.eq(
                cell,
                "attempts",
                e["error"]["attempts"].as_u64(),
                Some(tries),
            );
            r.eq(cell, "failures in stats", failures_of("a"), tries);
        }
        if let Some(n) = reached(&s, &f) {
            r.eq(cell, "requests at the stand-in", n, tries);
        }
        r.eq(
            cell,
            "cooling_down",
            stats_of("a")["cooling_down"].clone(),
            json!(false),
        );
        r.eq(
            cell,
            "in_flight",
            stats_of("a")["in_flight"].clone(),
            json!(0),
        );
        llmr::shutdown();
    }
    r.finish(&format!("{kind:?}, alone"));
}

/// A faulty deployment `a` tried first, a healthy `b` behind it. Three requests: the first
/// meets the fault; the second shows whether `a` was cooled down by it (then `b` answers at
/// once) or is tried again; the third, once `a` is cooling, goes to `b` at once.
fn pair(kind: Kind) {
    let _g = lock();
    let s = StandIn::start();
    let mut r = Report::default();
    for f in faults() {
        let cell = format!("{} ({kind:?}, pair)", f.name);
        let cell = cell.as_str();
        let (then, cools) = f.expect(kind);
        start(&s, &f, kind, true);
        let ok = healthy(&f);
        let t = Instant::now();
        let mut a_tries = 0u64;
        let mut b_answers = 0u64;
        for round in 1..=3 {
            let a_cooling = stats_of("a")["cooling_down"] == true;
            if round == 3 && !a_cooling {
                break;
            }
            let cell = format!("{cell} request {round}");
            let cell = cell.as_str();
            let o = call(kind);
            if a_cooling {
                // A cooling deployment is skipped: `b` at the first attempt.
                check_answer(&mut r, cell, &o, "b", 1, kind);
                b_answers += 1;
                continue;
            }
            a_tries += 1;
            match then {
                Retried(..) | Refused(..) => {
                    check_answer(&mut r, cell, &o, "b", 2, kind);
                    b_answers += 1;
                }
                BrokeAfter(st, n) => check_broke_after(&mut r, cell, &o, st, n),
                Answered => check_answer(&mut r, cell, &o, "a", 1, kind),
            }
            let cooling = stats_of("a")["cooling_down"] == true;
            let want = match cools {
                Now => true,
                AfterAllowedFails => a_tries > ALLOWED_FAILS,
                Never => false,
            };
            r.eq(cell, "a cooling down afterwards", cooling, want);
            if cooling {
                let cd = stats_of("a")["cooldown"].clone();
                if let Retried(st, http) | Refused(st, http) = then {
                    if cools == Now {
                        r.eq(cell, "cooldown.status", cd["status"].as_str(), Some(st));
                        r.eq(
                            cell,
                            "cooldown.http_status",
                            cd["http_status"].as_u64(),
                            http.map(u64::from),
                        );
                    }
                }
                let left = cd["remaining_s"].as_f64().unwrap_or(-1.0);
                r.check(cell, left > 0.0 && left <= 30.0, || {
                    format!("cooldown {cd}")
                });
            }
        }
        let took = t.elapsed();
        r.check(cell, took < PAIR_WITHIN, || format!("took {took:?}"));
        if let Some(n) = reached(&s, &f) {
            r.eq(cell, "requests at the faulty stand-in", n, a_tries);
        }
        r.eq(
            cell,
            "requests at the healthy one",
            s.count(&ok) as u64,
            b_answers,
        );
        if then != Answered {
            r.eq(cell, "failures of a in stats", failures_of("a"), a_tries);
        }
        r.eq(
            cell,
            "successes of b in stats",
            stats_of("b")["successes"].as_u64(),
            Some(b_answers),
        );
        llmr::shutdown();
    }
    r.finish(&format!("{kind:?}, pair"));
}

#[test]
fn completion_alone() {
    alone(Kind::Completion);
}

#[test]
fn completion_with_a_healthy_deployment() {
    pair(Kind::Completion);
}

#[test]
fn stream_alone() {
    alone(Kind::Stream);
}

#[test]
fn stream_with_a_healthy_deployment() {
    pair(Kind::Stream);
}

/// What the stand-in sent a tenant, once the exchange ended (the stand-in notices that the client
/// went away at its next write).
fn sent_bytes(s: &StandIn, tenant: &str) -> u64 {
    eventually(Duration::from_secs(5), || s.bytes_sent(tenant) > 0);
    s.bytes_sent(tenant)
}

/// The body limits: a body past [`MAX_BODY_BYTES`] is an upstream error once that much was read,
/// not after all of it; an error body is read to 64 KiB only; a stream event past
/// [`MAX_EVENT_BYTES`] ends the stream; a streamed answer past [`MAX_BODY_BYTES`] too.
#[test]
fn oversize_bodies_are_cut_off_at_the_limit() {
    let _g = lock();
    let s = StandIn::start();
    let solo = |tenant: &str| {
        init(
            vec![openai("a", &s.base(tenant), json!({}))],
            settings(json!({"num_retries": 0})),
        );
    };
    let limit = MAX_BODY_BYTES as u64;

    solo("huge");
    let (r, took) = timed_complete(&ask("hi"));
    let e = r.unwrap_err();
    assert_eq!(status(&e), "upstream", "{e}");
    assert_eq!(e["error"]["code"], 10);
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("larger than {} MiB", limit >> 20)),
        "{msg}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    // The client read the limit, then stopped: far less than the whole body went out (the
    // rest of what was sent sits in socket buffers).
    let sent = sent_bytes(&s, "huge");
    assert!(sent > limit, "cut off before the limit: {sent} bytes sent");
    assert!(
        sent < HUGE_PADDING,
        "the whole {HUGE_PADDING}-byte body was sent ({sent})"
    );
    llmr::shutdown();

    solo("hugeerror");
    let (r, took) = timed_complete(&ask("hi"));
    let e = r.unwrap_err();
    assert_eq!(status(&e), "upstream", "{e}");
    assert_eq!(e["error"]["http_status"], 503);
    assert!(took < Duration::from_secs(10), "{took:?}");
    let sent = sent_bytes(&s, "hugeerror");
    assert!(
        sent < limit,
        "an error body is read to its own, smaller limit ({sent} bytes sent)"
    );
    llmr::shutdown();

    solo("huge-stream"); // the `huge` preset, counted apart
    let st = stream(&ask("hi"), None);
    let e = st.result.as_ref().unwrap_err();
    assert_eq!(status(e), "upstream", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{} MiB", MAX_EVENT_BYTES >> 20)),
        "{e}"
    );
    assert!(st.chunks.is_empty());
    assert!(st.elapsed < Duration::from_secs(10), "{:?}", st.elapsed);
    let sent = sent_bytes(&s, "huge-stream");
    assert!(
        sent > MAX_EVENT_BYTES as u64 && sent < HUGE_PADDING,
        "{sent} bytes sent"
    );
    llmr::shutdown();

    // A body with no length that never ends is cut at the limit too.
    solo("endless");
    let (r, took) = timed_complete(&ask("hi"));
    let e = r.unwrap_err();
    assert_eq!(status(&e), "upstream", "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("larger than {} MiB", limit >> 20)),
        "{msg}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    llmr::shutdown();

    // So is a stream that never ends: what is kept of it (the answer, assembled) is bounded as
    // a completion's body is, and the chunks delivered before stay delivered. (The callback
    // stops a stream that goes on past the limit, so that a failure here cannot hang.)
    solo("endless-stream");
    let pieces = MAX_BODY_BYTES / ENDLESS_PIECE;
    let st = stream(&ask("hi"), Some(pieces + 100));
    let e = st.result.as_ref().unwrap_err();
    assert_eq!(status(e), "upstream", "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("larger than {} MiB", limit >> 20)),
        "{msg}"
    );
    assert!(
        st.chunks.len() >= pieces - 1 && st.chunks.len() <= pieces + 1,
        "{} chunks delivered",
        st.chunks.len()
    );
    assert!(st.elapsed < Duration::from_secs(30), "{:?}", st.elapsed);
}

#[test]
fn an_http_api_base_on_an_https_port_says_so() {
    let _g = lock();
    // A TLS server (rustls) answers a plain-text request with an alert: an api_base written
    // http:// for a provider that speaks only HTTPS.
    let server = common::tls::serve(&[b"http/1.1"], |_tls| async {});
    let base = format!("http://127.0.0.1:{}/v1", server.port);
    init(
        vec![openai("a", &base, json!({}))],
        settings(json!({"num_retries": 0})),
    );
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "upstream", "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("answered in TLS") && msg.contains("https://"),
        "{msg}"
    );
    llmr::shutdown();
}
