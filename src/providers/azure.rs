//! Where an Azure OpenAI request goes and how it authenticates (PROVIDERS.md §5). The body,
//! answers and errors are OpenAI's ([`super::openai`]).
//!
//! URL shapes, from `api_base` and `litellm_params.api_version`:
//! * classic: `{resource}/openai/deployments/{deployment}/chat/completions?api-version=V`, the
//!   deployment being the config's `model_name` (default version [`DEFAULT_API_VERSION`]);
//!   an `api_base` that already names the deployment (`…/openai/deployments/{name}`) is used
//!   as given;
//! * the v1 API (GA since Aug 2025): `{resource}/openai/v1/chat/completions`, the deployment
//!   in the body's `model`, when `api_version` is `"v1"`, `"latest"` or `"preview"` (sent as
//!   `?api-version=preview`), or when `api_base` already ends in `/openai/v1`.
//!
//! Auth: `api-key: <key>`; an Entra ID token (`litellm_params.azure_ad_token`) goes as
//! `Authorization: Bearer` instead.

use reqwest::header::{HeaderMap, AUTHORIZATION};
use serde_json::Value;

use super::secret_header;
use crate::config::{resolve_secret, DeploymentConfig};

/// Azure's GA data-plane version, used when the config names none.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// The chat-completions URL of an Azure deployment.
pub fn chat_url(d: &DeploymentConfig) -> Result<String, String> {
    let base = d
        .api_base
        .as_deref()
        .ok_or_else(|| d.spec.note.to_owned())?
        .trim_end_matches('/');
    let base = base.strip_suffix("/chat/completions").unwrap_or(base);
    let version = match d.params.get("api_version") {
        None | Some(Value::Null) => DEFAULT_API_VERSION,
        Some(Value::String(v)) if !v.trim().is_empty() => v.trim(),
        Some(_) => return Err("`litellm_params.api_version` must be a non-empty string".into()),
    };
    if version.contains(['&', '#', ' ', '/', '?']) {
        return Err(format!("`api_version` {version:?} is not a version"));
    }
    let v1 = matches!(version, "v1" | "latest" | "preview");
    if let Some(resource) = base.strip_suffix("/openai/v1") {
        return Ok(v1_url(resource, version));
    }
    if v1 {
        return Ok(v1_url(
            base.strip_suffix("/openai").unwrap_or(base),
            version,
        ));
    }
    let deployment_url = if base.contains("/openai/deployments/") {
        base.to_owned()
    } else {
        let resource = base.strip_suffix("/openai").unwrap_or(base);
        format!("{resource}/openai/deployments/{}", d.model)
    };
    Ok(format!(
        "{deployment_url}/chat/completions?api-version={version}"
    ))
}

fn v1_url(resource: &str, version: &str) -> String {
    let query = if version == "preview" {
        "?api-version=preview"
    } else {
        ""
    };
    format!("{resource}/openai/v1/chat/completions{query}")
}

/// `api-key`, or the Entra ID bearer token.
pub fn auth_headers(d: &DeploymentConfig, headers: &mut HeaderMap) -> Result<(), String> {
    if let Some(token) = ad_token(d)? {
        headers.insert(
            AUTHORIZATION,
            secret_header(&format!("Bearer {}", token.expose()))?,
        );
    } else if let Some(k) = &d.api_key {
        headers.insert("api-key", secret_header(k.expose())?);
    }
    Ok(())
}

/// `litellm_params.azure_ad_token` (a token, or `os.environ/NAME`).
pub fn ad_token(d: &DeploymentConfig) -> Result<Option<crate::secret::Secret>, String> {
    match d.params.get("azure_ad_token") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => resolve_secret("litellm_params.azure_ad_token", t),
        Some(_) => Err("`litellm_params.azure_ad_token` must be a string".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn deployment(base: &str, params: &str) -> DeploymentConfig {
        let c = config::parse(&format!(
            r#"{{"global_llm_configs":[{{"provider":"AZURE_OPENAI","model_name":"gpt4o-prod","api_key":"azure-key-123",
               "api_base":"{base}","litellm_params":{{{params}}}}}]}}"#
        ))
        .unwrap();
        c.deployments.into_iter().next().unwrap()
    }

    fn url(base: &str, params: &str) -> String {
        chat_url(&deployment(base, params)).unwrap()
    }

    #[test]
    fn url_shapes() {
        let r = "https://res.openai.azure.com";
        assert_eq!(
            url(r, ""),
            "https://res.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            url(&format!("{r}/"), r#""api_version":"2025-04-01-preview""#),
            "https://res.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-04-01-preview"
        );
        assert_eq!(
            url(&format!("{r}/openai/deployments/other"), ""),
            "https://res.openai.azure.com/openai/deployments/other/chat/completions?api-version=2024-10-21",
            "a base naming its deployment is used as given"
        );
        assert_eq!(
            url(&format!("{r}/openai/deployments/other/chat/completions"), ""),
            "https://res.openai.azure.com/openai/deployments/other/chat/completions?api-version=2024-10-21"
        );
        for v in ["v1", "latest"] {
            assert_eq!(
                url(r, &format!(r#""api_version":"{v}""#)),
                "https://res.openai.azure.com/openai/v1/chat/completions"
            );
        }
        assert_eq!(
            url(r, r#""api_version":"preview""#),
            "https://res.openai.azure.com/openai/v1/chat/completions?api-version=preview"
        );
        assert_eq!(
            url(&format!("{r}/openai/v1/"), ""),
            "https://res.openai.azure.com/openai/v1/chat/completions",
            "a v1 base needs no version"
        );
        let e = chat_url(&deployment(r, r#""api_version":"x&y=1""#)).unwrap_err();
        assert!(e.contains("not a version"), "{e}");
    }

    #[test]
    fn api_key_or_entra_token() {
        let mut h = HeaderMap::new();
        auth_headers(&deployment("https://r", ""), &mut h).unwrap();
        assert_eq!(h["api-key"], "azure-key-123");
        assert!(h["api-key"].is_sensitive());
        assert!(h.get(AUTHORIZATION).is_none(), "Azure keys are not Bearer");

        let mut h = HeaderMap::new();
        auth_headers(
            &deployment("https://r", r#""azure_ad_token":"eyJ0eXAi.tok""#),
            &mut h,
        )
        .unwrap();
        assert_eq!(h[AUTHORIZATION], "Bearer eyJ0eXAi.tok");
        assert!(h[AUTHORIZATION].is_sensitive());
        assert!(h.get("api-key").is_none());

        std::env::set_var("LLMR_TEST_AZURE_AD_TOKEN", "from-env-token");
        let mut h = HeaderMap::new();
        let d = deployment(
            "https://r",
            r#""azure_ad_token":"os.environ/LLMR_TEST_AZURE_AD_TOKEN""#,
        );
        auth_headers(&d, &mut h).unwrap();
        assert_eq!(h[AUTHORIZATION], "Bearer from-env-token");
    }
}
