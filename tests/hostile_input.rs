//! Hostile input through the Rust face of the ABI (the C harness drives the same through C):
//! every config field and every request field given every JSON type it must not have, unknown
//! providers, and absurd router settings. Each answer is the precise status
//! (`config` / `invalid_argument`) with an error that names the field — never a crash, a hang, a
//! silent acceptance or a vague message. Every field is also given a value it must accept, so
//! that a check that refuses everything cannot pass.

mod common;

use common::{lock, mock};
use llmr::Status;
use serde_json::{json, Value};

/// One value of each JSON type.
fn kinds() -> [(&'static str, Value); 6] {
    [
        ("null", Value::Null),
        ("number", json!(7)),
        ("string", json!("text")),
        ("array", json!([])),
        ("object", json!({})),
        ("bool", json!(true)),
    ]
}

/// Sets `path` (dot-separated; a number is an array index) in `v` to `x`.
fn set(v: &mut Value, path: &str, x: Value) {
    let mut cur = v;
    let parts: Vec<&str> = path.split('.').collect();
    for (n, p) in parts.iter().enumerate() {
        let last = n + 1 == parts.len();
        let next = match p.parse::<usize>() {
            Ok(i) => &mut cur[i],
            Err(_) => &mut cur[*p],
        };
        if last {
            *next = x;
            return;
        }
        cur = next;
    }
}

// ---------------------------------------------------------------------------------------------
// Config

fn one_entry_config(entry: Value, settings: Value) -> String {
    json!({"global_llm_configs": [entry], "router_settings": settings}).to_string()
}

fn mock_entry() -> Value {
    json!({"id": "m", "provider": "MOCK", "model_name": "mock-m",
           "litellm_params": {"mock_response": "hi"}})
}

/// A config that must fail with `Status::Config` and a message holding every `parts`.
fn config_fails(cfg: &str, parts: &[&str], what: &str) {
    let _g = lock();
    match llmr::init(cfg) {
        Ok(()) => panic!("{what}: accepted: {cfg}"),
        Err(e) => {
            assert_eq!(e.status, Status::Config, "{what}: {}", e.to_json());
            let json: Value = serde_json::from_str(&e.to_json()).expect("error JSON");
            assert_eq!(json["error"]["status"], "config", "{what}");
            // Short: a message quotes at most an excerpt of the input.
            assert!(
                e.to_json().len() < 4096,
                "{what}: {} bytes",
                e.to_json().len()
            );
            for p in parts {
                assert!(
                    e.message.contains(p),
                    "{what}: the message does not name {p}: {}",
                    e.message
                );
            }
        }
    }
    assert!(!llmr::is_initialized(), "{what}");
}

fn config_ok(cfg: &str, what: &str) {
    let _g = lock();
    if let Err(e) = llmr::init(cfg) {
        panic!("{what}: refused: {}\n{cfg}", e.to_json());
    }
    assert_eq!(llmr::model_count(), 1, "{what}");
}

/// Entry fields: where they go, which JSON types they accept, and one accepted value.
/// `field` is what the error message must name.
struct EntryField {
    path: &'static str,
    field: &'static str,
    ok_kinds: &'static [&'static str],
    good: Value,
}

fn entry_fields() -> Vec<EntryField> {
    let f = |path, field, ok_kinds, good| EntryField {
        path,
        field,
        ok_kinds,
        good,
    };
    let num: &[&str] = &["null", "number"];
    let text: &[&str] = &["null", "string"];
    vec![
        f("id", "`id`", &["null", "number", "string"], json!("x")),
        f("model_name", "`model_name`", &["string"], json!("m2")),
        f("provider", "`provider`", &["string"], json!("mock")),
        f("custom_provider", "`custom_provider`", text, Value::Null),
        f("api_key", "`api_key`", text, json!("k-1234567890")),
        f("api_base", "`api_base`", text, json!("http://127.0.0.1:9")),
        f(
            "litellm_params",
            "`litellm_params`",
            &["null", "object"],
            json!({}),
        ),
        f("rpm", "`rpm`", num, json!(10)),
        f("tpm", "`tpm`", num, json!(1000)),
        f("weight", "`weight`", num, json!(2.5)),
        f("max_input_tokens", "`max_input_tokens`", num, json!(1000)),
        f("max_output_tokens", "`max_output_tokens`", num, json!(100)),
        f("timeout", "`timeout`", num, json!(30)),
        f("cooldown_time", "`cooldown_time`", num, json!(5)),
        f(
            "litellm_params.api_key",
            "`api_key`",
            text,
            json!("k-123456789"),
        ),
        f("litellm_params.api_base", "`api_base`", text, Value::Null),
        f(
            "litellm_params.base_model",
            "`base_model`",
            text,
            json!("gpt-4o"),
        ),
        f("litellm_params.rpm", "`rpm`", num, json!(10)),
        f("litellm_params.tpm", "`tpm`", num, json!(10)),
        f("litellm_params.timeout", "`timeout`", num, json!(1.5)),
        f("litellm_params.weight", "`weight`", num, json!(1)),
        f(
            "litellm_params.input_cost_per_token",
            "`input_cost_per_token`",
            num,
            json!(0.000001),
        ),
        f(
            "litellm_params.output_cost_per_token",
            "`output_cost_per_token`",
            num,
            json!(0),
        ),
        f(
            "litellm_params.mock_response",
            "`litellm_params.mock_response`",
            text,
            json!("x"),
        ),
        f(
            "litellm_params.mock_tool_calls",
            "`litellm_params.mock_tool_calls`",
            &["null", "array"],
            json!([]),
        ),
        f(
            "litellm_params.mock_delay_ms",
            "`litellm_params.mock_delay_ms`",
            num,
            json!(1),
        ),
        f(
            "litellm_params.mock_chunk_delay_ms",
            "`litellm_params.mock_chunk_delay_ms`",
            num,
            json!(0),
        ),
    ]
}

#[test]
fn every_entry_field_refuses_every_wrong_type_by_name() {
    for f in entry_fields() {
        for (kind, v) in kinds() {
            let mut e = mock_entry();
            set(&mut e, f.path, v.clone());
            let cfg = one_entry_config(e, Value::Null);
            let what = format!("{} = {kind}", f.path);
            if f.ok_kinds.contains(&kind) {
                // null in a required field is its absence: refused, by name.
                if kind == "null" && matches!(f.path, "model_name" | "provider") {
                    config_fails(&cfg, &[f.path], &what);
                } else if kind == "string" && f.path == "provider" {
                    config_fails(&cfg, &["unknown provider `text`"], &what);
                } else if kind == "string" && f.path == "custom_provider" {
                    // An unknown prefix is an OpenAI-compatible server: it needs an api_base.
                    config_fails(&cfg, &["api_base"], &what);
                } else {
                    config_ok(&cfg, &what);
                }
            } else {
                config_fails(&cfg, &[f.field, "global_llm_configs[0]"], &what);
            }
        }
        let mut e = mock_entry();
        set(&mut e, f.path, f.good.clone());
        config_ok(
            &one_entry_config(e, Value::Null),
            &format!("{} = good", f.path),
        );
    }
}

#[test]
fn absurd_entry_numbers_are_refused_by_name() {
    for (path, v, field) in [
        ("rpm", json!(0), "`rpm`"),
        ("rpm", json!(-5), "`rpm`"),
        ("rpm", json!(1.5), "`rpm`"),
        ("tpm", json!(0), "`tpm`"),
        ("weight", json!(0), "`weight`"),
        ("weight", json!(-1), "`weight`"),
        ("weight", json!(1e300), "`weight`"),
        ("max_input_tokens", json!(0), "`max_input_tokens`"),
        ("max_input_tokens", json!(-100), "`max_input_tokens`"),
        ("max_output_tokens", json!(0.5), "`max_output_tokens`"),
        ("timeout", json!(0), "`timeout`"),
        ("timeout", json!(-1), "`timeout`"),
        ("timeout", json!(1e12), "`timeout`"),
        ("cooldown_time", json!(-3), "`cooldown_time`"),
        ("cooldown_time", json!(1e300), "`cooldown_time`"),
        (
            "litellm_params.input_cost_per_token",
            json!(-0.5),
            "`input_cost_per_token`",
        ),
        (
            "litellm_params.mock_delay_ms",
            json!(-1),
            "`litellm_params.mock_delay_ms`",
        ),
        (
            "litellm_params.mock_delay_ms",
            json!(1e12),
            "`litellm_params.mock_delay_ms`",
        ),
    ] {
        let mut e = mock_entry();
        set(&mut e, path, v.clone());
        config_fails(
            &one_entry_config(e, Value::Null),
            &[field],
            &format!("{path} = {v}"),
        );
    }
}

#[test]
fn huge_whole_numbers_mean_no_limit() {
    // rpm/tpm beyond u64 are "no practical limit": kept as the largest, never wrapped to 0.
    let mut e = mock_entry();
    set(&mut e, "rpm", json!(1e30));
    set(&mut e, "tpm", json!(u64::MAX));
    let _g = lock();
    llmr::init(&one_entry_config(e, Value::Null)).expect("huge rpm/tpm are accepted");
    let info: Value = serde_json::from_str(&llmr::router_info().unwrap()).unwrap();
    assert_eq!(info["deployments"][0]["rpm"], json!(u64::MAX));
    assert_eq!(info["deployments"][0]["tpm"], json!(u64::MAX));
    let r = llmr::complete_json(&common::ask("hi").to_string()).expect("a request goes");
    assert!(r.contains("\"hi\""), "{r}");
}

#[test]
fn unknown_providers_are_refused_by_name_unless_reachable() {
    for name in ["NOPE", "openai2", " OPENAI", "", "💥"] {
        let mut e = mock_entry();
        set(&mut e, "provider", json!(name));
        let part = if name.is_empty() {
            "no `provider`".to_owned()
        } else {
            format!("unknown provider `{name}`")
        };
        config_fails(&one_entry_config(e, Value::Null), &[&part], name);
    }
    // With an api_base it is an OpenAI-compatible server, as LiteLLM's `custom`.
    let mut e = mock_entry();
    set(&mut e, "provider", json!("my-server"));
    set(&mut e, "api_key", json!("k-12345678"));
    set(&mut e, "api_base", json!("http://127.0.0.1:9/v1"));
    config_ok(&one_entry_config(e, Value::Null), "unknown with api_base");
}

/// Router settings: accepted kinds and one accepted value.
fn setting_fields() -> Vec<(&'static str, &'static [&'static str], Value)> {
    let num: &'static [&'static str] = &["null", "number"];
    vec![
        (
            "routing_strategy",
            &["null", "string"][..],
            json!("least-busy"),
        ),
        ("num_retries", num, json!(0)),
        ("allowed_fails", num, json!(10)),
        ("cooldown_time", num, json!(0)),
        ("retry_after", num, json!(0.25)),
        ("timeout", num, json!(1)),
        ("redis_url", &["null", "string"][..], json!("redis://h:1")),
        ("redis_prefix", &["null", "string"][..], json!("app")),
    ]
}

#[test]
fn every_router_setting_refuses_every_wrong_type_by_name() {
    for (name, ok_kinds, good) in setting_fields() {
        for (kind, v) in kinds() {
            // The number 7 and the string "text" are wrong *values* for some fields.
            let value_ok = match (name, kind) {
                // "text" is no redis:// URL.
                ("routing_strategy", "string") | ("redis_url", "string") => false,
                ("redis_prefix", "string") | (_, "null") => true,
                (_, "number") => true,
                _ => false,
            };
            let cfg = one_entry_config(mock_entry(), json!({ name: v }));
            let what = format!("router_settings.{name} = {kind}");
            if ok_kinds.contains(&kind) && value_ok {
                config_ok(&cfg, &what);
            } else {
                config_fails(&cfg, &[&format!("`router_settings.{name}`")], &what);
            }
        }
        config_ok(
            &one_entry_config(mock_entry(), json!({ name: good })),
            &format!("router_settings.{name} = good"),
        );
    }
}

#[test]
fn absurd_router_settings_are_refused_by_name() {
    for (name, v) in [
        ("num_retries", json!(1e9)),
        ("num_retries", json!(-1)),
        ("num_retries", json!(101)),
        ("num_retries", json!(2.5)),
        ("allowed_fails", json!(-1)),
        ("allowed_fails", json!(1e9)),
        ("cooldown_time", json!(-1)),
        ("cooldown_time", json!(1e300)),
        ("cooldown_time", json!(f64::MAX)),
        ("cooldown_time", json!("NaN")),
        ("cooldown_time", json!("inf")),
        ("retry_after", json!(-0.5)),
        ("retry_after", json!(86_401)),
        ("timeout", json!(0)),
        ("timeout", json!(-10)),
        ("timeout", json!(1e12)),
        ("routing_strategy", json!("")),
        ("routing_strategy", json!("USAGE-BASED-ROUTING ")),
    ] {
        let cfg = one_entry_config(mock_entry(), json!({ name: v }));
        config_fails(
            &cfg,
            &[&format!("`router_settings.{name}`")],
            &format!("router_settings.{name} = {v}"),
        );
    }
}

#[test]
fn numbers_json_cannot_hold_are_a_config_json_error() {
    // 1e999 overflows f64: serde_json refuses it, with a position.
    config_fails(
        r#"{"global_llm_configs": [{"provider": "MOCK", "model_name": "m"}], "router_settings": {"cooldown_time": 1e999}}"#,
        &["config JSON"],
        "1e999",
    );
    config_fails(
        r#"{"global_llm_configs": [{"provider": "MOCK", "model_name": "m"}], "router_settings": {"cooldown_time": NaN}}"#,
        &["config JSON"],
        "NaN",
    );
}

#[test]
fn top_level_fields_refuse_wrong_types_by_name() {
    for (kind, v) in kinds() {
        let cfg = json!({ "global_llm_configs": v }).to_string();
        config_fails(
            &cfg,
            &["global_llm_configs"],
            &format!("global_llm_configs = {kind}"),
        );
        if kind != "null" && kind != "object" {
            let cfg =
                json!({"global_llm_configs": [mock_entry()], "router_settings": v}).to_string();
            config_fails(
                &cfg,
                &["router_settings"],
                &format!("router_settings = {kind}"),
            );
        }
    }
    // Entries that are not objects are skipped by position.
    for (kind, v) in kinds() {
        if kind == "object" {
            continue;
        }
        let cfg = json!({ "global_llm_configs": [v] }).to_string();
        config_fails(
            &cfg,
            &["global_llm_configs[0]", "not an object"],
            &format!("entry = {kind}"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

fn init_mock() -> common::Serial {
    let g = lock();
    common::init(vec![mock("m", json!({}))], common::settings(json!({})));
    g
}

fn base_request() -> Value {
    json!({"messages": [{"role": "user", "content": "hi"}]})
}

/// A request that must be refused as `invalid_argument`, naming `field`, by both the
/// completion and the stream.
fn request_fails(req: &str, field: &str, what: &str) {
    for streaming in [false, true] {
        let mut chunks = 0;
        let r = if streaming {
            llmr::stream_json(req, |_| {
                chunks += 1;
                true
            })
        } else {
            llmr::complete_json(req)
        };
        let e = match r {
            Ok(s) => panic!("{what} (stream {streaming}): accepted: {req}\n→ {s}"),
            Err(e) => e,
        };
        assert_eq!(e.status, Status::InvalidArgument, "{what}: {}", e.to_json());
        assert!(
            e.message.contains(field),
            "{what}: the message does not name `{field}`: {}",
            e.message
        );
        assert_eq!(chunks, 0, "{what}");
    }
}

fn request_ok(req: &str, what: &str) {
    if let Err(e) = llmr::complete_json(req) {
        panic!("{what}: refused: {}\n{req}", e.to_json());
    }
    if let Err(e) = llmr::stream_json(req, |_| true) {
        panic!("{what} (stream): refused: {}\n{req}", e.to_json());
    }
}

/// Request fields: path, accepted kinds, one accepted value.
fn request_fields() -> Vec<(&'static str, &'static [&'static str], Value)> {
    let num: &'static [&'static str] = &["null", "number"];
    let text: &'static [&'static str] = &["null", "string"];
    let flag: &'static [&'static str] = &["null", "bool"];
    let tool =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    vec![
        ("model", text, json!("auto")),
        (
            "messages",
            &["array"][..],
            json!([{"role": "user", "content": "x"}]),
        ),
        ("tools", &["null", "array"][..], tool),
        (
            "tool_choice",
            &["null", "string", "object"][..],
            json!("auto"),
        ),
        ("parallel_tool_calls", flag, json!(false)),
        ("stop", &["null", "string", "array"][..], json!(["a", "b"])),
        ("max_tokens", num, json!(5)),
        ("max_completion_tokens", num, json!(5)),
        ("temperature", num, json!(0.5)),
        ("top_p", num, json!(1)),
        ("user", text, json!("u-1")),
        ("timeout", num, json!(30)),
        ("stream", flag, json!(true)),
        (
            "messages.0",
            &["object"][..],
            json!({"role": "user", "content": "x"}),
        ),
        ("messages.0.role", &["string"][..], json!("system")),
        (
            "messages.0.content",
            &["null", "string", "array"][..],
            json!([{"type": "text", "text": "x"}]),
        ),
        ("messages.0.name", text, json!("alice")),
        ("messages.0.tool_call_id", text, Value::Null),
        ("messages.0.tool_calls", &["null", "array"][..], json!([])),
    ]
}

#[test]
fn every_request_field_refuses_every_wrong_type_by_name() {
    let _g = init_mock();
    for (path, ok_kinds, good) in request_fields() {
        for (kind, v) in kinds() {
            let mut req = base_request();
            set(&mut req, path, v.clone());
            let what = format!("{path} = {kind}");
            // Values of the right type that are wrong values for the field.
            let wrong_value = match (path, kind) {
                ("model", "string") => true,       // no group "text"
                ("tool_choice", "string") => true, // not none/auto/required
                ("messages", "array") => true,     // empty
                ("messages.0", "object") => true,  // no role
                ("tools", "array") => false,
                _ => false,
            };
            let json_path = path
                .split('.')
                .map(|p| match p.parse::<usize>() {
                    Ok(i) => format!("[{i}]"),
                    Err(_) => p.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(".")
                .replace(".[", "[");
            if ok_kinds.contains(&kind) && !wrong_value {
                request_ok(&req.to_string(), &what);
            } else {
                let name = match (path, kind) {
                    ("model", "string") => "text".to_owned(),
                    _ => json_path,
                };
                request_fails(&req.to_string(), &name, &what);
            }
        }
        let mut req = base_request();
        set(&mut req, path, good);
        request_ok(&req.to_string(), &format!("{path} = good"));
    }
}

#[test]
fn nested_request_fields_refuse_wrong_types_by_name() {
    let _g = init_mock();
    let tool = || json!({"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}});
    let call =
        || json!({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}});
    for (field, ok_kinds, in_tools) in [
        ("function", &[][..], true), // {} has no name: refused too
        ("function.name", &["string"][..], true),
        ("function.description", &["null", "string"][..], true),
        ("function.parameters", &["null", "object"][..], true),
        ("type", &["string"][..], true),
        ("function", &["object"][..], false),
        ("function.name", &["string"][..], false),
        ("id", &["string"][..], false),
        ("type", &["string"][..], false),
    ] {
        for (kind, v) in kinds() {
            let mut req = base_request();
            let (mut item, path) = if in_tools {
                (tool(), "tools[0]")
            } else {
                (call(), "messages[1].tool_calls[0]")
            };
            set(&mut item, field, v.clone());
            if in_tools {
                req["tools"] = json!([item]);
            } else {
                req["messages"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"role": "assistant", "tool_calls": [item]}));
            }
            let what = format!("{path}.{field} = {kind}");
            if ok_kinds.contains(&kind) {
                request_ok(&req.to_string(), &what);
            } else {
                request_fails(&req.to_string(), &format!("{path}.{field}"), &what);
            }
        }
    }
}

#[test]
fn absurd_request_values_are_refused_by_name() {
    let _g = init_mock();
    for (path, v) in [
        ("timeout", json!(0)),
        ("timeout", json!(-1)),
        ("timeout", json!(1e20)),
        ("timeout", json!(f64::MAX)),
        ("timeout", json!(86_401)),
        ("max_tokens", json!(-1)),
        ("max_tokens", json!(1.5)),
        ("max_completion_tokens", json!(-3)),
        ("stop", json!([1, 2])),
        ("stop", json!(["ok", null])),
        ("messages.0.role", json!("")),
    ] {
        let mut req = base_request();
        set(&mut req, path, v.clone());
        let field = path.replace(".0.", "[0].");
        request_fails(&req.to_string(), &field, &format!("{path} = {v}"));
    }
    // The library is fine after all of it.
    request_ok(&base_request().to_string(), "after");
}

#[test]
fn a_tool_message_may_carry_any_content_like_the_seed() {
    let _g = init_mock();
    for (kind, v) in kinds() {
        let req = json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "c", "content": v}]});
        request_ok(&req.to_string(), &format!("tool content = {kind}"));
    }
}

#[test]
fn a_huge_string_in_the_wrong_place_gets_a_short_error() {
    let _g = init_mock();
    let huge = "x".repeat(20 << 20);
    for (path, v) in [
        ("temperature", json!(huge)),
        ("model", json!(huge)),
        ("messages.0.role", json!(7)),
    ] {
        let mut req = base_request();
        set(&mut req, path, v);
        if path == "messages.0.role" {
            req["messages"][0]["content"] = json!(huge);
            req["messages"][0]["role"] = json!(7);
        }
        let e = llmr::complete_json(&req.to_string()).expect_err(path);
        assert_eq!(e.status, Status::InvalidArgument, "{path}");
        assert!(
            e.to_json().len() < 2000,
            "{path}: {} bytes",
            e.to_json().len()
        );
        assert!(
            e.message.contains(path.split('.').next().unwrap()),
            "{}",
            e.message
        );
    }
    drop(_g);
    let cfg = json!({"global_llm_configs": [{"provider": huge, "model_name": "m"}]}).to_string();
    config_fails(&cfg, &["unknown provider"], "a huge provider name");
}
