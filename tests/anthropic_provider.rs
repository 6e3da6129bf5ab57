//! The Anthropic Messages provider end to end: the library's Rust API (`init`, `complete_json`,
//! `stream_json`, `shutdown`) against the loopback stand-in speaking Anthropic's wire format.
//!
//! The router is a process-wide singleton, so the tests of this binary run one at a time
//! (`common::lock`) and each starts from `shutdown` + `init`.

use llmr::{Error, Status};
use llmr_testkit::{Fault, Reply, TOOL_ARGUMENTS, TOOL_USE_ID};
use serde_json::{json, Value};

mod common;
use common::provider::{
    complete, error_json_without, hello, start_session, stream, weather_tools, Session,
};

const KEY: &str = "sk-ant-test";
const MODEL: &str = "claude-3-5-sonnet-20241022";

/// A deployment of the config: its id, its stand-in tenant, extra `litellm_params`.
struct Dep<'a> {
    id: u32,
    tenant: &'a str,
    params: Value,
}

fn dep(id: u32, tenant: &str) -> Dep<'_> {
    Dep {
        id,
        tenant,
        params: json!({}),
    }
}

fn start(deps: &[Dep], settings: Value) -> Session {
    start_session(
        |standin| {
            deps.iter()
                .map(|d| {
                    json!({"id": d.id, "provider": "ANTHROPIC", "model_name": MODEL, "api_key": KEY,
                   "api_base": standin.anthropic_base(d.tenant), "litellm_params": d.params})
                })
                .collect()
        },
        settings,
    )
}

/// One deployment on tenant `t`, no retries of the same deployment.
fn start_one() -> Session {
    start(&[dep(1, "t")], json!({"num_retries": 0}))
}

fn error_json(e: &Error) -> Value {
    error_json_without(e, &[KEY])
}

#[test]
fn complete_text_and_what_goes_on_the_wire() {
    let s = start_one();
    s.standin.script("t", [Reply::text("Hello there, friend.")]);
    let r = complete(hello()).unwrap();
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["model"], MODEL);
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "Hello there, friend."
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["completion_tokens"], 3);
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        r["usage"]["total_tokens"].as_u64().unwrap(),
        r["usage"]["prompt_tokens"].as_u64().unwrap() + 3
    );
    assert_eq!(r["llmr"]["provider"], "anthropic");
    assert_eq!(r["llmr"]["deployment_id"], "1");
    assert_eq!(r["llmr"]["attempts"], 1);

    let sent = s.standin.requests("t");
    assert_eq!(sent.len(), 1);
    let sent = &sent[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/t/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(
        sent.header("authorization"),
        None,
        "Anthropic takes no Bearer"
    );
    let b = &sent.body;
    assert_eq!(b["model"], MODEL);
    assert_eq!(b["system"], "You are terse.");
    assert_eq!(
        b["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}])
    );
    assert_eq!(b["max_tokens"], 8192, "the model's output cap by default");
    assert!(b.get("stream").is_none());
}

#[test]
fn request_fields_and_deployment_params_reach_anthropic_mapped() {
    let s = start(
        &[Dep {
            id: 7,
            tenant: "p",
            params: json!({"temperature": 0.2, "top_k": 5, "anthropic_beta": ["prompt-caching-2024-07-31"]}),
        }],
        json!({"num_retries": 0}),
    );
    let mut req = hello();
    req["stop"] = json!("STOP");
    req["max_tokens"] = json!(64);
    req["user"] = json!("user-42");
    req["seed"] = json!(1);
    complete(req).unwrap();
    let sent = s.standin.last_request("p").unwrap();
    assert_eq!(
        sent.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    let b = &sent.body;
    assert_eq!(b["stop_sequences"], json!(["STOP"]));
    assert_eq!(b["max_tokens"], 64);
    assert_eq!(b["temperature"], 0.2);
    assert_eq!(b["top_k"], 5);
    assert_eq!(b["metadata"], json!({"user_id": "user-42"}));
    for absent in ["stop", "seed", "user", "anthropic_beta"] {
        assert!(b.get(absent).is_none(), "{absent} was sent: {b}");
    }
}

#[test]
fn stream_text() {
    let s = start_one();
    s.standin.script("t", [Reply::text("one two three four")]);
    let (chunks, r) = stream(hello());
    let r = r.unwrap();
    let pieces: Vec<&str> = chunks
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(pieces, ["one ", "two ", "three ", "four"]);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"][0]["message"]["content"], "one two three four");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["completion_tokens"], 4);
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r["llmr"]["provider"], "anthropic");
    let sent = s.standin.last_request("t").unwrap();
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.header("x-api-key"), Some(KEY));
}

#[test]
fn tool_call_round_trip() {
    let s = start_one();
    // 1. The model calls the tool.
    let mut req = json!({"messages": [{"role": "user", "content": "Weather in Paris?"}],
                         "tools": weather_tools(), "tool_choice": "auto"});
    let r = complete(req.clone()).unwrap();
    let msg = &r["choices"][0]["message"];
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    assert!(msg["content"].is_null());
    let call = &msg["tool_calls"][0];
    assert_eq!(call["id"], TOOL_USE_ID);
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args = call["function"]["arguments"]
        .as_str()
        .expect("arguments are a JSON string");
    assert_eq!(
        serde_json::from_str::<Value>(args).unwrap(),
        serde_json::from_str::<Value>(TOOL_ARGUMENTS).unwrap()
    );
    let first = s.standin.last_request("t").unwrap().body;
    assert_eq!(
        first["tools"],
        json!([{"name": "get_weather", "description": "Weather of a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
    );
    assert_eq!(first["tool_choice"], json!({"type": "auto"}));

    // 2. The caller sends the assistant turn and the tool's answer back.
    let messages = req["messages"].as_array_mut().unwrap();
    messages.push(msg.clone());
    messages.push(json!({"role": "tool", "tool_call_id": TOOL_USE_ID, "content": "18C and sunny"}));
    s.standin.script("t", [Reply::text("It is 18C and sunny.")]);
    let r = complete(req).unwrap();
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "It is 18C and sunny."
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    let second = s.standin.last_request("t").unwrap().body;
    assert_eq!(
        second["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": TOOL_USE_ID, "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": TOOL_USE_ID, "content": "18C and sunny"}]}
        ])
    );
}

#[test]
fn stream_tool_call() {
    let s = start_one();
    s.standin.script(
        "t",
        [Reply::tool_call(
            "get_weather",
            r#"{"city": "Paris", "unit": "celsius"}"#,
        )],
    );
    let (chunks, r) = stream(
        json!({"messages": [{"role": "user", "content": "Weather in Paris?"}],
                                    "tools": weather_tools()}),
    );
    let r = r.unwrap();
    assert!(
        chunks.len() >= 2,
        "the call and its argument pieces: {chunks:?}"
    );
    assert!(chunks
        .iter()
        .all(|c| c["choices"][0]["delta"]["tool_calls"][0]["index"] == 0));
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["tool_calls"][0]["id"],
        TOOL_USE_ID
    );
    let call = &r["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], TOOL_USE_ID);
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris", "unit": "celsius"}));
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(s.standin.count("t"), 1);
}

/// Two deployments, `a` (id 1) tried first: `b` (id 2) has a larger window, so it alone makes
/// `auto-large`, and a warm-up request there gives it usage this minute; usage-based routing
/// then puts `a` first.
fn start_pair() -> Session {
    let mut b = dep(2, "b");
    b.params = json!({"max_input_tokens": 300000});
    let s = start(
        &[dep(1, "a"), b],
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
fn overloaded_529_fails_over_to_the_second_deployment() {
    let s = start_pair();
    s.standin.script("a", [Reply::status(529)]);
    s.standin.script("b", [Reply::text("from b")]);
    let r = complete(hello()).unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "from b");
    assert_eq!(r["llmr"]["deployment_id"], "2");
    assert_eq!(r["llmr"]["attempts"], 2);
    assert_eq!(s.standin.count("a"), 1);
    assert_eq!(s.standin.count("b"), 1);
}

#[test]
fn rate_limited_429_fails_over_and_cools_the_first_down() {
    let s = start_pair();
    s.standin
        .always("a", Reply::status(429).header("retry-after", "30"));
    let r = complete(hello()).unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    assert_eq!(r["llmr"]["attempts"], 2);
    assert_eq!(s.standin.count("a"), 1);
    // `a` now cools down: the next requests, streamed too, go to `b` alone.
    let r = complete(hello()).unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    let (chunks, r) = stream(hello());
    assert!(!chunks.is_empty());
    assert_eq!(r.unwrap()["llmr"]["deployment_id"], "2");
    assert_eq!(s.standin.count("a"), 1);
    assert_eq!(s.standin.count("b"), 3);
}

#[test]
fn stream_fails_over_before_its_first_chunk() {
    let s = start_pair();
    s.standin.script("a", [Reply::status(529)]);
    let (chunks, r) = stream(hello());
    let r = r.unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    assert_eq!(r["choices"][0]["message"]["content"], "echo: Say hello");
    let text: String = chunks
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "echo: Say hello");

    // An error event before any content (an overloaded stream) fails over too.
    s.standin.script("a", [Reply::fault(Fault::ErrorFirst)]);
    let (_, r) = stream(hello());
    assert_eq!(r.unwrap()["llmr"]["deployment_id"], "2");
    assert_eq!(s.standin.count("a"), 2);
}

#[test]
fn upstream_errors_with_one_deployment() {
    let s = start_one();
    s.standin.script(
        "t",
        [
            Reply::status(429).header("retry-after", "7"),
            Reply::status(529),
            Reply::status(401),
            Reply::status(413),
        ],
    );
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::RateLimited);
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "rate_limited");
    assert_eq!(j["error"]["http_status"], 429);
    assert_eq!(j["error"]["retry_after"], 7.0);
    assert_eq!(j["error"]["provider"], "anthropic");
    assert_eq!(j["error"]["deployment_id"], "1");

    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Upstream, Some(529)));
    assert_eq!(e.message, "Overloaded");

    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Auth, Some(401)));
    assert_eq!(error_json(&e)["error"]["status"], "auth");

    let e = complete(hello()).unwrap_err();
    assert_eq!(
        (e.status, e.http_status),
        (Status::BadRequest, Some(413)),
        "request_too_large is the body limit, not the context window"
    );
}

#[test]
fn prompt_too_long_is_a_context_overflow() {
    let s = start_one();
    s.standin.always("t", Reply::overflow());
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::ContextOverflow);
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "context_overflow");
    assert_eq!(j["error"]["code"], 4);
    assert_eq!(j["error"]["http_status"], 400);
    assert_eq!(j["error"]["provider"], "anthropic");
    let msg = j["error"]["message"].as_str().unwrap();
    assert!(msg.contains("prompt is too long"), "{msg}");

    let (chunks, r) = stream(hello());
    assert!(chunks.is_empty());
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::ContextOverflow);
    assert!(e.message.contains("prompt is too long"), "{}", e.message);
    assert_eq!(s.standin.count("t"), 2, "an overflow is not retried");
}

#[test]
fn the_api_key_never_appears_in_errors() {
    let s = start_one();
    let echoed = format!(
        r#"{{"type":"error","error":{{"type":"authentication_error","message":"invalid x-api-key: {KEY}"}}}}"#
    );
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

#[test]
fn broken_streams_are_upstream_errors() {
    let s = start_one();
    // An error event after content went out: what was delivered stays, the call fails.
    s.standin.script("t", [Reply::fault(Fault::MidStreamError)]);
    let (chunks, r) = stream(hello());
    assert_eq!(chunks.len(), 1);
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::Upstream);
    assert!(e.message.contains("Overloaded"), "{}", e.message);
    error_json(&e);

    // The connection breaks off in the middle of the stream.
    s.standin.script("t", [Reply::fault(Fault::Truncated)]);
    let (chunks, r) = stream(hello());
    assert!(!chunks.is_empty());
    assert_eq!(r.unwrap_err().status, Status::Upstream);

    // A whole HTTP body that ends before message_stop.
    let events = [
        r#"{"type":"message_start","message":{"id":"msg_x","model":"m","usage":{"input_tokens":3,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"half an answ"}}"#,
    ];
    let names = [
        "message_start",
        "content_block_start",
        "content_block_delta",
    ];
    let body: String = names
        .iter()
        .zip(events)
        .map(|(n, d)| format!("event: {n}\ndata: {d}\n\n"))
        .collect();
    s.standin.script(
        "t",
        [Reply::body(200, body).header("content-type", "text/event-stream")],
    );
    let (chunks, r) = stream(hello());
    assert_eq!(chunks.len(), 1);
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::Upstream);
    assert!(e.message.contains("message_stop"), "{}", e.message);

    // An overloaded error event before any content, with nowhere to fail over to.
    s.standin.script("t", [Reply::fault(Fault::ErrorFirst)]);
    let (chunks, r) = stream(hello());
    assert!(chunks.is_empty());
    let e = r.unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Upstream, Some(529)));

    // A 200 whose body is an error, and one that is not JSON.
    s.standin.script(
        "t",
        [
            Reply::fault(Fault::MidStreamError),
            Reply::fault(Fault::Garbage),
        ],
    );
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::Upstream);
    assert_eq!(e.message, "Overloaded");
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::Upstream);
}
