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
