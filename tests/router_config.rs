//! Config errors, skipped entries, keys from the environment, what reaches the provider
//! (`litellm_params` defaults, tools), and that no API key ever comes back out.

mod common;

use common::*;
use llmr::Status;
use llmr_testkit::{Reply, StandIn, TOOL_ARGUMENTS, TOOL_CALL_ID};
use serde_json::{json, Value};

fn init_err(cfg: &str) -> llmr::Error {
    match llmr::init(cfg) {
        Ok(()) => panic!("init accepted {cfg}"),
        Err(e) => {
            assert_eq!(e.status, Status::Config, "{}", e.to_json());
            assert!(!llmr::is_initialized());
            e
        }
    }
}

#[test]
fn unusable_configs_are_precise_config_errors() {
    let _g = lock();
    let e = init_err("{");
    assert!(e.message.contains("config JSON"), "{}", e.message);
    let v: Value = serde_json::from_str(&e.to_json()).unwrap();
    assert_eq!(v["error"]["status"], "config");
    assert_eq!(v["error"]["code"], 2);

    let e = init_err("[]");
    assert!(e.message.contains("must be an object"), "{}", e.message);
    let e = init_err("{}");
    assert!(e.message.contains("global_llm_configs"), "{}", e.message);
    let e = init_err(r#"{"global_llm_configs": []}"#);
    assert!(e.message.contains("no usable deployment"), "{}", e.message);

    // Nothing usable: every entry's reason is in the message.
    let e = init_err(
        &json!({"global_llm_configs": [
            {"id": 1, "provider": "OPENAI", "model_name": "gpt-4o"},
            {"id": 2, "provider": "OPENAI", "api_key": KEY},
            {"id": 3, "provider": "NOT_A_PROVIDER", "model_name": "x", "api_key": KEY},
        ]})
        .to_string(),
    );
    let m = &e.message;
    assert!(m.contains("no usable deployment"), "{m}");
    assert!(
        m.contains("global_llm_configs[0] (id 1)") && m.contains("no `api_key`"),
        "{m}"
    );
    assert!(
        m.contains("global_llm_configs[1] (id 2)") && m.contains("no `model_name`"),
        "{m}"
    );
    assert!(m.contains("unknown provider `NOT_A_PROVIDER`"), "{m}");
    assert!(!e.to_json().contains(KEY));

    let e = init_err(
        &json!({"global_llm_configs": [{"provider": "MOCK", "model_name": "m"}],
                "router_settings": {"routing_strategy": "fastest"}})
        .to_string(),
    );
    assert!(
        e.message.contains("router_settings.routing_strategy"),
        "{}",
        e.message
    );

    // Not initialised.
    let e = llmr::complete_json(&ask("hi").to_string()).unwrap_err();
    assert_eq!(e.status, Status::NotInitialized);
    assert_eq!(e.status.code(), 3);
    assert!(llmr::stats().is_err() && llmr::router_info().is_err());
}

#[test]
fn unusable_entries_are_skipped_while_the_others_work() {
    let _g = lock();
    let s = StandIn::start();
    std::env::remove_var("LLMR_IT_UNSET_KEY");
    init(
        vec![
            json!({"id": "nomodel", "provider": "OPENAI", "api_key": KEY, "api_base": s.base("x")}),
            json!({"id": "nokey", "provider": "OPENAI", "model_name": "m", "api_base": s.base("x")}),
            openai(
                "unsetenv",
                &s.base("x"),
                json!({"api_key": "os.environ/LLMR_IT_UNSET_KEY"}),
            ),
            openai("good", &s.base("good"), json!({})),
        ],
        settings(json!({})),
    );
    assert_eq!(llmr::model_count(), 1);
    let info = info();
    assert_eq!(info["deployments"].as_array().unwrap().len(), 1);
    assert_eq!(info["deployments"][0]["id"], "good");
    assert_eq!(served_by(&complete(&ask("hi")).unwrap()), "good");
    assert_eq!(s.count("x"), 0);

    // A second init changes nothing.
    llmr::init(&config(vec![mock("other", json!({}))], settings(json!({})))).unwrap();
    assert_eq!(llmr::model_count(), 1);
    assert_eq!(served_by(&complete(&ask("hi")).unwrap()), "good");
}

#[test]
fn keys_are_read_from_the_environment() {
    let _g = lock();
    let s = StandIn::start();
    let env_key = "sk-SECRET-from-env-9876543210";
    std::env::set_var("LLMR_IT_ENV_KEY", env_key);
    init(
        vec![openai(
            "a",
            &s.base("a"),
            json!({"api_key": "os.environ/LLMR_IT_ENV_KEY"}),
        )],
        settings(json!({})),
    );
    complete(&ask("hi")).unwrap();
    let sent = s.last_request("a").unwrap();
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {env_key}").as_str())
    );
    // And it is a secret like any other.
    s.script(
        "a",
        [Reply::body(
            401,
            json!({"error": {"message": format!("Incorrect API key provided: {env_key}."),
                             "type": "invalid_request_error", "code": "invalid_api_key"}})
            .to_string(),
        )],
    );
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "auth");
    assert!(!e.to_string().contains(env_key), "{e}");
    assert!(!llmr::stats().unwrap().contains(env_key));
    assert!(!llmr::router_info().unwrap().contains(env_key));
}

#[test]
fn litellm_params_are_defaults_the_request_overrides() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![openai(
            "a",
            &s.base("a"),
            json!({"model_name": "gpt-4o", "litellm_params": {
                "temperature": 0.2, "seed": 7, "top_p": 0.5,
                "base_model": "gpt-4o", "timeout": 30, "max_input_tokens": 5000,
                "cooldown_time": 3, "rpm": 100
            }}),
        )],
        settings(json!({})),
    );
    complete(&ask("hi")).unwrap();
    let body = s.last_request("a").unwrap().body;
    assert_eq!(body["model"], "gpt-4o", "{body}");
    assert_eq!(body["temperature"], 0.2, "{body}");
    assert_eq!(body["seed"], 7, "{body}");
    assert_eq!(body["top_p"], 0.5, "{body}");
    for k in [
        "base_model",
        "timeout",
        "max_input_tokens",
        "cooldown_time",
        "rpm",
        "stream",
        "api_key",
    ] {
        assert!(body.get(k).is_none(), "`{k}` was sent: {body}");
    }

    let mut r = ask("hi");
    r["temperature"] = json!(0.9);
    r["seed"] = json!(1);
    r["timeout"] = json!(5);
    r["stream"] = json!(true);
    r["logprobs"] = json!(true);
    r["model"] = json!("auto");
    complete(&r).unwrap();
    let body = s.last_request("a").unwrap().body;
    assert_eq!(body["temperature"], 0.9, "the request wins: {body}");
    assert_eq!(body["seed"], 1, "{body}");
    assert_eq!(body["top_p"], 0.5, "{body}");
    assert_eq!(
        body["logprobs"], true,
        "unknown fields pass through: {body}"
    );
    assert_eq!(body["model"], "gpt-4o", "{body}");
    assert!(body.get("timeout").is_none(), "{body}");
    assert!(
        body.get("stream").is_none() || body["stream"] == false,
        "complete_json does not stream: {body}"
    );

    let info = info();
    let d = &info["deployments"][0];
    assert_eq!(d["rpm"], 100, "{d}");
    assert_eq!(d["max_input_tokens"], 5000, "{d}");
    assert_eq!(info["routing_strategy"], "simple-shuffle");
    assert_eq!(info["router_settings"]["num_retries"], 3);
    assert_eq!(info["router_settings"]["timeout"], 10.0);
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    }}])
}

#[test]
fn tools_reach_the_provider_and_tool_calls_come_back() {
    let _g = lock();
    let s = StandIn::start();
    init(
        vec![openai("a", &s.base("a"), json!({}))],
        settings(json!({})),
    );
    let mut r = ask("weather in Paris?");
    r["tools"] = weather_tool();
    r["tool_choice"] = json!("auto");

    let resp = complete(&r).unwrap();
    let body = s.last_request("a").unwrap().body;
    assert_eq!(body["tools"], weather_tool(), "{body}");
    assert_eq!(body["tool_choice"], "auto", "{body}");
    let call = &resp["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], TOOL_CALL_ID, "{resp}");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        call["function"]["arguments"].as_str(),
        Some(TOOL_ARGUMENTS),
        "arguments are a JSON string: {resp}"
    );
    assert_eq!(resp["choices"][0]["finish_reason"], "tool_calls");

    // Streamed: the deltas reach the callback, the result has the whole call.
    let st = stream(&r, None);
    let resp = st.result.as_ref().unwrap();
    assert!(st.chunks.len() >= 2, "{:?}", st.chunks);
    let pieces: String = st
        .chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(pieces, TOOL_ARGUMENTS);
    let call = &resp["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], TOOL_CALL_ID, "{resp}");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"].as_str(), Some(TOOL_ARGUMENTS));
    assert_eq!(resp["choices"][0]["finish_reason"], "tool_calls");

    // The seed's leniency: object arguments and a non-string tool result are sent as strings.
    let follow_up = json!({
        "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": {"temp_c": 21}},
        ],
        "tools": weather_tool(),
    });
    let resp = complete(&follow_up).unwrap();
    assert_eq!(content(&resp), "echo: weather in Paris?");
    let body = s.last_request("a").unwrap().body;
    let args = body["messages"][1]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap_or_else(|| panic!("arguments not a string: {body}"));
    assert_eq!(
        serde_json::from_str::<Value>(args).unwrap(),
        json!({"city": "Paris"})
    );
    let result = body["messages"][2]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("tool content not a string: {body}"));
    assert_eq!(
        serde_json::from_str::<Value>(result).unwrap(),
        json!({"temp_c": 21})
    );
}

#[test]
fn api_keys_never_come_back_out() {
    let _g = lock();
    let s = StandIn::start();
    let key2 = "sk-SECRET-second-key-abcdef0123";
    let echo = |key: &str, status: u16| {
        Reply::body(
            status,
            json!({"error": {
                "message": format!("Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys."),
                "type": "invalid_request_error", "code": "invalid_api_key"}})
            .to_string(),
        )
    };
    let no_key = |e: &Value| {
        let t = e.to_string();
        assert!(!t.contains(KEY) && !t.contains(key2), "a key leaked: {t}");
        assert!(!t.contains("sk-SECRET"), "part of a key leaked: {t}");
    };

    // A 401 that echoes the key, alone.
    s.always("a", echo(KEY, 401));
    init(
        vec![openai("a", &s.base("a"), json!({}))],
        settings(json!({})),
    );
    let sent = s.last_request("a");
    assert!(sent.is_none());
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "auth");
    no_key(&e);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect API key provided"),
        "{e}"
    );
    assert_eq!(
        s.last_request("a").unwrap().header("authorization"),
        Some(format!("Bearer {KEY}").as_str()),
        "the key is sent to the provider"
    );
    let st = stream(&ask("hi"), None);
    no_key(st.result.as_ref().unwrap_err());
    llmr::shutdown();

    // Two deployments, two keys, both echoed: after the failover, and from the cooldown path.
    s.reset();
    s.always("a", echo(KEY, 401));
    s.always("b", echo(key2, 429).header("retry-after", "10"));
    init(
        vec![
            openai("a", &s.base("a"), json!({"weight": 1e6})),
            openai("b", &s.base("b"), json!({"weight": 1e-3, "api_key": key2})),
        ],
        settings(json!({})),
    );
    let e = complete(&ask("hi")).unwrap_err();
    no_key(&e);
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "rate_limited", "{e}");
    no_key(&e);
    for id in ["a", "b"] {
        let d = stats_of(id);
        assert_eq!(d["cooling_down"], true, "{d}");
        no_key(&d);
    }
    no_key(&stats());
    no_key(&info());
    llmr::shutdown();

    // A 500 and an error event inside a stream, both echoing the key.
    s.reset();
    s.always("a", echo(KEY, 500));
    s.always(
        "s",
        Reply::body(
            200,
            format!("data: {{\"error\": {{\"message\": \"upstream said: bad key {KEY}\", \"type\": \"server_error\"}}}}\n\n"),
        )
        .header("content-type", "text/event-stream"),
    );
    init(
        vec![openai("a", &s.base("a"), json!({}))],
        settings(json!({"num_retries": 0})),
    );
    let e = complete(&ask("hi")).unwrap_err();
    assert_eq!(status(&e), "upstream", "{e}");
    no_key(&e);
    llmr::shutdown();
    init(
        vec![openai("s", &s.base("s"), json!({}))],
        settings(json!({"num_retries": 0})),
    );
    let st = stream(&ask("hi"), None);
    let e = st.result.as_ref().unwrap_err();
    assert_eq!(status(e), "upstream", "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("bad key"),
        "{e}"
    );
    no_key(e);
    no_key(&stats());
}

#[test]
fn an_api_base_that_is_no_url_fails_each_request_clearly() {
    let _g = lock();
    // The URL is parsed once at init when it can be; one that cannot is still refused per
    // request, as an upstream error that names neither the key nor crashes anything.
    init(
        vec![openai("bad", "http://[not a host/v1", json!({}))],
        settings(json!({"num_retries": 0})),
    );
    for _ in 0..2 {
        let e = complete(&ask("hi")).unwrap_err();
        assert_eq!(status(&e), "upstream", "{e}");
        assert!(!e.to_string().contains(KEY), "{e}");
    }
}
