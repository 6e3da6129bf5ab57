//! The C harness (`tests/c/harness.c`), built and run from `cargo test`, the way rustls-ffi
//! drives its C tests.
//!
//! Each test compiles the harness with the system C compiler (`$CC`, else `cc`) against the
//! `libllmr.so` of this same profile (`target/<profile>/`, found from this test's own path),
//! runs it against an in-process stand-in (`LLMR_STANDIN_URL`), and asserts it exits 0. What it
//! printed is shown when it fails. Three builds:
//!
//! - plain, with `LLMR_LOG=trace` so that every log line is scanned for the API keys;
//! - `-fsanitize=address,undefined`: the sanitizer runtimes are linked into the executable, so
//!   they are loaded first and intercept `malloc`/`free` for the whole process, Rust's allocator
//!   included (Rust's `System` allocator calls them). LeakSanitizer checks at exit; the library's
//!   process-wide statics (runtime, HTTP client) are still reachable then and are not reported.
//!   The Rust code itself is not instrumented: ASan sees misuse at the boundary (a string freed
//!   twice, or with `free`; a write past a returned string) and leaks, not Rust-internal bugs.
//!   No LD_PRELOAD and no suppressions are needed;
//! - under valgrind (`--leak-check=full --errors-for-leak-kinds=definite`), `--quick` mode,
//!   when `valgrind` is on PATH (skipped with a note otherwise), with `tests/c/valgrind.supp`:
//!   one narrow suppression for the `http` crate's header-name scratch buffer (see the file).
//!
//! Each run also drives the asynchronous calls (`llmr_complete_async`, `llmr_stream_async`,
//! `llmr_cancel`): on MOCK deployments (1,000 requests in flight from one thread, half of them
//! cancelled; shutdown with requests in flight; callbacks that call back into the library) and
//! on the stand-in, checking that every callback runs on the one `llmr-callbacks` thread, never
//! two at once, and every `on_done` exactly once.
//!
//! And hostile input and timing: 100 MB strings, deep nesting, init from 16 threads at once,
//! `llmr_shutdown` with blocking and asynchronous calls and streams in flight (then `llmr_init`
//! again), callbacks that shut down and initialise from inside, slow callbacks.
//!
//! Also: the header compiles as C99/C11 and as C++11/C++20 with warnings as errors, and the
//! offline demo (`examples/demo.c`, what `make demo` runs) builds strictly and succeeds.
//!
//! The harness runs one at a time (a lock): they share two cores and time-sensitive checks.
//! `cargo build --release --workspace` (or `make build`) must have built `libllmr.so`;
//! `cargo test --release` builds it too when the library changed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use llmr_testkit::StandIn;

/// The keys the harness configures (keep in step with tests/c/harness.c).
const KEY_INLINE: &str = "sk-harness-inline-3b9d0f6e2a7c41d8";
const KEY_ENV: &str = "sk-harness-env-8e1f4c7a9b2d05e3";

const C_FLAGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-g"];

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>/`: this test runs as `target/<profile>/deps/c_harness-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let deps = exe.parent().expect("deps/");
    deps.parent().expect("target/<profile>/").to_path_buf()
}

/// The shared library the harness links, checked to exist.
fn lib_dir() -> PathBuf {
    let dir = profile_dir();
    let so = dir.join("libllmr.so");
    assert!(
        so.is_file(),
        "{} is missing: build it first with `cargo build --release --workspace` (or `make build`)",
        so.display()
    );
    dir
}

/// A scratch directory for this test process's binaries, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("c-harness-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn c_compiler() -> String {
    std::env::var("CC")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "cc".to_owned())
}

/// The first C++ compiler that answers `--version`: `$CXX`, `c++`, `g++`, `clang++`.
fn cpp_compiler() -> Option<String> {
    std::env::var("CXX")
        .ok()
        .into_iter()
        .chain(["c++", "g++", "clang++"].map(str::to_owned))
        .find(|c| on_path(c))
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What a bounded run produced.
struct Run {
    /// `None` when it ran past its time limit and was killed.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn report(&self, what: &str) -> String {
        format!(
            "{what}: {} after {:.1} s\n--- failed checks ---\n{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            match self.status {
                Some(s) => format!("exited with {s}"),
                None => "killed: ran past its time limit".to_owned(),
            },
            self.took.as_secs_f64(),
            failed_checks(&self.stderr),
            tail(&self.stdout, 20_000),
            tail(&self.stderr, 60_000),
        )
    }

    fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// The harness's failed checks (`file:line: FAILED [section]: ...` and the `got:` line after
/// each), picked out of its stderr: with `LLMR_LOG=trace` the log lines around them can push
/// them out of the tail shown.
fn failed_checks(stderr: &str) -> String {
    let mut out = String::new();
    let mut keep_next = false;
    for line in stderr.lines() {
        if line.contains(": FAILED [") {
            out.push_str(line);
            out.push('\n');
            keep_next = true;
        } else if keep_next && line.starts_with("    ") {
            out.push_str(head(line, 2_000));
            out.push('\n');
        } else {
            keep_next = false;
        }
        if out.len() > 40_000 {
            out.push_str("...\n");
            break;
        }
    }
    if out.is_empty() {
        out.push_str("(none)\n");
    }
    out
}

/// The first `max` bytes of a text (at most), cut at a character boundary.
fn head(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The last `max` bytes of a text (logs can be long; failures are at the end).
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Runs a command with stdin closed, collecting its output, killing it after `limit`.
fn run(cmd: &mut Command, limit: Duration) -> Run {
    run_with_input(cmd, None, limit)
}

/// Like [`run`], with `input` (when given) written to the command's stdin.
fn run_with_input(cmd: &mut Command, input: Option<&str>, limit: Duration) -> Run {
    let started = Instant::now();
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let text = text.to_owned();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(text.as_bytes());
        });
    }
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = collect(Box::new(child.stdout.take().expect("piped stdout")));
    let err = collect(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = started + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    Run {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        took: started.elapsed(),
    }
}

/// Compiles C sources into `out`, linking libllmr.so with an rpath to it.
fn build_c(sources: &[&str], extra: &[&str], out: &Path) {
    let lib = lib_dir();
    let mut cmd = Command::new(c_compiler());
    cmd.args(C_FLAGS)
        .args(extra)
        .arg("-I")
        .arg(repo().join("include"))
        .args(sources.iter().map(|s| repo().join(s)))
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(&lib)
        .arg("-lllmr")
        .arg(format!("-Wl,-rpath,{}", lib.display()));
    let r = run(&mut cmd, Duration::from_secs(120));
    assert!(
        r.success(),
        "{}",
        r.report(&format!("compiling {sources:?}"))
    );
}

/// Neither key appears in anything the process printed.
fn assert_no_keys(r: &Run, what: &str) {
    for key in [KEY_INLINE, KEY_ENV] {
        for (stream, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
            assert!(
                !text.contains(key),
                "{what}: an API key appears in the harness's {stream}"
            );
        }
    }
}

/// Runs the harness binary against a fresh stand-in; asserts it passed and leaked no key.
fn run_harness(
    command: &mut Command,
    standin: &StandIn,
    what: &str,
    limit: Duration,
    quick: bool,
) -> Run {
    command.env("LLMR_STANDIN_URL", standin.url());
    if quick {
        command.arg("--quick");
    }
    let r = run(command, limit);
    assert!(r.success(), "{}", r.report(what));
    assert!(
        r.stdout.contains("checks, 0 failed"),
        "{}",
        r.report(&format!("{what}: no summary line"))
    );
    assert!(
        r.stdout.contains("stand-in cases ran"),
        "{}",
        r.report(&format!("{what}: the stand-in cases did not run"))
    );
    for (line, cases) in [
        ("async cases ran", "asynchronous (MOCK)"),
        ("async stand-in cases ran", "asynchronous stand-in"),
        ("hostile cases ran", "hostile input"),
    ] {
        assert!(
            r.stdout.contains(line),
            "{}",
            r.report(&format!("{what}: the {cases} cases did not run"))
        );
    }
    assert_no_keys(&r, what);
    eprintln!("{what}: passed in {:.1} s", r.took.as_secs_f64());
    r
}

/// The keys did reach the provider, as the Authorization header: the harness's "no key in any
/// output" is about a key that was really in use.
fn assert_keys_were_sent(standin: &StandIn) {
    let sent = standin
        .last_request("ok")
        .expect("the harness called tenant `ok`");
    let want = format!("Bearer {KEY_INLINE}");
    assert_eq!(sent.header("authorization"), Some(want.as_str()));
    let sent = standin
        .last_request("ok-custom")
        .expect("the harness called tenant `ok-custom`");
    let want = format!("Bearer {KEY_ENV}");
    assert_eq!(sent.header("authorization"), Some(want.as_str()));
}

#[test]
fn c_harness_passes() {
    let _g = serial();
    let scratch = Scratch::new("plain");
    let exe = scratch.path("harness");
    build_c(&["tests/c/harness.c"], &["-O1"], &exe);
    let standin = StandIn::start();
    let mut cmd = Command::new(&exe);
    cmd.env("LLMR_LOG", "trace");
    run_harness(
        &mut cmd,
        &standin,
        "harness",
        Duration::from_secs(180),
        false,
    );
    assert_keys_were_sent(&standin);
    drop(standin);
}

#[test]
fn c_harness_passes_under_address_and_undefined_sanitizers() {
    let _g = serial();
    let scratch = Scratch::new("asan");
    let exe = scratch.path("harness-asan");
    build_c(
        &["tests/c/harness.c"],
        &[
            "-O1",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined",
            "-fno-omit-frame-pointer",
        ],
        &exe,
    );
    let standin = StandIn::start();
    let mut cmd = Command::new(&exe);
    cmd.env(
        "ASAN_OPTIONS",
        "detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86:strict_string_checks=1",
    )
    .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    .env("LSAN_OPTIONS", "exitcode=87");
    let r = run_harness(
        &mut cmd,
        &standin,
        "harness (ASan+UBSan)",
        Duration::from_secs(300),
        false,
    );
    assert!(
        !r.stderr.contains("Sanitizer") && !r.stderr.contains("runtime error:"),
        "{}",
        r.report("harness (ASan+UBSan): a sanitizer reported")
    );
    drop(standin);
}

#[test]
fn c_harness_passes_under_valgrind() {
    if !on_path("valgrind") {
        eprintln!("NOTE: valgrind is not on PATH: the valgrind run of the C harness is skipped");
        return;
    }
    let _g = serial();
    let scratch = Scratch::new("valgrind");
    let exe = scratch.path("harness-valgrind");
    build_c(&["tests/c/harness.c"], &["-O1"], &exe);
    let standin = StandIn::start();
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--show-leak-kinds=definite",
        "--quiet",
    ])
    .arg(format!(
        "--suppressions={}",
        repo().join("tests/c/valgrind.supp").display()
    ))
    .arg(&exe);
    run_harness(
        &mut cmd,
        &standin,
        "harness (valgrind)",
        Duration::from_secs(600),
        true,
    );
    drop(standin);
}

#[test]
fn header_compiles_as_c_and_cpp() {
    let scratch = Scratch::new("header");
    let src = repo().join("tests/c/header_check.c");
    let include = repo().join("include");
    let check = |compiler: &str, flags: &[&str]| {
        let mut cmd = Command::new(compiler);
        cmd.args(flags)
            .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-c"])
            .arg("-I")
            .arg(&include)
            .arg(&src)
            .arg("-o")
            .arg(scratch.path("header_check.o"));
        let r = run(&mut cmd, Duration::from_secs(60));
        assert!(
            r.success(),
            "{}",
            r.report(&format!("{compiler} {flags:?} on llmr.h"))
        );
    };
    let cc = c_compiler();
    check(&cc, &["-std=c99"]);
    check(&cc, &["-std=c11"]);
    match cpp_compiler() {
        Some(cxx) => {
            check(&cxx, &["-x", "c++", "-std=c++11"]);
            check(&cxx, &["-x", "c++", "-std=c++20"]);
        }
        None => eprintln!("NOTE: no C++ compiler on PATH: the C++ check of llmr.h is skipped"),
    }
}

#[test]
fn demo_builds_strictly_and_runs_offline() {
    let _g = serial();
    let scratch = Scratch::new("demo");
    let exe = scratch.path("llmr-demo");
    build_c(&["examples/demo.c"], &["-O2"], &exe);
    let r = run(
        Command::new(&exe).arg(repo().join("examples/mock_config.json")),
        Duration::from_secs(60),
    );
    assert!(r.success(), "{}", r.report("demo"));
    for want in [
        "deployment(s) ready",
        "router info: {",
        "finish_reason: \"stop\"",
        "usage: {",
        "llmr: {",
        "handled context_overflow",
        "stats: {",
        "done",
    ] {
        assert!(
            r.stdout.contains(want),
            "{}",
            r.report(&format!("demo: no `{want}`"))
        );
    }
}

/// `examples/llmr-chat.c` (what `make build` puts in target/release/llmr-chat), built strictly
/// into a scratch directory, with a config file written next to it.
struct Chat {
    scratch: Scratch,
    exe: PathBuf,
}

impl Chat {
    fn build(name: &str) -> Chat {
        let scratch = Scratch::new(name);
        let exe = scratch.path("llmr-chat");
        build_c(&["examples/llmr-chat.c"], &["-O2"], &exe);
        Chat { scratch, exe }
    }

    fn config(&self, file: &str, json: &serde_json::Value) -> PathBuf {
        let path = self.scratch.path(file);
        std::fs::write(&path, json.to_string()).expect("write the config");
        path
    }

    fn run(&self, args: &[&str], input: Option<&str>) -> Run {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args).env("LLMR_LOG", "error");
        let r = run_with_input(&mut cmd, input, Duration::from_secs(60));
        assert_no_keys(&r, "llmr-chat");
        r
    }
}

fn exit_code(r: &Run) -> Option<i32> {
    r.status.and_then(|s| s.code())
}

#[test]
fn llmr_chat_streams_a_mock_answer_and_reports_errors_by_status() {
    let _g = serial();
    let chat = Chat::build("chat-mock");
    let mocks = chat.config(
        "mock.json",
        &serde_json::json!({"global_llm_configs": [
            {"id": "m-small", "provider": "MOCK", "model_name": "small", "max_input_tokens": 2000,
             "litellm_params": {"mock_response": "small says hi", "mock_chunk_delay_ms": 5}},
            {"id": "m-large", "provider": "MOCK", "model_name": "large", "max_input_tokens": 8000,
             "litellm_params": {"mock_response": "large says \"hi\" \u{e9}\u{1F600}", "mock_chunk_delay_ms": 5}},
            {"id": "skipped", "provider": "NOPE", "model_name": "x", "api_key": KEY_INLINE}
        ]}),
    );
    let mocks = mocks.to_str().expect("a UTF-8 path");

    // The answer, streamed whole to stdout; the prompt from the arguments.
    let r = chat.run(&[mocks, "what", "is", "up?"], None);
    assert!(r.success(), "{}", r.report("llmr-chat"));
    assert!(
        ["small says hi\n", "large says \"hi\" \u{e9}\u{1F600}\n"].contains(&r.stdout.as_str()),
        "{}",
        r.report("llmr-chat: the answer")
    );

    // --model auto-large reaches the larger window only; the prompt from stdin; --stats.
    let r = chat.run(
        &[
            "--stats",
            "--model",
            "auto-large",
            "--system",
            "be brief",
            mocks,
            "-",
        ],
        Some("a question\non two lines\n"),
    );
    assert!(r.success(), "{}", r.report("llmr-chat --stats"));
    assert!(
        r.stdout
            .starts_with("large says \"hi\" \u{e9}\u{1F600}\nanswered by deployment m-large (mock) in 1 attempt(s)"),
        "{}",
        r.report("llmr-chat --stats: the answer and who gave it")
    );
    for want in [
        "--- router info\n{\n",
        "\"id\": \"m-small\"",
        "\"id\": \"m-large\"",
        "\"groups\": [\n",
        "--- stats\n{\n",
        "\"successes\": 1",
        "\"cooling_down\": false",
    ] {
        assert!(
            r.stdout.contains(want),
            "{}",
            r.report(&format!("llmr-chat --stats: no `{want}`"))
        );
    }
    assert!(
        !r.stdout.contains("\"skipped\""),
        "{}",
        r.report("a skipped entry in the info")
    );

    // A failure: the status name and message on stderr, the status value as the exit code.
    let failing = chat.config(
        "failing.json",
        &serde_json::json!({"global_llm_configs": [
            {"id": "e", "provider": "MOCK", "model_name": "m",
             "litellm_params": {"mock_error": "rate_limited"}}
        ], "router_settings": {"num_retries": 0, "retry_after": 0}}),
    );
    let r = chat.run(&["--stats", failing.to_str().unwrap(), "hi"], None);
    assert_eq!(
        exit_code(&r),
        Some(5),
        "{}",
        r.report("llmr-chat: rate_limited")
    );
    assert!(
        r.stderr.contains("llmr-chat: rate_limited: "),
        "{}",
        r.report("llmr-chat: the error line")
    );
    assert!(
        r.stdout.starts_with("--- router info") && r.stdout.contains("\"rate_limited\": 1"),
        "{}",
        r.report("llmr-chat --stats after a failure")
    );

    let unusable = chat.config(
        "unusable.json",
        &serde_json::json!({"global_llm_configs": [
            {"id": "k", "provider": "OPENAI", "model_name": "gpt-4o"}
        ]}),
    );
    let r = chat.run(&[unusable.to_str().unwrap(), "hi"], None);
    assert_eq!(exit_code(&r), Some(2), "{}", r.report("llmr-chat: config"));
    assert!(
        r.stderr.contains("llmr-chat: config: ") && r.stderr.contains("api_key"),
        "{}",
        r.report("llmr-chat: config")
    );

    let r = chat.run(&["--model", "nope", mocks, "hi"], None);
    assert_eq!(
        exit_code(&r),
        Some(1),
        "{}",
        r.report("llmr-chat: unknown group")
    );
    assert!(
        r.stderr.contains("invalid_argument: unknown model group"),
        "{}",
        r.report("llmr-chat")
    );

    let r = chat.run(&[mocks], None);
    assert_eq!(exit_code(&r), Some(64), "{}", r.report("llmr-chat: usage"));
    assert!(
        r.stderr.contains("usage: llmr-chat"),
        "{}",
        r.report("llmr-chat: usage")
    );
    let r = chat.run(&["--bogus", mocks, "hi"], None);
    assert_eq!(
        exit_code(&r),
        Some(64),
        "{}",
        r.report("llmr-chat: bad option")
    );
    let missing = chat.scratch.path("missing.json");
    let r = chat.run(&[missing.to_str().unwrap(), "hi"], None);
    assert_eq!(
        exit_code(&r),
        Some(66),
        "{}",
        r.report("llmr-chat: missing config")
    );
}

#[test]
fn llmr_chat_talks_to_a_real_http_provider() {
    let _g = serial();
    let chat = Chat::build("chat-standin");
    let standin = StandIn::start();
    let entry = |id: &str, tenant: &str| {
        serde_json::json!({"id": id, "provider": "OPENAI", "model_name": "gpt-4o-mini",
            "api_key": KEY_INLINE, "api_base": standin.base(tenant)})
    };
    let ok = chat.config(
        "ok.json",
        &serde_json::json!({"global_llm_configs": [entry("chat-ok", "ok")]}),
    );
    let r = chat.run(
        &[
            "--stats",
            "--system",
            "be brief",
            ok.to_str().unwrap(),
            "hello",
            "stand-in",
        ],
        None,
    );
    assert!(r.success(), "{}", r.report("llmr-chat on the stand-in"));
    assert!(
        r.stdout.starts_with(
            "echo: hello stand-in\nanswered by deployment chat-ok (openai) in 1 attempt(s)"
        ),
        "{}",
        r.report("llmr-chat on the stand-in: the answer")
    );
    assert!(
        r.stdout.contains("\"id\": \"chat-ok\""),
        "{}",
        r.report("llmr-chat --stats")
    );
    let sent = standin
        .last_request("ok")
        .expect("llmr-chat called the stand-in");
    assert_eq!(sent.body["stream"], true, "{}", sent.body);
    assert_eq!(sent.body["messages"][0]["role"], "system", "{}", sent.body);
    assert_eq!(
        sent.body["messages"][0]["content"], "be brief",
        "{}",
        sent.body
    );
    assert_eq!(
        sent.body["messages"][1]["content"], "hello stand-in",
        "{}",
        sent.body
    );

    let refused = chat.config(
        "refused.json",
        &serde_json::json!({"global_llm_configs": [entry("chat-401", "e401")],
            "router_settings": {"num_retries": 0}}),
    );
    let r = chat.run(&[refused.to_str().unwrap(), "hi"], None);
    assert_eq!(
        exit_code(&r),
        Some(6),
        "{}",
        r.report("llmr-chat: a refused key")
    );
    assert!(
        r.stderr.contains("llmr-chat: auth: "),
        "{}",
        r.report("llmr-chat: auth")
    );
    assert!(r.stdout.is_empty(), "{}", r.report("llmr-chat: auth"));
}

/// The sanitizer and valgrind runs would see a leak across the boundary: `leak_canary.c` keeps
/// one response without freeing it, and both tools must say so.
#[test]
fn sanitizers_and_valgrind_see_a_leaked_llmr_string() {
    let _g = serial();
    let scratch = Scratch::new("canary");

    let asan = scratch.path("leak-canary-asan");
    build_c(
        &["tests/c/leak_canary.c"],
        &[
            "-O1",
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
        ],
        &asan,
    );
    let r = run(
        Command::new(&asan).env("ASAN_OPTIONS", "detect_leaks=1"),
        Duration::from_secs(60),
    );
    assert!(
        !r.success() && r.stderr.contains("LeakSanitizer: detected memory leaks"),
        "{}",
        r.report("leak canary (ASan): the leak was not reported")
    );

    if !on_path("valgrind") {
        eprintln!("NOTE: valgrind is not on PATH: its leak canary is skipped");
        return;
    }
    let plain = scratch.path("leak-canary");
    build_c(&["tests/c/leak_canary.c"], &["-O1"], &plain);
    let r = run(
        Command::new("valgrind")
            .args([
                "--error-exitcode=99",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--show-leak-kinds=definite",
            ])
            .arg(&plain),
        Duration::from_secs(120),
    );
    assert!(
        r.status.and_then(|s| s.code()) == Some(99) && r.stderr.contains("definitely lost"),
        "{}",
        r.report("leak canary (valgrind): the leak was not reported")
    );
}
