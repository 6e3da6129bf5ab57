//! The config JSON of `llmr_init` → deployments and router settings.
//!
//! Like the seed's `_config_to_deployment`, an entry that cannot be used is skipped with a
//! warning naming the entry and the reason; only a config with no usable entry is an error.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::errors::Error;
use crate::providers::registry::{self, Family, ProviderSpec};
use crate::secret::Secret;

/// One deployment as the config describes it, checked and resolved. Its `Debug` form shows
/// the names of `litellm_params`, never their values (keys and tokens may be among them).
#[derive(Clone)]
pub struct DeploymentConfig {
    pub id: Arc<str>,
    /// Position in `global_llm_configs`, for messages.
    pub index: usize,
    pub spec: &'static ProviderSpec,
    /// The model-string prefix: the seed's LiteLLM prefix, or `custom_provider`.
    pub prefix: Arc<str>,
    /// The model name sent upstream.
    pub model: String,
    pub api_key: Option<Secret>,
    pub api_base: Option<String>,
    /// `litellm_params` as given (the reserved keys are read by the deployment, the rest is sent).
    pub params: Map<String, Value>,
    pub base_model: Option<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub weight: Option<f64>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub timeout: Option<Duration>,
    /// A stream's `timeout` (to its head, and of each idle gap); `timeout` when not given.
    pub stream_timeout: Option<Duration>,
    pub cooldown_time: Option<Duration>,
}

/// `litellm_params` that hold credentials besides `api_key`: kept out of every output too.
const SECRET_PARAMS: &[&str] = &[
    "aws_secret_access_key",
    "aws_session_token",
    "aws_bearer_token",
    "azure_ad_token",
];

/// Environment variables a provider may read credentials from when the config names none.
const SECRET_ENV: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
];

impl DeploymentConfig {
    /// Every credential this deployment may send: `api_key`, the credential params (resolved
    /// from `os.environ/NAME`), and, for providers that fall back to them, the standard
    /// credential variables. The router scrubs them from every message.
    pub fn secrets(&self) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = self.api_key.iter().map(Secret::shared).collect();
        for k in SECRET_PARAMS {
            if let Some(Value::String(v)) = self.params.get(*k) {
                if let Ok(Some(s)) = resolve_secret(k, v) {
                    out.push(s.shared());
                }
            }
        }
        if self.spec.family == Family::Bedrock {
            out.extend(
                SECRET_ENV
                    .iter()
                    .filter_map(|name| std::env::var(name).ok())
                    .filter(|v| !v.is_empty())
                    .map(|v| Arc::from(v.as_str())),
            );
        }
        out
    }
}

impl fmt::Debug for DeploymentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeploymentConfig")
            .field("id", &self.id)
            .field("index", &self.index)
            .field("provider", &self.spec.key)
            .field("prefix", &self.prefix)
            .field("model", &self.model)
            .field("api_key", &self.api_key)
            .field("api_base", &self.api_base)
            .field("params", &self.params.keys().collect::<Vec<_>>())
            .field("base_model", &self.base_model)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("weight", &self.weight)
            .field("max_input_tokens", &self.max_input_tokens)
            .field("max_output_tokens", &self.max_output_tokens)
            .field("timeout", &self.timeout)
            .field("cooldown_time", &self.cooldown_time)
            .finish()
    }
}

impl DeploymentConfig {
    /// `prefix/model`, the seed's model string.
    pub fn model_string(&self) -> String {
        format!("{}/{}", self.prefix, self.model)
    }
}

/// `litellm_params` keys that configure the deployment itself and are never sent as request fields.
pub const RESERVED_PARAMS: &[&str] = &[
    "model",
    "api_key",
    "api_base",
    "base_url",
    "api_version",
    "base_model",
    "timeout",
    "stream_timeout",
    "cooldown_time",
    "max_retries",
    "weight",
    "rpm",
    "tpm",
    "max_input_tokens",
    "max_output_tokens",
    "input_cost_per_token",
    "output_cost_per_token",
    "custom_llm_provider",
    "drop_params",
    "extra_headers",
    "organization",
    "account_id",
    "azure_ad_token",
    "region_name",
    "aws_region_name",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "vertex_project",
    "vertex_location",
    "vertex_credentials",
    "model_info",
    "tags",
    "mock_response",
    "mock_error",
    "mock_tool_calls",
    "mock_delay_ms",
    "mock_chunk_delay_ms",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoutingStrategy {
    UsageBased,
    SimpleShuffle,
    LeastBusy,
    LatencyBased,
}

impl RoutingStrategy {
    pub fn name(self) -> &'static str {
        match self {
            RoutingStrategy::UsageBased => "usage-based-routing",
            RoutingStrategy::SimpleShuffle => "simple-shuffle",
            RoutingStrategy::LeastBusy => "least-busy",
            RoutingStrategy::LatencyBased => "latency-based-routing",
        }
    }

    fn parse(s: &str) -> Option<RoutingStrategy> {
        Some(match s {
            "usage-based-routing" | "usage-based-routing-v2" => RoutingStrategy::UsageBased,
            "simple-shuffle" => RoutingStrategy::SimpleShuffle,
            "least-busy" => RoutingStrategy::LeastBusy,
            "latency-based-routing" => RoutingStrategy::LatencyBased,
            _ => return None,
        })
    }
}

/// `router_settings`, with the seed's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterSettings {
    pub routing_strategy: RoutingStrategy,
    pub num_retries: u32,
    pub allowed_fails: u32,
    pub cooldown_time: Duration,
    pub retry_after: Duration,
    pub timeout: Duration,
    /// When every deployment of a group cools down, how long a request may wait for the first
    /// to come back instead of failing at once (0: it fails at once).
    pub max_wait_when_cooling: Duration,
    /// Shares rpm/tpm windows, cooldowns, failures, in-flight counts and latency with every
    /// process on the same Redis (see `router::shared`); `None`: state stays in process. A
    /// secret: it may hold a password.
    pub redis_url: Option<Secret>,
    /// The namespace of every Redis key llmr writes (`redis_prefix`, default `llmr`).
    pub redis_prefix: String,
    /// A reservation waiting longer than this for Redis is done locally (`redis_timeout`,
    /// seconds, default 0.05).
    pub redis_timeout: Duration,
    /// Lets trace-level logs carry the messages and answers (off by default: logs never hold
    /// content otherwise).
    pub log_content: bool,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            routing_strategy: RoutingStrategy::UsageBased,
            num_retries: 3,
            allowed_fails: 3,
            cooldown_time: Duration::from_secs(60),
            retry_after: Duration::from_secs(5),
            timeout: Duration::from_secs(600),
            max_wait_when_cooling: Duration::ZERO,
            redis_url: None,
            redis_prefix: "llmr".into(),
            redis_timeout: Duration::from_millis(50),
            log_content: false,
        }
    }
}

impl RouterSettings {
    /// The settings in force, as JSON (for `llmr_router_info`); a Redis password is masked.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "routing_strategy": self.routing_strategy.name(),
            "num_retries": self.num_retries,
            "allowed_fails": self.allowed_fails,
            "cooldown_time": self.cooldown_time.as_secs_f64(),
            "retry_after": self.retry_after.as_secs_f64(),
            "timeout": self.timeout.as_secs_f64(),
            "max_wait_when_cooling": self.max_wait_when_cooling.as_secs_f64(),
            "redis_url": self.redis_url.as_ref().map(|u| mask_url_password(u.expose())),
            "redis_prefix": self.redis_prefix,
            "redis_timeout": self.redis_timeout.as_secs_f64(),
            "log_content": self.log_content,
        })
    }
}

fn mask_url_password(url: &str) -> String {
    // redis://user:pass@host → redis://user:***@host
    if let (Some(scheme_end), Some(at)) = (url.find("://"), url.rfind('@')) {
        let creds = &url[scheme_end + 3..at];
        if let Some(colon) = creds.find(':') {
            return format!(
                "{}{}:***{}",
                &url[..scheme_end + 3],
                &creds[..colon],
                &url[at..]
            );
        }
    }
    url.to_owned()
}

/// A parsed config: the usable deployments, the settings, and one warning per skipped entry.
#[derive(Debug)]
pub struct Config {
    pub deployments: Vec<DeploymentConfig>,
    pub settings: RouterSettings,
    pub warnings: Vec<String>,
}

/// The environment variable holding the Cloudflare account id when the config names none.
pub const CLOUDFLARE_ACCOUNT_ENV: &str = "CLOUDFLARE_ACCOUNT_ID";

/// Largest `cooldown_time` / `timeout` accepted, in seconds: beyond a day it is a typo.
const MAX_SECONDS: f64 = 86_400.0;

/// Largest `weight` accepted: shares are summed and compared as floating point.
const MAX_WEIGHT: f64 = 1e9;

pub fn parse(json: &str) -> Result<Config, Error> {
    let root: Value =
        serde_json::from_str(json).map_err(|e| Error::config(format!("config JSON: {e}")))?;
    let Value::Object(root) = root else {
        return Err(Error::config("config JSON: must be an object"));
    };
    let settings = match root.get("router_settings") {
        None | Some(Value::Null) => RouterSettings::default(),
        Some(Value::Object(s)) => parse_settings(s)?,
        Some(_) => return Err(Error::config("config: `router_settings` must be an object")),
    };
    let entries = match root.get("global_llm_configs") {
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(Error::config(
                "config: `global_llm_configs` must be an array",
            ))
        }
        None => return Err(Error::config("config: `global_llm_configs` is missing")),
    };
    let mut deployments: Vec<DeploymentConfig> = Vec::with_capacity(entries.len());
    let mut warnings = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match parse_entry(i, entry) {
            Ok(d) => {
                if deployments.iter().any(|x| x.id == d.id) {
                    warnings.push(format!(
                        "global_llm_configs[{i}] (id {}): skipped: duplicate id",
                        d.id
                    ));
                } else {
                    deployments.push(d);
                }
            }
            Err(why) => {
                let id = entry
                    .get("id")
                    .and_then(id_string)
                    .map(|s| {
                        format!(
                            " (id {})",
                            crate::errors::excerpt(&s, crate::errors::MAX_QUOTED)
                        )
                    })
                    .unwrap_or_default();
                warnings.push(format!("global_llm_configs[{i}]{id}: skipped: {why}"));
            }
        }
    }
    if deployments.is_empty() {
        let mut msg = String::from("config: no usable deployment in `global_llm_configs`");
        if !warnings.is_empty() {
            msg.push_str(": ");
            msg.push_str(&warnings.join("; "));
        }
        return Err(Error::config(msg));
    }
    Ok(Config {
        deployments,
        settings,
        warnings,
    })
}

fn parse_settings(s: &Map<String, Value>) -> Result<RouterSettings, Error> {
    let mut out = RouterSettings::default();
    let bad = |k: &str, want: &str| Error::config(format!("config: `router_settings.{k}` {want}"));
    for (k, v) in s {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "routing_strategy" => {
                let name = v.as_str().ok_or_else(|| bad(k, "must be a string"))?;
                out.routing_strategy = RoutingStrategy::parse(name).ok_or_else(|| {
                    bad(k, "must be one of usage-based-routing, simple-shuffle, least-busy, latency-based-routing")
                })?;
            }
            "num_retries" => {
                out.num_retries = whole(v, 0, 100)
                    .ok_or_else(|| bad(k, "must be a whole number from 0 to 100"))?
            }
            "allowed_fails" => {
                out.allowed_fails = whole(v, 0, 10_000)
                    .ok_or_else(|| bad(k, "must be a whole number from 0 to 10000"))?
            }
            "cooldown_time" => {
                out.cooldown_time = seconds(v, true)
                    .ok_or_else(|| bad(k, "must be a number of seconds from 0 to 86400"))?
            }
            "retry_after" => {
                out.retry_after = seconds(v, true)
                    .ok_or_else(|| bad(k, "must be a number of seconds from 0 to 86400"))?
            }
            "timeout" => {
                out.timeout = seconds(v, false)
                    .ok_or_else(|| bad(k, "must be a positive number of seconds up to 86400"))?
            }
            "max_wait_when_cooling" => {
                out.max_wait_when_cooling = seconds(v, true)
                    .ok_or_else(|| bad(k, "must be a number of seconds from 0 to 86400"))?
            }
            "redis_url" => {
                let raw = v.as_str().ok_or_else(|| bad(k, "must be a string"))?;
                let url = resolve_secret("router_settings.redis_url", raw)
                    .map_err(|e| Error::config(format!("config: {e}")))?;
                if let Some(u) = &url {
                    // The URL is not quoted back: it may hold a password.
                    if !crate::router::shared::valid_url(u.expose()) {
                        return Err(bad(
                            k,
                            "must be a redis://[user:pass@]host:port/db or rediss:// URL",
                        ));
                    }
                }
                out.redis_url = url;
            }
            "redis_prefix" => {
                let p = v.as_str().ok_or_else(|| bad(k, "must be a string"))?;
                if p.is_empty() || p.len() > 100 || p.contains(['{', '}']) {
                    return Err(bad(k, "must be 1 to 100 characters without `{` or `}`"));
                }
                out.redis_prefix = p.to_owned();
            }
            "redis_timeout" => {
                out.redis_timeout = seconds(v, false)
                    .filter(|d| d.as_secs_f64() <= 10.0)
                    .ok_or_else(|| bad(k, "must be a positive number of seconds up to 10"))?
            }
            "log_content" => {
                out.log_content = v.as_bool().ok_or_else(|| bad(k, "must be true or false"))?
            }
            // Unknown settings are LiteLLM's that llmr does not need; ignoring them keeps configs portable.
            _ => {}
        }
    }
    Ok(out)
}

fn whole(v: &Value, min: u64, max: u64) -> Option<u32> {
    let n = v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
            .map(|f| f as u64)
    })?;
    (min..=max).contains(&n).then_some(n as u32)
}

fn seconds(v: &Value, zero_ok: bool) -> Option<Duration> {
    let f = v.as_f64()?;
    let ok = f.is_finite() && f <= MAX_SECONDS && (f > 0.0 || (zero_ok && f == 0.0));
    ok.then(|| Duration::from_secs_f64(f))
}

fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads `os.environ/NAME` keys from the environment; other strings are the key itself.
pub(crate) fn resolve_secret(field: &str, v: &str) -> Result<Option<Secret>, String> {
    if let Some(name) = v.strip_prefix("os.environ/") {
        return match std::env::var(name) {
            Ok(val) if !val.is_empty() => Ok(Some(Secret::new(&val))),
            _ => Err(format!(
                "`{field}` names the environment variable {}, which is not set",
                crate::errors::excerpt(name, crate::errors::MAX_QUOTED)
            )),
        };
    }
    Ok((!v.is_empty()).then(|| Secret::new(v)))
}

fn opt_str<'a>(o: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok((!s.is_empty()).then_some(s.as_str())),
        Some(_) => Err(format!("`{k}` must be a string")),
    }
}

fn opt_positive(o: &Map<String, Value>, k: &str) -> Result<Option<f64>, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(f) if f.is_finite() && f > 0.0 => Ok(Some(f)),
            _ => Err(format!("`{k}` must be a positive number")),
        },
    }
}

/// Ollama reads no more of a prompt than `num_ctx` (the rest is cut or refused), so a
/// configured `num_ctx` is the deployment's real window, whatever the model could take.
fn ollama_window(spec: &ProviderSpec, params: &Map<String, Value>) -> Option<u64> {
    if spec.family != Family::Ollama {
        return None;
    }
    params
        .get("num_ctx")
        .or_else(|| params.get("options")?.get("num_ctx"))
        .and_then(Value::as_u64)
        .filter(|&n| n > 0)
}

fn parse_entry(index: usize, entry: &Value) -> Result<DeploymentConfig, String> {
    let Value::Object(o) = entry else {
        return Err("not an object".into());
    };
    let empty = Map::new();
    let params = match o.get("litellm_params") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return Err("`litellm_params` must be an object".into()),
    };
    // A field may sit at the top level or in litellm_params; litellm_params wins (the seed merges it last).
    let field = |k: &str| -> Result<Option<f64>, String> {
        Ok(opt_positive(params, k)?.or(opt_positive(o, k)?))
    };
    let model = opt_str(o, "model_name")?
        .ok_or("no `model_name`")?
        .to_owned();
    let provider_name = opt_str(o, "provider")?;
    let custom_provider = opt_str(o, "custom_provider")?;
    let api_base = opt_str(params, "api_base")?
        .or(opt_str(o, "api_base")?)
        .map(|s| s.trim_end_matches('/').to_owned());

    let (spec, prefix): (&'static ProviderSpec, Arc<str>) = match (custom_provider, provider_name) {
        (Some(custom), _) => match registry::by_prefix(custom) {
            Some(spec) => (spec, Arc::from(custom)),
            // An unknown prefix is an OpenAI-compatible server at api_base, as LiteLLM's `custom`.
            None => (registry::by_key("CUSTOM").expect("CUSTOM is in the table"), Arc::from(custom)),
        },
        (None, Some(name)) => match registry::by_key(name) {
            Some(spec) => (spec, Arc::from(spec.prefix)),
            None if api_base.is_some() => (
                registry::by_key("CUSTOM").expect("CUSTOM is in the table"),
                Arc::from(name.to_ascii_lowercase()),
            ),
            None => {
                return Err(format!(
                    "unknown provider `{}` (and no `api_base` to reach it as an OpenAI-compatible server)",
                    crate::errors::excerpt(name, crate::errors::MAX_QUOTED)
                ))
            }
        },
        (None, None) => return Err("no `provider`".into()),
    };
    if spec.default_base.is_none() && spec.family != Family::Mock && api_base.is_none() {
        // Cloudflare's URL is built from the account id (see `openai_hosts`).
        let account = opt_str(params, "account_id")?.is_some()
            || std::env::var_os(CLOUDFLARE_ACCOUNT_ENV).is_some_and(|v| !v.is_empty());
        if !(spec.key == "CLOUDFLARE" && account) {
            return Err(spec.note.to_owned());
        }
    }
    let key_field = if params.contains_key("api_key") {
        "litellm_params.api_key"
    } else {
        "api_key"
    };
    let api_key = match opt_str(params, "api_key")?.or(opt_str(o, "api_key")?) {
        Some(k) => resolve_secret(key_field, k)?,
        None => None,
    };
    // Azure takes an Entra ID token in place of a key.
    let azure_token = spec.family == Family::Azure && opt_str(params, "azure_ad_token")?.is_some();
    if api_key.is_none() && spec.needs_key && !azure_token {
        return Err(format!("no `api_key` (provider {} needs one)", spec.key));
    }
    let id = match o.get("id") {
        None | Some(Value::Null) => Arc::from(index.to_string()),
        Some(v) => Arc::from(id_string(v).ok_or("`id` must be a string or a number")?),
    };
    let whole_field = |k: &str| -> Result<Option<u64>, String> {
        match field(k)? {
            Some(f) if f.fract() == 0.0 => Ok(Some(f as u64)),
            Some(_) => Err(format!("`{k}` must be a whole number")),
            None => Ok(None),
        }
    };
    let secs = |k: &str| -> Result<Option<Duration>, String> {
        match field(k)? {
            Some(f) if f <= MAX_SECONDS => Ok(Some(Duration::from_secs_f64(f))),
            Some(_) => Err(format!("`{k}` must be at most 86400 seconds")),
            None => Ok(None),
        }
    };
    let weight = match field("weight")? {
        Some(w) if w > MAX_WEIGHT => {
            return Err(format!(
                "`weight` must be a positive number up to {MAX_WEIGHT}"
            ))
        }
        w => w,
    };
    // Prices are read by the deployment; a wrong one would go unnoticed in every cost figure.
    for k in ["input_cost_per_token", "output_cost_per_token"] {
        match params.get(k) {
            None | Some(Value::Null) => {}
            Some(v) if v.as_f64().is_some_and(|f| f.is_finite() && f >= 0.0) => {}
            Some(_) => return Err(format!("`{k}` must be a number of dollars, 0 or more")),
        }
    }
    Ok(DeploymentConfig {
        id,
        index,
        spec,
        prefix,
        model,
        api_key,
        api_base,
        base_model: opt_str(params, "base_model")?.map(str::to_owned),
        rpm: whole_field("rpm")?,
        tpm: whole_field("tpm")?,
        weight,
        max_input_tokens: whole_field("max_input_tokens")?.or_else(|| ollama_window(spec, params)),
        max_output_tokens: whole_field("max_output_tokens")?,
        timeout: secs("timeout")?,
        stream_timeout: secs("stream_timeout")?,
        cooldown_time: secs("cooldown_time")?,
        params: params.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_of_a_deployment_is_a_secret() {
        std::env::set_var("LLMR_TEST_SESSION_TOKEN_X", "FwoGZXIv-session-secret");
        let c = parse(
            r#"{"global_llm_configs":[
                {"id":1,"provider":"BEDROCK","model_name":"anthropic.claude-3-haiku-20240307-v1:0",
                 "litellm_params":{"aws_region_name":"us-east-1","aws_access_key_id":"AKIDEXAMPLE",
                    "aws_secret_access_key":"wJalrXUtnFEMI-secret",
                    "aws_session_token":"os.environ/LLMR_TEST_SESSION_TOKEN_X"}},
                {"id":2,"provider":"AZURE_OPENAI","model_name":"gpt-4o","api_base":"https://r.openai.azure.com",
                 "litellm_params":{"azure_ad_token":"eyJ-entra-secret"}},
                {"id":3,"provider":"OPENAI","model_name":"gpt-4o","api_key":"sk-plain-secret"}]}"#,
        )
        .unwrap();
        let all: Vec<String> = c
            .deployments
            .iter()
            .flat_map(|d| d.secrets())
            .map(|s| s.to_string())
            .collect();
        for want in [
            "wJalrXUtnFEMI-secret",
            "FwoGZXIv-session-secret",
            "eyJ-entra-secret",
            "sk-plain-secret",
        ] {
            assert!(all.iter().any(|s| s == want), "{want} missing from {all:?}");
        }
        assert!(
            !all.iter().any(|s| s == "AKIDEXAMPLE"),
            "a key id is not a secret"
        );
    }

    fn cfg(entries: &str) -> Result<Config, Error> {
        parse(&format!(r#"{{"global_llm_configs": {entries}}}"#))
    }

    #[test]
    fn defaults_are_the_seeds() {
        let s = RouterSettings::default();
        assert_eq!(s.routing_strategy, RoutingStrategy::UsageBased);
        assert_eq!((s.num_retries, s.allowed_fails), (3, 3));
        assert_eq!(s.cooldown_time, Duration::from_secs(60));
        assert_eq!(s.retry_after, Duration::from_secs(5));
        assert_eq!(s.timeout, Duration::from_secs(600));
        assert_eq!(s.max_wait_when_cooling, Duration::ZERO);
    }

    #[test]
    fn a_full_entry() {
        let c = cfg(
            r#"[{"id": 7, "provider": "openai", "model_name": "gpt-4o", "api_key": "sk-1",
            "litellm_params": {"temperature": 0.2, "base_model": "gpt-4o-2024-08-06", "timeout": 30,
                "stream_timeout": 2.5},
            "rpm": 500, "tpm": 100000}]"#,
        )
        .unwrap();
        let d = &c.deployments[0];
        assert_eq!(&*d.id, "7");
        assert_eq!(d.model_string(), "openai/gpt-4o");
        assert_eq!(d.rpm, Some(500));
        assert_eq!(d.tpm, Some(100_000));
        assert_eq!(d.timeout, Some(Duration::from_secs(30)));
        assert_eq!(d.stream_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(d.base_model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(d.params["temperature"], 0.2);
    }

    #[test]
    fn custom_provider_replaces_the_prefix() {
        let c = cfg(
            r#"[{"provider": "OPENAI", "custom_provider": "my-vllm", "model_name": "llama",
            "api_key": "k", "api_base": "http://127.0.0.1:9/v1/"}]"#,
        )
        .unwrap();
        let d = &c.deployments[0];
        assert_eq!(d.model_string(), "my-vllm/llama");
        assert_eq!(d.api_base.as_deref(), Some("http://127.0.0.1:9/v1"));
        let c =
            cfg(r#"[{"custom_provider": "anthropic", "model_name": "claude", "api_key": "k"}]"#)
                .unwrap();
        assert_eq!(c.deployments[0].spec.key, "ANTHROPIC");
    }

    #[test]
    fn keys_from_the_environment() {
        std::env::set_var("LLMR_TEST_CONFIG_KEY", "sk-from-env");
        let c = cfg(r#"[{"provider": "GROQ", "model_name": "m", "api_key": "os.environ/LLMR_TEST_CONFIG_KEY"}]"#).unwrap();
        assert_eq!(
            c.deployments[0].api_key.as_ref().unwrap().expose(),
            "sk-from-env"
        );
        let e = cfg(r#"[{"provider": "GROQ", "model_name": "m", "api_key": "os.environ/LLMR_TEST_UNSET_VAR"}]"#).unwrap_err();
        assert!(e.message.contains("LLMR_TEST_UNSET_VAR"), "{}", e.message);
    }

    #[test]
    fn unusable_entries_are_skipped_with_a_reason() {
        let c = cfg(r#"[
            {"provider": "OPENAI", "model_name": "gpt-4o"},
            {"provider": "OPENAI", "api_key": "k"},
            {"provider": "NOPE", "model_name": "x", "api_key": "k"},
            {"provider": "AZURE_OPENAI", "model_name": "x", "api_key": "k"},
            {"provider": "OPENAI", "model_name": "x", "api_key": "k", "rpm": "many"},
            "not an object",
            {"provider": "MOCK", "model_name": "mock-1"},
            {"id": "dup", "provider": "MOCK", "model_name": "a"},
            {"id": "dup", "provider": "MOCK", "model_name": "b"}
        ]"#)
        .unwrap();
        assert_eq!(c.deployments.len(), 2, "{:?}", c.warnings);
        let w = c.warnings.join("\n");
        assert!(w.contains("[0]") && w.contains("no `api_key`"), "{w}");
        assert!(w.contains("[1]") && w.contains("no `model_name`"), "{w}");
        assert!(w.contains("unknown provider `NOPE`"), "{w}");
        assert!(w.contains("AZURE_OPENAI needs `api_base`"), "{w}");
        assert!(w.contains("`rpm` must be a positive number"), "{w}");
        assert!(w.contains("[5]: skipped: not an object"), "{w}");
        assert!(w.contains("(id dup): skipped: duplicate id"), "{w}");
    }

    #[test]
    fn nothing_usable_is_a_precise_config_error() {
        let e = cfg(r#"[{"provider": "OPENAI", "model_name": "gpt-4o"}]"#).unwrap_err();
        assert_eq!(e.status, crate::errors::Status::Config);
        assert!(
            e.message.contains("no usable deployment") && e.message.contains("no `api_key`"),
            "{}",
            e.message
        );
        assert!(parse("{").unwrap_err().message.contains("config JSON"));
        assert!(parse("[]")
            .unwrap_err()
            .message
            .contains("must be an object"));
        assert!(parse("{}").unwrap_err().message.contains("missing"));
        assert!(cfg("[]")
            .unwrap_err()
            .message
            .contains("no usable deployment"));
    }

    #[test]
    fn settings_are_checked() {
        let ok = parse(r#"{"global_llm_configs": [{"provider":"MOCK","model_name":"m"}],
            "router_settings": {"routing_strategy": "least-busy", "num_retries": 1, "cooldown_time": 0.5, "timeout": 2, "unknown": 1}}"#)
        .unwrap();
        assert_eq!(ok.settings.routing_strategy, RoutingStrategy::LeastBusy);
        assert_eq!(ok.settings.cooldown_time, Duration::from_millis(500));
        let waits = parse(
            r#"{"global_llm_configs": [{"provider":"MOCK","model_name":"m"}],
            "router_settings": {"max_wait_when_cooling": 2.5}}"#,
        )
        .unwrap();
        assert_eq!(
            waits.settings.max_wait_when_cooling,
            Duration::from_millis(2500)
        );
        for bad in [
            r#"{"routing_strategy": "fastest"}"#,
            r#"{"num_retries": -1}"#,
            r#"{"num_retries": 1.5}"#,
            r#"{"timeout": 0}"#,
            r#"{"cooldown_time": 1e12}"#,
            r#"{"allowed_fails": "3"}"#,
            r#"{"max_wait_when_cooling": -1}"#,
            r#"{"max_wait_when_cooling": "NaN"}"#,
            r#"{"max_wait_when_cooling": 1e9}"#,
        ] {
            let e = parse(&format!(r#"{{"global_llm_configs": [{{"provider":"MOCK","model_name":"m"}}], "router_settings": {bad}}}"#)).unwrap_err();
            assert_eq!(e.status, crate::errors::Status::Config, "{bad}");
            assert!(e.message.contains("router_settings."), "{}", e.message);
        }
    }

    #[test]
    fn redis_password_is_masked() {
        assert_eq!(
            mask_url_password("redis://u:secret@h:6379/0"),
            "redis://u:***@h:6379/0"
        );
        assert_eq!(mask_url_password("redis://h:6379"), "redis://h:6379");
    }
    #[test]
    fn an_ollama_num_ctx_is_the_window() {
        let c = cfg(r#"[{"provider": "OLLAMA", "model_name": "llama3.1:8b", "litellm_params": {"num_ctx": 8192}},
            {"provider": "OLLAMA", "model_name": "qwen3", "litellm_params": {"options": {"num_ctx": 4096}}},
            {"provider": "OLLAMA", "model_name": "m", "max_input_tokens": 1000, "litellm_params": {"num_ctx": 8192}},
            {"provider": "GROQ", "model_name": "m", "api_key": "k", "litellm_params": {"num_ctx": 8192}}]"#)
        .unwrap();
        let w: Vec<_> = c.deployments.iter().map(|d| d.max_input_tokens).collect();
        assert_eq!(w, [Some(8192), Some(4096), Some(1000), None]);
    }
}
