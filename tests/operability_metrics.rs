//! `llmr_metrics` read back with a real Prometheus text parser: what the router did (requests
//! by status, retries, failovers, context-window fallbacks, cooldowns, tokens, cost, durations,
//! time to first chunk) is what the exposition says, and the answer's `llmr.cost_usd` and
//! `llmr_stats` agree with it.

mod common;

use common::*;
use llmr_testkit::StandIn;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricNumber, MetricsExposition, PrometheusType, PrometheusValue};
use serde_json::{json, Value};

const FIRST: f64 = 1e6;
const LAST: f64 = 1e-3;

type Parsed = MetricsExposition<PrometheusType, PrometheusValue>;

/// The metrics, parsed (a text the parser refuses fails the test).
fn metrics() -> Parsed {
    let text = llmr::metrics_text();
    assert!(!text.contains(KEY), "the metrics hold the API key:\n{text}");
    parse_prometheus(&text).unwrap_or_else(|e| panic!("not Prometheus text: {e:?}\n{text}"))
}

/// The one sample of `family` whose labels include all of `labels`.
fn sample<'a>(m: &'a Parsed, family: &str, labels: &[(&str, &str)]) -> &'a PrometheusValue {
    let f = m
        .families
        .get(family)
        .unwrap_or_else(|| panic!("no family {family}"));
    let found: Vec<_> = f
        .iter_samples()
        .filter(|s| {
            let set = s.get_labelset().expect("a bound sample");
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{family} {labels:?}: {found:?}");
    &found[0].value
}

fn number(n: &MetricNumber) -> f64 {
    match n {
        MetricNumber::Int(i) => *i as f64,
        MetricNumber::Float(f) => *f,
    }
}

/// A counter's or gauge's value.
fn value(m: &Parsed, family: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(m, family, labels) {
        PrometheusValue::Counter(c) => number(&c.value),
        PrometheusValue::Gauge(g) => number(g),
        other => panic!("{family} is not a counter or gauge: {other:?}"),
    }
}

/// A histogram's count and sum.
fn histogram(m: &Parsed, family: &str, labels: &[(&str, &str)]) -> (u64, f64) {
    match sample(m, family, labels) {
        PrometheusValue::Histogram(h) => (
            h.count.expect("a count"),
            h.sum.as_ref().map_or(0.0, number),
        ),
        other => panic!("{family} is not a histogram: {other:?}"),
    }
}

fn tokens(resp: &Value, which: &str) -> f64 {
    resp["usage"][which].as_f64().expect("usage")
}

#[test]
fn a_failover_a_cooldown_and_a_stream_are_counted() {
    let _g = lock();
    let s = StandIn::start();
    init(
        first_then_priced(&s.base("e503-a"), &s.base("ok-b")),
        settings(json!({"allowed_fails": 0, "cooldown_time": 30})),
    );

    // `a` fails (503), cools down; the request fails over to `b`.
    let first = complete(&ask("hello there")).unwrap();
    assert_eq!(served_by(&first), "b");
    assert_eq!(first["llmr"]["fallbacks"], json!(["retry:a"]));
    // While `a` cools, a stream goes straight to `b`.
    let st = stream(&ask("tell me more"), None);
    let second = st.result.unwrap();
    assert_eq!(served_by(&second), "b");
    assert_eq!(attempts(&second), 1);

    // The answers' cost: usage at b's prices.
    let mut cost = 0.0;
    for r in [&first, &second] {
        let want = tokens(r, "prompt_tokens") * 1e-6 + tokens(r, "completion_tokens") * 2e-6;
        let got = r["llmr"]["cost_usd"].as_f64().expect("llmr.cost_usd");
        assert!((got - want).abs() < 1e-12, "{got} != {want}");
        cost += got;
    }

    let m = metrics();
    let a = ("deployment_id", "a");
    let b = ("deployment_id", "b");
    assert_eq!(value(&m, "llmr_initialized", &[]), 1.0);
    assert_eq!(
        value(&m, "llmr_requests_total", &[b, ("status", "ok")]),
        2.0
    );
    assert_eq!(
        value(&m, "llmr_requests_total", &[a, ("status", "ok")]),
        0.0
    );
    assert_eq!(
        value(&m, "llmr_attempts_total", &[a, ("status", "upstream")]),
        1.0
    );
    assert_eq!(
        value(&m, "llmr_attempts_total", &[b, ("status", "ok")]),
        2.0
    );
    assert_eq!(value(&m, "llmr_retries_total", &[a]), 1.0);
    assert_eq!(value(&m, "llmr_retries_total", &[b]), 0.0);
    assert_eq!(
        value(&m, "llmr_fallbacks_total", &[a, ("kind", "failover")]),
        1.0
    );
    assert_eq!(
        value(&m, "llmr_fallbacks_total", &[a, ("kind", "context_window")]),
        0.0
    );
    assert_eq!(value(&m, "llmr_cooldowns_total", &[a]), 1.0);
    assert_eq!(value(&m, "llmr_cooling_down", &[a]), 1.0);
    assert_eq!(value(&m, "llmr_cooling_down", &[b]), 0.0);
    assert_eq!(value(&m, "llmr_in_flight", &[b]), 0.0);
    assert_eq!(value(&m, "llmr_requests_in_flight", &[]), 0.0);
    let billed = value(&m, "llmr_cost_usd_total", &[b]);
    assert!((billed - cost).abs() < 1e-12, "{billed} != {cost}");
    assert_eq!(
        value(&m, "llmr_cost_usd_total", &[a]),
        0.0,
        "a has no known price"
    );
    assert_eq!(
        value(
            &m,
            "llmr_requests_total",
            &[
                ("gen_ai_provider_name", "openai"),
                ("gen_ai_request_model", "standin-b"),
                ("status", "ok")
            ]
        ),
        2.0,
        "provider and model labels"
    );

    let input: f64 = [&first, &second]
        .iter()
        .map(|r| tokens(r, "prompt_tokens"))
        .sum();
    let output: f64 = [&first, &second]
        .iter()
        .map(|r| tokens(r, "completion_tokens"))
        .sum();
    let t = "gen_ai_client_token_usage";
    assert_eq!(
        histogram(&m, t, &[b, ("gen_ai_token_type", "input")]),
        (2, input)
    );
    assert_eq!(
        histogram(&m, t, &[b, ("gen_ai_token_type", "output")]),
        (2, output)
    );
    assert_eq!(
        histogram(&m, t, &[a, ("gen_ai_token_type", "input")]),
        (0, 0.0)
    );

    let d = "gen_ai_client_operation_duration_seconds";
    let (n, secs) = histogram(&m, d, &[b, ("error_type", "")]);
    assert_eq!(n, 2);
    assert!(secs > 0.0 && secs < 20.0, "{secs}");
    assert_eq!(histogram(&m, d, &[a, ("error_type", "upstream")]).0, 1);
    assert_eq!(histogram(&m, d, &[a, ("error_type", "")]).0, 0);

    let ttft = "gen_ai_client_operation_time_to_first_chunk_seconds";
    assert_eq!(histogram(&m, ttft, &[b]).0, 1, "one stream answered");
    assert!(
        m.families[ttft].iter_samples().count() == 1,
        "no stream answered on a"
    );

    // Stats hold the same cost.
    let stats_cost = stats_of("b")["cost_usd"].as_f64().unwrap();
    assert!((stats_cost - cost).abs() < 1e-12, "{stats_cost} != {cost}");
    let total = stats()["totals"]["cost_usd"].as_f64().unwrap();
    assert!((total - cost).abs() < 1e-12, "{total} != {cost}");
}

#[test]
fn an_overflow_is_a_context_window_fallback_not_a_retry() {
    let _g = lock();
    let s = StandIn::start();
    let window = |n: u64| json!({"max_input_tokens": n});
    init(
        vec![
            openai(
                "a",
                &s.base("ctx-500"),
                json!({"weight": FIRST, "litellm_params": window(4000)}),
            ),
            openai(
                "b",
                &s.base("ok"),
                json!({"weight": LAST, "litellm_params": window(100_000)}),
            ),
        ],
        settings(json!({})),
    );
    let resp = complete(&ask(&"word ".repeat(600))).unwrap();
    assert_eq!(served_by(&resp), "b");
    assert_eq!(resp["llmr"]["fallbacks"], json!(["context_window:a"]));
    assert!(
        resp["llmr"].get("cost_usd").is_none(),
        "a stand-in model has no price: no cost: {resp}"
    );

    let m = metrics();
    let a = ("deployment_id", "a");
    assert_eq!(
        value(&m, "llmr_fallbacks_total", &[a, ("kind", "context_window")]),
        1.0
    );
    assert_eq!(
        value(&m, "llmr_fallbacks_total", &[a, ("kind", "failover")]),
        0.0
    );
    assert_eq!(value(&m, "llmr_retries_total", &[a]), 0.0);
    assert_eq!(value(&m, "llmr_cooldowns_total", &[a]), 0.0);
    assert_eq!(
        value(
            &m,
            "llmr_attempts_total",
            &[a, ("status", "context_overflow")]
        ),
        1.0
    );
}

#[test]
fn requests_that_reach_no_deployment_and_failures_are_counted_by_status() {
    let _g = lock();
    let s = StandIn::start();
    // Both rate-limit (Retry-After 2 s): both cool down, then nothing is left to try.
    init(
        vec![
            openai("a", &s.base("e429-a"), json!({"weight": FIRST})),
            openai("b", &s.base("e429-b"), json!({"weight": LAST})),
        ],
        settings(json!({"allowed_fails": 100})),
    );
    let unrouted = |m: &Parsed| {
        m.families["llmr_requests_total"]
            .iter_samples()
            .filter(|s| {
                let l = s.get_labelset().unwrap();
                l.get_label_value("deployment_id") == Some("")
                    && l.get_label_value("status") == Some("rate_limited")
            })
            .map(|s| match &s.value {
                PrometheusValue::Counter(c) => number(&c.value),
                _ => panic!("a counter"),
            })
            .sum::<f64>()
    };
    let before = unrouted(&metrics());

    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "rate_limited");
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "rate_limited");
    assert!(e["error"].get("deployment_id").is_none(), "{e}");

    let m = metrics();
    let last = e["error"]["retry_after"].as_f64();
    assert!(last.is_some(), "{e}");
    let failed_on_b = value(
        &m,
        "llmr_requests_total",
        &[("deployment_id", "b"), ("status", "rate_limited")],
    );
    assert_eq!(failed_on_b, 1.0, "the first request failed last on b");
    assert_eq!(
        unrouted(&m) - before,
        1.0,
        "the second reached no deployment"
    );
    assert_eq!(
        value(&m, "llmr_cooldowns_total", &[("deployment_id", "a")]),
        1.0
    );
    assert_eq!(
        value(&m, "llmr_cooldowns_total", &[("deployment_id", "b")]),
        1.0
    );
}

#[test]
fn label_values_are_escaped_and_read_back_whole() {
    let _g = lock();
    let odd = "we\"ird\\id\nx";
    init(
        vec![mock(
            odd,
            json!({"model_name": "model \"quoted\"", "litellm_params": priced()}),
        )],
        settings(json!({})),
    );
    let resp = complete(&ask("hi")).unwrap();
    let cost = resp["llmr"]["cost_usd"]
        .as_f64()
        .expect("configured prices give a cost");
    assert!(cost > 0.0, "{resp}");
    let m = metrics();
    let id = ("deployment_id", odd);
    assert_eq!(
        value(&m, "llmr_requests_total", &[id, ("status", "ok")]),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "llmr_requests_total",
            &[
                ("gen_ai_request_model", "model \"quoted\""),
                ("status", "ok")
            ]
        ),
        1.0
    );
    assert!((value(&m, "llmr_cost_usd_total", &[id]) - cost).abs() < 1e-12);
}

#[test]
fn metrics_work_without_a_router() {
    let _g = lock();
    let m = metrics();
    assert_eq!(value(&m, "llmr_initialized", &[]), 0.0);
    assert_eq!(
        m.families["llmr_retries_total"].iter_samples().count(),
        0,
        "no deployment, no per-deployment series"
    );
    assert!(m
        .families
        .contains_key("gen_ai_client_operation_duration_seconds"));
}

#[test]
fn a_request_cancelled_mid_way_is_counted_as_cancelled() {
    let _g = lock();
    init(
        vec![mock(
            "slow",
            json!({"litellm_params": {"mock_delay_ms": 5000}}),
        )],
        settings(json!({})),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let id = llmr::complete_async(&ask("hi").to_string(), move |r| {
        let _ = tx.send(r.is_err());
    });
    assert_ne!(id, 0);
    // Cancel once the attempt is under way on the deployment.
    let t = std::time::Instant::now();
    while value(&metrics(), "llmr_in_flight", &[("deployment_id", "slow")]) < 1.0 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "never in flight"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(llmr::cancel(id));
    assert!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap());
    let cancelled = || {
        value(
            &metrics(),
            "llmr_requests_total",
            &[("deployment_id", "slow"), ("status", "cancelled")],
        )
    };
    let t = std::time::Instant::now();
    while metrics().families["llmr_requests_total"]
        .iter_samples()
        .all(|s| s.get_labelset().unwrap().get_label_value("status") != Some("cancelled"))
    {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "not counted"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(cancelled(), 1.0);
    assert_eq!(
        value(&metrics(), "llmr_in_flight", &[("deployment_id", "slow")]),
        0.0
    );
}
