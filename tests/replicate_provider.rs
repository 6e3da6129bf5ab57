//! The Replicate provider end to end: the library's Rust API (`init`, `complete_json`,
//! `stream_json`, `shutdown`) against the loopback stand-in speaking Replicate's predictions
//! API (create, wait, poll, stream, cancel).
//!
//! The router is a process-wide singleton, so the tests of this binary run one at a time
//! (`common::lock`) and each starts from `shutdown` + `init`.

use std::time::{Duration, Instant};

use llmr::{Error, Status};
use llmr_testkit::{Fault, RecordedRequest, Reply};
use serde_json::{json, Value};

mod common;
use common::provider::{complete, error_json_without, hello, start_session, stream, Session};

const KEY: &str = "r8_test_token_0123456789abcdef";
const MODEL: &str = "meta/meta-llama-3-70b-instruct";
const VERSION: &str = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa";

impl Session {
    /// The requests of a tenant that are not the prediction's own follow-ups.
    fn creates(&self, tenant: &str) -> Vec<RecordedRequest> {
        self.standin
            .requests(tenant)
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/predictions"))
            .collect()
    }
}

/// A deployment of the config: its id, its stand-in tenant, model, extra `litellm_params`.
struct Dep<'a> {
    id: u32,
    tenant: &'a str,
    model: &'a str,
    params: Value,
}

fn dep(id: u32, tenant: &str) -> Dep<'_> {
    Dep {
        id,
        tenant,
        model: MODEL,
        params: json!({}),
    }
}

fn start(deps: &[Dep], settings: Value) -> Session {
    start_session(
        |standin| {
            deps
        .iter()
        .map(|d| {
            json!({"id": d.id, "provider": "REPLICATE", "model_name": d.model, "api_key": KEY,
                   "api_base": standin.base(d.tenant), "litellm_params": d.params})
        })
        .collect()
        },
        settings,
    )
}

/// One deployment on tenant `t`, no retries of the same deployment.
fn start_on(tenant: &str) -> Session {
    start(&[dep(1, tenant)], json!({"num_retries": 0}))
}

fn texts(chunks: &[Value]) -> Vec<&str> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

fn error_json(e: &Error) -> Value {
    error_json_without(e, &[KEY])
}

#[test]
fn complete_waits_for_the_prediction_and_sends_the_mapped_input() {
    let s = start_on("t");
    s.standin.script("t", [Reply::text("Hello there, friend.")]);
    let r = complete(hello()).unwrap();
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["model"], MODEL);
    assert!(r["id"].as_str().unwrap().starts_with("chatcmpl-standin"));
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "Hello there, friend."
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["completion_tokens"], 3);
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r["llmr"]["provider"], "replicate");
    assert_eq!(r["llmr"]["deployment_id"], "1");

    // Prefer: wait answered it whole: one request, nothing to poll.
    let sent = s.standin.requests("t");
    assert_eq!(sent.len(), 1);
    let sent = &sent[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, format!("/t/v1/models/{MODEL}/predictions"));
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(sent.header("content-type"), Some("application/json"));
    let prefer = sent.header("prefer").unwrap();
    let n: u64 = prefer.strip_prefix("wait=").unwrap().parse().unwrap();
    assert!((1..=60).contains(&n), "{prefer}");
    assert_eq!(
        sent.body,
        json!({"input": {"prompt": "Say hello", "system_prompt": "You are terse."}})
    );
}

#[test]
fn sampling_fields_stop_and_the_output_cap() {
    let s = start(
        &[Dep {
            params: json!({"top_k": 50, "prompt_template": "{prompt}", "max_tokens": 512}),
            ..dep(3, "p")
        }],
        json!({"num_retries": 0}),
    );
    s.standin.script(
        "p",
        [Reply::text("one two three four"), Reply::text("one two")],
    );
    let mut req = hello();
    req["stop"] = json!(["END", "STOP"]);
    req["max_tokens"] = json!(2);
    req["temperature"] = json!(0.5);
    req["top_p"] = json!(0.9);
    req["seed"] = json!(7);
    req["user"] = json!("u-1");
    let r = complete(req).unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "one two ");
    assert_eq!(
        r["choices"][0]["finish_reason"], "length",
        "output_token_count reached max_tokens"
    );
    let b = &s.standin.last_request("p").unwrap().body["input"];
    assert_eq!(b["stop_sequences"], "END,STOP");
    assert_eq!(
        (b["max_tokens"].clone(), b["max_new_tokens"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(b["temperature"], 0.5);
    assert_eq!(b["top_p"], 0.9);
    assert_eq!(b["seed"], 7);
    assert_eq!(b["top_k"], 50);
    assert_eq!(b["prompt_template"], "{prompt}");
    assert!(b.get("user").is_none() && b.get("stop").is_none());
    // Without the request's cap the deployment's applies; two words of 512 is a stop.
    let r = complete(hello()).unwrap();
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        s.standin.last_request("p").unwrap().body["input"]["max_tokens"],
        512
    );
}

#[test]
fn a_slow_prediction_is_polled_until_it_succeeds() {
    let s = start_on("poll-3");
    let r = complete(hello()).unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "echo: Say hello");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["completion_tokens"], 3);
    let sent = s.standin.requests("poll-3");
    let id = r["id"].as_str().unwrap().strip_prefix("chatcmpl-").unwrap();
    let get = format!("/poll-3/v1/predictions/{id}");
    assert_eq!(
        sent.len(),
        5,
        "create, three `processing`, then `succeeded`"
    );
    for g in &sent[1..] {
        assert_eq!((g.method.as_str(), g.path.as_str()), ("GET", get.as_str()));
        assert_eq!(
            g.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
}

#[test]
fn versions_and_deployments_have_their_own_create_urls() {
    let versioned = format!("meta/llama-2-70b-chat:{VERSION}");
    let cases = [
        (versioned.as_str(), json!({}), "/v/v1/predictions"),
        (VERSION, json!({}), "/v/v1/predictions"),
        (
            "deployments/acme/my-llama",
            json!({}),
            "/v/v1/deployments/acme/my-llama/predictions",
        ),
        (
            "acme/other",
            json!({"replicate_deployment": true}),
            "/v/v1/deployments/acme/other/predictions",
        ),
    ];
    for (model, params, path) in cases {
        let s = start(
            &[Dep {
                model,
                params,
                ..dep(1, "v")
            }],
            json!({"num_retries": 0}),
        );
        complete(hello()).unwrap();
        let sent = s.standin.last_request("v").unwrap();
        assert_eq!(sent.path, path, "{model}");
        let version = if path.ends_with("/v1/predictions") {
            json!(VERSION)
        } else {
            Value::Null
        };
        assert_eq!(sent.body["version"], version, "{model}");
    }
}

#[test]
fn stream_text_from_the_stream_url() {
    let s = start_on("t");
    s.standin.script("t", [Reply::text("one two three four")]);
    let (chunks, r) = stream(hello());
    let r = r.unwrap();
    assert_eq!(texts(&chunks), ["one ", "two ", "three ", "four"]);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(r["choices"][0]["message"]["content"], "one two three four");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        r["usage"]["completion_tokens"], 4,
        "from the prediction's metrics"
    );
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r["llmr"]["provider"], "replicate");

    let sent = s.standin.requests("t");
    assert_eq!(
        sent.len(),
        3,
        "create, stream, then the prediction for its metrics"
    );
    assert_eq!(sent[0].body["stream"], true);
    assert_eq!(sent[0].header("prefer"), None, "a stream does not wait");
    assert_eq!(sent[1].method, "GET");
    assert!(sent[1].path.ends_with("/stream"), "{}", sent[1].path);
    assert_eq!(sent[1].header("accept"), Some("text/event-stream"));
    assert_eq!(
        sent[1].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(sent[2].method, "GET");
}

#[test]
fn a_model_without_a_stream_url_is_polled_into_chunks() {
    let s = start_on("poll-2-nostream");
    s.standin
        .script("poll-2-nostream", [Reply::text("alpha beta gamma delta")]);
    let (chunks, r) = stream(hello());
    let r = r.unwrap();
    assert!(chunks.len() >= 2, "output given out as it grew: {chunks:?}");
    assert_eq!(texts(&chunks).concat(), "alpha beta gamma delta");
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "alpha beta gamma delta"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["completion_tokens"], 4);
    assert!(s
        .standin
        .requests("poll-2-nostream")
        .iter()
        .all(|r| !r.path.ends_with("/stream")));
}

#[test]
fn tools_are_refused_and_tool_history_is_flattened() {
    let s = start_on("t");
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let e = complete(
        json!({"messages": [{"role": "user", "content": "Weather in Paris?"}],
                            "tools": tools}),
    )
    .unwrap_err();
    assert_eq!(e.status, Status::BadRequest);
    assert!(e.message.contains("no tool calling"), "{}", e.message);
    let (chunks, r) =
        stream(json!({"messages": [{"role": "user", "content": "Weather?"}], "tools": tools}));
    assert!(chunks.is_empty());
    assert_eq!(r.unwrap_err().status, Status::BadRequest);
    assert_eq!(s.standin.count("t"), 0, "nothing was sent");

    // A conversation that used tools elsewhere continues here as text.
    let r = complete(json!({"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
        {"role": "user", "content": "So?"}
    ], "tools": tools, "tool_choice": "none"}))
    .unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "echo: So?");
    assert_eq!(
        s.standin.last_request("t").unwrap().body["input"]["prompt"],
        "User: Weather in Paris?\n\nAssistant: [called get_weather({\"city\":\"Paris\"})]\n\nTool result: 18C and sunny\n\nUser: So?"
    );
}

/// Two deployments, `a` (id 1) tried first: `b` (id 2) has a larger window, so it alone makes
/// `auto-large`, and a warm-up request there gives it usage this minute; usage-based routing
/// then puts `a` first.
fn start_pair() -> Session {
    let mut a = dep(1, "a");
    a.params = json!({"max_input_tokens": 8000});
    let mut b = dep(2, "b");
    b.params = json!({"max_input_tokens": 300000});
    let s = start(
        &[a, b],
        json!({"num_retries": 2, "retry_after": 0, "routing_strategy": "usage-based-routing"}),
    );
    let mut warm = hello();
    warm["model"] = json!("auto-large");
    let r = complete(warm).unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    s.standin.reset();
    s
}

#[test]
fn throttled_429_fails_over_and_cools_the_first_down() {
    let s = start_pair();
    s.standin
        .always("a", Reply::status(429).header("retry-after", "30"));
    let r = complete(hello()).unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    assert_eq!(r["llmr"]["attempts"], 2);
    assert_eq!(s.standin.count("a"), 1);
    // `a` now cools down: the next requests, streamed too, go to `b` alone.
    complete(hello()).unwrap();
    let (chunks, r) = stream(hello());
    assert!(!chunks.is_empty());
    assert_eq!(r.unwrap()["llmr"]["deployment_id"], "2");
    assert_eq!(s.standin.count("a"), 1);
    assert_eq!(s.creates("b").len(), 3);
}

#[test]
fn stream_fails_over_before_its_first_chunk() {
    let s = start_pair();
    s.standin
        .script("a", [Reply::status(503), Reply::fault(Fault::ErrorFirst)]);
    let (chunks, r) = stream(hello());
    assert_eq!(r.unwrap()["llmr"]["deployment_id"], "2");
    assert_eq!(texts(&chunks).concat(), "echo: Say hello");
    // A failure event before any output (an interrupted prediction) fails over too.
    let (_, r) = stream(hello());
    assert_eq!(r.unwrap()["llmr"]["deployment_id"], "2");
    assert_eq!(s.creates("a").len(), 2);
}

#[test]
fn upstream_errors_with_one_deployment() {
    let s = start_on("t");
    s.standin.script(
        "t",
        [
            Reply::status(429).header("retry-after", "7"),
            Reply::status(429),
            Reply::status(401),
            Reply::status(402),
            Reply::status(404),
            Reply::status(500),
        ],
    );
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::RateLimited);
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "rate_limited");
    assert_eq!(j["error"]["http_status"], 429);
    assert_eq!(j["error"]["retry_after"], 7.0, "the header first");
    assert_eq!(j["error"]["provider"], "replicate");
    assert_eq!(j["error"]["deployment_id"], "1");

    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::RateLimited);
    assert_eq!(
        e.retry_after,
        Some(2.0),
        "from `Expected available in 2 seconds.`"
    );
    assert_eq!(
        e.message,
        "Request was throttled. Expected available in 2 seconds."
    );

    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Auth, Some(401)));
    assert_eq!(e.message, "You did not pass a valid authentication token");
    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::BadRequest, Some(402)));
    assert!(e.message.contains("insufficient credit"), "{}", e.message);
    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::BadRequest, Some(404)));
    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Upstream, Some(500)));
}

#[test]
fn a_prompt_beyond_the_window_is_a_context_overflow() {
    let s = start_on("t");
    s.standin.always("t", Reply::overflow());
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::ContextOverflow);
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "context_overflow");
    assert_eq!(j["error"]["code"], 4);
    assert_eq!(j["error"]["provider"], "replicate");
    let msg = j["error"]["message"].as_str().unwrap();
    assert!(msg.contains("exceeds maximum input length"), "{msg}");

    let (chunks, r) = stream(hello());
    assert!(chunks.is_empty());
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::ContextOverflow);
    assert_eq!(s.creates("t").len(), 2, "an overflow is not retried");

    // Found only by polling: the prediction fails after being accepted.
    drop(s);
    let s2 = start_on("poll-1");
    s2.standin.always("poll-1", Reply::overflow());
    assert_eq!(
        complete(hello()).unwrap_err().status,
        Status::ContextOverflow
    );
    assert_eq!(s2.standin.count("poll-1"), 3);
}

#[test]
fn flagged_content_is_a_content_policy_error() {
    let s = start_on("policy");
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::ContentPolicy);
    assert!(e.message.contains("(E005)"), "{}", e.message);
    assert_eq!(error_json(&e)["error"]["status"], "content_policy");
    let (_, r) = stream(hello());
    assert_eq!(r.unwrap_err().status, Status::ContentPolicy);
    assert_eq!(s.creates("policy").len(), 2);
}

#[test]
fn broken_streams_are_upstream_errors_and_keep_what_was_delivered() {
    let s = start_on("t");
    s.standin.script("t", [Reply::fault(Fault::Truncated)]);
    let (chunks, r) = stream(hello());
    assert_eq!(
        texts(&chunks),
        ["echo: ", "Say "],
        "two outputs, then the cut"
    );
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::Upstream, "{}", e.message);
    error_json(&e);

    s.standin.script("t", [Reply::fault(Fault::MidStreamError)]);
    let (chunks, r) = stream(hello());
    assert_eq!(texts(&chunks), ["echo: "]);
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::Upstream);
    assert!(
        e.message.contains("Prediction interrupted"),
        "{}",
        e.message
    );

    // Not streaming: an interrupted prediction, a connection reset, garbage.
    s.standin.script(
        "t",
        [
            Reply::fault(Fault::MidStreamError),
            Reply::fault(Fault::Reset),
            Reply::fault(Fault::Garbage),
        ],
    );
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::Upstream);
    assert_eq!(e.message, "Prediction interrupted; please retry (code: PA)");
    assert_eq!(complete(hello()).unwrap_err().status, Status::Upstream);
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::Upstream);
    assert!(
        e.message.contains("not a Replicate prediction"),
        "{}",
        e.message
    );
}

/// Waits up to 3 s for a request matching `pred` to reach `tenant`.
fn eventually(s: &Session, tenant: &str, pred: impl Fn(&RecordedRequest) -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if s.standin.requests(tenant).iter().any(&pred) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_prediction_still_running_at_the_timeout_is_cancelled() {
    let s = start_on("poll-100000");
    let mut req = hello();
    req["timeout"] = json!(0.8);
    let started = Instant::now();
    let e = complete(req.clone()).unwrap_err();
    assert_eq!(e.status, Status::Timeout);
    assert!(started.elapsed() < Duration::from_secs(3));
    let is_cancel = |r: &RecordedRequest| r.method == "POST" && r.path.ends_with("/cancel");
    assert!(
        eventually(&s, "poll-100000", is_cancel),
        "no cancel was sent"
    );
    let cancel = s
        .standin
        .requests("poll-100000")
        .into_iter()
        .find(is_cancel)
        .unwrap();
    assert_eq!(
        cancel.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    // A polled stream whose output stops growing times out, and is cancelled too.
    drop(s);
    let s = start_on("poll-100000-nostream");
    let (chunks, r) = stream(req);
    assert!(chunks.is_empty());
    assert_eq!(r.unwrap_err().status, Status::Timeout);
    assert!(
        eventually(&s, "poll-100000-nostream", is_cancel),
        "no cancel was sent"
    );
}

#[test]
fn the_api_key_never_appears_in_errors() {
    let s = start_on("t");
    let echoed =
        format!(r#"{{"title":"Unauthenticated","detail":"Invalid token {KEY}","status":401}}"#);
    s.standin.script(
        "t",
        [Reply::body(401, echoed.clone()), Reply::body(401, echoed)],
    );
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::Auth);
    let j = error_json(&e);
    assert!(j["error"]["message"]
        .as_str()
        .unwrap()
        .contains("[REDACTED]"));
    let (_, r) = stream(hello());
    let e = r.unwrap_err();
    error_json(&e);
    assert!(!e.message.contains(KEY));
    for out in [llmr::router_info().unwrap(), llmr::stats().unwrap()] {
        assert!(!out.contains(KEY), "{out}");
    }
}
