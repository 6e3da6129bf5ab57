//! Hot reload (`llmr_reload`): atomic, in-flight requests finish on what they started with,
//! surviving ids keep their live state, removed ids vanish, added ids appear, a bad config
//! changes nothing — also with requests running from several threads while it happens.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::*;
use llmr::Status;
use llmr_testkit::{Reply, StandIn};
use serde_json::{json, Value};

fn reload(entries: Vec<Value>, settings: Value) {
    let cfg = config(entries, settings);
    if let Err(e) = llmr::reload(&cfg) {
        panic!("reload failed: {}", e.to_json());
    }
}

fn ids(view: &Value) -> Vec<String> {
    let mut v: Vec<String> = view["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn reload_before_init_is_not_initialized() {
    let _g = lock();
    let cfg = config(vec![mock("a", json!({}))], settings(json!({})));
    let e = llmr::reload(&cfg).unwrap_err();
    assert_eq!(e.status, Status::NotInitialized, "{}", e.to_json());
    assert!(!llmr::is_initialized(), "a reload does not initialise");

    init(vec![mock("a", json!({}))], settings(json!({})));
    llmr::shutdown();
    let e = llmr::reload(&cfg).unwrap_err();
    assert_eq!(e.status, Status::NotInitialized, "after shutdown too");
    assert!(!llmr::is_initialized());
}

#[test]
fn a_bad_config_changes_nothing() {
    let _g = lock();
    init(
        vec![
            mock("a", json!({"rpm": 100})),
            mock("b", json!({"max_input_tokens": 50_000})),
        ],
        settings(json!({"num_retries": 2})),
    );
    complete(&ask("hi")).unwrap();
    let info_before = llmr::router_info().unwrap();
    let stats_before = stats();

    let bad = [
        "{".to_owned(),
        "[]".to_owned(),
        r#"{"global_llm_configs": []}"#.to_owned(),
        // Nothing usable: no key where one is needed (and the key of a skipped entry stays out
        // of the message).
        config(
            vec![json!({"id": "x", "provider": "OPENAI", "model_name": "gpt-4o"})],
            settings(json!({})),
        ),
        config(
            vec![json!({"id": "y", "provider": "NOPE", "model_name": "m", "api_key": KEY})],
            settings(json!({})),
        ),
        config(
            vec![mock("c", json!({}))],
            settings(json!({"routing_strategy": "fastest"})),
        ),
        config(
            vec![mock("c", json!({}))],
            settings(json!({"max_wait_when_cooling": -1})),
        ),
    ];
    for cfg in &bad {
        let e = llmr::reload(cfg).unwrap_err();
        assert_eq!(e.status, Status::Config, "{cfg}: {}", e.to_json());
        error_json(&e); // no key in it
    }

    assert_eq!(llmr::router_info().unwrap(), info_before, "info changed");
    let stats_after = stats();
    assert_eq!(ids(&stats_after), ids(&stats_before));
    for (b, a) in stats_before["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .zip(stats_after["deployments"].as_array().unwrap())
    {
        for k in [
            "id",
            "requests",
            "successes",
            "requests_this_minute",
            "model",
        ] {
            assert_eq!(b[k], a[k], "stats.{k} changed: {b} → {a}");
        }
    }
    assert_eq!(llmr::model_count(), 2);
    assert_eq!(status_of(complete(&ask("still here"))), "ok");
}

fn status_of(r: Result<Value, Value>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => status(&e).to_owned(),
    }
}

#[test]
fn surviving_ids_keep_their_state_removed_vanish_added_appear() {
    let _g = lock();
    fresh_minute(20);
    let s = StandIn::start();
    s.always("cool", Reply::status(429).header("retry-after", "30"));
    init(
        vec![
            openai("cool", &s.base("cool"), json!({"weight": 1e6})),
            openai("warm", &s.base("warm"), json!({"weight": 1e-3})),
            openai("gone", &s.base("gone"), json!({"weight": 1e-9})),
        ],
        settings(json!({"allowed_fails": 100, "num_retries": 1})),
    );
    // `cool` answers 429 and cools down for 30 s; `warm` serves.
    let resp = complete(&ask("hi")).unwrap();
    assert_eq!(served_by(&resp), "warm");
    let cool = stats_of("cool");
    let warm = stats_of("warm");
    assert_eq!(cool["cooling_down"], true, "{cool}");
    assert_eq!(warm["successes"], 1, "{warm}");

    // Reload: `cool` and `warm` survive (`warm` now on another tenant and model: same id, same
    // state), `gone` is removed, `new` is added, and the settings change.
    reload(
        vec![
            openai("cool", &s.base("cool"), json!({"weight": 1e6})),
            openai(
                "warm",
                &s.base("warm-moved"),
                json!({"model_name": "standin-moved", "rpm": 50}),
            ),
            openai("new", &s.base("new"), json!({})),
        ],
        settings(json!({"allowed_fails": 100, "num_retries": 1, "routing_strategy": "least-busy"})),
    );
    assert_eq!(llmr::model_count(), 3);
    let info = info();
    assert_eq!(ids(&info), ["cool", "new", "warm"], "{info}");
    assert_eq!(info["routing_strategy"], "least-busy", "{info}");
    let warm_info = info["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "warm")
        .unwrap();
    assert_eq!(warm_info["model"], "openai/standin-moved", "{warm_info}");
    assert_eq!(warm_info["rpm"], 50, "{warm_info}");
    assert_eq!(ids(&stats()), ["cool", "new", "warm"]);

    let cool_after = stats_of("cool");
    assert_eq!(
        cool_after["cooling_down"], true,
        "the cooldown survives: {cool_after}"
    );
    assert_eq!(
        cool_after["cooldown"]["until_unix_ms"], cool["cooldown"]["until_unix_ms"],
        "the same cooldown"
    );
    assert_eq!(cool_after["failures"], cool["failures"]);
    let warm_after = stats_of("warm");
    for k in [
        "requests",
        "successes",
        "requests_this_minute",
        "tokens_this_minute",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
    ] {
        assert_eq!(warm_after[k], warm[k], "warm.{k} was not kept");
    }
    assert_eq!(warm_after["rpm"], 50, "the new limit applies");
    let new = stats_of("new");
    assert_eq!(new["requests"], 0, "{new}");
    assert_eq!(new["requests_this_minute"], 0, "{new}");
    assert_eq!(new["cooling_down"], false, "{new}");

    // Requests now go by the new config: never to `gone` or the cooling `cool`, and `warm`'s
    // new home is where its requests land.
    let before_gone = s.count("gone");
    for _ in 0..6 {
        let id = served_by(&complete(&ask("after")).unwrap());
        assert!(id == "warm" || id == "new", "{id}");
    }
    assert_eq!(
        s.count("gone"),
        before_gone,
        "a removed deployment got requests"
    );
    assert_eq!(s.count("cool"), 1, "a cooling deployment got requests");
    assert_eq!(s.count("warm"), 1, "`warm` still went to its old api_base");
    assert_eq!(s.count("warm-moved") + s.count("new"), 6);
    assert_eq!(
        stats_of("warm")["successes"].as_u64(),
        Some(1 + s.count("warm-moved") as u64),
        "`warm` counts on from where it was"
    );
}

#[test]
fn a_surviving_rpm_window_keeps_counting() {
    let _g = lock();
    fresh_minute(20);
    init(vec![mock("a", json!({"rpm": 100}))], settings(json!({})));
    for _ in 0..2 {
        assert_eq!(content(&complete(&ask("hi")).unwrap()), "hello from a");
    }
    // The limit drops to 3: two of this minute are used, one is left.
    reload(
        vec![mock(
            "a",
            json!({"rpm": 3, "litellm_params": {"mock_response": "new config"}}),
        )],
        settings(json!({})),
    );
    assert_eq!(stats_of("a")["requests_this_minute"], 2);
    assert_eq!(content(&complete(&ask("hi")).unwrap()), "new config");
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "rate_limited", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rpm/tpm limit"),
        "{e}"
    );
}

/// Runs a completion on another thread; its outcome arrives on the returned channel.
fn complete_on_thread(req: Value) -> mpsc::Receiver<Result<Value, Value>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(complete(&req));
    });
    rx
}

#[test]
fn in_flight_requests_finish_on_the_config_they_started_with() {
    let _g = lock();
    init(
        vec![mock(
            "old",
            json!({"litellm_params": {"mock_delay_ms": 1500}}),
        )],
        settings(json!({})),
    );
    let blocking = complete_on_thread(ask("slow"));
    let streamed = {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(stream(&ask("slow stream"), None));
        });
        rx
    };
    assert!(
        eventually(Duration::from_secs(10), || stats_of("old")["in_flight"]
            == 2),
        "the two requests did not start"
    );

    reload(vec![mock("new", json!({}))], settings(json!({})));
    assert_eq!(ids(&stats()), ["new"]);
    // New requests go by the new config at once …
    let resp = complete(&ask("fresh")).unwrap();
    assert_eq!(served_by(&resp), "new");

    // … while the ones in flight finish on the old one.
    let resp = blocking
        .recv_timeout(Duration::from_secs(10))
        .expect("the in-flight completion finished")
        .expect("and succeeded");
    assert_eq!(served_by(&resp), "old");
    assert_eq!(content(&resp), "hello from old");
    let st = streamed
        .recv_timeout(Duration::from_secs(10))
        .expect("the in-flight stream finished");
    assert_eq!(st.text(), "hello from old");
    let resp = st.result.expect("and succeeded");
    assert_eq!(served_by(&resp), "old");
}

#[test]
fn reloads_under_load_from_several_threads_fail_no_request() {
    let _g = lock();
    // Every config holds `steady` (its state carries over every time) plus one of two others;
    // each answers after 50 ms, so requests are always in flight when a swap happens.
    let slow = |id: &str| mock(id, json!({"litellm_params": {"mock_delay_ms": 50}}));
    let configs = [
        config(vec![slow("steady"), slow("blue")], settings(json!({}))),
        config(
            vec![slow("steady"), slow("green")],
            settings(json!({"routing_strategy": "least-busy"})),
        ),
    ];
    llmr::init(&configs[0]).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..4 {
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let mut served: Vec<String> = Vec::new();
            let mut failures: Vec<Value> = Vec::new();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
                let r = if w % 2 == 0 {
                    complete(&ask("load"))
                } else {
                    stream(&ask("load"), None).result
                };
                match r {
                    Ok(resp) => served.push(served_by(&resp)),
                    Err(e) => failures.push(e),
                }
            }
            (served, failures)
        }));
    }
    // Two threads reload, alternating the configs, 20 times each.
    let mut reloaders = Vec::new();
    for r in 0..2 {
        let configs = configs.clone();
        reloaders.push(std::thread::spawn(move || {
            for i in 0..20 {
                llmr::reload(&configs[(i + r) % 2]).expect("reload");
                std::thread::sleep(Duration::from_millis(30));
            }
        }));
    }
    for r in reloaders {
        r.join().expect("a reloader panicked");
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for w in workers {
        let (served, failures) = w.join().expect("a worker panicked");
        assert!(
            failures.is_empty(),
            "requests failed during reloads: {failures:?}"
        );
        total += served.len();
        for id in served {
            *by.entry(id).or_default() += 1;
        }
    }
    assert!(
        total >= 20,
        "too few requests ran during the reloads: {total}"
    );
    for id in by.keys() {
        assert!(["steady", "blue", "green"].contains(&id.as_str()), "{id}");
    }
    // `steady` was in every config: its counters carried over every swap, so it counts every
    // request it served, and nothing is left in flight.
    let steady = stats_of("steady");
    assert_eq!(
        steady["successes"].as_u64(),
        by.get("steady").map(|n| *n as u64).or(Some(0)),
        "{steady} vs {by:?}"
    );
    assert!(eventually(Duration::from_secs(5), || stats()
        ["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["in_flight"] == 0)));
}
