//! Azure OpenAI, Cloudflare Workers AI, Databricks and Hugging Face end to end: the OpenAI body
//! through each provider's own URL, query and auth, against the stand-in (whose OpenAI format
//! serves any path ending in `/chat/completions`), and one error of each classified from that
//! provider's own body.

mod common;

use common::{complete, init, lock, settings, status, stream, KEY};
use llmr_testkit::{Reply, StandIn};
use serde_json::{json, Value};

/// One deployment, no retries.
fn start_one(entry: Value) {
    init(vec![entry], settings(json!({"num_retries": 0})));
}

fn hello() -> Value {
    json!({"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 32})
}

fn ok_body(content: Value, finish: &str) -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
           "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
           "choices": [{"index": 0, "finish_reason": finish,
                        "message": {"role": "assistant", "content": content}}],
           "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}})
    .to_string()
}

#[test]
fn azure_deployment_url_api_key_and_its_errors() {
    let _g = lock();
    let standin = StandIn::start();
    start_one(
        json!({"id": "az", "provider": "AZURE_OPENAI", "model_name": "gpt4o-prod", "api_key": KEY,
               "api_base": format!("{}/az", standin.url()),
               "litellm_params": {"api_version": "2025-04-01-preview"}}),
    );
    standin.script("az", [Reply::text("Hello from Azure")]);
    let r = complete(&hello()).unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "Hello from Azure");
    assert_eq!(r["llmr"]["provider"], "azure");
    let sent = &standin.requests("az")[0];
    assert_eq!(
        sent.path,
        "/az/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-04-01-preview"
    );
    assert_eq!(sent.header("api-key"), Some(KEY));
    assert_eq!(
        sent.header("authorization"),
        None,
        "Azure keys are not Bearer"
    );
    assert!(sent.body.get("api_version").is_none());

    // Streaming, with usage asked for.
    let s = stream(&hello(), None);
    assert!(!s.text().is_empty());
    s.result.unwrap();
    let sent = standin.last_request("az").unwrap();
    assert_eq!(sent.body["stream_options"]["include_usage"], true);

    // Errors as Azure sends them.
    let filtered = json!({"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
        "type": null, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
            "hate": {"filtered": false, "severity": "safe"}, "jailbreak": {"filtered": true, "detected": true},
            "self_harm": {"filtered": false, "severity": "safe"}, "sexual": {"filtered": false, "severity": "safe"},
            "violence": {"filtered": false, "severity": "safe"}}}}});
    let throttled = json!({"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2025-04-01-preview have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds."}});
    standin.script(
        "az",
        [
            Reply::body(400, filtered.to_string()),
            Reply::body(200, ok_body(Value::Null, "content_filter")),
            Reply::body(429, throttled.to_string()).header("retry-after-ms", "1500"),
            Reply::body(429, throttled.to_string()),
            Reply::overflow(),
        ],
    );
    let e = complete(&hello()).unwrap_err();
    assert_eq!(status(&e), "content_policy");
    assert_eq!(e["error"]["http_status"], 400);
    let e = complete(&hello()).unwrap_err();
    assert_eq!(
        status(&e),
        "content_policy",
        "a 200 withheld by the filter: {e}"
    );
    let e = complete(&hello()).unwrap_err();
    assert_eq!(status(&e), "rate_limited");
    assert_eq!(e["error"]["retry_after"], 1.5, "retry-after-ms wins");
    let e = complete(&hello()).unwrap_err();
    assert_eq!(
        e["error"]["retry_after"], 6.0,
        "else the text's 'retry after 6 seconds'"
    );
    let e = complete(&hello()).unwrap_err();
    assert_eq!(status(&e), "context_overflow");
}

#[test]
fn azure_v1_path_with_an_entra_id_token() {
    let _g = lock();
    let standin = StandIn::start();
    start_one(
        json!({"id": "v1", "provider": "AZURE_OPENAI", "model_name": "gpt-4.1-nano",
               "api_base": format!("{}/az1", standin.url()),
               "litellm_params": {"api_version": "v1", "azure_ad_token": "entra-token-abc"}}),
    );
    complete(&hello()).unwrap();
    let sent = standin.last_request("az1").unwrap();
    assert_eq!(sent.path, "/az1/openai/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer entra-token-abc"));
    assert_eq!(sent.header("api-key"), None);
    assert_eq!(
        sent.body["model"], "gpt-4.1-nano",
        "the v1 API takes the deployment in the body"
    );
    assert!(
        sent.body.get("azure_ad_token").is_none(),
        "never sent in the body"
    );
}

#[test]
fn cloudflare_account_url_bearer_and_its_envelope() {
    let _g = lock();
    let standin = StandIn::start();
    start_one(
        json!({"id": "cf", "provider": "CLOUDFLARE", "model_name": "@cf/meta/llama-3.1-8b-instruct",
               "api_key": KEY, "api_base": format!("{}/cf/client/v4/accounts/acc123", standin.url())}),
    );
    complete(&hello()).unwrap();
    let sent = standin.last_request("cf").unwrap();
    assert_eq!(
        sent.path,
        "/cf/client/v4/accounts/acc123/ai/v1/chat/completions"
    );
    assert_eq!(
        sent.header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(sent.body["model"], "@cf/meta/llama-3.1-8b-instruct");

    let envelope = |code: u32, message: &str| {
        json!({"result": null, "success": false, "errors": [{"code": code, "message": message}], "messages": []})
            .to_string()
    };
    standin.script(
        "cf",
        [
            Reply::body(429, envelope(3040, "Capacity temporarily exceeded, please try again.")),
            Reply::body(400, envelope(5007, "No such model @cf/meta/llama-9 or task")),
            Reply::body(400, envelope(3030, "AiError: This model's maximum context length is 131072 tokens. However, you requested 16000 output tokens and your prompt contains at least 115073 input tokens, for a total of at least 131073 tokens. Please reduce the length of the input prompt or reduce max_tokens.")),
        ],
    );
    let e = complete(&hello()).unwrap_err();
    assert_eq!(status(&e), "rate_limited");
    assert_eq!(
        e["error"]["message"],
        "Capacity temporarily exceeded, please try again."
    );
    let e = complete(&hello()).unwrap_err();
    assert_eq!(status(&e), "bad_request");
    assert_eq!(
        e["error"]["message"],
        "No such model @cf/meta/llama-9 or task"
    );
    let e = complete(&hello()).unwrap_err();
    assert_eq!(status(&e), "context_overflow");
}

#[test]
fn databricks_serving_endpoints_and_its_envelope() {
    let _g = lock();
    let standin = StandIn::start();
    start_one(
        json!({"id": "dbx", "provider": "DATABRICKS", "model_name": "databricks-meta-llama-3-3-70b-instruct",
               "api_key": KEY, "api_base": format!("{}/dbx", standin.url())}),
    );
    let s = stream(&hello(), None);
    assert!(!s.text().is_empty());
    s.result.unwrap();
    let sent = standin.last_request("dbx").unwrap();
    assert_eq!(sent.path, "/dbx/serving-endpoints/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(sent.body["model"], "databricks-meta-llama-3-3-70b-instruct");
    assert!(
        sent.body.get("stream_options").is_none(),
        "not every endpoint takes it"
    );

    standin.script(
        "dbx",
        [
            Reply::body(429, json!({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Exceeded workspace rate limit for databricks-meta-llama-3-3-70b-instruct: QPS limit of 2"}).to_string()),
            Reply::body(400, json!({"error_code": "BAD_REQUEST", "message": "Bad request: rpc error: code = InvalidArgument desc = max_tokens (10000) cannot exceed 8192. Please reduce the length of max output tokens generated."}).to_string()),
        ],
    );
    let e = complete(&hello()).unwrap_err();
    assert_eq!(status(&e), "rate_limited");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Exceeded workspace rate limit"));
    let e = complete(&hello()).unwrap_err();
    assert_eq!(
        status(&e),
        "bad_request",
        "an output cap, not a context overflow"
    );
}

#[test]
fn hugging_face_router_with_a_provider_suffix_and_its_errors() {
    let _g = lock();
    let standin = StandIn::start();
    start_one(
        json!({"id": "hf", "provider": "HUGGINGFACE", "model_name": "meta-llama/Llama-3.3-70B-Instruct:groq",
               "api_key": KEY, "api_base": standin.base("hf")}),
    );
    complete(&hello()).unwrap();
    let sent = standin.last_request("hf").unwrap();
    assert_eq!(sent.path, "/hf/v1/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(
        sent.body["model"], "meta-llama/Llama-3.3-70B-Instruct:groq",
        "the suffix picks the provider"
    );

    standin.script(
        "hf",
        [
            Reply::body(400, r#"{"error":"Model meta-llama/Llama-9 is not supported by any provider you have enabled."}"#),
            Reply::body(503, r#"{"error":"Model meta-llama/Llama-3.3-70B-Instruct is currently loading","estimated_time":20.0}"#),
            Reply::body(429, r#"{"error":{"message":"Rate limit reached. You reached free usage limit (reset hourly).","type":"rate_limit"}}"#),
        ],
    );
    let e = complete(&hello()).unwrap_err();
    assert_eq!(status(&e), "bad_request");
    assert_eq!(
        e["error"]["message"],
        "Model meta-llama/Llama-9 is not supported by any provider you have enabled."
    );
    let e = complete(&hello()).unwrap_err();
    assert_eq!(status(&e), "upstream");
    assert_eq!(
        e["error"]["retry_after"], 20.0,
        "the cold model's estimated_time"
    );
    let e = complete(&hello()).unwrap_err();
    assert_eq!(status(&e), "rate_limited");
}
