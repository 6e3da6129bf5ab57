//! Failover and retries, driven through the Rust API against the loopback stand-in.
//!
//! Deployment `a` is made the first choice with a huge `weight` under `simple-shuffle` (the
//! chance that another goes first is about 1e-9), so that what happens after its failure is
//! what the test sees.

mod common;

use std::time::Duration;

use common::*;
use llmr_testkit::{Reply, StandIn};
use serde_json::json;

// simple-shuffle draws by weight, so an order is only likely: these make each wrong draw a
// one-in-a-million event (1e6 against 1e3 was one in a thousand per draw; CI drew it once).
const FIRST: f64 = 1e9;
const SECOND: f64 = 1e3;
const LAST: f64 = 1e-3;

#[test]
fn retryable_failures_fail_over_at_once_to_another_deployment() {
    let _g = lock();
    let s = StandIn::start();
    // (tenant of `a`, what `a` does, extra config of `a`)
    let cases = [
        ("e500-f", json!({})),
        ("e502-f", json!({})),
        ("e503-f", json!({})),
        ("e504-f", json!({})),
        ("e529-f", json!({})),
        ("e408-f", json!({})),
        ("e409-f", json!({})),
        ("e429noretry-f", json!({})),
        ("reset-f", json!({})),
        ("garbage-f", json!({})),
        ("truncated-f", json!({})),
        ("resetmid-f", json!({})),
        ("midstreamerror-f", json!({})),
        ("errorfirst-f", json!({})),
        ("huge-f", json!({})),
        ("trickle-f", json!({"litellm_params": {"timeout": 0.3}})),
        ("hang-f", json!({"litellm_params": {"timeout": 0.3}})),
        ("slow-3000-f", json!({"litellm_params": {"timeout": 0.3}})),
    ];
    for (tenant, extra) in cases {
        let ok = format!("ok-{tenant}");
        let mut a = openai("a", &s.base(tenant), json!({"weight": FIRST}));
        if let (Some(a), Some(extra)) = (a.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                a.insert(k.clone(), v.clone());
            }
        }
        // `retry_after` 5 s: a failover that slept would show in the elapsed time.
        init(
            vec![a, openai("b", &s.base(&ok), json!({"weight": LAST}))],
            settings(json!({"retry_after": 5})),
        );
        let (r, took) = timed_complete(&ask("ping"));
        let resp = r.unwrap_or_else(|e| panic!("{tenant}: {e}"));
        assert_eq!(served_by(&resp), "b", "{tenant}");
        assert_eq!(attempts(&resp), 2, "{tenant}");
        assert_eq!(content(&resp), "echo: ping", "{tenant}");
        assert_eq!(resp["llmr"]["provider"], "openai", "{tenant}");
        assert_eq!(s.count(tenant), 1, "{tenant}: `a` is tried once");
        assert_eq!(s.count(&ok), 1, "{tenant}");
        assert!(
            took < Duration::from_secs(2),
            "{tenant}: the failover waited ({took:?})"
        );
        let failures = &stats_of("a")["failures"];
        let failed: u64 = failures
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(failed, 1, "{tenant}: {failures}");
        assert_eq!(stats_of("b")["successes"], 1, "{tenant}");
        llmr::shutdown();
    }
}

#[test]
fn a_failed_deployment_is_not_tried_again_while_another_is_healthy() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![
            openai("a", &s.base("e500"), json!({"weight": FIRST})),
            openai("b", &s.base("e503"), json!({"weight": SECOND})),
            openai("c", &s.base("ok"), json!({"weight": LAST})),
        ],
        settings(json!({"allowed_fails": 100})),
    );
    for round in 1..=3 {
        let resp = complete(&ask("hi")).unwrap();
        assert_eq!(served_by(&resp), "c");
        assert_eq!(attempts(&resp), 3);
        assert_eq!(resp["llmr"]["fallbacks"], json!(["retry:a", "retry:b"]));
        assert_eq!(s.count("e500"), round);
        assert_eq!(s.count("e503"), round);
        assert_eq!(s.count("ok"), round);
    }
}

#[test]
fn connection_refused_fails_over() {
    let _g = lock();
    let s = StandIn::start();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    init(
        vec![
            openai(
                "a",
                &format!("http://127.0.0.1:{closed}/v1"),
                json!({"weight": FIRST}),
            ),
            openai("b", &s.base("ok"), json!({"weight": LAST})),
        ],
        settings(json!({})),
    );
    let resp = complete(&ask("hi")).unwrap();
    assert_eq!(served_by(&resp), "b");
    assert_eq!(attempts(&resp), 2);
    assert_eq!(stats_of("a")["failures"]["upstream"], 1);
}

#[test]
fn auth_errors_fail_over_only_to_another_deployment() {
    let _g = lock();
    let s = StandIn::start();

    // Another deployment (another key) can help.
    init(
        vec![
            openai("a", &s.base("e401"), json!({"weight": FIRST})),
            openai("b", &s.base("ok"), json!({"weight": LAST})),
        ],
        settings(json!({})),
    );
    let resp = complete(&ask("hi")).unwrap();
    assert_eq!(served_by(&resp), "b");
    assert_eq!(attempts(&resp), 2);
    assert_eq!(s.count("e401"), 1);
    llmr::shutdown();

    // Alone, a 401 is final: the same key will not work on a second try.
    s.reset();
    init(
        vec![openai("a", &s.base("e401"), json!({}))],
        settings(json!({})),
    );
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "auth", "{e}");
    assert_eq!(e["error"]["code"], 6);
    assert_eq!(e["error"]["http_status"], 401);
    assert_eq!(e["error"]["attempts"], 1);
    assert_eq!(e["error"]["deployment_id"], "a");
    assert_eq!(s.count("e401"), 1);
    llmr::shutdown();

    // Every deployment refuses: each is tried once.
    s.reset();
    init(
        vec![
            openai("a", &s.base("e403"), json!({"weight": FIRST})),
            openai("b", &s.base("e401"), json!({"weight": LAST})),
        ],
        settings(json!({})),
    );
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "auth", "{e}");
    assert_eq!(s.count("e403"), 1);
    assert_eq!(s.count("e401"), 1);
}

#[test]
fn client_errors_and_content_policy_are_never_retried() {
    let _g = lock();
    let s = StandIn::start();
    for (tenant, want, code, http) in [
        ("e400", "bad_request", 7, 400),
        ("e404", "bad_request", 7, 404),
        ("e413", "bad_request", 7, 413),
        ("e422", "bad_request", 7, 422),
        ("policy", "content_policy", 8, 400),
    ] {
        let ok = format!("ok-{tenant}");
        init(
            vec![
                openai("a", &s.base(tenant), json!({"weight": FIRST})),
                openai("b", &s.base(&ok), json!({"weight": LAST})),
            ],
            settings(json!({})),
        );
        let e = complete(&ask("hi")).unwrap_err();
        assert_eq!(status(&e), want, "{tenant}: {e}");
        assert_eq!(e["error"]["code"], code, "{tenant}");
        assert_eq!(e["error"]["http_status"], http, "{tenant}");
        assert_eq!(e["error"]["attempts"], 1, "{tenant}");
        assert_eq!(e["error"]["deployment_id"], "a", "{tenant}");
        assert_eq!(e["error"]["provider"], "openai", "{tenant}");
        assert_eq!(s.count(tenant), 1, "{tenant}: retried");
        assert_eq!(s.count(&ok), 0, "{tenant}: failed over");
        llmr::shutdown();
    }
}

#[test]
fn num_retries_bounds_the_attempts() {
    let _g = lock();
    let s = StandIn::start();
    let fail_now = Reply::status(500).header("retry-after", "0");
    for retries in [0u64, 2] {
        let tenant = format!("solo-{retries}");
        s.always(&tenant, fail_now.clone());
        init(
            vec![openai("a", &s.base(&tenant), json!({}))],
            settings(json!({"num_retries": retries})),
        );
        let e = complete(&ask("hi")).unwrap_err();
        assert_eq!(status(&e), "upstream", "{e}");
        assert_eq!(e["error"]["code"], 10);
        assert_eq!(e["error"]["http_status"], 500);
        assert_eq!(e["error"]["attempts"], retries + 1);
        assert_eq!(s.count(&tenant) as u64, retries + 1);
        llmr::shutdown();
    }

    // Over two deployments the bound is on the whole request.
    s.always("pa", fail_now.clone());
    s.always("pb", fail_now);
    init(
        vec![
            openai("a", &s.base("pa"), json!({"weight": FIRST})),
            openai("b", &s.base("pb"), json!({"weight": LAST})),
        ],
        settings(json!({"num_retries": 3, "allowed_fails": 100})),
    );
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "upstream", "{e}");
    assert_eq!(e["error"]["attempts"], 4);
    assert_eq!(s.count("pa") + s.count("pb"), 4);
    assert!(s.count("pa") >= 1 && s.count("pb") >= 1);
}

#[test]
fn the_last_error_names_its_deployment() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![
            openai("a", &s.base("e500"), json!({"weight": FIRST})),
            openai("b", &s.base("e503"), json!({"weight": LAST})),
        ],
        settings(json!({"num_retries": 1})),
    );
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "upstream", "{e}");
    assert_eq!(e["error"]["attempts"], 2);
    assert_eq!(e["error"]["deployment_id"], "b");
    assert_eq!(e["error"]["provider"], "openai");
    assert_eq!(e["error"]["http_status"], 503);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("overloaded"),
        "{e}"
    );
    assert!(e["error"].get("retry_after").is_none(), "{e}");
}

#[test]
fn a_quota_refusal_fails_over_but_is_not_retried_on_the_same_deployment() {
    let _g = lock();
    let s = StandIn::start();
    let quota = Reply::body(
        429,
        json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                         "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}})
        .to_string(),
    );
    s.always("a", quota);
    init(
        vec![openai("a", &s.base("a"), json!({}))],
        settings(json!({})),
    );
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "rate_limited", "{e}");
    assert_eq!(e["error"]["attempts"], 1);
    assert_eq!(s.count("a"), 1);
    llmr::shutdown();

    init(
        vec![
            openai("a", &s.base("a"), json!({"weight": FIRST})),
            openai("b", &s.base("b"), json!({"weight": LAST})),
        ],
        settings(json!({})),
    );
    let resp = complete(&ask("hi")).unwrap();
    assert_eq!(served_by(&resp), "b");
    assert_eq!(s.count("a"), 2);
}

#[test]
fn a_failed_deployment_is_retried_when_the_others_are_at_their_rpm() {
    let _g = lock();
    let s = StandIn::start();
    s.script("a", [Reply::status(500), Reply::status(500)]);
    init(
        vec![
            openai("a", &s.base("a"), json!({"weight": FIRST})),
            openai("b", &s.base("b"), json!({"weight": LAST, "rpm": 1})),
        ],
        settings(json!({"allowed_fails": 100})),
    );
    fresh_minute(5);
    // `a` fails, `b` answers and uses up its rpm.
    assert_eq!(served_by(&complete(&ask("1")).unwrap()), "b");
    // `a` fails again; `b` is at its limit, so `a` is retried after a wait.
    let resp = complete(&ask("2")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(served_by(&resp), "a");
    assert_eq!(attempts(&resp), 2);
    assert_eq!(s.count("a"), 3);
    assert_eq!(s.count("b"), 1);
}

#[test]
fn a_deployment_that_refused_the_key_is_not_tried_again_but_a_failed_one_is() {
    let _g = lock();
    let s = StandIn::start();
    // `a` refuses (403: no cooldown), `b` has room for one request a minute.
    init(
        vec![
            openai("a", &s.base("e403"), json!({"weight": FIRST})),
            openai("b", &s.base("b"), json!({"weight": LAST, "rpm": 1})),
        ],
        settings(json!({"allowed_fails": 100})),
    );
    fresh_minute(5);
    assert_eq!(served_by(&complete(&ask("1")).unwrap()), "b");
    let e = complete(&ask("2")).unwrap_err();
    assert!(["auth", "rate_limited"].contains(&status(&e)), "{e}");
    assert_eq!(s.count("e403"), 2, "one try per request, never a retry");
    llmr::shutdown();

    // `a` fails (500), `b` refuses: `a` is what is left, and is retried.
    s.reset();
    s.script("a", [Reply::status(500)]);
    init(
        vec![
            openai("a", &s.base("a"), json!({"weight": FIRST})),
            openai("b", &s.base("e403"), json!({"weight": LAST})),
        ],
        settings(json!({"allowed_fails": 100})),
    );
    let resp = complete(&ask("hi")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(served_by(&resp), "a");
    assert_eq!(attempts(&resp), 3);
    assert_eq!(s.count("e403"), 1);
}
