//! The Bedrock Converse provider end to end: the library's Rust API (`init`, `complete_json`,
//! `stream_json`, `shutdown`) against the loopback stand-in speaking Converse / ConverseStream
//! (AWS event-stream frames, errors named by `x-amzn-ErrorType`).
//!
//! The SigV4 `Authorization` header the stand-in received is recomputed here from the recorded
//! request (method, path, signed headers, body bytes) and the test credentials.
//!
//! The router is a process-wide singleton, so the tests of this binary run one at a time
//! (`common::lock`) and each starts from `shutdown` + `init`.

use llmr::providers::sigv4;
use llmr::{Error, Status};
use llmr_testkit::{Fault, RecordedRequest, Reply, BEDROCK_TOOL_USE_ID, TOOL_ARGUMENTS};
use serde_json::{json, Value};

mod common;
use common::provider::{
    complete, error_json_without, hello, start_session, stream, weather_tools, Session,
};

const MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const WIRE_MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1%3A0";
const REGION: &str = "us-west-2";
const AKID: &str = "AKIDLLMRTEST0001";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYllmrSECRET";
const BEDROCK_KEY: &str = "ABSKbedrock-llmr-test-key-0123456789";

/// A deployment of the config: its id, its stand-in tenant, `litellm_params` (access keys and
/// region by default).
struct Dep<'a> {
    id: u32,
    tenant: &'a str,
    params: Value,
}

fn keys() -> Value {
    json!({"aws_region_name": REGION, "aws_access_key_id": AKID, "aws_secret_access_key": SECRET})
}

fn dep(id: u32, tenant: &str) -> Dep<'_> {
    Dep {
        id,
        tenant,
        params: keys(),
    }
}

fn start(deps: &[Dep], settings: Value) -> Session {
    start_session(
        |standin| {
            deps.iter()
                .map(|d| {
                    json!({"id": d.id, "provider": "BEDROCK", "model_name": MODEL,
                   "api_base": standin.bedrock_base(d.tenant), "litellm_params": d.params})
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

fn start_with(params: Value) -> Session {
    start(
        &[Dep {
            id: 1,
            tenant: "t",
            params,
        }],
        json!({"num_retries": 0}),
    )
}

/// Recomputes the SigV4 signature of a recorded request and checks the one it carried.
fn assert_signed(sent: &RecordedRequest, session_token: Option<&str>) {
    let auth = sent
        .header("authorization")
        .expect("an Authorization header");
    let signed = auth
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .expect("SignedHeaders");
    let names: Vec<&str> = signed.split(';').collect();
    for must in ["content-type", "host", "x-amz-date"] {
        assert!(names.contains(&must), "{must} is signed: {auth}");
    }
    assert_eq!(
        names.contains(&"x-amz-security-token"),
        session_token.is_some(),
        "{auth}"
    );
    assert_eq!(sent.header("x-amz-security-token"), session_token);
    let headers: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (*n, sent.header(n).unwrap_or_else(|| panic!("{n} was sent"))))
        .collect();
    let date = sent.header("x-amz-date").unwrap();
    let (path, query) = sent.path.split_once('?').unwrap_or((&sent.path, ""));
    let payload_hash = sigv4::sha256_hex(&sent.raw_body);
    let want = sigv4::sign(
        &sigv4::Request {
            method: &sent.method,
            path,
            query,
            headers: &headers,
            payload_hash: &payload_hash,
        },
        &sigv4::Scope {
            amz_date: date,
            region: REGION,
            service: "bedrock",
        },
        AKID,
        SECRET,
    );
    assert_eq!(auth, want.authorization);
    assert!(
        want.canonical_request.contains("v1%253A0/converse"),
        "the model id is signed double-encoded: {}",
        want.canonical_request
    );
    assert!(auth.starts_with(&format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/{}/{REGION}/bedrock/aws4_request, ",
        &date[..8]
    )));
}

fn error_json(e: &Error) -> Value {
    error_json_without(e, &[SECRET, BEDROCK_KEY])
}

#[test]
fn complete_text_signed_with_sigv4() {
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
    let prompt = r["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 0);
    assert_eq!(r["usage"]["total_tokens"].as_u64().unwrap(), prompt + 3);
    assert_eq!(r["llmr"]["provider"], "bedrock");
    assert_eq!(r["llmr"]["deployment_id"], "1");

    let sent = s.standin.requests("t");
    assert_eq!(sent.len(), 1);
    let sent = &sent[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, format!("/t/model/{WIRE_MODEL}/converse"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_signed(sent, None);
    let b = &sent.body;
    assert_eq!(b["system"], json!([{"text": "You are terse."}]));
    assert_eq!(
        b["messages"],
        json!([{"role": "user", "content": [{"text": "Say hello"}]}])
    );
    for absent in ["model", "stream", "max_tokens", "inferenceConfig"] {
        assert!(b.get(absent).is_none(), "{absent}: {b}");
    }
    // What was signed is what was recorded.
    assert_eq!(serde_json::from_slice::<Value>(&sent.raw_body).unwrap(), *b);
}

#[test]
fn session_tokens_are_sent_and_signed_and_keys_come_from_the_environment() {
    std::env::set_var("LLMR_BEDROCK_IT_KEY_ID", AKID);
    std::env::set_var("LLMR_BEDROCK_IT_SECRET", SECRET);
    let s = start_with(json!({
        "aws_region_name": REGION,
        "aws_access_key_id": "os.environ/LLMR_BEDROCK_IT_KEY_ID",
        "aws_secret_access_key": "os.environ/LLMR_BEDROCK_IT_SECRET",
        "aws_session_token": "FwoGZXIvYXdzEBYaDllmrSessionToken",
    }));
    complete(hello()).unwrap();
    let (chunks, r) = stream(hello());
    assert!(!chunks.is_empty());
    r.unwrap();
    let sent = s.standin.requests("t");
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1].path,
        format!("/t/model/{WIRE_MODEL}/converse-stream")
    );
    for req in &sent {
        assert_signed(req, Some("FwoGZXIvYXdzEBYaDllmrSessionToken"));
    }
}

#[test]
fn a_bedrock_api_key_is_a_bearer_token() {
    let s = start_with(json!({"api_key": BEDROCK_KEY}));
    let r = complete(hello()).unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "echo: Say hello");
    let sent = s.standin.last_request("t").unwrap();
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {BEDROCK_KEY}").as_str())
    );
    assert_eq!(sent.header("x-amz-date"), None, "nothing is signed");
    assert_eq!(sent.header("x-amz-security-token"), None);
}

#[test]
fn request_fields_and_deployment_params_reach_converse_mapped() {
    let mut params = keys();
    params["temperature"] = json!(0.2);
    params["top_k"] = json!(5);
    let s = start_with(params);
    let mut req = hello();
    req["stop"] = json!("STOP");
    req["max_tokens"] = json!(64);
    req["top_p"] = json!(0.8);
    req["seed"] = json!(1);
    req["user"] = json!("user-42");
    complete(req).unwrap();
    let b = s.standin.last_request("t").unwrap().body;
    assert_eq!(
        b["inferenceConfig"],
        json!({"maxTokens": 64, "temperature": 0.2, "topP": 0.8, "stopSequences": ["STOP"]})
    );
    assert_eq!(b["additionalModelRequestFields"], json!({"top_k": 5}));
    for absent in [
        "stop",
        "seed",
        "user",
        "temperature",
        "top_k",
        "aws_region_name",
    ] {
        assert!(b.get(absent).is_none(), "{absent} was sent: {b}");
    }
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
    assert_eq!(call["id"], BEDROCK_TOOL_USE_ID);
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
        first["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather of a city",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}],
               "toolChoice": {"auto": {}}})
    );

    // 2. The caller sends the assistant turn and the tool's answer back.
    let messages = req["messages"].as_array_mut().unwrap();
    messages.push(msg.clone());
    messages.push(
        json!({"role": "tool", "tool_call_id": BEDROCK_TOOL_USE_ID, "content": "18C and sunny"}),
    );
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
            {"role": "user", "content": [{"text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": BEDROCK_TOOL_USE_ID, "name": "get_weather", "input": {"city": "Paris"}}}]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": BEDROCK_TOOL_USE_ID, "content": [{"text": "18C and sunny"}]}}]}
        ])
    );
    assert!(second["toolConfig"]["tools"].is_array());
}

#[test]
fn stream_text_from_event_stream_frames() {
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
    assert_eq!(
        r["usage"]["completion_tokens"], 4,
        "usage from the metadata event"
    );
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r["llmr"]["provider"], "bedrock");
    let sent = s.standin.last_request("t").unwrap();
    assert_eq!(sent.path, format!("/t/model/{WIRE_MODEL}/converse-stream"));
    assert!(sent.body.get("stream").is_none(), "the path says stream");
    assert_signed(&sent, None);
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
        json!({"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": weather_tools()}),
    );
    let r = r.unwrap();
    assert!(
        chunks.len() >= 3,
        "the call and its argument pieces: {chunks:?}"
    );
    assert!(chunks
        .iter()
        .all(|c| c["choices"][0]["delta"]["tool_calls"][0]["index"] == 0));
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["tool_calls"][0]["id"],
        BEDROCK_TOOL_USE_ID
    );
    let call = &r["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris", "unit": "celsius"}));
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    assert!(r["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(s.standin.count("t"), 1);
}

/// Two deployments, `a` (id 1) tried first: `b` (id 2) has a larger window, so it alone makes
/// `auto-large`, and a warm-up request there gives it usage this minute; usage-based routing
/// then puts `a` first.
fn start_pair() -> Session {
    let mut b = dep(2, "b");
    b.params["max_input_tokens"] = json!(300000);
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
fn throttled_429_fails_over_and_cools_the_first_down() {
    let s = start_pair();
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
fn a_stream_fails_over_before_its_first_chunk() {
    let s = start_pair();
    // An exception frame before any content (serviceUnavailableException) fails over.
    s.standin.script("a", [Reply::fault(Fault::ErrorFirst)]);
    let (chunks, r) = stream(hello());
    let r = r.unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    let text: String = chunks
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "echo: Say hello");
    assert_eq!(s.standin.count("a"), 1);
}

#[test]
fn upstream_errors_with_one_deployment() {
    let s = start_one();
    s.standin.script(
        "t",
        [
            Reply::status(429).header("retry-after", "7"),
            Reply::status(503),
            Reply::status(401),
            Reply::status(403),
            Reply::status(404),
            Reply::status(424),
            Reply::status(408),
        ],
    );
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::RateLimited);
    assert_eq!(
        e.message,
        "Too many requests, please wait before trying again."
    );
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "rate_limited");
    assert_eq!(j["error"]["http_status"], 429);
    assert_eq!(j["error"]["retry_after"], 7.0);
    assert_eq!(j["error"]["provider"], "bedrock");
    assert_eq!(j["error"]["deployment_id"], "1");

    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Upstream, Some(503)));
    assert_eq!(e.message, "Bedrock is unable to process your request.");
    for (status, want) in [
        (401, Status::Auth),
        (403, Status::Auth),
        (404, Status::BadRequest),
        (424, Status::Upstream),
        (408, Status::Timeout),
    ] {
        let e = complete(hello()).unwrap_err();
        assert_eq!((e.status, e.http_status), (want, Some(status)));
        error_json(&e);
    }
}

#[test]
fn input_too_long_is_a_context_overflow() {
    let s = start_one();
    s.standin.always("t", Reply::overflow());
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::ContextOverflow);
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "context_overflow");
    assert_eq!(j["error"]["http_status"], 400);
    assert_eq!(j["error"]["provider"], "bedrock");
    assert!(j["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Input is too long for requested model"));

    let (chunks, r) = stream(hello());
    assert!(chunks.is_empty());
    assert_eq!(r.unwrap_err().status, Status::ContextOverflow);
    assert_eq!(s.standin.count("t"), 2, "an overflow is not retried");
}

#[test]
fn content_filtering_is_a_content_policy_error() {
    let s = start_one();
    s.standin.always("t", Reply::policy());
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::ContentPolicy);
    assert_eq!(error_json(&e)["error"]["status"], "content_policy");
    let (_, r) = stream(hello());
    assert_eq!(r.unwrap_err().status, Status::ContentPolicy);
    // A guardrail answers 200 with its blocked message: a content_filter finish.
    s.standin.always(
        "t",
        Reply::body(
            200,
            r#"{"output":{"message":{"role":"assistant","content":[{"text":"Sorry, the model cannot answer this question."}]}},"stopReason":"guardrail_intervened","usage":{"inputTokens":5,"outputTokens":0,"totalTokens":5}}"#,
        ),
    );
    let r = complete(hello()).unwrap();
    assert_eq!(r["choices"][0]["finish_reason"], "content_filter");
}

#[test]
fn no_key_or_secret_appears_in_errors() {
    let s = start_with(json!({"api_key": BEDROCK_KEY}));
    let echoed = format!(r#"{{"message":"Invalid API key: {BEDROCK_KEY}"}}"#);
    s.standin.script(
        "t",
        [
            Reply::body(403, echoed.clone()).header(
                "x-amzn-ErrorType",
                "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            ),
            Reply::body(403, echoed),
        ],
    );
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::Auth);
    let j = error_json(&e);
    assert!(j["error"]["message"]
        .as_str()
        .unwrap()
        .contains("[REDACTED]"));
    let (_, r) = stream(hello());
    error_json(&r.unwrap_err());
    for out in [llmr::router_info().unwrap(), llmr::stats().unwrap()] {
        assert!(!out.contains(BEDROCK_KEY) && !out.contains(SECRET), "{out}");
    }
}

#[test]
fn broken_streams_are_upstream_errors() {
    let s = start_one();
    // An exception frame after content went out: what was delivered stays, the call fails.
    s.standin.script("t", [Reply::fault(Fault::MidStreamError)]);
    let (chunks, r) = stream(hello());
    assert_eq!(chunks.len(), 1);
    let e = r.unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Upstream, Some(503)));
    assert!(
        e.message
            .contains("Bedrock is unable to process your request"),
        "{}",
        e.message
    );
    error_json(&e);

    // The connection breaks off in the middle of the stream.
    s.standin.script("t", [Reply::fault(Fault::Truncated)]);
    let (chunks, r) = stream(hello());
    assert!(!chunks.is_empty());
    assert_eq!(r.unwrap_err().status, Status::Upstream);

    // A 200 that is not a Converse answer.
    s.standin.script("t", [Reply::fault(Fault::Garbage)]);
    assert_eq!(complete(hello()).unwrap_err().status, Status::Upstream);
}
