//! Cooldowns, Retry-After, backoff of a lone deployment, and rpm limits under concurrency.

mod common;

use std::time::Duration;

use common::*;
use llmr_testkit::{Reply, StandIn};
use serde_json::json;

const FIRST: f64 = 1e6;
const LAST: f64 = 1e-3;

fn secs(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn a_429_with_retry_after_cools_the_deployment_for_that_long() {
    let _g = lock();
    let s = StandIn::start();
    s.script("a", [Reply::status(429).header("retry-after", "1")]);
    init(
        vec![
            openai("a", &s.base("a"), json!({"weight": FIRST})),
            openai("b", &s.base("b"), json!({"weight": LAST})),
        ],
        settings(json!({"allowed_fails": 100, "cooldown_time": 30})),
    );
    let resp = complete(&ask("hi")).unwrap();
    assert_eq!(served_by(&resp), "b");
    assert_eq!(attempts(&resp), 2);

    let a = stats_of("a");
    assert_eq!(a["cooling_down"], true, "{a}");
    let cd = &a["cooldown"];
    assert_eq!(cd["status"], "rate_limited", "{cd}");
    assert_eq!(cd["http_status"], 429, "{cd}");
    assert!(cd["reason"].as_str().unwrap().contains("429"), "{cd}");
    let left = secs(&cd["remaining_s"]);
    assert!(
        left > 0.5 && left <= 1.0,
        "the provider's Retry-After (1 s), not cooldown_time: {left}"
    );
    assert_eq!(a["failures"]["rate_limited"], 1, "{a}");
    assert_eq!(stats_of("b")["cooling_down"], false);

    // While it cools, `a` gets nothing.
    for _ in 0..3 {
        assert_eq!(served_by(&complete(&ask("hi")).unwrap()), "b");
    }
    assert_eq!(s.count("a"), 1);

    // Then it is back.
    assert!(eventually(Duration::from_secs(3), || stats_of("a")
        ["cooling_down"]
        == false));
    let resp = complete(&ask("hi")).unwrap();
    assert_eq!(served_by(&resp), "a");
    assert_eq!(attempts(&resp), 1);
}

#[test]
fn every_deployment_cooling_is_rate_limited_at_once() {
    let _g = lock();
    let s = StandIn::start();
    for t in ["a", "b"] {
        s.always(t, Reply::status(429).header("retry-after", "20"));
    }
    init(
        vec![
            openai("a", &s.base("a"), json!({"weight": FIRST})),
            openai("b", &s.base("b"), json!({"weight": LAST})),
        ],
        settings(json!({"retry_after": 5})),
    );
    // Both answer 429 and cool down; nothing is left, and nothing is slept on.
    let (r, took) = timed_complete(&ask("hi"));
    let e = r.unwrap_err();
    assert_eq!(status(&e), "rate_limited", "{e}");
    assert_eq!(e["error"]["code"], 5);
    assert!(took < Duration::from_secs(2), "{took:?}");
    let ra = secs(&e["error"]["retry_after"]);
    assert!(ra > 15.0 && ra <= 20.0, "{e}");
    assert_eq!(s.count("a"), 1);
    assert_eq!(s.count("b"), 1);

    // The next request does not reach the provider and does not wait.
    let (r, took) = timed_complete(&ask("hi"));
    let e = r.unwrap_err();
    assert_eq!(status(&e), "rate_limited", "{e}");
    assert!(took < Duration::from_millis(200), "{took:?}");
    let ra = secs(&e["error"]["retry_after"]);
    assert!(ra > 15.0 && ra <= 20.0, "{e}");
    assert_eq!(s.count("a") + s.count("b"), 2);

    // Streams too.
    let st = stream(&ask("hi"), None);
    assert_eq!(status(st.result.as_ref().unwrap_err()), "rate_limited");
    assert!(st.chunks.is_empty());
    assert_eq!(s.count("a") + s.count("b"), 2);

    for id in ["a", "b"] {
        let d = stats_of(id);
        assert_eq!(d["cooling_down"], true, "{d}");
        assert_eq!(d["cooldown"]["status"], "rate_limited", "{d}");
        assert!(
            d["cooldown"]["reason"].as_str().unwrap().contains("429"),
            "{d}"
        );
    }
}

#[test]
fn a_lone_deployment_is_never_cooled_and_waits_for_retry_after() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![openai("a", &s.base("a"), json!({}))],
        settings(json!({})),
    );

    // Retry-After 1 s is honoured.
    s.script("a", [Reply::status(429).header("retry-after", "1")]);
    let (r, took) = timed_complete(&ask("hi"));
    let resp = r.unwrap();
    assert_eq!(attempts(&resp), 2);
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    assert_eq!(stats_of("a")["cooling_down"], false);

    // A Retry-After beyond 60 s is no retry hint: backoff from 0.5 s (with jitter) instead.
    s.script("a", [Reply::status(429).header("retry-after", "120")]);
    let (r, took) = timed_complete(&ask("hi"));
    assert_eq!(attempts(&r.unwrap()), 2);
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(stats_of("a")["cooling_down"], false);

    // Still failing after the retries: rate_limited, and still not cooled down.
    s.always("a", Reply::status(429).header("retry-after", "0.2"));
    let (r, took) = timed_complete(&ask("hi"));
    let e = r.unwrap_err();
    assert_eq!(status(&e), "rate_limited", "{e}");
    assert_eq!(e["error"]["attempts"], 4, "num_retries 3");
    assert_eq!(e["error"]["retry_after"], 0.2, "{e}");
    assert_eq!(e["error"]["http_status"], 429, "{e}");
    assert!(took >= Duration::from_millis(550), "{took:?}");
    assert_eq!(stats_of("a")["cooling_down"], false);

    // A Retry-After that would outlast the request's timeout is not slept on.
    s.always("a", Reply::status(429).header("retry-after", "5"));
    let mut r = ask("hi");
    r["timeout"] = json!(1);
    let before = s.count("a");
    let (res, took) = timed_complete(&r);
    let e = res.unwrap_err();
    assert_eq!(status(&e), "rate_limited", "{e}");
    assert_eq!(e["error"]["retry_after"], 5.0, "{e}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!(s.count("a"), before + 1);

    s.clear_always("a");
    assert_eq!(served_by(&complete(&ask("hi")).unwrap()), "a");
}

#[test]
fn the_router_retry_after_is_the_floor_of_a_wait() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![openai("a", &s.base("a"), json!({}))],
        settings(json!({"retry_after": 1})),
    );
    s.script("a", [Reply::status(500)]);
    let (r, took) = timed_complete(&ask("hi"));
    assert_eq!(attempts(&r.unwrap()), 2);
    assert!(took >= Duration::from_millis(990), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

#[test]
fn more_than_allowed_fails_cools_a_deployment_down() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![
            openai(
                "a",
                &s.base("e500"),
                json!({"weight": FIRST, "litellm_params": {"cooldown_time": 5}}),
            ),
            openai("b", &s.base("ok"), json!({"weight": LAST})),
        ],
        settings(json!({"allowed_fails": 1, "cooldown_time": 30})),
    );
    assert_eq!(served_by(&complete(&ask("1")).unwrap()), "b");
    assert_eq!(
        stats_of("a")["cooling_down"],
        false,
        "one failure is allowed"
    );
    assert_eq!(served_by(&complete(&ask("2")).unwrap()), "b");
    let a = stats_of("a");
    assert_eq!(a["cooling_down"], true, "{a}");
    let reason = a["cooldown"]["reason"].as_str().unwrap();
    assert!(reason.contains("failures within a minute"), "{reason}");
    let left = secs(&a["cooldown"]["remaining_s"]);
    assert!(
        left > 4.0 && left <= 5.0,
        "the deployment's own cooldown_time: {left}"
    );
    let resp = complete(&ask("3")).unwrap();
    assert_eq!(served_by(&resp), "b");
    assert_eq!(attempts(&resp), 1);
    assert_eq!(s.count("e500"), 2);
}

#[test]
fn auth_and_not_found_cool_down_at_once_when_the_group_has_another() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![
            openai("a", &s.base("e401"), json!({"weight": FIRST})),
            openai("b", &s.base("ok"), json!({"weight": LAST})),
        ],
        settings(json!({"allowed_fails": 100, "cooldown_time": 7})),
    );
    assert_eq!(served_by(&complete(&ask("hi")).unwrap()), "b");
    let a = stats_of("a");
    assert_eq!(a["cooldown"]["status"], "auth", "{a}");
    assert_eq!(a["cooldown"]["http_status"], 401, "{a}");
    let left = secs(&a["cooldown"]["remaining_s"]);
    assert!(left > 6.0 && left <= 7.0, "cooldown_time: {left}");
    complete(&ask("hi")).unwrap();
    assert_eq!(s.count("e401"), 1);
}

#[test]
fn rpm_limits_hold_under_concurrency() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![
            openai("a", &s.base("slow-100-a"), json!({"rpm": 5})),
            openai("b", &s.base("slow-100-b"), json!({"rpm": 5})),
        ],
        settings(json!({"routing_strategy": "usage-based-routing"})),
    );
    fresh_minute(5);
    let results: Vec<(Result<serde_json::Value, serde_json::Value>, Duration)> =
        std::thread::scope(|sc| {
            let handles: Vec<_> = (0..20)
                .map(|i| sc.spawn(move || timed_complete(&ask(&format!("q{i}")))))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
    let ok = results.iter().filter(|(r, _)| r.is_ok()).count();
    assert!(s.count("slow-100-a") <= 5, "a: {}", s.count("slow-100-a"));
    assert!(s.count("slow-100-b") <= 5, "b: {}", s.count("slow-100-b"));
    assert_eq!(ok, 10, "both deployments used to their limit");
    for (r, took) in &results {
        if let Err(e) = r {
            assert_eq!(status(e), "rate_limited", "{e}");
            let ra = secs(&e["error"]["retry_after"]);
            assert!(ra > 0.0 && ra <= 60.0, "{e}");
            assert!(
                *took < Duration::from_millis(500),
                "a request over the limit is answered at once: {took:?}"
            );
        }
    }
    let a = stats_of("a");
    assert_eq!(a["requests_this_minute"], 5, "{a}");
    assert_eq!(a["rpm"], 5);
}

#[test]
fn tpm_limits_are_reserved_before_sending() {
    let _g = lock();
    let s = StandIn::start();
    // Short answers, so that what a request uses is about its prompt.
    s.always("a", Reply::text("fine"));
    s.always("b", Reply::text("fine"));
    init(
        vec![
            openai("a", &s.base("a"), json!({"tpm": 1500})),
            openai("b", &s.base("b"), json!({"tpm": 1500})),
        ],
        settings(json!({"routing_strategy": "usage-based-routing"})),
    );
    fresh_minute(5);
    // About 1000 tokens each: one fits on each deployment, a third fits on neither.
    let big = ask(&"word ".repeat(800));
    let first = served_by(&complete(&big).unwrap());
    let second = served_by(&complete(&big).unwrap());
    assert_ne!(first, second);
    let (r, took) = timed_complete(&big);
    let e = r.unwrap_err();
    assert_eq!(status(&e), "rate_limited", "{e}");
    assert!(e["error"]["retry_after"].as_f64().unwrap() > 0.0, "{e}");
    assert!(took < Duration::from_millis(200), "{took:?}");
    assert_eq!(s.count("a") + s.count("b"), 2);
    // A small one still fits.
    complete(&ask("hi")).unwrap();
    assert_eq!(stats_of("a")["tpm"], 1500);
}

#[test]
fn a_retry_that_is_not_sent_does_not_count_against_rpm() {
    let _g = lock();
    let s = StandIn::start();
    s.script("a", [Reply::status(429).header("retry-after", "5")]);
    init(
        vec![openai("a", &s.base("a"), json!({"rpm": 2}))],
        settings(json!({})),
    );
    fresh_minute(5);
    // The retry would wait past the request's timeout, so it is never sent.
    let mut r = ask("hi");
    r["timeout"] = json!(1);
    let e = complete(&r).unwrap_err();
    assert_eq!(status(&e), "rate_limited", "{e}");
    assert_eq!(s.count("a"), 1);
    assert_eq!(stats_of("a")["requests_this_minute"], 1);
    // One request of the two is left this minute.
    complete(&ask("hi")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.count("a"), 2);
}
