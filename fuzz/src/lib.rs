//! The fuzz harnesses: one entry point per fuzz target, `fn(&[u8])`, that feeds the input to
//! one of llmr's parsers and panics only when llmr misbehaves (a panic inside llmr, or a broken
//! invariant checked here). Parsers may reject any input with an error; they may not crash.
//!
//! This file depends on nothing but `llmr`, `serde_json`, `reqwest` and std, so that
//! `tests/fuzz_corpus.rs` in the main crate includes it as is (`#[path]`) and replays every
//! committed corpus file through the same entry points in each `cargo test`, without libFuzzer.
//!
//! Input layout shared by the provider targets (see [`Input`]): byte 0 picks the mode (low two
//! bits: 0 response body, 1 error body, 2 and 3 stream) and a variant (the rest); for a stream,
//! byte 1's low three bits give a count `n` of piece lengths that follow, and the remaining bytes
//! are fed to the stream parser cut into pieces of those lengths in turn (0 = one byte), so the
//! fuzzer chooses the read boundaries; for an error body, byte 1 picks the HTTP status.

use std::collections::VecDeque;
use std::sync::LazyLock;

use llmr::config::{self, DeploymentConfig};
use llmr::providers::{self, eventstream, Endpoint, StreamParser, WireFormat};
use llmr::sse::{SseDecoder, SseEvent};
use llmr::types::{ChatChunk, ChatRequest, ChatResponse, StreamAssembler};
use llmr::Error;

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz_targets/*.rs` file and corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("request", request),
    ("sse", sse),
    ("eventstream", eventstream),
    ("classify", classify),
    ("openai", openai),
    ("anthropic", anthropic),
    ("gemini", gemini),
    ("vertex", vertex),
    ("ollama", ollama),
    ("cohere", cohere),
    ("bedrock", bedrock),
    ("replicate", replicate),
    ("http1", http1),
];

/// Statuses the error mode picks from: the ones the classification treats apart.
const STATUSES: &[u16] = &[
    400, 401, 402, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504, 529, 200, 201, 418,
];

// ---------------------------------------------------------------------------------------------
// Input layout

/// What a provider target's input asks for.
pub enum Input<'a> {
    Response {
        variant: u8,
        body: &'a [u8],
    },
    Error {
        variant: u8,
        status: u16,
        body: &'a [u8],
    },
    Stream {
        variant: u8,
        pieces: Vec<&'a [u8]>,
    },
}

impl<'a> Input<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Input<'a>> {
        let (&head, rest) = data.split_first()?;
        let variant = head >> 2;
        Some(match head & 3 {
            0 => Input::Response {
                variant,
                body: rest,
            },
            1 => {
                let (&s, body) = rest.split_first().unwrap_or((&0, &[]));
                Input::Error {
                    variant,
                    status: STATUSES[s as usize % STATUSES.len()],
                    body,
                }
            }
            _ => Input::Stream {
                variant,
                pieces: split(rest),
            },
        })
    }
}

/// Cuts `data` at fuzzer-chosen boundaries: byte 0's low three bits give how many piece
/// lengths follow; the rest is cut into pieces of those lengths in turn (0 counts as 1).
/// With no lengths the rest is one piece.
pub fn split(data: &[u8]) -> Vec<&[u8]> {
    let Some((&n, rest)) = data.split_first() else {
        return Vec::new();
    };
    let n = ((n & 7) as usize).min(rest.len());
    let (lengths, mut body) = rest.split_at(n);
    if lengths.is_empty() {
        return vec![body];
    }
    let mut pieces = Vec::new();
    for &len in lengths.iter().cycle() {
        if body.is_empty() {
            break;
        }
        let (piece, more) = body.split_at((len as usize).clamp(1, body.len()));
        pieces.push(piece);
        body = more;
    }
    pieces
}

// ---------------------------------------------------------------------------------------------
// What every parser's output must survive: the steps the router and the C boundary take next.

fn check_response(r: Result<ChatResponse, Error>) {
    match r {
        Ok(resp) => {
            let json = serde_json::to_string(&resp).expect("a response serialises");
            serde_json::from_str::<serde_json::Value>(&json).expect("response JSON is valid");
        }
        Err(e) => check_error(&e),
    }
}

fn check_error(e: &Error) {
    let json = e.to_json();
    serde_json::from_str::<serde_json::Value>(&json).expect("error JSON is valid");
}

/// What a stream gave: the assembled answer (without its generated ids and times) and how it
/// ended (`Ok(true)` when the terminal event came before the last piece).
type StreamOutcome = (serde_json::Value, Result<bool, String>);

/// Feeds the pieces, stops at the first error or the terminal event, then finishes (as the HTTP
/// driver does), and assembles whatever chunks came out into a response.
fn run_stream(parser: &mut dyn StreamParser, pieces: &[&[u8]]) -> StreamOutcome {
    let mut out = VecDeque::new();
    let mut result = Ok(false);
    for (i, piece) in pieces.iter().enumerate() {
        result = parser
            .feed(piece, &mut out)
            .map(|ended| ended && i + 1 < pieces.len());
        if !matches!(result, Ok(false)) {
            break;
        }
    }
    if matches!(result, Ok(false)) {
        result = parser.finish(&mut out).map(|()| false);
    }
    if let Err(e) = &result {
        check_error(e);
    }
    (assemble(out), result.map_err(|e| e.to_json()))
}

/// The same stream cut at the fuzzer's boundaries and in one piece must give the same answer
/// and the same verdict: read boundaries are the network's, not the provider's.
fn stream_both_ways(make: impl Fn() -> Box<dyn StreamParser>, pieces: &[&[u8]]) {
    let split = run_stream(make().as_mut(), pieces);
    if split.1 == Ok(true) {
        return; // ended before the last piece: the rest was never read
    }
    let whole = pieces.concat();
    let one = run_stream(make().as_mut(), &[&whole]);
    assert_eq!(
        split, one,
        "the read boundaries changed the stream's outcome"
    );
}

fn assemble(chunks: VecDeque<ChatChunk>) -> serde_json::Value {
    let mut assembler = StreamAssembler::default();
    for chunk in &chunks {
        serde_json::to_string(chunk).expect("a chunk serialises");
        assembler.push(chunk);
    }
    let resp = assembler.into_response();
    check_response(Ok(resp.clone()));
    let mut v = serde_json::to_value(&resp).expect("a response serialises");
    v["id"] = serde_json::Value::Null;
    v["created"] = serde_json::Value::Null;
    if let Some(calls) = v["choices"][0]["message"]["tool_calls"].as_array_mut() {
        for call in calls {
            call["id"] = serde_json::Value::Null;
        }
    }
    v
}

/// One deployment's endpoint, built the way the router builds it.
fn endpoint_of(wire: &dyn WireFormat, entry: &str) -> Endpoint {
    let c = config::parse(&format!(r#"{{"global_llm_configs":[{entry}]}}"#))
        .expect("the harness's config parses");
    wire.endpoint(&c.deployments[0], Some(8192))
        .expect("the harness's endpoint builds")
}

/// Response, error or stream through one wire format and one of its endpoints.
fn wire_format(wire: &dyn WireFormat, endpoints: &[Endpoint], data: &[u8]) {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let ep = |variant: u8| &endpoints[variant as usize % endpoints.len()];
    match input {
        Input::Response { variant, body } => check_response(wire.parse_response(ep(variant), body)),
        Input::Error {
            variant,
            status,
            body,
        } => check_error(&wire.parse_error(ep(variant), status, body)),
        Input::Stream { variant, pieces } => {
            stream_both_ways(|| wire.stream_parser(ep(variant)), &pieces)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Config and request

/// `config::parse`, then every deployment's client built as `llmr_init` builds it.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match config::parse(text) {
        Ok(cfg) => cfg,
        Err(e) => return check_error(&e),
    };
    static HTTP: LazyLock<llmr::caller_runtime::Http> =
        LazyLock::new(|| llmr::caller_runtime::Http::new(reqwest::Client::new()));
    for d in &cfg.deployments {
        if reads_google_credentials(d) {
            continue;
        }
        let _ = providers::build_client(d, d.max_output_tokens, &HTTP);
    }
}

/// Vertex may read credentials from a file: a `vertex_credentials` string that is not inline
/// JSON is a path, and with neither key nor credentials Application Default Credentials are
/// looked up. Not what a fuzzer should make llmr read; inline credentials are fuzzed.
fn reads_google_credentials(d: &DeploymentConfig) -> bool {
    use serde_json::Value;
    matches!(d.spec.family, providers::registry::Family::Vertex)
        && match d.params.get("vertex_credentials") {
            None | Some(Value::Null) => d.api_key.is_none(),
            Some(Value::String(s)) => !s.trim_start().starts_with('{'),
            Some(_) => false,
        }
}

/// Every wire format's request body, for the request translation.
static REQUEST_ENDPOINTS: LazyLock<Vec<(&'static dyn WireFormat, Endpoint)>> =
    LazyLock::new(|| {
        let mut eps: Vec<(&'static dyn WireFormat, Endpoint)> = vec![
            (
                &providers::openai::OpenAi,
                endpoint_of(&providers::openai::OpenAi, OPENAI),
            ),
            (
                &providers::openai::AzureOpenAi,
                endpoint_of(&providers::openai::AzureOpenAi, AZURE),
            ),
            (
                &providers::anthropic::Anthropic,
                endpoint_of(&providers::anthropic::Anthropic, ANTHROPIC),
            ),
            (
                &providers::gemini::Gemini,
                endpoint_of(&providers::gemini::Gemini, GEMINI),
            ),
            (
                &providers::ollama::Ollama,
                endpoint_of(&providers::ollama::Ollama, OLLAMA),
            ),
            (
                &providers::cohere::Cohere,
                endpoint_of(&providers::cohere::Cohere, COHERE),
            ),
            (
                &providers::bedrock::Bedrock,
                endpoint_of(&providers::bedrock::Bedrock, BEDROCK),
            ),
        ];
        for entry in VERTEX {
            eps.push((
                &providers::vertex::Vertex,
                endpoint_of(&providers::vertex::Vertex, entry),
            ));
        }
        eps
    });

/// `ChatRequest::from_json` (as `llmr_complete` gets it), then the request translated into
/// every wire format, streamed or not (byte 0's low bit; the JSON follows).
pub fn request(data: &[u8]) {
    let Some((&head, json)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(json) else {
        return;
    };
    let req = match ChatRequest::from_json(text) {
        Ok(req) => req,
        Err(e) => return check_error(&e),
    };
    for (wire, ep) in REQUEST_ENDPOINTS.iter() {
        match wire.request_body(ep, &req, head & 1 == 1) {
            Ok(body) => {
                serde_json::from_slice::<serde_json::Value>(&body).expect("a request body is JSON");
            }
            Err(e) => check_error(&e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Framing: SSE and AWS event-stream

/// The SSE decoder over fuzzer-chosen pieces must give the events it gives over one piece.
pub fn sse(data: &[u8]) {
    let pieces = split(data);
    let whole: Vec<u8> = pieces.concat();
    assert_eq!(
        sse_events(&pieces),
        sse_events(&[&whole]),
        "the read boundaries changed the events"
    );
}

fn sse_events(pieces: &[&[u8]]) -> Vec<SseEvent> {
    let mut d = SseDecoder::new();
    let mut events = Vec::new();
    for piece in pieces {
        d.feed(
            piece,
            |e| {
                events.push(e.clone());
                Ok::<(), ()>(())
            },
            || (),
        )
        .expect("small inputs stay under the event size limit");
    }
    events.extend(d.finish());
    events
}

/// An HTTP/1.1 answer (head, then body in any framing) read by llmr's client over
/// fuzzer-chosen read boundaries: the same status and body as over one piece, or an error in
/// both; never a panic.
pub fn http1(data: &[u8]) {
    use llmr::fuzzing::http1::read_answer;
    let pieces = split(data);
    let whole: Vec<u8> = pieces.concat();
    let (apart, together) = (read_answer(&pieces), read_answer(&[&whole]));
    assert_eq!(
        apart.as_ref().ok(),
        together.as_ref().ok(),
        "the read boundaries changed the answer: {apart:?} / {together:?}"
    );
}

/// The event-stream decoder over fuzzer-chosen pieces: the same messages and the same verdict as
/// over one piece. Byte 0 bit 0 set: the frames' lengths and CRCs are made consistent first, so
/// that the headers and payloads are what gets fuzzed rather than the checksums.
pub fn eventstream(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let pieces = split(rest);
    let mut whole: Vec<u8> = pieces.concat();
    if head & 1 == 1 {
        fix_frames(&mut whole);
    }
    let pieces = recut(&whole, pieces.iter().map(|p| p.len()));
    assert_eq!(
        decode_frames(&pieces),
        decode_frames(&[&whole]),
        "the read boundaries changed the messages"
    );
}

/// Messages decoded, then the first error or the end-of-stream verdict.
type Decoded = (Vec<eventstream::Message>, Result<(), String>);

fn decode_frames(pieces: &[&[u8]]) -> Decoded {
    let mut d = eventstream::Decoder::new();
    let mut messages = Vec::new();
    for piece in pieces {
        d.push(piece);
        loop {
            match d.next_message() {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(e) => {
                    // Framing cannot recover: the decoder keeps saying so.
                    assert!(d.next_message().is_err());
                    return (messages, Err(e.to_string()));
                }
            }
        }
    }
    (messages, d.finish().map_err(|e| e.to_string()))
}

/// Rewrites each frame's total length (to fit what is left), headers length (to fit the frame)
/// and both CRCs, so that the frames are well formed.
pub fn fix_frames(buf: &mut [u8]) {
    const PRELUDE: usize = 12;
    const OVERHEAD: usize = 16;
    let mut at = 0;
    while buf.len() - at >= OVERHEAD {
        let left = buf.len() - at;
        let f = &mut buf[at..];
        let mut total = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
        if !(OVERHEAD..=left).contains(&total) {
            total = OVERHEAD + total % (left - OVERHEAD + 1);
        }
        let headers =
            u32::from_be_bytes([f[4], f[5], f[6], f[7]]) as usize % (total - OVERHEAD + 1);
        f[0..4].copy_from_slice(&(total as u32).to_be_bytes());
        f[4..8].copy_from_slice(&(headers as u32).to_be_bytes());
        let crc = eventstream::crc32(&f[..8]);
        f[8..PRELUDE].copy_from_slice(&crc.to_be_bytes());
        let crc = eventstream::crc32(&f[..total - 4]);
        f[total - 4..total].copy_from_slice(&crc.to_be_bytes());
        at += total;
    }
}

// ---------------------------------------------------------------------------------------------
// Error classification of arbitrary text

/// `overflow::is_context_overflow` and `classify::classify` on arbitrary parts, and the text
/// helpers every error path uses. Byte 0 picks the status (or none); the rest is
/// `code \n kind \n message` (missing lines are `None`).
pub fn classify(data: &[u8]) {
    use llmr::providers::classify::{body_excerpt, classify, ErrorParts};
    let Some((&s, rest)) = data.split_first() else {
        return;
    };
    let status = (s != 0xff).then(|| STATUSES[s as usize % STATUSES.len()]);
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.splitn(3, '\n');
    let code = lines.next().filter(|c| !c.is_empty()).map(str::to_owned);
    let kind = lines.next().filter(|k| !k.is_empty()).map(str::to_owned);
    let message = lines.next().unwrap_or(&text).to_owned();
    let overflow = llmr::overflow::is_context_overflow(status, code.as_deref(), &message);
    let no_kind = kind.is_none();
    let e = classify(
        status,
        ErrorParts {
            code,
            kind,
            message,
        },
    );
    if overflow && status.is_some() && no_kind {
        assert_eq!(
            e.status,
            llmr::Status::ContextOverflow,
            "an overflow classified as {e:?}"
        );
    }
    check_error(&e);
    let _ = llmr::providers::http::retry_hint_in_text(&text);
    let _ = body_excerpt(rest);
}

// ---------------------------------------------------------------------------------------------
// Providers

const OPENAI: &str = r#"{"provider":"OPENAI","model_name":"gpt-4o","api_key":"sk-fuzz-123456"}"#;
const AZURE: &str = r#"{"provider":"AZURE_OPENAI","model_name":"gpt-4o","api_key":"az-fuzz-123456","api_base":"https://fuzz.openai.azure.com"}"#;
const ANTHROPIC: &str = r#"{"provider":"ANTHROPIC","model_name":"claude-3-5-sonnet-20241022","api_key":"sk-ant-fuzz-123456"}"#;
const GEMINI: &str =
    r#"{"provider":"GOOGLE","model_name":"gemini-2.5-flash","api_key":"AIza-fuzz-key"}"#;
const OLLAMA: &str = r#"{"provider":"OLLAMA","model_name":"llama3.1:8b"}"#;
const COHERE: &str =
    r#"{"provider":"COHERE","model_name":"command-a-03-2025","api_key":"co-fuzz-key-123456"}"#;
const BEDROCK: &str = r#"{"provider":"BEDROCK","model_name":"anthropic.claude-3-5-sonnet-20240620-v1:0","litellm_params":{"aws_region_name":"us-west-2","aws_access_key_id":"AKIAFUZZFUZZFUZZFUZZ","aws_secret_access_key":"fuzz-secret-fuzz-secret-fuzz-secret-0000"}}"#;
/// Vertex's three publishers: Gemini, Claude (rawPredict), OpenAI-compatible partners.
const VERTEX: [&str; 3] = [
    r#"{"provider":"VERTEX_AI","model_name":"gemini-2.5-pro","api_key":"ya29.fuzz-token","litellm_params":{"vertex_project":"proj-1","vertex_location":"europe-west4"}}"#,
    r#"{"provider":"VERTEX_AI","model_name":"claude-sonnet-4@20250514","api_key":"ya29.fuzz-token","litellm_params":{"vertex_project":"proj-1","vertex_location":"europe-west4"}}"#,
    r#"{"provider":"VERTEX_AI","model_name":"meta/llama-3.3-70b-instruct-maas","api_key":"ya29.fuzz-token","litellm_params":{"vertex_project":"proj-1","vertex_location":"europe-west4"}}"#,
];

macro_rules! endpoints {
    ($wire:expr, $($entry:expr),+) => {{
        static EPS: LazyLock<Vec<Endpoint>> =
            LazyLock::new(|| vec![$(endpoint_of(&$wire, $entry)),+]);
        &EPS
    }};
}

/// OpenAI chat completions (variant 0) and Azure OpenAI (1): the shared OpenAI SSE parser.
pub fn openai(data: &[u8]) {
    use llmr::providers::openai::{AzureOpenAi, OpenAi};
    match Input::parse(data) {
        Some(
            Input::Response { variant, .. }
            | Input::Error { variant, .. }
            | Input::Stream { variant, .. },
        ) if variant % 2 == 1 => wire_format(&AzureOpenAi, endpoints!(AzureOpenAi, AZURE), data),
        _ => wire_format(&OpenAi, endpoints!(OpenAi, OPENAI), data),
    }
}

pub fn anthropic(data: &[u8]) {
    use llmr::providers::anthropic::Anthropic;
    wire_format(&Anthropic, endpoints!(Anthropic, ANTHROPIC), data);
}

pub fn gemini(data: &[u8]) {
    use llmr::providers::gemini::Gemini;
    wire_format(&Gemini, endpoints!(Gemini, GEMINI), data);
}

/// Variant 0 Gemini on Vertex, 1 Claude (rawPredict, Google's error envelope around
/// Anthropic's), 2 OpenAI-compatible partner models.
pub fn vertex(data: &[u8]) {
    use llmr::providers::vertex::Vertex;
    wire_format(
        &Vertex,
        endpoints!(Vertex, VERTEX[0], VERTEX[1], VERTEX[2]),
        data,
    );
}

/// Ollama's NDJSON stream and its bodies.
pub fn ollama(data: &[u8]) {
    use llmr::providers::ollama::Ollama;
    wire_format(&Ollama, endpoints!(Ollama, OLLAMA), data);
}

pub fn cohere(data: &[u8]) {
    use llmr::providers::cohere::Cohere;
    wire_format(&Cohere, endpoints!(Cohere, COHERE), data);
}

/// Bedrock Converse. Modes 0-2 as for every provider (the stream as raw event-stream bytes);
/// mode 3 builds well-formed event-stream frames from text lines `TYPE PAYLOAD` (an `…Exception`
/// type is sent as an exception message), so that the fuzzer reaches the event payloads; an
/// error (mode 1) whose body starts with a line `x-amzn-ErrorType: NAME` carries that header.
pub fn bedrock(data: &[u8]) {
    use llmr::providers::bedrock::Bedrock;
    let eps = endpoints!(Bedrock, BEDROCK);
    match Input::parse(data) {
        Some(Input::Error { status, body, .. }) if body.starts_with(b"x-amzn-ErrorType: ") => {
            let (line, body) = match body.iter().position(|&b| b == b'\n') {
                Some(i) => (&body[..i], &body[i + 1..]),
                None => (body, &[][..]),
            };
            let mut headers = reqwest::header::HeaderMap::new();
            if let Ok(v) = reqwest::header::HeaderValue::from_bytes(&line[18..]) {
                headers.insert("x-amzn-errortype", v);
            }
            check_error(&Bedrock.parse_error_with_headers(&eps[0], status, &headers, body));
        }
        Some(Input::Stream { pieces, .. }) if data[0] & 3 == 3 => {
            let frames = frames_from_lines(&pieces.concat());
            let sizes = pieces.iter().map(|p| p.len());
            stream_both_ways(|| Bedrock.stream_parser(&eps[0]), &recut(&frames, sizes));
        }
        _ => wire_format(&Bedrock, eps, data),
    }
}

/// Event-stream frames from lines `TYPE PAYLOAD`.
pub fn frames_from_lines(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let (kind, payload) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &[][..]),
        };
        let kind = String::from_utf8_lossy(&kind[..kind.len().min(200)]);
        if kind.ends_with("Exception") {
            out.extend(eventstream::exception(&kind, payload));
        } else {
            out.extend(eventstream::event(&kind, payload));
        }
    }
    out
}

/// `bytes` cut into pieces of the given sizes in turn (the whole when there are none).
fn recut(bytes: &[u8], sizes: impl Iterator<Item = usize> + Clone) -> Vec<&[u8]> {
    let sizes: Vec<usize> = sizes.collect();
    if sizes.len() < 2 {
        return vec![bytes];
    }
    let mut pieces = Vec::new();
    let mut rest = bytes;
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, more) = rest.split_at(n.clamp(1, rest.len()));
        pieces.push(piece);
        rest = more;
    }
    pieces
}

/// Replicate: mode 0 a prediction (create or poll answer; variant = `max_tokens`), 1 an error,
/// 2 the SSE stream, 3 successive polls of one prediction (bodies separated by NUL bytes).
pub fn replicate(data: &[u8]) {
    use llmr::fuzzing::replicate as r;
    const MODEL: &str = "meta/meta-llama-3-70b-instruct";
    match Input::parse(data) {
        None => {}
        Some(Input::Response { variant, body }) => {
            let max_tokens = (variant != 0).then_some(variant as u64);
            check_response(r::prediction_response(MODEL, body, max_tokens));
        }
        Some(Input::Error { status, body, .. }) => {
            let (e, hint) = r::error(status, body);
            check_error(&e);
            assert!(hint.map_or(true, f64::is_finite));
        }
        Some(Input::Stream { pieces, .. }) if data[0] & 3 == 3 => {
            let whole = pieces.concat();
            let bodies: Vec<&[u8]> = whole.split(|&b| b == 0).collect();
            match r::polled_output(&bodies) {
                Ok(texts) => assert!(texts.iter().all(|t| !t.is_empty())),
                Err(e) => check_error(&e),
            }
        }
        Some(Input::Stream { pieces, .. }) => {
            stream_both_ways(|| Box::new(r::SseStream::new(MODEL)), &pieces)
        }
    }
}
