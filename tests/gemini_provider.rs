//! The Gemini API provider (GOOGLE) end to end: the library's Rust API against the loopback
//! stand-in speaking Gemini's `generateContent` / `streamGenerateContent?alt=sse`.
//!
//! The router is a process-wide singleton, so the tests of this binary run one at a time
//! (`common::lock`) and each starts from `shutdown` + `init`.

use llmr::{Error, Status};
use llmr_testkit::{Fault, Reply, TOOL_ARGUMENTS};
use serde_json::{json, Value};

mod common;
use common::provider::{
    complete, error_json_without, hello, start_session, stream, text_of, Session,
};

const KEY: &str = "AIzaSy-test-key-123";
const MODEL: &str = "gemini-2.5-flash";

/// Deployments `(id, tenant, litellm_params)` on the stand-in.
fn start(deps: &[(u32, &str, Value)], settings: Value) -> Session {
    start_session(
        |standin| {
            deps.iter()
                .map(|(id, tenant, params)| {
                    json!({"id": id, "provider": "GOOGLE", "model_name": MODEL, "api_key": KEY,
                   "api_base": standin.base(tenant), "litellm_params": params})
                })
                .collect()
        },
        settings,
    )
}

fn start_one() -> Session {
    start(&[(1, "t", json!({}))], json!({"num_retries": 0}))
}

fn error_json(e: &Error) -> Value {
    error_json_without(e, &[KEY])
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                       "additionalProperties": false}}}])
}

#[test]
fn complete_text_and_what_goes_on_the_wire() {
    let s = start_one();
    s.standin.script("t", [Reply::text("Hello there, friend.")]);
    let mut req = hello();
    req["temperature"] = json!(0.4);
    req["max_tokens"] = json!(50);
    req["stop"] = json!(["END"]);
    let r = complete(req).unwrap();
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "Hello there, friend."
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["completion_tokens"], 3);
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r["llmr"]["provider"], "gemini");
    assert_eq!(r["llmr"]["deployment_id"], "1");

    let sent = s.standin.requests("t");
    assert_eq!(sent.len(), 1);
    let sent = &sent[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, format!("/t/v1/models/{MODEL}:generateContent"));
    assert_eq!(sent.header("x-goog-api-key"), Some(KEY));
    assert_eq!(sent.header("authorization"), None);
    assert!(!sent.path.contains(KEY), "the key is not in the URL");
    let b = &sent.body;
    assert_eq!(
        b["systemInstruction"],
        json!({"parts": [{"text": "You are terse."}]})
    );
    assert_eq!(
        b["contents"],
        json!([{"role": "user", "parts": [{"text": "Say hello"}]}])
    );
    assert_eq!(
        b["generationConfig"],
        json!({"temperature": 0.4, "maxOutputTokens": 50, "stopSequences": ["END"]})
    );
    assert!(b.get("messages").is_none() && b.get("model").is_none());
}

#[test]
fn stream_text() {
    let s = start_one();
    s.standin.script("t", [Reply::text("one two three four")]);
    let (chunks, r) = stream(hello());
    let r = r.unwrap();
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(pieces, ["one ", "two ", "three ", "four"]);
    assert_eq!(r["choices"][0]["message"]["content"], "one two three four");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["completion_tokens"], 4);
    let sent = s.standin.last_request("t").unwrap();
    assert_eq!(
        sent.path,
        format!("/t/v1/models/{MODEL}:streamGenerateContent?alt=sse")
    );
    assert!(sent.body.get("stream").is_none());
}

#[test]
fn tool_call_round_trip() {
    let s = start_one();
    let mut req = json!({"messages": [{"role": "user", "content": "Weather in Paris?"}],
                         "tools": weather_tools(), "tool_choice": "required"});
    let r = complete(req.clone()).unwrap();
    let msg = &r["choices"][0]["message"];
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    let call = &msg["tool_calls"][0];
    let id = call["id"].as_str().unwrap().to_owned();
    assert!(!id.is_empty(), "Gemini gives no ids: one is made up");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, serde_json::from_str::<Value>(TOOL_ARGUMENTS).unwrap());
    let first = s.standin.last_request("t").unwrap().body;
    assert_eq!(
        first["tools"],
        json!([{"functionDeclarations": [{"name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}]),
        "additionalProperties is dropped: Gemini refuses it"
    );
    assert_eq!(
        first["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );

    let messages = req["messages"].as_array_mut().unwrap();
    messages.push(msg.clone());
    messages.push(json!({"role": "tool", "tool_call_id": id, "content": "{\"temp_c\": 18}"}));
    s.standin.script("t", [Reply::text("It is 18C.")]);
    let r = complete(req).unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "It is 18C.");
    let second = s.standin.last_request("t").unwrap().body;
    assert_eq!(
        second["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}}]}
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
            r#"{"city":"Paris","unit":"celsius"}"#,
        )],
    );
    let (chunks, r) = stream(
        json!({"messages": [{"role": "user", "content": "Weather?"}],
                                    "tools": weather_tools()}),
    );
    let r = r.unwrap();
    assert!(!chunks.is_empty());
    let call = &r["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris", "unit": "celsius"}));
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
}

/// Two deployments, `a` (id 1) tried first: `b` gets usage this minute from a warm-up request.
fn start_pair() -> Session {
    let s = start(
        &[
            (1, "a", json!({})),
            (2, "b", json!({"max_input_tokens": 2000000})),
        ],
        json!({"num_retries": 2, "retry_after": 0, "routing_strategy": "usage-based-routing"}),
    );
    let mut warm = hello();
    warm["model"] = json!("auto-large");
    assert_eq!(complete(warm).unwrap()["llmr"]["deployment_id"], "2");
    s.standin.reset();
    s
}

#[test]
fn resource_exhausted_fails_over_and_cools_down_for_the_retry_delay() {
    let s = start_pair();
    // Gemini's 429 carries its retry hint in the body (RetryInfo "2s"), not in a header.
    s.standin.always("a", Reply::status(429));
    let r = complete(hello()).unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    assert_eq!(r["llmr"]["attempts"], 2);
    let r = complete(hello()).unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    assert_eq!(s.standin.count("a"), 1, "a cools down");
    let stats: Value = serde_json::from_str(&llmr::stats().unwrap()).unwrap();
    let a = stats["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "1")
        .unwrap()
        .clone();
    assert!(a["cooldown"].is_object(), "{a}");

    // With `a` cooling down, a stream whose first attempt on `b` fails before its first chunk
    // is retried (on `b`, the only healthy one) and succeeds.
    s.standin.script("b", [Reply::status(503)]);
    let (chunks, r) = stream(hello());
    let r = r.unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    assert_eq!(r["llmr"]["attempts"], 2);
    assert_eq!(text_of(&chunks), "echo: Say hello");
    assert_eq!(s.standin.count("a"), 1);
}

#[test]
fn one_deployment_errors_are_typed() {
    let s = start_one();
    s.standin.script(
        "t",
        [
            Reply::status(429),
            Reply::status(503),
            Reply::status(403),
            Reply::status(404),
        ],
    );
    let e = complete(hello()).unwrap_err();
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "rate_limited");
    assert_eq!(j["error"]["retry_after"], 2.0, "from RetryInfo");
    assert_eq!(j["error"]["provider"], "gemini");
    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Upstream, Some(503)));
    assert!(e.message.contains("overloaded"), "{}", e.message);
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::Auth);
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::BadRequest);
}

#[test]
fn a_bad_key_is_an_auth_error_though_gemini_says_400() {
    let s = start_one();
    let body = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}});
    s.standin.script("t", [Reply::body(400, body.to_string())]);
    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Auth, Some(400)));
    error_json(&e);
}

#[test]
fn input_token_count_too_large_is_a_context_overflow() {
    let s = start_one();
    s.standin.always("t", Reply::overflow());
    let e = complete(hello()).unwrap_err();
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "context_overflow");
    assert_eq!(j["error"]["http_status"], 400);
    assert!(j["error"]["message"]
        .as_str()
        .unwrap()
        .contains("exceeds the maximum number of tokens"));
    let (chunks, r) = stream(hello());
    assert!(chunks.is_empty());
    assert_eq!(r.unwrap_err().status, Status::ContextOverflow);
    assert_eq!(s.standin.count("t"), 2, "an overflow is not retried");
}

#[test]
fn a_blocked_prompt_is_a_content_policy_refusal() {
    let s = start_one();
    s.standin.always("t", Reply::policy());
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::ContentPolicy);
    assert!(e.message.contains("SAFETY"), "{}", e.message);
    let (chunks, r) = stream(hello());
    assert!(chunks.is_empty());
    assert_eq!(r.unwrap_err().status, Status::ContentPolicy);
    assert_eq!(s.standin.count("t"), 2, "a refusal is not retried");
}

#[test]
fn broken_streams_are_upstream_errors() {
    let s = start_one();
    s.standin.script("t", [Reply::fault(Fault::MidStreamError)]);
    let (chunks, r) = stream(hello());
    assert_eq!(text_of(&chunks), "echo: ");
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::Upstream);
    error_json(&e);

    // Cut off before the event with the finishReason: delivered text stays delivered.
    s.standin.script("t", [Reply::fault(Fault::Truncated)]);
    let (chunks, r) = stream(hello());
    assert_eq!(text_of(&chunks), "echo: Say ");
    assert_eq!(r.unwrap_err().status, Status::Upstream);

    s.standin.script(
        "t",
        [
            Reply::fault(Fault::MidStreamError),
            Reply::fault(Fault::Garbage),
            Reply::fault(Fault::ResetMid),
        ],
    );
    for _ in 0..3 {
        let e = complete(hello()).unwrap_err();
        assert_eq!(e.status, Status::Upstream, "{}", e.message);
    }
}

#[test]
fn the_api_key_never_appears_in_errors_info_or_stats() {
    let s = start_one();
    let echoed = json!({"error": {"code": 400, "message": format!("API key not valid: {KEY}"),
                                  "status": "INVALID_ARGUMENT"}});
    s.standin.always("t", Reply::body(400, echoed.to_string()));
    let e = complete(hello()).unwrap_err();
    error_json(&e);
    let (_, r) = stream(hello());
    error_json(&r.unwrap_err());
    for out in [llmr::router_info().unwrap(), llmr::stats().unwrap()] {
        assert!(!out.contains(KEY), "{out}");
    }
}
