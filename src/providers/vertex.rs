//! Vertex AI (PROVIDERS.md §9): Google's models through `generateContent` with Gemini's body,
//! Anthropic's Claude through `rawPredict` with the Messages body, and partner models (Llama,
//! DeepSeek, Qwen … MaaS) through the OpenAI-compatible `endpoints/openapi/chat/completions`.
//! Each body, answer and stream is the owning format's ([`super::gemini`],
//! [`super::anthropic`], [`super::openai`]); this module builds the URLs, the OAuth bearer
//! ([`super::google_auth`]) and reads Google's error envelope, which wraps Claude's errors.
//!
//! The publisher follows the model name: `claude-*` is Anthropic's, `publisher/model` or
//! `publishers/P/models/M` names one, anything else is Google's. Which of the three a deployment
//! speaks is read back from its URL's method (`:rawPredict`, `/chat/completions`).

use std::sync::Arc;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

use super::classify::classify;
use super::google_auth::{Credentials, TokenSource};
use super::{anthropic, extra_headers, gemini, openai, secret_header};
use super::{Endpoint, StreamParser, WireFormat};
use crate::config::DeploymentConfig;
use crate::errors::Error;
use crate::types::{ChatRequest, ChatResponse};

pub struct Vertex;

/// Where a location is not configured (litellm's default).
pub const DEFAULT_LOCATION: &str = "us-central1";
/// The API version of the URLs (`v1beta1` via `litellm_params.api_version` for previews).
pub const API_VERSION: &str = "v1";
/// The host of the `global` location and of express mode.
pub const GLOBAL_HOST: &str = "https://aiplatform.googleapis.com";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Publisher {
    Google,
    Anthropic,
    /// Any other publisher: the OpenAI-compatible endpoint, model `publisher/model`.
    OpenApi,
}

/// The publisher and the model id a model name names.
fn split_model(name: &str) -> Result<(Publisher, String), String> {
    let name = name.trim();
    let name = name.strip_prefix("vertex_ai/").unwrap_or(name);
    let (publisher, model) = if let Some(rest) = name.strip_prefix("publishers/") {
        rest.split_once("/models/")
            .ok_or_else(|| format!("`model_name` {name:?}: expected publishers/P/models/M"))?
    } else {
        match name.split_once('/') {
            Some((p, m)) => (p, m),
            None if name.starts_with("claude-") => ("anthropic", name),
            None => ("google", name),
        }
    };
    let bad = |m: &str| m.is_empty() || m.contains(['/', '?', '#', ':', ' ', '%']);
    if bad(publisher) || bad(model) {
        return Err(format!(
            "`model_name` {name:?} is not a Vertex AI model id (gemini-2.5-pro, claude-sonnet-4@20250514, meta/llama-3.3-70b-instruct-maas)"
        ));
    }
    Ok(match publisher {
        "google" => (Publisher::Google, model.to_owned()),
        "anthropic" => (Publisher::Anthropic, model.to_owned()),
        _ => (Publisher::OpenApi, format!("{publisher}/{model}")),
    })
}

/// Which endpoint a deployment's URL is.
fn publisher_of(ep: &Endpoint) -> Publisher {
    if ep.url.ends_with(":rawPredict") {
        Publisher::Anthropic
    } else if ep.url.ends_with("/chat/completions") {
        Publisher::OpenApi
    } else {
        Publisher::Google
    }
}

/// A `litellm_params` string (`os.environ/NAME` read from the environment).
fn text_param(d: &DeploymentConfig, key: &str) -> Result<Option<String>, String> {
    match d.params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.strip_prefix("os.environ/") {
            Some(name) => std::env::var(name).map(Some).map_err(|_| {
                format!("`litellm_params.{key}` names the environment variable {name}, which is not set")
            }),
            None => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        },
        Some(_) => Err(format!("`litellm_params.{key}` must be a string")),
    }
}

fn env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
}

/// Project ids hold letters, digits, `-`, and a domain prefix (`example.com:proj`); regions
/// letters, digits and `-`.
fn check_segment(what: &str, v: &str, extra: &[char]) -> Result<(), String> {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || extra.contains(&c))
    {
        Ok(())
    } else {
        Err(format!(
            "`litellm_params.{what}` {v:?} is not a Google Cloud {}",
            what.trim_start_matches("vertex_")
        ))
    }
}

/// A Google API key (express mode), not an OAuth access token.
fn is_api_key(key: &str) -> bool {
    key.starts_with("AIza")
}

impl WireFormat for Vertex {
    fn endpoint(&self, d: &DeploymentConfig, max_output: Option<u64>) -> Result<Endpoint, String> {
        let mut ep = Endpoint::common(d, max_output);
        let (publisher, model) = split_model(&d.model)?;
        let creds = match d.params.get("vertex_credentials") {
            None | Some(Value::Null) => None,
            Some(v) => Some(Credentials::from_param(v)?),
        };
        let creds = match (creds, &d.api_key) {
            (Some(c), _) => Some(c),
            (None, Some(_)) => None,
            // Application Default Credentials, as Google's libraries find them.
            (None, None) => Credentials::from_environment().transpose()?,
        };
        let api_key = d.api_key.as_ref().filter(|_| creds.is_none());
        let express =
            publisher == Publisher::Google && api_key.is_some_and(|k| is_api_key(k.expose()));

        let project = text_param(d, "vertex_project")?
            .or_else(|| creds.as_ref().and_then(|c| c.project_id.clone()))
            .or_else(|| env(&["VERTEXAI_PROJECT", "GOOGLE_CLOUD_PROJECT"]));
        let location = text_param(d, "vertex_location")?
            .or_else(|| env(&["VERTEXAI_LOCATION"]))
            .unwrap_or_else(|| DEFAULT_LOCATION.to_owned());
        check_segment("vertex_location", &location, &[])?;
        if let Some(p) = &project {
            check_segment("vertex_project", p, &['.', ':'])?;
        }
        let host = match &d.api_base {
            Some(b) => b.trim_end_matches('/').to_owned(),
            None if location == "global" || (express && project.is_none()) => {
                GLOBAL_HOST.to_owned()
            }
            None => format!("https://{location}-aiplatform.googleapis.com"),
        };
        let version = match d.params.get("api_version") {
            None | Some(Value::Null) => API_VERSION,
            Some(Value::String(v)) if gemini::is_version_segment(v) => v.as_str(),
            Some(_) => {
                return Err(
                    "`litellm_params.api_version` must be a version such as \"v1beta1\"".into(),
                )
            }
        };
        let last = host.rsplit('/').next().unwrap_or("");
        let root = if gemini::is_version_segment(last) {
            host.clone()
        } else {
            format!("{host}/{version}")
        };
        let scope = match &project {
            Some(p) => format!("{root}/projects/{p}/locations/{location}"),
            // Express mode: an API key, no project.
            None if express => root,
            None => {
                return Err("VERTEX_AI needs a project: `litellm_params.vertex_project`, or `vertex_credentials` with a `project_id`".into())
            }
        };
        match publisher {
            Publisher::Google => {
                let base = format!("{scope}/publishers/google/models/{model}");
                ep.url = format!("{base}:generateContent");
                ep.stream_url = format!("{base}:streamGenerateContent?alt=sse");
            }
            Publisher::Anthropic => {
                let base = format!("{scope}/publishers/anthropic/models/{model}");
                ep.url = format!("{base}:rawPredict");
                ep.stream_url = format!("{base}:streamRawPredict");
                if let Some(beta) = anthropic::beta_header(d)? {
                    ep.headers.insert("anthropic-beta", beta);
                }
            }
            Publisher::OpenApi => {
                ep.url = format!("{scope}/endpoints/openapi/chat/completions");
                ep.stream_url = ep.url.clone();
            }
        }
        ep.model = model;
        ep.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match (creds, api_key) {
            (Some(c), _) => {
                ep.auth = Some(Arc::new(TokenSource::new(
                    c,
                    crate::global::http_client().clone(),
                )));
            }
            (None, Some(k)) if express => {
                ep.headers.insert("x-goog-api-key", secret_header(k.expose())?);
            }
            (None, Some(k)) => {
                let token = k.expose().strip_prefix("Bearer ").unwrap_or(k.expose());
                ep.headers
                    .insert(AUTHORIZATION, secret_header(&format!("Bearer {token}"))?);
            }
            (None, None) => {
                return Err("VERTEX_AI needs `api_key` (an OAuth access token, e.g. from `gcloud auth print-access-token`) or `litellm_params.vertex_credentials` (a service-account JSON)".into())
            }
        }
        extra_headers(d, &mut ep.headers)?;
        Ok(ep)
    }

    fn request_body(
        &self,
        ep: &Endpoint,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<Vec<u8>, Error> {
        match publisher_of(ep) {
            Publisher::Google => gemini::write_body(ep, req, stream, gemini::Flavor::Vertex),
            Publisher::Anthropic => {
                anthropic::write_body(ep, req, stream, anthropic::Flavor::Vertex)
            }
            Publisher::OpenApi => openai::OpenAi.request_body(ep, req, stream),
        }
    }

    fn parse_response(&self, ep: &Endpoint, body: &[u8]) -> Result<ChatResponse, Error> {
        match publisher_of(ep) {
            Publisher::Google => gemini::parse_response(&ep.model, body),
            Publisher::Anthropic => anthropic::parse_response(body),
            Publisher::OpenApi => openai::OpenAi.parse_response(ep, body),
        }
    }

    fn parse_error(&self, ep: &Endpoint, http_status: u16, body: &[u8]) -> Error {
        match publisher_of(ep) {
            Publisher::Anthropic => claude_error(http_status, body),
            // Google's envelope (one-element arrays too); OpenAI's shapes are its fallback.
            Publisher::Google | Publisher::OpenApi => gemini::error_from(Some(http_status), body),
        }
    }

    fn stream_parser(&self, ep: &Endpoint) -> Box<dyn StreamParser> {
        match publisher_of(ep) {
            Publisher::Google => Box::new(gemini::GeminiStream::new(&ep.model)),
            Publisher::Anthropic => Box::new(anthropic::AnthropicStream::new(&ep.model)),
            Publisher::OpenApi => openai::OpenAi.stream_parser(ep),
        }
    }
}

/// Anthropic's own error JSON (`{"type":"error","error":{…}}`).
fn is_anthropic_error(text: &[u8]) -> bool {
    serde_json::from_slice::<Value>(text).is_ok_and(|v| v["type"] == "error")
}

/// A Claude error: Anthropic's JSON as is, or Google's envelope whose `message` is Anthropic's
/// JSON as a string (classified as Anthropic's, so `prompt is too long` is an overflow), or
/// Google's own error (quota, auth, model not found), classified as Google's.
fn claude_error(http_status: u16, body: &[u8]) -> Error {
    if is_anthropic_error(body) {
        return classify(Some(http_status), anthropic::error_parts(body));
    }
    let g = gemini::google_error(body);
    let inner = g.parts.message.trim();
    if inner.starts_with('{') && is_anthropic_error(inner.as_bytes()) {
        return classify(Some(http_status), anthropic::error_parts(inner.as_bytes()));
    }
    gemini::classify_google(Some(http_status), g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::errors::Status;
    use crate::types::StreamAssembler;
    use serde_json::json;
    use std::collections::VecDeque;

    const TOKEN: &str = "ya29.a0AfH6SMBtest-access-token";

    fn endpoint_with(model: &str, key: Option<&str>, extra: &str) -> Result<Endpoint, String> {
        let key = key
            .map(|k| format!(r#","api_key":"{k}""#))
            .unwrap_or_default();
        let c = config::parse(&format!(
            r#"{{"global_llm_configs":[{{"provider":"VERTEX_AI","model_name":"{model}"{key},
               "litellm_params":{{"vertex_project":"proj-1","vertex_location":"europe-west4"{extra}}}}}]}}"#
        ))
        .map_err(|e| e.message)?;
        Vertex.endpoint(&c.deployments[0], Some(64000))
    }

    fn endpoint(model: &str) -> Endpoint {
        endpoint_with(model, Some(TOKEN), "").unwrap()
    }

    fn body(ep: &Endpoint, request: &str, stream: bool) -> Value {
        let req = ChatRequest::from_json(request).unwrap();
        serde_json::from_slice(&Vertex.request_body(ep, &req, stream).unwrap()).unwrap()
    }

    const HELLO: &str = r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],
        "max_tokens":100,"temperature":0.5,"top_p":0.9,"stop":["END"]}"#;

    #[test]
    fn urls_for_each_publisher_and_location() {
        let base = "https://europe-west4-aiplatform.googleapis.com/v1/projects/proj-1/locations/europe-west4";
        let ep = endpoint("gemini-2.5-pro");
        assert_eq!(ep.model, "gemini-2.5-pro");
        assert_eq!(
            ep.url,
            format!("{base}/publishers/google/models/gemini-2.5-pro:generateContent")
        );
        assert_eq!(
            ep.stream_url,
            format!("{base}/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse")
        );
        assert_eq!(
            ep.headers[AUTHORIZATION],
            format!("Bearer {TOKEN}").as_str()
        );
        assert!(ep.headers[AUTHORIZATION].is_sensitive());
        assert!(!format!("{ep:?}").contains(TOKEN));
        assert!(ep.auth.is_none());

        let ep = endpoint("claude-sonnet-4@20250514");
        assert_eq!(ep.model, "claude-sonnet-4@20250514");
        assert_eq!(
            ep.url,
            format!("{base}/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict")
        );
        assert_eq!(
            ep.stream_url,
            format!("{base}/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict")
        );

        for name in [
            "publishers/anthropic/models/claude-x@1",
            "anthropic/claude-x@1",
        ] {
            assert_eq!(
                publisher_of(&endpoint(name)),
                Publisher::Anthropic,
                "{name}"
            );
        }
        assert_eq!(
            publisher_of(&endpoint("google/gemini-2.0-flash")),
            Publisher::Google
        );
        assert_eq!(
            publisher_of(&endpoint("vertex_ai/gemini-2.0-flash")),
            Publisher::Google
        );

        let ep = endpoint("meta/llama-3.3-70b-instruct-maas");
        assert_eq!(ep.url, format!("{base}/endpoints/openapi/chat/completions"));
        assert_eq!(ep.stream_url, ep.url);
        assert_eq!(ep.model, "meta/llama-3.3-70b-instruct-maas");

        // `global` has no region in the host; api_base replaces the host (a version kept).
        let ep = endpoint_with(
            "gemini-2.5-flash",
            Some(TOKEN),
            r#","vertex_location":"global""#,
        )
        .unwrap();
        assert_eq!(
            ep.url,
            "https://aiplatform.googleapis.com/v1/projects/proj-1/locations/global/publishers/google/models/gemini-2.5-flash:generateContent"
        );
        let ep = endpoint_with(
            "gemini-2.5-flash",
            Some(TOKEN),
            r#","api_base":"http://127.0.0.1:9/t/","api_version":"v1beta1""#,
        )
        .unwrap();
        assert_eq!(
            ep.url,
            "http://127.0.0.1:9/t/v1beta1/projects/proj-1/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent"
        );
        let ep = endpoint_with(
            "gemini-2.5-flash",
            Some(TOKEN),
            r#","api_base":"https://proxy.example/v1""#,
        )
        .unwrap();
        assert!(
            ep.url
                .starts_with("https://proxy.example/v1/projects/proj-1/"),
            "{}",
            ep.url
        );

        // Express mode: a Google API key without a project.
        let c = config::parse(
            r#"{"global_llm_configs":[{"provider":"VERTEX_AI","model_name":"gemini-2.5-flash","api_key":"AIzaSyTestKey0123456789"}]}"#,
        )
        .unwrap();
        let ep = Vertex.endpoint(&c.deployments[0], None).unwrap();
        assert_eq!(
            ep.url,
            "https://aiplatform.googleapis.com/v1/publishers/google/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(ep.headers["x-goog-api-key"], "AIzaSyTestKey0123456789");
        assert!(ep.headers.get(AUTHORIZATION).is_none());
    }

    #[test]
    fn headers_and_config_errors() {
        let ep = endpoint_with(
            "claude-opus-4@20250514",
            Some(TOKEN),
            r#","anthropic_beta":["context-1m-2025-08-07"],"extra_headers":{"x-goog-user-project":"billing-1"}"#,
        )
        .unwrap();
        assert_eq!(ep.headers["anthropic-beta"], "context-1m-2025-08-07");
        assert_eq!(ep.headers["x-goog-user-project"], "billing-1");
        assert_eq!(ep.headers[CONTENT_TYPE], "application/json");

        let err = |model: &str, key: Option<&str>, extra: &str| {
            endpoint_with(model, key, extra).unwrap_err()
        };
        for bad in [
            "gemini pro",
            "gemini?x",
            "publishers/google/gemini",
            "a/b/c",
        ] {
            assert!(
                err(bad, Some(TOKEN), "").contains("not a Vertex AI model id")
                    || err(bad, Some(TOKEN), "").contains("publishers/P"),
                "{bad}"
            );
        }
        assert!(err(
            "gemini-2.5-pro",
            Some(TOKEN),
            r#","vertex_location":"us/central""#
        )
        .contains("vertex_location"));
        assert!(
            err("gemini-2.5-pro", Some(TOKEN), r#","vertex_project":"a/b""#)
                .contains("vertex_project")
        );
        assert!(err("gemini-2.5-pro", Some(TOKEN), r#","vertex_project":5"#)
            .contains("must be a string"));
        assert!(err(
            "gemini-2.5-pro",
            Some(TOKEN),
            r#","vertex_credentials":{"type":"service_account"}"#
        )
        .contains("client_email"));
        assert!(
            err("gemini-2.5-pro", Some(TOKEN), r#","api_version":"latest""#)
                .contains("api_version")
        );
        // Neither a token nor credentials (and no ADC file in the environment).
        if std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_none() {
            assert!(err("gemini-2.5-pro", None, "").contains("vertex_credentials"));
        }
        // A "Bearer " already in the key is not doubled.
        let ep = endpoint_with("gemini-2.5-pro", Some(&format!("Bearer {TOKEN}")), "").unwrap();
        assert_eq!(
            ep.headers[AUTHORIZATION],
            format!("Bearer {TOKEN}").as_str()
        );
    }

    #[test]
    fn service_account_credentials_become_a_token_source_with_their_project() {
        let pem = include_str!("../../tests/data/vertex_test_key.pem");
        let sa = json!({"type": "service_account", "project_id": "sa-project", "private_key": pem,
                        "client_email": "x@sa-project.iam.gserviceaccount.com",
                        "token_uri": "https://oauth2.googleapis.com/token"});
        let c = config::parse(&json!({"global_llm_configs": [{"provider": "VERTEX_AI",
            "model_name": "gemini-2.5-pro", "litellm_params": {"vertex_credentials": sa.to_string()}}]}).to_string())
        .unwrap();
        let ep = Vertex.endpoint(&c.deployments[0], None).unwrap();
        assert!(
            ep.url
                .contains("/projects/sa-project/locations/us-central1/"),
            "{}",
            ep.url
        );
        assert!(ep.auth.is_some());
        assert!(
            ep.headers.get(AUTHORIZATION).is_none(),
            "the token comes per request"
        );
        let shown = format!("{ep:?}");
        assert!(
            !shown.contains("PRIVATE KEY") && !shown.contains(&pem[60..100]),
            "{shown}"
        );
        assert!(
            ep.defaults.get("vertex_credentials").is_none(),
            "never sent as a field"
        );
    }

    #[test]
    fn gemini_body_with_vertex_labels() {
        let ep =
            endpoint_with("gemini-2.5-flash", Some(TOKEN), r#","labels":{"team":"a"}"#).unwrap();
        let b = body(&ep, HELLO, false);
        assert_eq!(
            b["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}]})
        );
        assert_eq!(
            b["contents"],
            json!([{"role": "user", "parts": [{"text": "Hi"}]}])
        );
        assert_eq!(
            b["generationConfig"],
            json!({"temperature": 0.5, "topP": 0.9, "maxOutputTokens": 100, "stopSequences": ["END"]})
        );
        assert_eq!(b["labels"], json!({"team": "a"}));
        assert!(b.get("model").is_none() && b.get("stream").is_none());
    }

    #[test]
    fn claude_body_has_no_model_and_the_vertex_version() {
        let ep = endpoint("claude-sonnet-4@20250514");
        let b = body(&ep, HELLO, true);
        assert!(b.get("model").is_none(), "{b}");
        assert_eq!(b["anthropic_version"], "vertex-2023-10-16");
        assert_eq!(b["system"], "Be brief.");
        assert_eq!(
            b["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
        );
        assert_eq!(b["max_tokens"], 100);
        assert_eq!(b["stop_sequences"], json!(["END"]));
        assert_eq!(b["stream"], true);
        // Without max_tokens: the model's output cap.
        let b = body(
            &ep,
            r#"{"messages":[{"role":"user","content":"Hi"}]}"#,
            false,
        );
        assert_eq!(b["max_tokens"], 64000);
        assert!(b.get("stream").is_none());
    }

    #[test]
    fn tools_round_trip_for_both_publishers() {
        let req = r#"{"messages":[{"role":"user","content":"Weather?"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
            {"role":"tool","tool_call_id":"call_1","content":"sunny"}],
            "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],
            "tool_choice":"required"}"#;
        let g = body(&endpoint("gemini-2.5-pro"), req, false);
        assert_eq!(
            g["tools"][0]["functionDeclarations"][0]["name"],
            "get_weather"
        );
        assert_eq!(
            g["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY"}})
        );
        assert_eq!(
            g["contents"][1]["parts"][0]["functionCall"],
            json!({"name": "get_weather", "args": {"city": "Paris"}})
        );
        assert_eq!(
            g["contents"][2]["parts"][0]["functionResponse"]["name"],
            "get_weather"
        );

        let a = body(&endpoint("claude-sonnet-4@20250514"), req, false);
        assert_eq!(a["tools"][0]["input_schema"]["required"], json!(["city"]));
        assert_eq!(a["tool_choice"], json!({"type": "any"}));
        assert_eq!(
            a["messages"][1]["content"][0]["input"],
            json!({"city": "Paris"})
        );
        assert_eq!(a["messages"][2]["content"][0]["tool_use_id"], "call_1");

        let o = body(&endpoint("meta/llama-3.3-70b-instruct-maas"), req, true);
        assert_eq!(o["model"], "meta/llama-3.3-70b-instruct-maas");
        assert_eq!(o["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(o["stream"], true);
    }

    #[test]
    fn responses_of_each_publisher() {
        let g = Vertex
            .parse_response(
                &endpoint("gemini-2.5-pro"),
                br#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}}]},"finishReason":"STOP","avgLogprobs":-0.01}],
                    "usageMetadata":{"promptTokenCount":20,"candidatesTokenCount":5,"totalTokenCount":25,"trafficType":"ON_DEMAND"},
                    "modelVersion":"gemini-2.5-pro","createTime":"2025-06-01T10:00:00.123456Z","responseId":"abc"}"#,
            )
            .unwrap();
        let call = &g.choices[0].message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.function.name, "get_weather");
        assert_eq!(call.function.arguments, r#"{"city":"Paris"}"#);
        assert_eq!(g.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        let u = g.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (20, 5));

        let a = Vertex
            .parse_response(
                &endpoint("claude-sonnet-4@20250514"),
                br#"{"id":"msg_vrtx_01","type":"message","role":"assistant","model":"claude-sonnet-4-20250514",
                    "content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","stop_sequence":null,
                    "usage":{"input_tokens":9,"output_tokens":2}}"#,
            )
            .unwrap();
        assert_eq!(a.choices[0].message.content.as_deref(), Some("Hello"));
        assert_eq!(a.choices[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!(a.usage.unwrap().total_tokens, 11);

        let o = Vertex
            .parse_response(
                &endpoint("meta/llama-3.3-70b-instruct-maas"),
                br#"{"id":"x","object":"chat.completion","created":1,"model":"meta/llama-3.3-70b-instruct-maas",
                    "choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],
                    "usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#,
            )
            .unwrap();
        assert_eq!(o.choices[0].message.content.as_deref(), Some("Hi"));

        // A prompt Vertex's safety filters refuse: a 200 without candidates.
        let e = Vertex
            .parse_response(
                &endpoint("gemini-2.5-pro"),
                br#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":5,"totalTokenCount":5},"modelVersion":"gemini-2.5-pro"}"#,
            )
            .unwrap_err();
        assert_eq!(e.status, Status::ContentPolicy);
        let e = Vertex
            .parse_response(
                &endpoint("gemini-2.5-pro"),
                br#"{"candidates":[{"content":{"role":"model"},"finishReason":"SAFETY","safetyRatings":[{"category":"HARM_CATEGORY_DANGEROUS_CONTENT","probability":"HIGH","blocked":true}]}]}"#,
            )
            .unwrap_err();
        assert_eq!(e.status, Status::ContentPolicy);
        assert_eq!(
            Vertex
                .parse_response(&endpoint("claude-sonnet-4@20250514"), b"<html>")
                .unwrap_err()
                .status,
            Status::Upstream
        );
    }

    fn gerr(model: &str, status: u16, body: &str) -> Error {
        Vertex.parse_error(&endpoint(model), status, body.as_bytes())
    }

    const GEMINI: &str = "gemini-2.5-pro";
    const CLAUDE: &str = "claude-sonnet-4@20250514";

    #[test]
    fn google_errors() {
        // Context overflow, in both of Vertex's wordings.
        let e = gerr(
            GEMINI,
            400,
            r#"{"error":{"code":400,"message":"The input token count (81881) exceeds the maximum number of tokens allowed (65536).","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        let e = gerr(
            GEMINI,
            400,
            r#"{"error":{"code":400,"message":"Unable to submit request because the input token count is 1251952 but model only supports up to 1048576. Reduce the input token count and try again. You can also use the CountTokens API to calculate prompt token count and billable characters. Learn more: https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/send-request-document","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        // Other 400s are bad requests.
        let e = gerr(
            GEMINI,
            400,
            r#"{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.status, Status::BadRequest);
        // 429: the shared-quota text (no RetryInfo), and the per-model quota.
        let e = gerr(
            GEMINI,
            429,
            r#"{"error":{"code":429,"message":"Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        assert_eq!(
            (e.status, e.retry_after, e.quota),
            (Status::RateLimited, None, false)
        );
        let e = gerr(
            GEMINI,
            429,
            r#"[{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model with base model: gemini-2.5-pro. Please submit a quota increase request. https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"12s"}]}}]"#,
        );
        assert_eq!((e.status, e.retry_after), (Status::RateLimited, Some(12.0)));
        // 403: the permission or the API is missing; 401: a token that is no longer good.
        let e = gerr(
            GEMINI,
            403,
            r#"{"error":{"code":403,"message":"Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/projects/proj-1/locations/us-central1/publishers/google/models/gemini-2.5-pro' (or it may not exist).","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED","domain":"aiplatform.googleapis.com"}]}}"#,
        );
        assert_eq!(e.status, Status::Auth);
        let e = gerr(
            GEMINI,
            401,
            r#"{"error":{"code":401,"message":"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.","status":"UNAUTHENTICATED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ACCESS_TOKEN_EXPIRED","domain":"googleapis.com"}]}}"#,
        );
        assert_eq!(e.status, Status::Auth);
        let e = gerr(
            GEMINI,
            404,
            r#"{"error":{"code":404,"message":"Publisher Model `projects/proj-1/locations/europe-west4/publishers/google/models/gemini-9` not found.","status":"NOT_FOUND"}}"#,
        );
        assert_eq!(e.status, Status::BadRequest);
        let e = gerr(
            GEMINI,
            503,
            r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
        );
        assert_eq!(e.status, Status::Upstream);
        // The OpenAI-compatible endpoint answers in Google's envelope, or OpenAI's.
        let e = gerr(
            "meta/llama-3.3-70b-instruct-maas",
            429,
            r#"[{"error":{"code":429,"message":"Resource exhausted. Please try again later.","status":"RESOURCE_EXHAUSTED"}}]"#,
        );
        assert_eq!(e.status, Status::RateLimited);
        let e = gerr(
            "meta/llama-3.3-70b-instruct-maas",
            400,
            r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        assert_eq!(
            gerr(GEMINI, 502, "<html>Bad Gateway</html>").status,
            Status::Upstream
        );
    }

    #[test]
    fn claude_errors_inside_googles_envelope() {
        // Anthropic's error JSON as a string in Google's `message`.
        let e = gerr(
            CLAUDE,
            400,
            r#"{"error":{"code":400,"message":"{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"prompt is too long: 219898 tokens > 200000 maximum\"},\"request_id\":\"req_vrtx_011CQ8vPYaXLbVmdtyjxBfn1\"}","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        assert_eq!(
            e.message,
            "prompt is too long: 219898 tokens > 200000 maximum"
        );
        // Claude Code's 413 report from Vertex: "Prompt is too long".
        let e = gerr(
            CLAUDE,
            413,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"Prompt is too long"}}"#,
        );
        assert_eq!(e.status, Status::ContextOverflow);
        let e = gerr(
            CLAUDE,
            400,
            r#"{"error":{"code":400,"message":"{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"max_tokens: 128001 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-20250514\"}}","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.status, Status::BadRequest);
        let e = gerr(
            CLAUDE,
            400,
            r#"{"error":{"code":400,"message":"{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"Output blocked by content filtering policy\"}}","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.status, Status::ContentPolicy);
        // Overloaded, passed through as Anthropic's.
        let e = gerr(
            CLAUDE,
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(
            (e.status, e.message.as_str()),
            (Status::Upstream, "Overloaded")
        );
        // Google's own answers before Claude: quota, permission.
        let e = gerr(
            CLAUDE,
            429,
            r#"{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base model: anthropic-claude-sonnet-4. Please submit a quota increase request. https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai.","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        assert_eq!(e.status, Status::RateLimited);
        let e = gerr(
            CLAUDE,
            403,
            r#"{"error":{"code":403,"message":"Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514' (or it may not exist).","status":"PERMISSION_DENIED"}}"#,
        );
        assert_eq!(e.status, Status::Auth);
        // A message that merely starts with a brace is Google's.
        let e = gerr(
            CLAUDE,
            400,
            r#"{"error":{"code":400,"message":"{oops","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(
            (e.status, e.message.as_str()),
            (Status::BadRequest, "{oops")
        );
    }

    fn run(
        ep: &Endpoint,
        input: &str,
        piece: usize,
    ) -> (Vec<crate::types::ChatChunk>, Result<(), Error>) {
        let mut p = Vertex.stream_parser(ep);
        let mut out = VecDeque::new();
        let mut r = Ok(());
        for c in input.as_bytes().chunks(piece) {
            if let Err(e) = p.feed(c, &mut out) {
                r = Err(e);
                break;
            }
        }
        if r.is_ok() {
            r = p.finish(&mut out);
        }
        (out.into_iter().collect(), r)
    }

    fn assemble(chunks: &[crate::types::ChatChunk]) -> ChatResponse {
        let mut a = StreamAssembler::default();
        for c in chunks {
            a.push(c);
        }
        a.into_response()
    }

    #[test]
    fn gemini_stream_at_every_split() {
        let ep = endpoint(GEMINI);
        let input = concat!(
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hel\"}]}}],\"usageMetadata\":{\"promptTokenCount\":7,\"trafficType\":\"ON_DEMAND\"},\"modelVersion\":\"gemini-2.5-pro\",\"responseId\":\"r1\"}\r\n\r\n",
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Paris\"}}}]}}],\"modelVersion\":\"gemini-2.5-pro\",\"responseId\":\"r1\"}\r\n\r\n",
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"lo\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":7,\"candidatesTokenCount\":3,\"totalTokenCount\":10,\"trafficType\":\"ON_DEMAND\"},\"modelVersion\":\"gemini-2.5-pro\",\"responseId\":\"r1\"}\r\n\r\n",
        );
        for piece in 1..=input.len() {
            let (chunks, r) = run(&ep, input, piece);
            r.unwrap_or_else(|e| panic!("split {piece}: {e}"));
            let a = assemble(&chunks);
            let m = &a.choices[0].message;
            assert_eq!(m.content.as_deref(), Some("Hello"), "split {piece}");
            let call = &m.tool_calls.as_ref().unwrap()[0];
            assert_eq!(call.function.arguments, r#"{"city":"Paris"}"#);
            assert_eq!(a.choices[0].finish_reason.as_deref(), Some("tool_calls"));
            let u = a.usage.unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens), (7, 3));
        }
        // Cut before the finish reason; an error event mid-stream.
        let (_, r) = run(&ep, &input[..input.len() / 2], 7);
        assert_eq!(r.unwrap_err().status, Status::Upstream);
        let err = "data: {\"error\":{\"code\":429,\"message\":\"Resource exhausted. Please try again later.\",\"status\":\"RESOURCE_EXHAUSTED\"}}\n\n";
        let (_, r) = run(&ep, err, 5);
        assert_eq!(r.unwrap_err().status, Status::RateLimited);
    }

    #[test]
    fn claude_stream_at_every_split() {
        let ep = endpoint(CLAUDE);
        let input = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_vrtx_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-20250514\",\"content\":[],\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me check.\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_vrtx_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":20}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        for piece in 1..=input.len() {
            let (chunks, r) = run(&ep, input, piece);
            r.unwrap_or_else(|e| panic!("split {piece}: {e}"));
            let a = assemble(&chunks);
            let m = &a.choices[0].message;
            assert_eq!(m.content.as_deref(), Some("Let me check."));
            let call = &m.tool_calls.as_ref().unwrap()[0];
            assert_eq!(
                (call.id.as_str(), call.function.name.as_str()),
                ("toolu_vrtx_01", "get_weather")
            );
            assert_eq!(call.function.arguments, r#"{"city": "Paris"}"#);
            assert_eq!(a.choices[0].finish_reason.as_deref(), Some("tool_calls"));
            let u = a.usage.unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens), (12, 20));
        }
        let (_, r) = run(&ep, &input[..input.len() - 40], 9);
        assert_eq!(r.unwrap_err().status, Status::Upstream);
        let overloaded = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let (_, r) = run(&ep, overloaded, 4);
        let e = r.unwrap_err();
        assert_eq!((e.status, e.http_status), (Status::Upstream, Some(529)));
    }

    #[test]
    fn openapi_stream() {
        let ep = endpoint("meta/llama-3.3-70b-instruct-maas");
        let input = concat!(
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"meta/llama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"meta/llama\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let (chunks, r) = run(&ep, input, 3);
        r.unwrap();
        assert_eq!(
            assemble(&chunks).choices[0].message.content.as_deref(),
            Some("Hi")
        );
    }
}
