//! The Vertex AI provider end to end: the library's Rust API (`init`, `complete_json`,
//! `stream_json`, `shutdown`) against the loopback stand-in speaking Vertex's URLs — Gemini's
//! `generateContent` and Claude's `rawPredict` — with a service account whose JWT is exchanged
//! at the stand-in's token endpoint.
//!
//! The router is a process-wide singleton, so the tests of this binary run one at a time
//! (`common::lock`) and each starts from `shutdown` + `init`.

use llmr::{Error, Status};
use llmr_testkit::{Fault, Reply, TOOL_ARGUMENTS, TOOL_USE_ID, VERTEX_ACCESS_TOKEN};
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};

mod common;
use common::provider::{
    complete, error_json_without, hello, start_session, stream, text_of, weather_tools, Session,
};

/// An access token given as `api_key`.
const TOKEN: &str = "ya29.a0-llmr-test-access-token-0123456789";
const GEMINI: &str = "gemini-2.5-flash";
const CLAUDE: &str = "claude-sonnet-4@20250514";
const PEM: &str = include_str!("data/vertex_test_key.pem");
const PUBLIC_DER: &[u8] = include_bytes!("data/vertex_test_key.pub.der");
const EMAIL: &str = "llmr-e2e@proj-1.iam.gserviceaccount.com";
/// A piece of the private key that must never come back.
const KEY_PIECE: &str = "MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQDPcp4Zr02xjnaD";

/// How a deployment authenticates.
enum Auth<'a> {
    Token,
    /// A service account whose token endpoint is this stand-in tenant.
    ServiceAccount(&'a str),
}

struct Dep<'a> {
    id: u32,
    tenant: &'a str,
    model: &'a str,
    auth: Auth<'a>,
    params: Value,
}

fn dep<'a>(id: u32, tenant: &'a str, model: &'a str, auth: Auth<'a>) -> Dep<'a> {
    Dep {
        id,
        tenant,
        model,
        auth,
        params: json!({}),
    }
}

fn start(deps: &[Dep], settings: Value) -> Session {
    start_session(
        |standin| {
            deps.iter()
                .map(|d| {
                    let mut params =
                        json!({"vertex_project": "proj-1", "vertex_location": "us-central1"});
                    for (k, v) in d.params.as_object().unwrap() {
                        params[k] = v.clone();
                    }
                    let mut e = json!({"id": d.id, "provider": "VERTEX_AI", "model_name": d.model,
                               "api_base": standin.anthropic_base(d.tenant)});
                    match d.auth {
                        Auth::Token => e["api_key"] = TOKEN.into(),
                        Auth::ServiceAccount(tok) => {
                            // Given as a JSON string, as LiteLLM configs often carry it.
                            params["vertex_credentials"] = json!({
                        "type": "service_account", "project_id": "proj-1", "private_key_id": "k1",
                        "private_key": PEM, "client_email": EMAIL,
                        "token_uri": format!("{}/{tok}/token", standin.url())})
                            .to_string()
                            .into();
                        }
                    }
                    e["litellm_params"] = params;
                    e
                })
                .collect()
        },
        settings,
    )
}

fn start_one(model: &str, auth: Auth) -> Session {
    start(&[dep(1, "t", model, auth)], json!({"num_retries": 0}))
}

const GOOGLE_PATH: &str = "/t/v1/projects/proj-1/locations/us-central1/publishers/google/models";
const ANTHROPIC_PATH: &str =
    "/t/v1/projects/proj-1/locations/us-central1/publishers/anthropic/models";

/// Base64url without padding, decoded (for the JWT's parts).
fn b64url(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn error_json(e: &Error) -> Value {
    error_json_without(e, &[TOKEN, VERTEX_ACCESS_TOKEN, KEY_PIECE])
}

#[test]
fn service_account_gemini_text_and_what_goes_on_the_wire() {
    let s = start_one(GEMINI, Auth::ServiceAccount("tok"));
    // Cold start: parallel requests all wait for one (slow) token exchange.
    s.standin.script(
        "tok",
        [Reply::ok().delay(std::time::Duration::from_millis(300))],
    );
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| complete(hello()).unwrap());
        }
    });
    assert_eq!(
        s.standin.count("tok"),
        1,
        "one token exchange for concurrent requests"
    );
    s.standin.script("t", [Reply::text("Hello there, friend.")]);
    let r = complete(hello()).unwrap();
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["model"], GEMINI);
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "Hello there, friend."
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["completion_tokens"], 3);
    let prompt = r["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 0);
    assert_eq!(r["usage"]["total_tokens"].as_u64().unwrap(), prompt + 3);
    assert_eq!(r["llmr"]["provider"], "vertex_ai");

    let sent = s.standin.last_request("t").unwrap();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, format!("{GOOGLE_PATH}/{GEMINI}:generateContent"));
    let bearer = format!("Bearer {VERTEX_ACCESS_TOKEN}");
    assert_eq!(sent.header("authorization"), Some(bearer.as_str()));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(
        sent.body["systemInstruction"],
        json!({"parts": [{"text": "You are terse."}]})
    );
    assert_eq!(
        sent.body["contents"],
        json!([{"role": "user", "parts": [{"text": "Say hello"}]}])
    );

    // The token request: a JWT-bearer grant whose assertion the service account's key signed.
    assert_eq!(s.standin.count("tok"), 1);
    let grant = s.standin.last_request("tok").unwrap();
    assert_eq!(grant.path, "/tok/token");
    let form = grant.body.as_str().unwrap();
    let assertion = form
        .split('&')
        .find_map(|kv| kv.strip_prefix("assertion="))
        .unwrap();
    assert!(form.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"));
    let parts: Vec<&str> = assertion.split('.').collect();
    let claims: Value = serde_json::from_slice(&b64url(parts[1])).unwrap();
    assert_eq!(claims["iss"], EMAIL);
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    assert_eq!(claims["aud"], format!("{}/tok/token", s.standin.url()));
    assert_eq!(
        claims["exp"].as_u64().unwrap(),
        claims["iat"].as_u64().unwrap() + 3600
    );
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, PUBLIC_DER)
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64url(parts[2]),
        )
        .expect("the assertion's signature verifies with the public key");

    // Later requests, streamed too, reuse the cached token.
    let (chunks, r) = stream(hello());
    assert!(!chunks.is_empty());
    r.unwrap();
    assert_eq!(
        s.standin.count("tok"),
        1,
        "one token exchange for every request"
    );
    assert_eq!(s.standin.count("t"), 10);
    assert!(s
        .standin
        .requests("t")
        .iter()
        .all(|r| r.header("authorization") == Some(bearer.as_str())));
    for out in [llmr::router_info().unwrap(), llmr::stats().unwrap()] {
        assert!(
            !out.contains(KEY_PIECE) && !out.contains(VERTEX_ACCESS_TOKEN),
            "{out}"
        );
    }
}

#[test]
fn gemini_tool_call_round_trip() {
    let s = start_one(GEMINI, Auth::Token);
    let mut req = json!({"messages": [{"role": "user", "content": "Weather in Paris?"}],
                         "tools": weather_tools(), "tool_choice": "auto"});
    let r = complete(req.clone()).unwrap();
    let msg = &r["choices"][0]["message"];
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    let call = &msg["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, serde_json::from_str::<Value>(TOOL_ARGUMENTS).unwrap());
    let id = call["id"].as_str().unwrap().to_owned();
    assert!(!id.is_empty(), "a synthesised call id");
    let first = s.standin.last_request("t").unwrap();
    assert_eq!(
        first.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        first.body["tools"],
        json!([{"functionDeclarations": [{"name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}])
    );
    assert_eq!(
        first.body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );

    let messages = req["messages"].as_array_mut().unwrap();
    messages.push(msg.clone());
    messages.push(json!({"role": "tool", "tool_call_id": id, "content": "18C and sunny"}));
    s.standin.script("t", [Reply::text("It is 18C and sunny.")]);
    let r = complete(req).unwrap();
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "It is 18C and sunny."
    );
    let second = s.standin.last_request("t").unwrap().body;
    assert_eq!(
        second["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                "response": {"content": "18C and sunny"}}}]}
        ])
    );
}

#[test]
fn gemini_streams_text_and_tool_calls() {
    let s = start_one(GEMINI, Auth::Token);
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
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let sent = s.standin.last_request("t").unwrap();
    assert_eq!(
        sent.path,
        format!("{GOOGLE_PATH}/{GEMINI}:streamGenerateContent?alt=sse")
    );
    assert!(sent.body.get("stream").is_none(), "the method says it");

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
    let delta = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .expect("a tool-call delta");
    assert_eq!(delta["index"], 0);
    assert_eq!(delta["function"]["name"], "get_weather");
    let call = &r["choices"][0]["message"]["tool_calls"][0];
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris", "unit": "celsius"}));
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn claude_through_raw_predict() {
    let s = start_one(CLAUDE, Auth::Token);
    s.standin.script("t", [Reply::text("Hello from Claude.")]);
    let r = complete(hello()).unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "Hello from Claude.");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["completion_tokens"], 3);
    let sent = s.standin.last_request("t").unwrap();
    assert_eq!(sent.path, format!("{ANTHROPIC_PATH}/{CLAUDE}:rawPredict"));
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(sent.header("x-api-key"), None);
    let b = &sent.body;
    assert!(b.get("model").is_none(), "the model is in the URL: {b}");
    assert_eq!(b["anthropic_version"], "vertex-2023-10-16");
    assert_eq!(b["system"], "You are terse.");
    assert!(b["max_tokens"].as_u64().unwrap() > 0);

    // Streamed text.
    s.standin.script("t", [Reply::text("one two three")]);
    let (chunks, r) = stream(hello());
    assert_eq!(text_of(&chunks), "one two three");
    let r = r.unwrap();
    assert_eq!(r["usage"]["completion_tokens"], 3);
    let sent = s.standin.last_request("t").unwrap();
    assert_eq!(
        sent.path,
        format!("{ANTHROPIC_PATH}/{CLAUDE}:streamRawPredict")
    );
    assert_eq!(sent.body["stream"], true);

    // A tool call, streamed, then its result sent back.
    let mut req = json!({"messages": [{"role": "user", "content": "Weather in Paris?"}],
                         "tools": weather_tools()});
    let (chunks, r) = stream(req.clone());
    let r = r.unwrap();
    assert!(chunks.len() >= 2);
    let call = &r["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], TOOL_USE_ID);
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    let messages = req["messages"].as_array_mut().unwrap();
    messages.push(r["choices"][0]["message"].clone());
    messages.push(json!({"role": "tool", "tool_call_id": TOOL_USE_ID, "content": "sunny"}));
    s.standin.script("t", [Reply::text("Sunny.")]);
    let r = complete(req).unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "Sunny.");
    let b = s.standin.last_request("t").unwrap().body;
    assert_eq!(
        b["messages"][2],
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": TOOL_USE_ID, "content": "sunny"}]})
    );
}

/// Two Gemini deployments, `a` (id 1) tried first: `b` has a larger window, so it alone makes
/// `auto-large`, and a warm-up request gives it usage this minute.
fn start_pair() -> Session {
    let mut b = dep(2, "b", GEMINI, Auth::Token);
    b.params = json!({"max_input_tokens": 2_000_000});
    let s = start(
        &[dep(1, "a", GEMINI, Auth::Token), b],
        json!({"num_retries": 2, "retry_after": 0, "routing_strategy": "usage-based-routing"}),
    );
    let mut warm = hello();
    warm["model"] = json!("auto-large");
    assert_eq!(complete(warm).unwrap()["llmr"]["deployment_id"], "2");
    s.standin.reset();
    s
}

#[test]
fn resource_exhausted_fails_over_and_cools_the_first_down() {
    let s = start_pair();
    s.standin.always("a", Reply::status(429));
    let r = complete(hello()).unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    assert_eq!(r["llmr"]["attempts"], 2);
    assert_eq!(s.standin.count("a"), 1);
    let r = complete(hello()).unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    let (chunks, r) = stream(hello());
    assert!(!chunks.is_empty());
    assert_eq!(r.unwrap()["llmr"]["deployment_id"], "2");
    assert_eq!(s.standin.count("a"), 1, "cooling down");
    assert_eq!(s.standin.count("b"), 3);
}

#[test]
fn errors_with_one_deployment() {
    let s = start_one(GEMINI, Auth::Token);
    s.standin.script(
        "t",
        [
            Reply::status(429),
            Reply::status(401),
            Reply::status(403),
            Reply::status(503),
        ],
    );
    let e = complete(hello()).unwrap_err();
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "rate_limited");
    assert_eq!(j["error"]["http_status"], 429);
    assert_eq!(j["error"]["provider"], "vertex_ai");
    assert!(j["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Resource exhausted"));
    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Auth, Some(401)));
    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Auth, Some(403)));
    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Upstream, Some(503)));
    error_json(&e);
}

#[test]
fn context_overflow_from_both_publishers() {
    for model in [GEMINI, CLAUDE] {
        let s = start_one(model, Auth::Token);
        s.standin.always("t", Reply::overflow());
        let e = complete(hello()).unwrap_err();
        let j = error_json(&e);
        assert_eq!(j["error"]["status"], "context_overflow", "{model}: {j}");
        assert_eq!(j["error"]["code"], 4);
        assert_eq!(j["error"]["http_status"], 400);
        let (chunks, r) = stream(hello());
        assert!(chunks.is_empty());
        let e = r.unwrap_err();
        assert_eq!(e.status, Status::ContextOverflow, "{model}");
        if model == CLAUDE {
            // Claude's own text, out of Google's envelope.
            assert!(e.message.starts_with("prompt is too long"), "{}", e.message);
        } else {
            assert!(
                e.message
                    .contains("exceeds the maximum number of tokens allowed"),
                "{}",
                e.message
            );
        }
        assert_eq!(s.standin.count("t"), 2, "an overflow is not retried");
    }
}

#[test]
fn blocked_prompts_are_content_policy() {
    let s = start_one(GEMINI, Auth::Token);
    s.standin.always("t", Reply::policy());
    let e = complete(hello()).unwrap_err();
    assert_eq!(error_json(&e)["error"]["status"], "content_policy");
    assert!(e.message.contains("blocked the prompt"), "{}", e.message);
    let (chunks, r) = stream(hello());
    assert!(chunks.is_empty());
    assert_eq!(r.unwrap_err().status, Status::ContentPolicy);
}

#[test]
fn token_endpoint_refusal_is_an_auth_error() {
    let s = start_one(GEMINI, Auth::ServiceAccount("e401-tok"));
    let e = complete(hello()).unwrap_err();
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "auth", "{j}");
    let msg = j["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("invalid_grant: Invalid JWT Signature."),
        "{msg}"
    );
    assert!(msg.contains(EMAIL), "{msg}");
    assert_eq!(s.standin.count("t"), 0, "no model call without a token");
    let (_, r) = stream(hello());
    error_json(&r.unwrap_err());
}

#[test]
fn secrets_never_appear_in_errors() {
    let s = start_one(GEMINI, Auth::Token);
    let echoed = format!(
        r#"{{"error":{{"code":401,"message":"Invalid token {TOKEN}","status":"UNAUTHENTICATED"}}}}"#
    );
    s.standin.always("t", Reply::body(401, echoed));
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::Auth);
    assert!(error_json(&e)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("[REDACTED]"));
    let (_, r) = stream(hello());
    error_json(&r.unwrap_err());
    for out in [llmr::router_info().unwrap(), llmr::stats().unwrap()] {
        assert!(!out.contains(TOKEN), "{out}");
    }
}

#[test]
fn a_refused_token_is_scrubbed_and_fetched_again() {
    let s = start_one(GEMINI, Auth::ServiceAccount("tok"));
    complete(hello()).unwrap();
    assert_eq!(s.standin.count("tok"), 1);
    // The token is revoked early: the model endpoint refuses it and quotes it back.
    let echoed = format!(
        r#"{{"error":{{"code":401,"message":"Token {VERTEX_ACCESS_TOKEN} revoked","status":"UNAUTHENTICATED"}}}}"#
    );
    s.standin.script("t", [Reply::body(401, echoed)]);
    let e = complete(hello()).unwrap_err();
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "auth", "{j}");
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[REDACTED]"),
        "{j}"
    );
    // The next request does not reuse the refused token: it exchanges for a new one.
    complete(hello()).unwrap();
    assert_eq!(s.standin.count("tok"), 2, "a fresh token after the 401");
    complete(hello()).unwrap();
    assert_eq!(s.standin.count("tok"), 2, "and that one is cached again");
}

#[test]
fn broken_streams_are_upstream_errors() {
    let s = start_one(GEMINI, Auth::Token);
    // An error event after content: what was delivered stays, the call fails.
    s.standin.script("t", [Reply::fault(Fault::MidStreamError)]);
    let (chunks, r) = stream(json!({"messages": [{"role": "user", "content": "a b c d"}]}));
    assert_eq!(chunks.len(), 1);
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::Upstream);
    assert!(e.message.contains("overloaded"), "{}", e.message);
    error_json(&e);

    // The connection breaks off mid-stream, before the finish reason.
    s.standin.script("t", [Reply::fault(Fault::Truncated)]);
    let (chunks, r) = stream(json!({"messages": [{"role": "user", "content": "a b c d"}]}));
    assert_eq!(text_of(&chunks), "echo: a ");
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::Upstream);

    // An error before any content, a 200 whose body is an error, and one that is not JSON.
    s.standin.script(
        "t",
        [
            Reply::fault(Fault::ErrorFirst),
            Reply::fault(Fault::MidStreamError),
            Reply::fault(Fault::Garbage),
        ],
    );
    let (chunks, r) = stream(hello());
    assert!(chunks.is_empty());
    assert_eq!(r.unwrap_err().status, Status::Upstream);
    assert_eq!(complete(hello()).unwrap_err().status, Status::Upstream);
    assert_eq!(complete(hello()).unwrap_err().status, Status::Upstream);
}
