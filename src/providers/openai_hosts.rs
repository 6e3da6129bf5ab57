//! The base URL of OpenAI-compatible hosts whose URL is more than a fixed base: Cloudflare
//! Workers AI (per account, §11) and Databricks Model Serving (per workspace, §12). The
//! OpenAI format appends `/chat/completions` to what these return.

use serde_json::Value;

use crate::config::{DeploymentConfig, CLOUDFLARE_ACCOUNT_ENV};

/// The base `…/chat/completions` is appended to.
pub fn base_url(d: &DeploymentConfig) -> Result<String, String> {
    match d.spec.key {
        "CLOUDFLARE" => cloudflare_base(d),
        "DATABRICKS" => databricks_base(d),
        _ => match &d.api_base {
            Some(b) => Ok(b.trim_end_matches('/').to_owned()),
            None => d
                .spec
                .default_base
                .map(str::to_owned)
                .ok_or_else(|| d.spec.note.to_owned()),
        },
    }
}

/// Workers AI's OpenAI-compatible path, `https://api.cloudflare.com/client/v4/accounts/{id}/ai/v1`.
/// An `api_base` may stop at the account (`…/accounts/{id}`) or at `…/ai`; the account id is
/// `litellm_params.account_id` (or `os.environ/NAME`), else `$CLOUDFLARE_ACCOUNT_ID`.
fn cloudflare_base(d: &DeploymentConfig) -> Result<String, String> {
    if let Some(b) = &d.api_base {
        let b = b.trim_end_matches('/');
        let b = b.strip_suffix("/chat/completions").unwrap_or(b);
        return Ok(if b.ends_with("/ai/v1") {
            b.to_owned()
        } else if b.ends_with("/ai") {
            format!("{b}/v1")
        } else if b.rsplit('/').nth(1) == Some("accounts") {
            format!("{b}/ai/v1")
        } else {
            b.to_owned()
        });
    }
    let account = match d.params.get("account_id") {
        Some(Value::String(a)) if !a.is_empty() => match a.strip_prefix("os.environ/") {
            Some(var) => std::env::var(var).map_err(|_| {
                format!("`account_id` names the environment variable {var}, which is not set")
            })?,
            None => a.clone(),
        },
        None | Some(Value::Null) => std::env::var(CLOUDFLARE_ACCOUNT_ENV)
            .ok()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| d.spec.note.to_owned())?,
        Some(_) => return Err("`litellm_params.account_id` must be a string".into()),
    };
    // The id goes into the URL path: only what a Cloudflare account id can be.
    if account.is_empty()
        || !account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err("the Cloudflare account id must be letters, digits and `-`".into());
    }
    Ok(format!(
        "https://api.cloudflare.com/client/v4/accounts/{account}/ai/v1"
    ))
}

/// `{workspace}/serving-endpoints`: the OpenAI-compatible route, the serving endpoint's name
/// going in the body's `model`. `api_base` is the workspace URL, or already ends in
/// `/serving-endpoints`.
fn databricks_base(d: &DeploymentConfig) -> Result<String, String> {
    let b = d
        .api_base
        .as_deref()
        .ok_or_else(|| d.spec.note.to_owned())?
        .trim_end_matches('/');
    let b = b.strip_suffix("/chat/completions").unwrap_or(b);
    Ok(if b.ends_with("/serving-endpoints") {
        b.to_owned()
    } else {
        format!("{b}/serving-endpoints")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn deployment(provider: &str, fields: &str) -> DeploymentConfig {
        let c = config::parse(&format!(
            r#"{{"global_llm_configs":[{{"provider":"{provider}","model_name":"m","api_key":"k"{fields}}}]}}"#
        ))
        .unwrap();
        c.deployments.into_iter().next().unwrap()
    }

    #[test]
    fn cloudflare_from_the_account_id() {
        let d = deployment(
            "CLOUDFLARE",
            r#","litellm_params":{"account_id":"0123abcd"}"#,
        );
        assert_eq!(
            base_url(&d).unwrap(),
            "https://api.cloudflare.com/client/v4/accounts/0123abcd/ai/v1"
        );
        std::env::set_var("LLMR_TEST_CF_ACCOUNT", "feed42");
        let d = deployment(
            "CLOUDFLARE",
            r#","litellm_params":{"account_id":"os.environ/LLMR_TEST_CF_ACCOUNT"}"#,
        );
        assert_eq!(
            base_url(&d).unwrap(),
            "https://api.cloudflare.com/client/v4/accounts/feed42/ai/v1"
        );
        // No account in the config: Cloudflare's own environment variable.
        std::env::set_var(CLOUDFLARE_ACCOUNT_ENV, "envacct1");
        let d = deployment("CLOUDFLARE", "");
        assert_eq!(
            base_url(&d).unwrap(),
            "https://api.cloudflare.com/client/v4/accounts/envacct1/ai/v1"
        );
        let d = deployment("CLOUDFLARE", r#","litellm_params":{"account_id":"a/../b"}"#);
        assert!(base_url(&d).is_err());
        for (base, want) in [
            (
                "https://api.cloudflare.com/client/v4/accounts/abc",
                "https://api.cloudflare.com/client/v4/accounts/abc/ai/v1",
            ),
            (
                "https://api.cloudflare.com/client/v4/accounts/abc/ai",
                "https://api.cloudflare.com/client/v4/accounts/abc/ai/v1",
            ),
            (
                "https://api.cloudflare.com/client/v4/accounts/abc/ai/v1/",
                "https://api.cloudflare.com/client/v4/accounts/abc/ai/v1",
            ),
            (
                "https://gateway.ai.cloudflare.com/v1/abc/gw/compat",
                "https://gateway.ai.cloudflare.com/v1/abc/gw/compat",
            ),
        ] {
            let d = deployment("CLOUDFLARE", &format!(r#","api_base":"{base}""#));
            assert_eq!(base_url(&d).unwrap(), want, "{base}");
        }
    }

    #[test]
    fn databricks_from_the_workspace() {
        for base in [
            "https://dbc-1.cloud.databricks.com",
            "https://dbc-1.cloud.databricks.com/",
            "https://dbc-1.cloud.databricks.com/serving-endpoints",
            "https://dbc-1.cloud.databricks.com/serving-endpoints/chat/completions",
        ] {
            let d = deployment("DATABRICKS", &format!(r#","api_base":"{base}""#));
            assert_eq!(
                base_url(&d).unwrap(),
                "https://dbc-1.cloud.databricks.com/serving-endpoints",
                "{base}"
            );
        }
    }

    #[test]
    fn others_use_their_base() {
        let d = deployment("HUGGINGFACE", "");
        assert_eq!(base_url(&d).unwrap(), "https://router.huggingface.co/v1");
        let d = deployment("GROQ", r#","api_base":"http://h/v1/""#);
        assert_eq!(base_url(&d).unwrap(), "http://h/v1");
    }
}
