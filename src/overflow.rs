//! Context-window overflow: tells "the prompt does not fit" apart from every other provider error.
//!
//! The router falls back to a bigger-window deployment (and finally reports
//! `LLMR_ERR_CONTEXT_OVERFLOW`) only when this says yes, so a false positive turns a rate limit,
//! an output-token cap or a tool-pairing bug into a pointless fallback, and a false negative
//! hides an overflow behind a generic "invalid request". The decision is made in a fixed order:
//!
//! 1. **Status.** Only 400, 413, 422 or `None` (an error event inside a 200 stream, a failed
//!    Replicate prediction) can be an overflow. A 429 is never one, whatever its text says
//!    (Groq's and OpenAI's "Request too large … tokens per minute", Anthropic's "Please reduce
//!    the prompt length" rate-limit text, Bedrock's "Too many tokens, please wait").
//! 2. **Structured code.** A code that only overflows carry settles it as yes; a code that
//!    names another failure (rate limit, quota, content filter, tool failure, string length …)
//!    settles it as no. Generic codes (`invalid_request_error`, `INVALID_ARGUMENT`,
//!    `ValidationException`, Mistral's `3051`, DashScope's `invalid_parameter_error` …) carry
//!    overflows and non-overflows alike, so they decide nothing and the text is read.
//! 3. **Exclusions on the text**: output-token caps, tokens-per-minute and other rate limits,
//!    per-string length limits, tool-call pairing and content-policy errors. Several of them
//!    contain words the overflow patterns look for ("context_window", "reduce the length",
//!    "too many tokens", "tokens you requested exceed"), so they are ruled out first.
//! 4. **Overflow wording**: the patterns of the Python service this crate replaces, kept
//!    verbatim, plus each provider's own wording.
//!
//! Decisions on ambiguous cases:
//! * GitHub Models `413 tokens_limit_reached` ("Request body too large for gpt-4o model. Max
//!   size: 8000 tokens.") **is** an overflow: the prompt's token count exceeds what that
//!   deployment accepts per request; it is not time-based, so only a deployment that takes a
//!   longer prompt can serve it, which is exactly what the context-window fallback does.
//! * Groq `413` with `code: rate_limit_exceeded` ("Request too large for model … on tokens per
//!   minute (TPM)") is **not**: it is the account's per-minute token budget, a quota problem
//!   for the cooldown/failover logic; the window is reported as 400 `context_length_exceeded`.
//! * Anthropic `413`: with `invalid_request_error` and "Request size exceeds model context
//!   window" it **is** an overflow (it says so); with `request_too_large` ("Request exceeds the
//!   maximum size") it is **not**: that is the 32 MB body limit enforced at the edge, the same
//!   for every Claude model, so a bigger window cannot help.
//! * "Prompt + max_tokens > window" counts as an overflow wherever the provider words it as a
//!   context-length problem (OpenAI `context_length_exceeded` "… 8192 in the completion",
//!   Anthropic "input length and `max_tokens` exceed context limit", vLLM "'max_tokens' or
//!   'max_completion_tokens' is too large: N. This model's maximum context length is …"), while
//!   a cap on the output alone ("max_tokens is too large: N. This model supports at most M
//!   completion tokens", "max_tokens: N > M, which is the maximum allowed number of output
//!   tokens") is not.

use std::sync::LazyLock;

use regex::Regex;

/// Codes that only a context-window overflow carries.
const OVERFLOW_CODES: &[&str] = &[
    // OpenAI, Azure OpenAI, Groq; also `error.code` of OpenAI Responses stream error events.
    "context_length_exceeded",
    // llama.cpp server `error.type`.
    "exceed_context_size_error",
    // Zhipu / Z.ai: 1261 "Prompt exceeds max length".
    "1261",
    // GitHub Models (Azure AI Inference): per-request token cap of the deployment, see above.
    "tokens_limit_reached",
];

/// Codes that name a failure other than an overflow; they settle the answer as "no".
const NOT_OVERFLOW_CODES: &[&str] = &[
    // OpenAI family.
    "string_above_max_length",
    "rate_limit_exceeded",
    "insufficient_quota",
    "invalid_prompt",
    "content_filter",
    "content_policy_violation",
    "unsupported_parameter",
    "unsupported_value",
    "integer_above_max_value",
    "decimal_above_max_value",
    "model_not_found",
    "invalid_api_key",
    // Groq.
    "tool_use_failed",
    // Azure OpenAI / GitHub Models.
    "ResponsibleAIPolicyViolation",
    "DeploymentNotFound",
    "RateLimitReached",
    // Anthropic `error.type`.
    "request_too_large",
    "rate_limit_error",
    "overloaded_error",
    "authentication_error",
    "permission_error",
    "billing_error",
    "not_found_error",
    // Gemini / Vertex `error.status`.
    "RESOURCE_EXHAUSTED",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    // Bedrock exception names.
    "ThrottlingException",
    "ServiceQuotaExceededException",
    "AccessDeniedException",
    "ResourceNotFoundException",
    "ModelNotReadyException",
    // Cerebras.
    "request_quota_exceeded",
    // Moonshot `error.type`.
    "rate_limit_reached_error",
    "engine_overloaded_error",
    "exceeded_current_quota_error",
    "invalid_authentication_error",
    "permission_denied_error",
    "resource_not_found_error",
    // DashScope (Qwen).
    "data_inspection_failed",
    "Throttling.RateQuota",
    "Throttling.AllocationQuota",
    "Arrearage",
    // Zhipu: content safety, concurrency / frequency / quota throttling, arrears, no such model.
    "1301",
    "1302",
    "1303",
    "1304",
    "1305",
    "1113",
    "1211",
    // Databricks.
    "REQUEST_LIMIT_EXCEEDED",
    // Cloudflare Workers AI: neuron allocation / capacity (429), no such model, authentication.
    "3036",
    "3040",
    "5007",
    "10000",
];

/// `_CONTEXT_OVERFLOW_PATTERNS` of the Python service, verbatim.
const SEED_PATTERNS: &str = r"(input tokens exceed|context.{0,20}(length|window|limit)|maximum context length|token.{0,20}(limit|exceed)|too many tokens|reduce the length)";

/// Each provider's own overflow wording. Some alternatives are already matched by the seed
/// patterns; they stay listed so that every provider's wording is visible here.
const PROVIDER_PATTERNS: &str = concat!(
    // Anthropic, Bedrock Claude ("prompt is too long: 200049 tokens > 200000 maximum"),
    // Fireworks / Ollama Cloud ("The prompt is too long: 262377, model maximum context length"),
    // Ollama ("prompt too long; exceeded max context length by N tokens").
    r"prompt is too long|prompt too long",
    // Anthropic: "input length and `max_tokens` exceed context limit: …"; 413 "Request size
    // exceeds model context window".
    r"|exceed context limit|request size exceeds model context window",
    // llama.cpp: "request (13392 tokens) exceeds the available context size (8192 tokens)".
    r"|exceeds? the available context size",
    // xAI: "This model's maximum prompt length is 131072 but the request contains N tokens."
    r"|maximum prompt length is",
    // Qwen (DashScope): "Range of input length should be [1, 30720]".
    r"|range of input length should be",
    // Zhipu 1261: "Prompt exceeds max length".
    r"|prompt exceeds max length",
    // Gemini / Vertex: "The input token count (N) exceeds the maximum number of tokens allowed (M)."
    r"|exceeds the maximum number of tokens allowed",
    // Vertex: "Unable to submit request because the input token count is N but model only
    // supports up to M."
    r"|but (?:the )?model only supports up to",
    // Bedrock: "Input is too long for requested model.", "too many input tokens", Nova "Input
    // Tokens Exceeded", Titan "Malformed input request: expected maxLength: 42000, actual: …".
    r"|input is too long|too many input tokens|input tokens exceeded|expected maxlength: \d+",
    // Moonshot: "Your request exceeded model token limit: 262144 (requested: 269030)"; legacy
    // "model max length exceeded, max length:8192".
    r"|exceeded model token limit|model max length exceeded",
    // Mistral: "Prompt contains N tokens and 0 draft tokens, too large for model with M
    // maximum context length".
    r"|too large for model with \d+ maximum context length",
    // Cerebras: "… Current length is 42328 while limit is 40000".
    r"|current length is \d+ while limit is \d+",
    // Hugging Face TGI, Together: "Input validation error: `inputs` tokens + `max_new_tokens`
    // must be <= 8192. …"; HF serverless "`inputs` must have less than 4096 tokens".
    r"|inputs\W{0,2}tokens \+ \W?max_new_tokens\W{0,2}must be",
    r"|inputs\W{0,2}must have less than \d+ tokens",
    // vLLM / SGLang: "The input (N tokens) is longer than the model's context length (M tokens)."
    r"|is longer than the model'?s context length",
    // Replicate (TensorRT-LLM): "Prompt length (1240) exceeds maximum input length (1024)";
    // "E1002 PromptTooLong: Prompt length exceeds maximum input length".
    r"|prompt length (?:\(\d+\) )?exceeds (?:the )?maximum input length|prompttoolong",
    // SGLang "Input length (N tokens) exceeds the maximum allowed length (M tokens).",
    // Volcano Ark "Input length 203743 exceeds the maximum length 202752".
    r"|input length \(?\d+(?: tokens\))? exceeds the maximum (?:allowed )?length",
    // GitHub Models: "Request body too large for gpt-4o model. Max size: 8000 tokens."
    r"|max size: \d+ tokens",
    // OpenAI Responses: "Your input exceeds the context window of this model."
    r"|exceeds the context window",
);

/// Errors that must never count as an overflow even when they share words with one.
const EXCLUSION_PATTERNS: &str = concat!(
    // Output-token caps. The bare parameter name followed by a verdict: OpenAI "max_tokens is
    // too large: 8192. This model supports at most 4096 completion tokens", Cloudflare
    // "max_completion_tokens is too large", Groq "max_tokens must be less than or equal to
    // 16384, the maximum value for max_tokens is less than the context_window", Cohere "max
    // tokens must be less than or equal to 4096", Perplexity "max_tokens must be at least 16",
    // Databricks "max_tokens (10000) cannot exceed 8192. Please reduce the length of max output
    // tokens". vLLM's quoted "'max_tokens' or 'max_completion_tokens' is too large: N. This
    // model's maximum context length is …" (prompt + output > window) deliberately does not
    // match: the quote after the name is not a space or a backtick.
    r"max[ _]?(?:completion_)?tokens`?\s(?:is too large|must be (?:less than|<=|at most|at least|greater than)|\(\d+\) cannot exceed)",
    // TGI: "Input validation error: `max_new_tokens` must be <= 192".
    r"|validation error: \W?max_new_tokens\W{0,2}must be",
    // Anthropic: "max_tokens: 128001 > 64000, which is the maximum allowed number of output
    // tokens for claude-opus-4-5-20251101".
    r"|max_tokens: \d+ > \d+|maximum allowed number of output tokens",
    // DeepSeek: "Invalid max_tokens value, the valid range of max_tokens is [1, 8192]".
    r"|valid range of max_tokens",
    // OpenAI, Cloudflare "supports at most N completion tokens", Cohere "the maximum output for
    // this model", Databricks "max output tokens", Bedrock "The maximum tokens you requested
    // exceed the model limit of 4096", OpenAI-style validation "integer above maximum value".
    r"|supports at most \d+ completion tokens|maximum output for this model",
    r"|max(?:imum)? output tokens|maximum tokens you requested exceed",
    r"|(?:integer|decimal) above maximum value",
    // Tokens-per-minute budgets, rate limits, quotas, throttling, overload.
    r"|rate[\s_-]*limit|tokens per min|tokens per day|(?-u:\b)tpm(?-u:\b)|quota|throttl",
    r"|too many requests|please wait before trying again|please wait and try again",
    r"|try again (?:in|after) \d|retry after \d|service tier capacity exceeded",
    r"|(?:engine|model) is (?:currently )?overloaded",
    // Length limits on a single string field (OpenAI string_above_max_length, JSON readers).
    r"|string too long|string_above_max_length|string value length|above (?:the )?max(?:imum)? length",
    // Tool-call pairing: Anthropic "`tool_use` ids were found without `tool_result` blocks",
    // "unexpected `tool_use_id`", OpenAI/DeepSeek/Qwen "… responding to each 'tool_call_id'".
    r"|tool_use_id|tool_call_id|tool_result|tool_use\W{0,2} ids",
    // Content policy.
    r"|content (?:management|filtering) policy|usage polic|inappropriate content",
);

static OVERFLOW_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("(?i){SEED_PATTERNS}|{PROVIDER_PATTERNS}"))
        .expect("overflow patterns compile")
});

static EXCLUDED_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("(?i){EXCLUSION_PATTERNS}")).expect("exclusion patterns compile")
});

/// `http_status`: the HTTP status, or None for an error event inside a 200 stream.
/// `code`: the provider's structured error code/type if any (OpenAI `error.code`, Anthropic `error.type`, Gemini `error.status`, Bedrock exception name, zhipu numeric code as string ...). `message`: the provider's error message (or the whole body text if no message could be extracted).
pub fn is_context_overflow(http_status: Option<u16>, code: Option<&str>, message: &str) -> bool {
    if !matches!(http_status, None | Some(400 | 413 | 422)) {
        return false;
    }
    if let Some(code) = code.map(normalize_code).filter(|code| !code.is_empty()) {
        if contains_code(OVERFLOW_CODES, code) {
            return true;
        }
        if contains_code(NOT_OVERFLOW_CODES, code) {
            return false;
        }
    }
    !EXCLUDED_TEXT.is_match(message) && OVERFLOW_TEXT.is_match(message)
}

/// Bedrock's `x-amzn-ErrorType` carries a namespace after a colon
/// (`ValidationException:http://internal.amazon.com/coral/…`); only the name counts.
fn normalize_code(code: &str) -> &str {
    code.split(':').next().unwrap_or(code).trim()
}

fn contains_code(list: &[&str], code: &str) -> bool {
    list.iter().any(|known| known.eq_ignore_ascii_case(code))
}

#[cfg(test)]
mod tests {
    use super::is_context_overflow;

    const OPENAI_OVERFLOW: &str = "This model's maximum context length is 128000 tokens. However, your messages resulted in 150008 tokens. Please reduce the length of the messages.";

    #[test]
    fn only_400_413_422_or_stream_events_can_overflow() {
        for status in [None, Some(400), Some(413), Some(422)] {
            assert!(
                is_context_overflow(status, None, OPENAI_OVERFLOW),
                "{status:?}"
            );
        }
        for status in [200, 401, 403, 404, 408, 409, 429, 500, 502, 503, 504, 529] {
            assert!(
                !is_context_overflow(Some(status), None, OPENAI_OVERFLOW),
                "{status}"
            );
            assert!(
                !is_context_overflow(Some(status), Some("context_length_exceeded"), ""),
                "{status}"
            );
        }
    }

    #[test]
    fn status_gate_comes_before_the_code() {
        // llama.cpp builds that sent `exceed_context_size_error` with HTTP 500 are not
        // classified: the status rule is applied first.
        assert!(!is_context_overflow(
            Some(500),
            Some("exceed_context_size_error"),
            "the request exceeds the available context size. try increasing the context size or enable context shift"
        ));
    }

    #[test]
    fn overflow_codes_decide_without_text() {
        for code in [
            "context_length_exceeded",
            "exceed_context_size_error",
            "1261",
            "tokens_limit_reached",
            "CONTEXT_LENGTH_EXCEEDED",
        ] {
            assert!(is_context_overflow(Some(400), Some(code), ""), "{code}");
            assert!(is_context_overflow(None, Some(code), "anything"), "{code}");
        }
        // GitHub Models answers 413.
        assert!(is_context_overflow(
            Some(413),
            Some("tokens_limit_reached"),
            ""
        ));
    }

    #[test]
    fn overflow_codes_beat_exclusion_text() {
        // OpenAI's own code wins even when the wording mentions the completion budget.
        assert!(is_context_overflow(
            Some(400),
            Some("context_length_exceeded"),
            "max_tokens is too large: 8192."
        ));
    }

    #[test]
    fn non_overflow_codes_beat_overflow_text() {
        for code in [
            "string_above_max_length",
            "rate_limit_exceeded",
            "tool_use_failed",
            "insufficient_quota",
            "invalid_prompt",
            "content_filter",
            "request_too_large",
            "ThrottlingException",
            "throttlingException",
            "RESOURCE_EXHAUSTED",
            "1302",
        ] {
            assert!(
                !is_context_overflow(Some(400), Some(code), OPENAI_OVERFLOW),
                "{code}"
            );
            assert!(
                !is_context_overflow(None, Some(code), OPENAI_OVERFLOW),
                "{code}"
            );
        }
    }

    #[test]
    fn generic_codes_defer_to_the_text() {
        for code in [
            "invalid_request_error",
            "INVALID_ARGUMENT",
            "ValidationException",
            "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "3051",
            "invalid_parameter_error",
            "BadRequestError",
            "400",
            "",
        ] {
            assert!(
                is_context_overflow(Some(400), Some(code), OPENAI_OVERFLOW),
                "{code}"
            );
            assert!(
                !is_context_overflow(Some(400), Some(code), "Invalid value for 'temperature'"),
                "{code}"
            );
        }
    }

    #[test]
    fn bedrock_error_type_header_is_trimmed_to_the_name() {
        assert!(!is_context_overflow(
            None,
            Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            "Too many tokens, please wait before trying again."
        ));
    }

    #[test]
    fn exclusions_come_before_overflow_wording() {
        let excluded = [
            // Output caps sharing words with the overflow patterns.
            "max_tokens must be less than or equal to 16384, the maximum value for max_tokens is less than the context_window for this model",
            "Bad request: rpc error: code = InvalidArgument desc = max_tokens (10000) cannot exceed 8192. Please reduce the length of max output tokens generated.",
            "too many tokens: max tokens must be less than or equal to 4096, the maximum output for this model - received 8192.",
            "The maximum tokens you requested exceed the model limit of 4096.",
            "max_tokens: 128001 > 64000, which is the maximum allowed number of output tokens for claude-opus-4-5-20251101",
            "Invalid max_tokens value, the valid range of max_tokens is [1, 8192]",
            "Input validation error: `max_new_tokens` must be <= 192",
            // Rate limits without a decisive code (stream events, missing code).
            "Too many tokens, please wait before trying again.",
            "Too many tokens per day, please wait before trying again.",
            "Request too large for model `llama-3.1-8b-instant` in organization `org_x` service tier `on_demand` on tokens per minute (TPM): Limit 6000, Requested 12328, please reduce your message size and try again.",
            "This request would exceed the rate limit for your organization of 20,000 input tokens per minute. Please reduce the prompt length or the maximum tokens requested, or try again later.",
            // Single-string limit.
            "Invalid 'messages[7].content': string too long. Expected a string with maximum length 10485760, but got a string with length 10624990 instead.",
            // Tool pairing.
            "messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_01. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
        ];
        for message in excluded {
            assert!(!is_context_overflow(Some(400), None, message), "{message}");
            assert!(!is_context_overflow(None, None, message), "{message}");
        }
    }

    #[test]
    fn prompt_plus_output_over_the_window_is_an_overflow() {
        for message in [
            "input length and `max_tokens` exceed context limit: 199759 + 8192 > 200000, decrease input length or `max_tokens` and try again",
            "'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum context length is 4096 tokens and your request has 2778 input tokens (8000 > 4096 - 2778). None",
            "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 8192. Given: 6204 `inputs` tokens and 2047 `max_new_tokens`",
        ] {
            assert!(is_context_overflow(Some(400), None, message), "{message}");
        }
    }

    #[test]
    fn seed_patterns_are_kept() {
        for message in [
            "input tokens exceed the configured limit",
            "context window exceeds limit",
            "CONTEXT LENGTH exceeded",
            "maximum context length",
            "token limit reached",
            "too many tokens",
            "please reduce the length of the messages",
        ] {
            assert!(is_context_overflow(Some(400), None, message), "{message}");
        }
    }

    #[test]
    fn unrelated_errors_are_not_overflows() {
        for message in [
            "",
            "Invalid API Key",
            "model \"x\" not found, try pulling it first",
            "Argument not supported on this model: presencePenalty",
            "1 validation error detected: Value at 'body' failed to satisfy constraint: Member must have length less than or equal to 25000000",
        ] {
            assert!(!is_context_overflow(Some(400), None, message), "{message}");
        }
    }

    /// Every entry of the corpus of real provider error texts classifies as labelled.
    #[test]
    fn corpus_classifies_as_labelled() {
        let corpus: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/overflow_corpus.json"))
                .expect("corpus is valid JSON");
        let entries = corpus.as_array().expect("corpus is an array");
        assert!(!entries.is_empty());
        let mut mismatches = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let status = entry["http_status"]
                .as_u64()
                .map(|status| u16::try_from(status).expect("status fits u16"));
            let code = entry["code"].as_str();
            let message = entry["message"].as_str().expect("message is a string");
            let expected = entry["overflow"].as_bool().expect("overflow is a bool");
            if is_context_overflow(status, code, message) != expected {
                mismatches.push(format!(
                    "#{index} {} (status {status:?}, code {code:?}): expected {expected}: {message}",
                    entry["provider"]
                ));
            }
        }
        for mismatch in &mismatches {
            eprintln!("{mismatch}");
        }
        assert!(
            mismatches.is_empty(),
            "{} of {} corpus entries misclassified",
            mismatches.len(),
            entries.len()
        );
    }
}
