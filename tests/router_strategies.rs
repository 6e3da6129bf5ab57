//! Routing strategies: simple-shuffle weights, least-busy, latency-based, usage-based.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use llmr_testkit::StandIn;
use serde_json::json;

fn shares(n: usize) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for _ in 0..n {
        let resp = complete(&ask("hi")).unwrap();
        *by.entry(served_by(&resp)).or_insert(0) += 1;
    }
    by
}

#[test]
fn simple_shuffle_follows_weight_then_rpm() {
    let _g = lock();
    let n = 400;
    init(
        vec![
            mock("a", json!({"weight": 3})),
            mock("b", json!({"weight": 1})),
        ],
        settings(json!({"routing_strategy": "simple-shuffle"})),
    );
    let by = shares(n);
    let a = by.get("a").copied().unwrap_or(0) as f64 / n as f64;
    assert!((0.65..=0.85).contains(&a), "weight 3:1 gave {by:?}");
    llmr::shutdown();

    // Without a weight, rpm is the share.
    init(
        vec![
            mock("a", json!({"rpm": 1000})),
            mock("b", json!({"rpm": 3000})),
        ],
        settings(json!({"routing_strategy": "simple-shuffle"})),
    );
    let by = shares(n);
    let b = by.get("b").copied().unwrap_or(0) as f64 / n as f64;
    assert!((0.65..=0.85).contains(&b), "rpm 1:3 gave {by:?}");
    llmr::shutdown();

    // Equal shares: both get work.
    init(
        vec![mock("a", json!({})), mock("b", json!({}))],
        settings(json!({"routing_strategy": "simple-shuffle"})),
    );
    let by = shares(200);
    let a = by.get("a").copied().unwrap_or(0);
    assert!((60..=140).contains(&a), "1:1 gave {by:?}");
}

#[test]
fn least_busy_picks_the_deployment_with_fewest_in_flight() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![
            openai("a", &s.base("slow-500-a"), json!({})),
            openai("b", &s.base("slow-500-b"), json!({})),
        ],
        settings(json!({"routing_strategy": "least-busy"})),
    );
    // Four requests 80 ms apart, each taking 500 ms: the second goes where the first is not,
    // the fourth where the third is not.
    let served: Vec<String> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                std::thread::sleep(Duration::from_millis(if i == 0 { 0 } else { 80 }));
                sc.spawn(|| served_by(&complete(&ask("hi")).unwrap()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_ne!(served[0], served[1], "{served:?}");
    assert_ne!(served[2], served[3], "{served:?}");
    assert_eq!(s.count("slow-500-a"), 2);
    assert_eq!(s.count("slow-500-b"), 2);
    assert_eq!(stats_of("a")["in_flight"], 0);
}

#[test]
fn latency_based_prefers_the_faster_deployment() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![
            openai("slow", &s.base("slow-200"), json!({})),
            openai("fast", &s.base("fast"), json!({})),
        ],
        settings(json!({"routing_strategy": "latency-based-routing"})),
    );
    // Each is measured once (unmeasured deployments go first); then the fast one wins.
    for _ in 0..12 {
        complete(&ask("hi")).unwrap();
    }
    assert_eq!(s.count("slow-200"), 1);
    assert_eq!(s.count("fast"), 11);
    let slow = stats_of("slow");
    let fast = stats_of("fast");
    assert!(
        slow["latency_ms"]["per_output_token_ewma"]
            .as_f64()
            .unwrap()
            > fast["latency_ms"]["per_output_token_ewma"]
                .as_f64()
                .unwrap(),
        "{slow} {fast}"
    );
    llmr::shutdown();

    // Streams rank by time to first chunk.
    s.reset();
    init(
        vec![
            openai("slow", &s.base("slow-200"), json!({})),
            openai("fast", &s.base("fast"), json!({})),
        ],
        settings(json!({"routing_strategy": "latency-based-routing"})),
    );
    for _ in 0..6 {
        stream(&ask("hi"), None).result.unwrap();
    }
    assert_eq!(s.count("slow-200"), 1);
    assert_eq!(s.count("fast"), 5);
    assert!(
        stats_of("slow")["time_to_first_chunk_ms"]["ewma"]
            .as_f64()
            .unwrap()
            >= 150.0
    );
}

#[test]
fn usage_based_prefers_the_deployment_with_fewer_tokens_this_minute() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![
            openai("a", &s.base("a"), json!({})),
            openai("b", &s.base("b"), json!({})),
        ],
        settings(json!({"routing_strategy": "usage-based-routing"})),
    );
    fresh_minute(5);
    // About 1000 tokens on one of them...
    let big = served_by(&complete(&ask(&"word ".repeat(800))).unwrap());
    let other = if big == "a" { "b" } else { "a" };
    assert!(
        stats_of(&big)["tokens_this_minute"].as_u64().unwrap() >= 1000,
        "{}",
        stats_of(&big)
    );
    // ...so the small ones go to the other.
    for _ in 0..5 {
        assert_eq!(served_by(&complete(&ask("hi")).unwrap()), other);
    }
    assert_eq!(s.count(&big), 1);
    assert_eq!(s.count(other), 5);
}

#[test]
fn the_best_deployment_at_its_rpm_limit_is_passed_over_for_the_next() {
    let _g = lock();
    // `a` wins simple-shuffle's race all but once in a million, and takes one request a minute:
    // from the second request on, the best is full and the next one must be chosen.
    init(
        vec![
            mock("a", json!({"weight": 1_000_000, "rpm": 1})),
            mock("b", json!({"weight": 1})),
        ],
        settings(json!({"routing_strategy": "simple-shuffle"})),
    );
    fresh_minute(5);
    let by = shares(10);
    assert_eq!(by.get("a"), Some(&1), "{by:?}");
    assert_eq!(by.get("b"), Some(&9), "{by:?}");
}

fn many_mocks(n: usize, extra: serde_json::Value) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| mock(&format!("m{i}"), extra.clone()))
        .collect()
}

fn distinct_of(n: usize) -> usize {
    let served: std::collections::HashSet<String> = (0..n)
        .map(|_| served_by(&complete(&ask("hi")).unwrap()))
        .collect();
    served.len()
}

#[test]
fn large_groups_rank_every_member_as_small_ones_do() {
    let _g = lock();
    let n = 300;
    // Usage-based: each request goes to a deployment with no tokens yet this minute, so 300
    // requests reach all 300 (the index must see each one's usage change).
    init(
        many_mocks(n, json!({})),
        settings(json!({"routing_strategy": "usage-based-routing"})),
    );
    fresh_minute(5);
    assert_eq!(distinct_of(n), n, "usage-based");
    llmr::shutdown();

    // Latency-based: unmeasured deployments go first, so the first 300 measure all 300.
    init(
        many_mocks(n, json!({})),
        settings(json!({"routing_strategy": "latency-based-routing"})),
    );
    assert_eq!(distinct_of(n), n, "latency-based");
    llmr::shutdown();

    // Least-busy, one request at a time: every deployment is equally idle, and ties go to a
    // random one (300 uniform draws reach ~190 of 300; always the same one would be 1).
    init(
        many_mocks(n, json!({})),
        settings(json!({"routing_strategy": "least-busy"})),
    );
    let reached = distinct_of(n);
    assert!(reached > 120, "least-busy reached {reached} of {n}");
    llmr::shutdown();

    // Simple-shuffle over 300 equal shares spreads the same way.
    init(many_mocks(n, json!({})), settings(json!({})));
    let reached = distinct_of(n);
    assert!(reached > 120, "simple-shuffle reached {reached} of {n}");
}

#[test]
fn a_cooled_down_member_of_a_large_group_is_passed_over_then_ranked_again() {
    let _g = lock();
    let mut entries = many_mocks(50, json!({}));
    entries.push(mock(
        "bad",
        json!({"litellm_params": {"mock_error": "rate_limited"}}),
    ));
    init(
        entries,
        settings(json!({
            "routing_strategy": "usage-based-routing",
            "allowed_fails": 0,
            "cooldown_time": 1,
        })),
    );
    fresh_minute(10);
    // `bad` never gets tokens (its failures use none), so once the others have some it is the
    // lowest: it is tried within the first 51 requests, fails, and cools down for 1 s.
    for _ in 0..80 {
        complete(&ask("hi")).unwrap();
    }
    let bad = stats_of("bad");
    assert_eq!(bad["failures"]["rate_limited"], 1, "tried once: {bad}");
    assert_eq!(bad["cooling_down"], true, "{bad}");
    // Its cooldown over, it is the lowest again and the next request tries it first.
    assert!(eventually(Duration::from_secs(3), || stats_of("bad")
        ["cooling_down"]
        == false));
    let resp = complete(&ask("hi")).unwrap();
    assert_eq!(attempts(&resp), 2, "{resp}");
    assert_eq!(stats_of("bad")["failures"]["rate_limited"], 2);
}
