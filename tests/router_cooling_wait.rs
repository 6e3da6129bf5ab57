//! `router_settings.max_wait_when_cooling`: when every deployment of the group cools down, a
//! request waits for the first to come back (up to that long) instead of failing at once; a
//! longer cooldown still fails at once, and cancellation and the request's timeout end the wait.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use llmr_testkit::{Reply, StandIn};
use serde_json::{json, Value};

/// Two deployments that each answer 429 with this Retry-After once (so both cool down for that
/// long), then `ok`.
fn two_that_cool(s: &StandIn, retry_after: &str, extra_settings: Value) {
    for t in ["a", "b"] {
        s.script(t, [Reply::status(429).header("retry-after", retry_after)]);
    }
    init(
        vec![
            openai("a", &s.base("a"), json!({"weight": 1e6})),
            openai("b", &s.base("b"), json!({"weight": 1e-6})),
        ],
        settings(extra_settings),
    );
}

#[test]
fn a_request_waits_out_the_cooldown_then_succeeds() {
    let _g = lock();
    let s = StandIn::start();
    two_that_cool(&s, "1", json!({"max_wait_when_cooling": 5}));
    assert_eq!(info()["router_settings"]["max_wait_when_cooling"], 5.0);

    let (r, took) = timed_complete(&ask("hi"));
    let resp = r.unwrap_or_else(|e| panic!("it should have waited: {e}"));
    assert_eq!(
        attempts(&resp),
        3,
        "a (429), b (429), then one of them once back"
    );
    assert!(!content(&resp).is_empty());
    assert_eq!(s.count("a") + s.count("b"), 3);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn a_stream_waits_out_the_cooldown_too() {
    let _g = lock();
    let s = StandIn::start();
    two_that_cool(&s, "1", json!({"max_wait_when_cooling": 5}));
    let st = stream(&ask("hi"), None);
    let resp = st.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(attempts(resp), 3);
    assert!(!st.text().is_empty());
}

#[test]
fn without_the_setting_it_fails_at_once_as_before() {
    let _g = lock();
    let s = StandIn::start();
    two_that_cool(&s, "1", json!({}));
    assert_eq!(info()["router_settings"]["max_wait_when_cooling"], 0.0);
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "rate_limited", "{e}");
    assert!(e["error"]["retry_after"].as_f64().unwrap() <= 1.0, "{e}");
    assert_eq!(
        s.count("a") + s.count("b"),
        2,
        "no attempt after the cooldowns"
    );
}

#[test]
fn a_cooldown_longer_than_the_max_fails_at_once_with_retry_after() {
    let _g = lock();
    let s = StandIn::start();
    two_that_cool(&s, "30", json!({"max_wait_when_cooling": 2}));
    let (r, took) = timed_complete(&ask("hi"));
    let e = r.unwrap_err();
    assert_eq!(status(&e), "rate_limited", "{e}");
    let retry_after = e["error"]["retry_after"].as_f64().unwrap();
    assert!(retry_after > 25.0 && retry_after <= 30.0, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_wait_when_cooling"),
        "{e}"
    );
    assert!(took < Duration::from_secs(10), "it waited: {took:?}");
}

#[test]
fn the_request_timeout_ends_the_wait() {
    let _g = lock();
    let s = StandIn::start();
    two_that_cool(&s, "20", json!({"max_wait_when_cooling": 60}));
    let mut req = ask("hi");
    req["timeout"] = json!(1);
    let (r, took) = timed_complete(&req);
    let e = r.unwrap_err();
    assert_eq!(status(&e), "timeout", "{e}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(s.count("a") + s.count("b"), 2);
}

#[test]
fn cancelling_ends_the_wait() {
    let _g = lock();
    let s = StandIn::start();
    two_that_cool(&s, "20", json!({"max_wait_when_cooling": 60}));
    let (tx, rx) = mpsc::channel();
    let id = llmr::complete_async(&ask("hi").to_string(), move |r| {
        let _ = tx.send(r);
    });
    assert_ne!(id, 0);
    // Both have answered 429: the request is now waiting for them.
    assert!(eventually(Duration::from_secs(10), || s.count("a")
        + s.count("b")
        == 2));
    std::thread::sleep(Duration::from_millis(100));
    assert!(rx.try_recv().is_err(), "it did not wait");
    assert!(llmr::cancel(id), "the waiting request is in flight");
    let r = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("on_done ran soon after the cancel");
    let e = r.unwrap_err();
    assert_eq!(e.status, llmr::Status::Cancelled, "{}", e.to_json());
    assert_eq!(s.count("a") + s.count("b"), 2);
}
