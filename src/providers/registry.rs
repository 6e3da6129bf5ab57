//! The provider table: the app's provider names (the seed's `PROVIDER_MAP`), the LiteLLM prefix
//! each maps to, the wire family that speaks to it, and its documented default base URL.

/// How a provider is spoken to. Providers share a family when they share a wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// OpenAI chat completions at `base + /chat/completions`, bearer key.
    OpenAiCompatible,
    /// OpenAI body at Azure's deployment URL, `api-key` header, `api-version` query.
    Azure,
    /// Anthropic Messages API.
    Anthropic,
    /// Gemini API `generateContent` (API key).
    Gemini,
    /// Vertex AI (Gemini and Claude publishers; OAuth).
    Vertex,
    /// Ollama's native `/api/chat` (NDJSON).
    Ollama,
    /// Cohere v2 chat.
    Cohere,
    /// Bedrock Converse (SigV4 or Bedrock API key).
    Bedrock,
    /// Replicate predictions (wait, poll, SSE).
    Replicate,
    /// Answers in-process; no network.
    Mock,
}

#[derive(Debug)]
pub struct ProviderSpec {
    /// The app's provider name, upper case (`"OPENAI"`).
    pub key: &'static str,
    /// The LiteLLM model-string prefix of the seed (`"openai"`, `"ollama_chat"`).
    pub prefix: &'static str,
    pub family: Family,
    /// Documented default base URL; `None` where the user's own host is required.
    pub default_base: Option<&'static str>,
    pub needs_key: bool,
    /// Ask for usage in streams with `stream_options.include_usage` (not every host accepts it).
    pub stream_usage: bool,
    /// Why a base URL (or another setting) is needed: shown in config warnings.
    pub note: &'static str,
}

const fn compat(
    key: &'static str,
    prefix: &'static str,
    base: &'static str,
    stream_usage: bool,
) -> ProviderSpec {
    ProviderSpec {
        key,
        prefix,
        family: Family::OpenAiCompatible,
        default_base: Some(base),
        needs_key: true,
        stream_usage,
        note: "",
    }
}

/// Every provider of the seed's table, plus MOCK.
pub static PROVIDERS: &[ProviderSpec] = &[
    compat("OPENAI", "openai", "https://api.openai.com/v1", true),
    ProviderSpec {
        key: "ANTHROPIC",
        prefix: "anthropic",
        family: Family::Anthropic,
        default_base: Some("https://api.anthropic.com"),
        needs_key: true,
        stream_usage: false,
        note: "",
    },
    compat("GROQ", "groq", "https://api.groq.com/openai/v1", true),
    ProviderSpec {
        key: "COHERE",
        prefix: "cohere",
        family: Family::Cohere,
        // Cohere v2 chat at `{base}/v2/chat`.
        default_base: Some("https://api.cohere.com"),
        needs_key: true,
        stream_usage: false,
        note: "",
    },
    ProviderSpec {
        key: "GOOGLE",
        prefix: "gemini",
        family: Family::Gemini,
        // Native `generateContent` at `{base}/v1beta/models/{model}:generateContent`.
        default_base: Some("https://generativelanguage.googleapis.com"),
        needs_key: true,
        stream_usage: false,
        note: "",
    },
    ProviderSpec {
        key: "OLLAMA",
        prefix: "ollama_chat",
        family: Family::Ollama,
        // Native `/api/chat`; a base given with the OpenAI-compatible `/v1` works too.
        default_base: Some("http://localhost:11434"),
        needs_key: false,
        stream_usage: false,
        note: "",
    },
    compat("MISTRAL", "mistral", "https://api.mistral.ai/v1", false),
    ProviderSpec {
        key: "AZURE_OPENAI",
        prefix: "azure",
        family: Family::Azure,
        default_base: None,
        needs_key: true,
        stream_usage: true,
        note: "AZURE_OPENAI needs `api_base` (https://<resource>.openai.azure.com) and `api_key` or `litellm_params.azure_ad_token`",
    },
    compat("OPENROUTER", "openrouter", "https://openrouter.ai/api/v1", true),
    compat("COMETAPI", "cometapi", "https://api.cometapi.com/v1", true),
    compat("XAI", "xai", "https://api.x.ai/v1", true),
    ProviderSpec {
        key: "BEDROCK",
        prefix: "bedrock",
        family: Family::Bedrock,
        // `{region}` from `aws_region_name` / AWS_REGION; `api_base` replaces the whole host.
        default_base: Some("https://bedrock-runtime.{region}.amazonaws.com"),
        // SigV4 access keys or a Bedrock API key, from `litellm_params` or the environment.
        needs_key: false,
        stream_usage: false,
        note: "",
    },
    ProviderSpec {
        key: "AWS_BEDROCK",
        prefix: "bedrock",
        family: Family::Bedrock,
        // `{region}` from `aws_region_name` / AWS_REGION; `api_base` replaces the whole host.
        default_base: Some("https://bedrock-runtime.{region}.amazonaws.com"),
        // SigV4 access keys or a Bedrock API key, from `litellm_params` or the environment.
        needs_key: false,
        stream_usage: false,
        note: "",
    },
    ProviderSpec {
        key: "VERTEX_AI",
        prefix: "vertex_ai",
        family: Family::Vertex,
        // The host follows `vertex_location` (`https://LOCATION-aiplatform.googleapis.com`,
        // this one for `global`); `api_base` replaces it.
        default_base: Some("https://aiplatform.googleapis.com"),
        // An OAuth access token as `api_key`, or `litellm_params.vertex_credentials`.
        needs_key: false,
        stream_usage: true,
        note: "",
    },
    compat("TOGETHER_AI", "together_ai", "https://api.together.xyz/v1", true),
    compat(
        "FIREWORKS_AI",
        "fireworks_ai",
        "https://api.fireworks.ai/inference/v1",
        true,
    ),
    ProviderSpec {
        key: "REPLICATE",
        prefix: "replicate",
        family: Family::Replicate,
        default_base: Some("https://api.replicate.com/v1"),
        needs_key: true,
        stream_usage: false,
        note: "",
    },
    compat("PERPLEXITY", "perplexity", "https://api.perplexity.ai", false),
    compat(
        "ANYSCALE",
        "anyscale",
        "https://api.endpoints.anyscale.com/v1",
        false,
    ),
    compat(
        "DEEPINFRA",
        "deepinfra",
        "https://api.deepinfra.com/v1/openai",
        true,
    ),
    compat("CEREBRAS", "cerebras", "https://api.cerebras.ai/v1", true),
    compat("SAMBANOVA", "sambanova", "https://api.sambanova.ai/v1", false),
    compat("AI21", "ai21", "https://api.ai21.com/studio/v1", false),
    ProviderSpec {
        key: "CLOUDFLARE",
        prefix: "cloudflare",
        family: Family::OpenAiCompatible,
        default_base: None,
        needs_key: true,
        stream_usage: false,
        note: "CLOUDFLARE needs `litellm_params.account_id` (or CLOUDFLARE_ACCOUNT_ID in the environment) or `api_base` (https://api.cloudflare.com/client/v4/accounts/ACCOUNT_ID/ai/v1)",
    },
    ProviderSpec {
        key: "DATABRICKS",
        prefix: "databricks",
        family: Family::OpenAiCompatible,
        default_base: None,
        needs_key: true,
        stream_usage: false,
        note: "DATABRICKS needs `api_base` (the workspace URL https://WORKSPACE, or https://WORKSPACE/serving-endpoints)",
    },
    compat("DEEPSEEK", "openai", "https://api.deepseek.com/v1", true),
    compat(
        "ALIBABA_QWEN",
        "openai",
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        true,
    ),
    compat("MOONSHOT", "openai", "https://api.moonshot.ai/v1", true),
    compat("ZHIPU", "openai", "https://open.bigmodel.cn/api/paas/v4", false),
    compat(
        "GITHUB_MODELS",
        "github",
        "https://models.github.ai/inference",
        true,
    ),
    compat(
        "HUGGINGFACE",
        "huggingface",
        "https://router.huggingface.co/v1",
        true,
    ),
    ProviderSpec {
        key: "CUSTOM",
        prefix: "custom",
        family: Family::OpenAiCompatible,
        default_base: None,
        needs_key: false,
        stream_usage: true,
        note: "CUSTOM needs `api_base` (an OpenAI-compatible server, e.g. http://host:8000/v1)",
    },
    ProviderSpec {
        key: "MOCK",
        prefix: "mock",
        family: Family::Mock,
        default_base: None,
        needs_key: false,
        stream_usage: false,
        note: "",
    },
];

/// The spec of an app provider name, case-insensitively.
pub fn by_key(key: &str) -> Option<&'static ProviderSpec> {
    PROVIDERS.iter().find(|p| p.key.eq_ignore_ascii_case(key))
}

/// The spec that owns a LiteLLM prefix (for `custom_provider`): the first entry with that prefix.
pub fn by_prefix(prefix: &str) -> Option<&'static ProviderSpec> {
    PROVIDERS
        .iter()
        .find(|p| p.prefix.eq_ignore_ascii_case(prefix) && p.key != "CUSTOM")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's PROVIDER_MAP, verbatim.
    const SEED_MAP: &[(&str, &str)] = &[
        ("OPENAI", "openai"),
        ("ANTHROPIC", "anthropic"),
        ("GROQ", "groq"),
        ("COHERE", "cohere"),
        ("GOOGLE", "gemini"),
        ("OLLAMA", "ollama_chat"),
        ("MISTRAL", "mistral"),
        ("AZURE_OPENAI", "azure"),
        ("OPENROUTER", "openrouter"),
        ("COMETAPI", "cometapi"),
        ("XAI", "xai"),
        ("BEDROCK", "bedrock"),
        ("AWS_BEDROCK", "bedrock"),
        ("VERTEX_AI", "vertex_ai"),
        ("TOGETHER_AI", "together_ai"),
        ("FIREWORKS_AI", "fireworks_ai"),
        ("REPLICATE", "replicate"),
        ("PERPLEXITY", "perplexity"),
        ("ANYSCALE", "anyscale"),
        ("DEEPINFRA", "deepinfra"),
        ("CEREBRAS", "cerebras"),
        ("SAMBANOVA", "sambanova"),
        ("AI21", "ai21"),
        ("CLOUDFLARE", "cloudflare"),
        ("DATABRICKS", "databricks"),
        ("DEEPSEEK", "openai"),
        ("ALIBABA_QWEN", "openai"),
        ("MOONSHOT", "openai"),
        ("ZHIPU", "openai"),
        ("GITHUB_MODELS", "github"),
        ("HUGGINGFACE", "huggingface"),
        ("CUSTOM", "custom"),
    ];

    #[test]
    fn every_seed_provider_is_in_the_table_with_its_prefix() {
        for (key, prefix) in SEED_MAP {
            let spec = by_key(key).unwrap_or_else(|| panic!("{key} missing"));
            assert_eq!(spec.prefix, *prefix, "{key}");
            assert!(by_key(&key.to_lowercase()).is_some(), "case-insensitive");
        }
        assert_eq!(
            PROVIDERS.len(),
            SEED_MAP.len() + 1,
            "the seed's table plus MOCK"
        );
        assert!(by_key("mock").is_some());
    }

    #[test]
    fn a_provider_without_default_base_says_why() {
        for p in PROVIDERS {
            if p.default_base.is_none() && p.family != Family::Mock {
                assert!(!p.note.is_empty(), "{} needs a note", p.key);
            }
        }
    }
}
