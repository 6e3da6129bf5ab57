//! The Ollama native provider end to end: the library's Rust API (`init`, `complete_json`,
//! `stream_json`, `shutdown`) against the loopback stand-in speaking Ollama's `/api/chat`
//! (JSON answers, NDJSON streams, `{"error": "..."}` bodies).
//!
//! Ollama has no content filter (a model refuses in its answer) and by default cuts an
//! over-long prompt silently; what it does send — the 400 of `truncate: false` / Ollama Cloud
//! ("The prompt is too long: …") — is tested as the overflow.
//!
//! The router is a process-wide singleton, so the tests of this binary run one at a time
//! (`common::lock`) and each starts from `shutdown` + `init`.

use llmr::{Error, Status};
use llmr_testkit::{Fault, Reply, TOOL_ARGUMENTS};
use serde_json::{json, Value};

mod common;
use common::provider::{
    complete, error_json_without, hello, start_session, stream, text_of, weather_tools, Session,
};

/// Ollama Cloud's key; a local server takes none.
const KEY: &str = "ollama-cloud-key-0123456789";
const MODEL: &str = "llama3.1:8b";

/// A deployment of the config: its id, its stand-in tenant, extra entry fields.
struct Dep<'a> {
    id: u32,
    tenant: &'a str,
    extra: Value,
}

fn dep(id: u32, tenant: &str) -> Dep<'_> {
    Dep {
        id,
        tenant,
        extra: json!({}),
    }
}

fn start(deps: &[Dep], settings: Value) -> Session {
    start_session(
        |standin| {
            deps.iter()
                .map(|d| {
                    let mut e = json!({"id": d.id, "provider": "OLLAMA", "model_name": MODEL,
                               "api_base": standin.ollama_base(d.tenant)});
                    for (k, v) in d.extra.as_object().unwrap() {
                        e[k] = v.clone();
                    }
                    e
                })
                .collect()
        },
        settings,
    )
}

/// One keyless deployment on tenant `t`, no retries of the same deployment.
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
    // Usage from prompt_eval_count / eval_count.
    assert_eq!(r["usage"]["completion_tokens"], 3);
    let prompt = r["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 0);
    assert_eq!(r["usage"]["total_tokens"].as_u64().unwrap(), prompt + 3);
    assert_eq!(r["llmr"]["provider"], "ollama_chat");
    assert_eq!(r["llmr"]["deployment_id"], "1");

    let sent = s.standin.requests("t");
    assert_eq!(sent.len(), 1);
    let sent = &sent[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/t/api/chat");
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(
        sent.header("authorization"),
        None,
        "a local Ollama takes no key"
    );
    let b = &sent.body;
    assert_eq!(b["model"], MODEL);
    assert_eq!(
        b["stream"], false,
        "sent explicitly: Ollama streams by default"
    );
    assert_eq!(
        b["messages"],
        json!([{"role": "system", "content": "You are terse."},
               {"role": "user", "content": "Say hello"}])
    );
}

#[test]
fn options_from_the_request_and_litellm_params() {
    let s = start(
        &[Dep {
            id: 3,
            tenant: "o",
            extra: json!({"api_key": KEY, "litellm_params": {"num_ctx": 16384, "keep_alive": "30m",
                "top_k": 20, "temperature": 0.1, "truncate": false}}),
        }],
        json!({"num_retries": 0}),
    );
    let mut req = hello();
    req["max_tokens"] = json!(64);
    req["stop"] = json!(["END", "STOP"]);
    req["temperature"] = json!(0.7);
    req["top_p"] = json!(0.9);
    req["seed"] = json!(42);
    req["response_format"] = json!({"type": "json_object"});
    req["user"] = json!("u-1");
    complete(req).unwrap();
    let sent = s.standin.last_request("o").unwrap();
    assert_eq!(
        sent.header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    let b = &sent.body;
    assert_eq!(
        b["options"],
        json!({"num_ctx": 16384, "top_k": 20, "seed": 42, "num_predict": 64,
               "temperature": 0.7, "top_p": 0.9, "stop": ["END", "STOP"]})
    );
    assert_eq!(b["keep_alive"], "30m");
    assert_eq!(b["format"], "json");
    assert_eq!(b["truncate"], false);
    for absent in [
        "max_tokens",
        "stop",
        "temperature",
        "seed",
        "user",
        "response_format",
        "num_ctx",
    ] {
        assert!(
            b.get(absent).is_none(),
            "{absent} was sent at the top level: {b}"
        );
    }
}

#[test]
fn stream_text_as_ndjson() {
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
        "the done line's eval_count"
    );
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(s.standin.last_request("t").unwrap().body["stream"], true);
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
    let id = call["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("call_"),
        "Ollama gives no id; one is made: {id}"
    );
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args = call["function"]["arguments"]
        .as_str()
        .expect("a JSON string");
    assert_eq!(
        serde_json::from_str::<Value>(args).unwrap(),
        serde_json::from_str::<Value>(TOOL_ARGUMENTS).unwrap()
    );
    let first = s.standin.last_request("t").unwrap().body;
    assert_eq!(first["tools"], weather_tools());
    assert!(
        first.get("tool_choice").is_none(),
        "Ollama has no tool_choice"
    );

    // 2. The caller sends the assistant turn and the tool's answer back.
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
    let m = &second["messages"];
    assert_eq!(
        m[1],
        json!({"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}),
        "arguments go back as an object"
    );
    assert_eq!(m[2]["role"], "tool");
    assert_eq!(m[2]["content"], "18C and sunny");
    assert_eq!(
        m[2]["tool_name"], "get_weather",
        "the name of the call the result answers"
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
    assert_eq!(chunks.len(), 1, "Ollama sends a call whole: {chunks:?}");
    let d = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(d["index"], 0);
    assert!(d["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(d["function"]["name"], "get_weather");
    let call = &r["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], d["id"]);
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris", "unit": "celsius"}));
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(s.standin.count("t"), 1);
}

/// Two deployments, `a` (id 1, `num_ctx` 8192) tried first and `b` (id 2, `num_ctx` 32768):
/// `b`'s window is larger, so it alone makes `auto-large`; a warm-up request there gives it
/// usage this minute, and usage-based routing then puts `a` first.
fn start_pair() -> Session {
    let a = Dep {
        id: 1,
        tenant: "a",
        extra: json!({"litellm_params": {"num_ctx": 8192}}),
    };
    let b = Dep {
        id: 2,
        tenant: "b",
        extra: json!({"litellm_params": {"num_ctx": 32768}}),
    };
    let s = start(
        &[a, b],
        json!({"num_retries": 2, "retry_after": 0, "routing_strategy": "usage-based-routing"}),
    );
    let mut warm = hello();
    warm["model"] = json!("auto-large");
    let r = complete(warm).unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2", "num_ctx is the window");
    s.standin.reset();
    s
}

#[test]
fn server_errors_fail_over_to_the_second_deployment() {
    let s = start_pair();
    s.standin.script("a", [Reply::status(500)]);
    s.standin.script("b", [Reply::text("from b")]);
    let r = complete(hello()).unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "from b");
    assert_eq!(r["llmr"]["deployment_id"], "2");
    assert_eq!(r["llmr"]["attempts"], 2);

    // A stream fails over before its first chunk: a 503 (queue full), an error line first.
    s.standin
        .script("a", [Reply::status(503), Reply::fault(Fault::ErrorFirst)]);
    for _ in 0..2 {
        let (chunks, r) = stream(hello());
        assert_eq!(r.unwrap()["llmr"]["deployment_id"], "2");
        assert_eq!(text_of(&chunks), "echo: Say hello");
    }
    assert_eq!(s.standin.count("a"), 3);
}

#[test]
fn rate_limited_429_fails_over_and_cools_the_first_down() {
    let s = start_pair();
    s.standin
        .always("a", Reply::status(429).header("retry-after", "30"));
    let r = complete(hello()).unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    assert_eq!(s.standin.count("a"), 1);
    let (chunks, r) = stream(hello());
    assert!(!chunks.is_empty());
    assert_eq!(r.unwrap()["llmr"]["deployment_id"], "2");
    assert_eq!(s.standin.count("a"), 1, "a cools down");
    assert_eq!(s.standin.count("b"), 2);
}

#[test]
fn an_overflow_falls_back_to_the_larger_num_ctx() {
    let s = start_pair();
    s.standin.script("a", [Reply::overflow()]);
    let r = complete(hello()).unwrap();
    assert_eq!(r["llmr"]["deployment_id"], "2");
    assert_eq!((s.standin.count("a"), s.standin.count("b")), (1, 1));
}

#[test]
fn upstream_errors_with_one_deployment() {
    let s = start_one();
    s.standin.script(
        "t",
        [
            Reply::status(429).header("retry-after", "7"),
            Reply::status(404),
            Reply::status(401),
            Reply::status(500),
            Reply::overflow(),
        ],
    );
    let e = complete(hello()).unwrap_err();
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "rate_limited");
    assert_eq!(j["error"]["http_status"], 429);
    assert_eq!(j["error"]["retry_after"], 7.0);
    assert_eq!(j["error"]["provider"], "ollama_chat");
    assert!(e.message.contains("session usage limit"), "{}", e.message);

    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::BadRequest, Some(404)));
    assert_eq!(
        e.message,
        "model \"standin\" not found, try pulling it first"
    );

    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Auth, Some(401)));

    let e = complete(hello()).unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::Upstream, Some(500)));
    assert!(
        e.message.contains("llama runner process has terminated"),
        "{}",
        e.message
    );

    let e = complete(hello()).unwrap_err();
    let j = error_json(&e);
    assert_eq!(j["error"]["status"], "context_overflow");
    assert_eq!(j["error"]["http_status"], 400);
    assert!(
        e.message.contains("The prompt is too long"),
        "{}",
        e.message
    );
}

#[test]
fn overflow_in_a_stream_and_a_refusal_is_an_answer() {
    let s = start_one();
    s.standin.script("t", [Reply::overflow(), Reply::policy()]);
    let (chunks, r) = stream(hello());
    assert!(chunks.is_empty());
    assert_eq!(r.unwrap_err().status, Status::ContextOverflow);

    // Ollama has no content filter: a refusal is a plain answer, not LLMR_ERR_CONTENT_POLICY.
    let r = complete(hello()).unwrap();
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert!(r["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("can't help"));
}

#[test]
fn the_api_key_never_appears_in_errors() {
    let s = start(
        &[Dep {
            id: 1,
            tenant: "t",
            extra: json!({"api_key": KEY}),
        }],
        json!({"num_retries": 0}),
    );
    let echoed = json!({"error": format!("unauthorized: key {KEY} is not valid")}).to_string();
    s.standin.script(
        "t",
        [Reply::body(401, echoed.clone()), Reply::body(401, echoed)],
    );
    let e = complete(hello()).unwrap_err();
    assert_eq!(e.status, Status::Auth);
    assert!(error_json(&e)["error"]["message"]
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
    // An error line after content went out: what was delivered stays, the call fails.
    s.standin.script("t", [Reply::fault(Fault::MidStreamError)]);
    let (chunks, r) = stream(hello());
    assert_eq!(text_of(&chunks), "echo: ");
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::Upstream);
    assert!(e.message.contains("unexpected EOF"), "{}", e.message);

    // The connection breaks off after two lines, before the `done: true` line.
    s.standin.script("t", [Reply::fault(Fault::Truncated)]);
    let (chunks, r) = stream(hello());
    assert_eq!(text_of(&chunks), "echo: Say ");
    assert_eq!(r.unwrap_err().status, Status::Upstream);

    // A whole HTTP body that ends without `done: true`.
    let body = concat!(
        r#"{"model":"llama3.1:8b","message":{"role":"assistant","content":"half an answ"},"done":false}"#,
        "\n"
    );
    s.standin.script(
        "t",
        [Reply::body(200, body).header("content-type", "application/x-ndjson")],
    );
    let (chunks, r) = stream(hello());
    assert_eq!(text_of(&chunks), "half an answ");
    let e = r.unwrap_err();
    assert_eq!(e.status, Status::Upstream);
    assert!(e.message.contains("done"), "{}", e.message);

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
    assert!(e.message.contains("unexpected EOF"), "{}", e.message);
    assert_eq!(complete(hello()).unwrap_err().status, Status::Upstream);
}
