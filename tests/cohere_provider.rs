//! The Cohere v2 chat provider end to end: the library's Rust API (`init`, `complete_json`,
//! `stream_json`, `shutdown`) against the loopback stand-in speaking Cohere's wire format.
//!
//! The router is a process-wide singleton, so the tests of this binary run one at a time
//! (`common::lock`) and each starts from `shutdown` + `init`.

use llmr::{Error, Status};
use llmr_testkit::{Fault, Reply, COHERE_TOOL_CALL_ID, TOOL_ARGUMENTS};
use serde_json::{json, Value};

mod common;
use common::provider::{
    complete, error_json_without, hello, start_session, stream, weather_tools, Session,
};

const KEY: &str = "co-SECRET-test-0123456789abcdef";
const MODEL: &str = "command-a-03-2025";

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
                    json!({"id": d.id, "provider": "COHERE", "model_name": MODEL, "api_key": KEY,
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
    // The stand-in counts the prompt template in `usage.tokens` (100 more than billed).
    let prompt = r["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 100, "usage.tokens, not billed_units: {prompt}");
    assert_eq!(r["usage"]["completion_tokens"], 3);
    assert_eq!(r["usage"]["total_tokens"].as_u64().unwrap(), prompt + 3);
    assert_eq!(r["llmr"]["provider"], "cohere");
    assert_eq!(r["llmr"]["deployment_id"], "1");

    let sent = s.standin.requests("t");
    assert_eq!(sent.len(), 1);
    let sent = &sent[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/t/v2/chat");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(sent.header("content-type"), Some("application/json"));
    let b = &sent.body;
    assert_eq!(b["model"], MODEL);
    assert_eq!(
        b["messages"],
        json!([{"role": "system", "content": "You are terse."},
               {"role": "user", "content": "Say hello"}])
    );
    assert_eq!(b["stream"], false);
    assert!(
        b.get("max_tokens").is_none(),
        "Cohere defaults to the model's cap"
    );
}

#[test]
fn request_fields_and_deployment_params_reach_cohere_mapped() {
    let s = start(
        &[Dep {
            id: 7,
            tenant: "p",
            params: json!({"temperature": 0.2, "top_k": 5, "safety_mode": "STRICT"}),
        }],
        json!({"num_retries": 0}),
    );
    let mut req = hello();
    req["stop"] = json!("STOP");
    req["max_tokens"] = json!(64);
    req["top_p"] = json!(0.8);
    req["user"] = json!("user-42");
    req["seed"] = json!(1);
    req["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}});
    complete(req).unwrap();
    let b = s.standin.last_request("p").unwrap().body;
    assert_eq!(b["stop_sequences"], json!(["STOP"]));
    assert_eq!(b["max_tokens"], 64);
    assert_eq!(b["temperature"], 0.2);
    assert_eq!((b["p"].clone(), b["k"].clone()), (json!(0.8), json!(5)));
    assert_eq!(b["seed"], 1);
    assert_eq!(b["safety_mode"], "STRICT");
    assert_eq!(
        b["response_format"],
        json!({"type": "json_object", "json_schema": {"type": "object"}})
    );
    for absent in ["stop", "top_p", "top_k", "user"] {
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
    assert_eq!(r["choices"][0]["message"]["content"], "one two three four");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["completion_tokens"], 4);
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 100);
    assert_eq!(r["llmr"]["provider"], "cohere");
    let sent = s.standin.last_request("t").unwrap();
    assert_eq!(sent.body["stream"], true);
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[test]
fn tool_call_round_trip() {
    let s = start_one();
    // 1. The model calls the tool (after a plan, which comes back as the text).
    let mut req = json!({"messages": [{"role": "user", "content": "Weather in Paris?"}],
                         "tools": weather_tools(), "tool_choice": "required"});
    let r = complete(req.clone()).unwrap();
    let msg = &r["choices"][0]["message"];
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(msg["content"], "I will call get_weather.");
    let call = &msg["tool_calls"][0];
    assert_eq!(call["id"], COHERE_TOOL_CALL_ID);
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
    assert_eq!(first["tools"], weather_tools(), "tools keep OpenAI's shape");
    assert_eq!(first["tool_choice"], "REQUIRED");

    // 2. The caller sends the assistant turn and the tool's answer back.
    let messages = req["messages"].as_array_mut().unwrap();
    messages.push(msg.clone());
    messages.push(
        json!({"role": "tool", "tool_call_id": COHERE_TOOL_CALL_ID, "content": "18C and sunny"}),
    );
    req["tool_choice"] = json!("auto");
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
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_plan": "I will call get_weather.", "tool_calls": [
                {"id": COHERE_TOOL_CALL_ID, "type": "function",
                 "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS}}]},
            {"role": "tool", "tool_call_id": COHERE_TOOL_CALL_ID, "content": "18C and sunny"}
        ])
    );
    assert!(second.get("tool_choice").is_none(), "auto is left out");
}

#[test]
fn a_named_tool_choice_offers_only_that_tool() {
    let s = start_one();
    let mut tools = weather_tools();
    tools
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "function", "function": {"name": "now"}}));
    let r = complete(
        json!({"messages": [{"role": "user", "content": "What time is it?"}],
                            "tools": tools,
                            "tool_choice": {"type": "function", "function": {"name": "now"}}}),
    )
    .unwrap();
    assert_eq!(
        r["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "now"
    );
    let b = s.standin.last_request("t").unwrap().body;
    assert_eq!(b["tool_choice"], "REQUIRED");
    assert_eq!(b["tools"].as_array().unwrap().len(), 1);
    assert_eq!(b["tools"][0]["function"]["name"], "now");
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
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert!(
        calls.len() >= 2,
        "the call and its argument pieces: {chunks:?}"
    );
    assert!(calls.iter().all(|c| c["index"] == 0));
    assert_eq!(calls[0]["id"], COHERE_TOOL_CALL_ID);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let call = &r["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], COHERE_TOOL_CALL_ID);
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris", "unit": "celsius"}));
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "I will call get_weather."
    );
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
fn trial_key_429_fails_over_and_cools_the_first_down() {
    let s = start_pair();
    // Cohere's 429 carries no retry-after: the cooldown is the router's own.
    s.standin.always("a", Reply::status(429));
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
fn server_errors_and_cancelled_requests_fail_over() {
    let s = start_pair();
    s.standin.script("a", [Reply::status(499)]);
    s.standin.script("b", [Reply::text("from b")]);
    let r = complete(hello()).unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "from b");
    assert_eq!(r["llmr"]["attempts"], 2);
    // An error at message-end before any content fails over too.
    s.standin.script("a", [Reply::fault(Fault::ErrorFirst)]);
    let (_, r) = stream(hello());
    assert_eq!(r.unwrap()["llmr"]["deployment_id"], "2");
    assert_eq!(s.standin.count("a"), 2);
}

#[test]
fn upstream_errors_with_one_deployment() {
    let s = start_one();
    let monthly = r#"{"id":"24e32f6d-b372-4853-85f2-11e65134f032","message":"You are using a Trial key, which is limited to 1000 API calls / month."}"#;
    s.standin.script(
        "t",
        [
            Reply::status(429),
            Reply::preset("e429"),
            Reply::body(429, monthly),
            Reply::status(500),
            Reply::status(401),
            Reply::status(498),
            Reply::status(402),
        ],
    );
    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::RateLimited, Some(429)));
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "rate_limited");
    assert!(
        j["error"].get("retry_after").is_none(),
        "no hint was given: {j}"
    );
    assert!(e.message.contains("Trial key"), "{}", e.message);
    assert_eq!(j["error"]["provider"], "cohere");

    let e = complete(hello()).unwrap_err();
    assert_eq!(
        e.retry_after,
        Some(2.0),
        "a retry-after header is honoured when sent"
    );

    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::RateLimited);
    assert!(e.message.contains("/ month"));

    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Upstream, Some(500)));
    assert_eq!(e.message, "internal server error");

    for status in [401, 498] {
        let e = complete(hello()).unwrap_err();
        assert_eq!((e.status, e.http_status), (Status::Auth, Some(status)));
        assert_eq!(e.message, "invalid api token");
    }
    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::BadRequest, Some(402)));
    assert!(e.message.contains("payment method"), "{}", e.message);
}

#[test]
fn a_monthly_trial_allowance_is_not_retried_on_the_same_key() {
    let s = start(&[dep(1, "t")], json!({"num_retries": 2, "retry_after": 0}));
    // A per-minute limit is worth retrying...
    s.standin.always("t", Reply::status(429));
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::RateLimited);
    let per_minute = s.standin.count("t");
    assert!(per_minute > 1, "retried: {per_minute}");
    // ... this month's allowance is not: only another key can answer.
    s.standin.reset();
    s.standin.always(
        "t",
        Reply::body(429, r#"{"id":"x","message":"You are using a Trial key, which is limited to 1000 API calls / month."}"#),
    );
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::RateLimited);
    assert_eq!(s.standin.count("t"), 1);
}

#[test]
fn size_limit_exceeded_is_a_context_overflow() {
    let s = start_one();
    s.standin.always("t", Reply::overflow());
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::ContextOverflow);
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "context_overflow");
    assert_eq!(j["error"]["code"], 4);
    assert_eq!(j["error"]["http_status"], 400);
    assert_eq!(j["error"]["provider"], "cohere");
    let msg = j["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("too many tokens: size limit exceeded by"),
        "{msg}"
    );

    let (chunks, r) = stream(hello());
    assert!(chunks.is_empty());
    assert_eq!(r.unwrap_err().status, Status::ContextOverflow);
    assert_eq!(s.standin.count("t"), 2, "an overflow is not retried");

    // The output cap shares the words but is a bad request.
    s.standin.always(
        "t",
        Reply::body(400, r#"{"id":"x","message":"too many tokens: max tokens must be less than or equal to 4096, the maximum output for this model - received 8192."}"#),
    );
    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::BadRequest, Some(400)));
}

#[test]
fn an_overflow_falls_back_to_the_larger_window() {
    let s = start_pair();
    s.standin.always("a", Reply::overflow());
    let r = complete(hello()).unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    let fallbacks = r["llmr"]["fallbacks"].as_array().unwrap();
    assert!(
        fallbacks.iter().any(|f| f == "context_window:1"),
        "{fallbacks:?}"
    );
}

#[test]
fn blocked_generations_are_content_policy() {
    let s = start_one();
    s.standin.always("t", Reply::policy());
    let e = complete(hello()).unwrap_err();
    assert_eq!(
        (e.status, e.http_status),
        (Status::ContentPolicy, Some(400))
    );
    assert_eq!(error_json(&e)["error"]["status"], "content_policy");
    let (_, r) = stream(hello());
    assert_eq!(r.unwrap_err().status, Status::ContentPolicy);
    assert_eq!(s.standin.count("t"), 2, "a refusal is not retried");
}

#[test]
fn the_api_key_never_appears_in_errors() {
    let s = start_one();
    let echoed = format!(r#"{{"id":"x","message":"invalid api token: {KEY}"}}"#);
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
    // message-end with an error after content went out: what was delivered stays, the call fails.
    s.standin.script("t", [Reply::fault(Fault::MidStreamError)]);
    let (chunks, r) = stream(hello());
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "echo: ");
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::Upstream);
    assert!(e.message.contains("internal server error"), "{}", e.message);
    error_json(&e);

    // The connection breaks off in the middle of the stream.
    s.standin.script("t", [Reply::fault(Fault::Truncated)]);
    let (chunks, r) = stream(hello());
    assert_eq!(chunks.len(), 2, "what was delivered is kept");
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::Upstream);

    // A whole HTTP body that ends before message-end.
    let body = concat!(
        "event: message-start\ndata: {\"id\":\"g1\",\"type\":\"message-start\",\"delta\":{\"message\":{\"role\":\"assistant\"}}}\n\n",
        "event: content-delta\ndata: {\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":\"half an answ\"}}}}\n\n",
    );
    s.standin.script(
        "t",
        [Reply::body(200, body).header("content-type", "text/event-stream")],
    );
    let (chunks, r) = stream(hello());
    assert_eq!(chunks.len(), 1);
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::Upstream);
    assert!(e.message.contains("message-end"), "{}", e.message);

    // A 200 whose body is an error, and one that is not JSON.
    s.standin.script(
        "t",
        [
            Reply::fault(Fault::MidStreamError),
            Reply::fault(Fault::Garbage),
        ],
    );
    let e = complete(hello()).unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (Status::Upstream, "internal server error")
    );
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::Upstream);
}
