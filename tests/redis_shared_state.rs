//! Router state shared through Redis (`router_settings.redis_url`), against a real
//! `redis-server` per test: limits hold across OS processes, a cooldown reaches the other
//! processes within a second, and Redis down or slow never fails a request.
//!
//! The other processes are this test binary run again (`child_process` below), driving the
//! library through its C functions, against the parent's loopback stand-in.

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use std::ffi::{c_char, CStr, CString};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ask, complete, mock, openai, settings};
use llmr::ffi;
use llmr_testkit::StandIn;
use redis_server::RedisServer;
use serde_json::{json, Value};

const MINUTE_MS: u64 = 60_000;

fn now_ms() -> u64 {
    llmr::router::state::now_ms()
}

fn redis_conn(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
        .expect("a test connection to redis-server")
}

fn get(con: &mut redis::Connection, key: &str) -> Option<i64> {
    redis::cmd("GET").arg(key).query(con).expect("GET")
}

fn stats() -> Value {
    serde_json::from_str(&llmr::stats().expect("stats")).expect("stats JSON")
}

/// Waits (bounded) until this process's router says Redis is reachable.
fn wait_reachable(within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if stats()["shared_state"]["redis_reachable"] == json!(true) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// If `needed_ms` from now would cross a wall-clock minute, waits for the next minute
/// (bounded by a minute): the windows are wall-clock minutes.
fn within_one_minute(needed_ms: u64) {
    let into = now_ms() % MINUTE_MS;
    if into + needed_ms > MINUTE_MS - 500 {
        std::thread::sleep(Duration::from_millis(MINUTE_MS - into + 200));
    }
}

/// Log lines the library sends, collected.
fn capture_logs() -> Arc<Mutex<Vec<String>>> {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    llmr::set_logger(
        Some(move |_level, line: &str| sink.lock().unwrap().push(line.to_owned())),
        Some(llmr::log::Level::Info),
    );
    logs
}

fn count_lines(logs: &Mutex<Vec<String>>, needle: &str) -> usize {
    logs.lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

// ---- the child process: the same binary, driving the C ABI ----

fn c_call(
    f: unsafe extern "C" fn(*const c_char, *mut *mut c_char) -> ffi::llmr_status,
    arg: &str,
) -> (ffi::llmr_status, String) {
    let arg = CString::new(arg).expect("no NUL");
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: a valid C string in, an out pointer the library fills and we free.
    unsafe {
        let status = f(arg.as_ptr(), &mut out);
        let text = if out.is_null() {
            String::new()
        } else {
            let s = CStr::from_ptr(out).to_string_lossy().into_owned();
            ffi::llmr_string_free(out);
            s
        };
        (status, text)
    }
}

fn c_stats() -> Value {
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: as above.
    unsafe {
        assert_eq!(ffi::llmr_stats(&mut out), ffi::LLMR_OK);
        let s = CStr::from_ptr(out).to_string_lossy().into_owned();
        ffi::llmr_string_free(out);
        serde_json::from_str(&s).expect("stats JSON")
    }
}

/// Run as a child (`LLMR_REDIS_CHILD` set): inits from `LLMR_REDIS_CONFIG`, waits for Redis
/// and, with `LLMR_REDIS_WAIT_GO`, for a line on stdin (so that all start together), then sends requests and prints one `CHILD:` line each.
#[test]
fn child_process() {
    let Ok(role) = std::env::var("LLMR_REDIS_CHILD") else {
        return; // the normal test run: nothing to do here
    };
    let config = std::env::var("LLMR_REDIS_CONFIG").expect("LLMR_REDIS_CONFIG");
    let (status, err) = c_call(ffi::llmr_init, &config);
    assert_eq!(status, ffi::LLMR_OK, "init: {err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c_stats()["shared_state"]["redis_reachable"] != json!(true) {
        assert!(Instant::now() < deadline, "the child never reached Redis");
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("CHILD: ready");
    if std::env::var_os("LLMR_REDIS_WAIT_GO").is_some() {
        let mut go = String::new();
        std::io::stdin()
            .read_line(&mut go)
            .expect("the parent says go");
    }
    let n: usize = std::env::var("LLMR_REDIS_COUNT").map_or(1, |s| s.parse().unwrap());
    let req = ask("hello").to_string();
    for _ in 0..n {
        let (status, body) = c_call(ffi::llmr_complete, &req);
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if status == ffi::LLMR_OK {
            println!("CHILD: ok {}", v["llmr"]["deployment_id"]);
        } else {
            println!(
                "CHILD: err {status} {} {}",
                v["error"]["retry_after"].as_f64().unwrap_or(-1.0),
                now_ms()
            );
        }
        if role == "cooldown" {
            let flaky = c_stats()["deployments"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["id"] == "flaky" && d["cooling_down"] == json!(true));
            if flaky {
                println!("CHILD: cooled {}", now_ms());
                break;
            }
        }
    }
    // Fire-and-forget writes go out within a moment: let them before the process ends.
    std::thread::sleep(Duration::from_millis(500));
    println!("CHILD: done");
}

struct ChildRun {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

fn spawn_child(role: &str, config: &str, count: usize, wait_go: bool) -> ChildRun {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    if wait_go {
        cmd.env("LLMR_REDIS_WAIT_GO", "1").stdin(Stdio::piped());
    } else {
        cmd.stdin(Stdio::null());
    }
    let mut child = cmd
        .args([
            "child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LLMR_REDIS_CHILD", role)
        .env("LLMR_REDIS_CONFIG", config)
        .env("LLMR_REDIS_COUNT", count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the test binary runs again as a child");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // libtest may print its `test child_process ... ` before the first line.
            if let Some(at) = line.find("CHILD: ") {
                let _ = tx.send(line[at + 7..].to_owned());
            }
        }
    });
    ChildRun { child, lines: rx }
}

impl ChildRun {
    /// The child's lines up to `done` (bounded: 60 s).
    fn finish(mut self) -> Vec<String> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == "done" => break,
                Ok(l) => got.push(l),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("a child did not finish within 60 s; it said {got:?}");
                }
            }
        }
        let status = self.child.wait().expect("child exit");
        assert!(status.success(), "child failed: {got:?}");
        got
    }

    fn wait_for(&self, what: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Ok(l) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if l.starts_with(what) {
                return Some(l);
            }
        }
        None
    }
}

// ---- the tests ----

#[test]
fn processes_together_send_exactly_rpm_in_a_window() {
    let _g = common::lock();
    let redis = RedisServer::start(&[]);
    let standin = StandIn::start();
    let rpm = 10;
    let config = common::config(
        vec![openai(
            "limited",
            &standin.base("limited"),
            json!({"rpm": rpm}),
        )],
        settings(json!({"redis_url": redis.url(), "redis_prefix": "t-rpm", "redis_timeout": 0.5})),
    );
    let (children, each) = (3, 6);
    let mut runs: Vec<ChildRun> = (0..children)
        .map(|_| spawn_child("rpm", &config, each, true))
        .collect();
    for r in &runs {
        assert!(r.wait_for("ready").is_some(), "a child never got ready");
    }
    within_one_minute(15_000);
    let start_ms = now_ms();
    for r in &mut runs {
        let stdin = r.child.stdin.as_mut().unwrap();
        writeln!(stdin, "go").expect("a child reads its go");
    }
    let lines: Vec<String> = runs.into_iter().flat_map(ChildRun::finish).collect();
    let window_end = (start_ms / MINUTE_MS + 1) * MINUTE_MS;
    let ok = lines.iter().filter(|l| l.starts_with("ok")).count();
    let limited: Vec<&String> = lines.iter().filter(|l| l.starts_with("err")).collect();
    assert_eq!(
        standin.count("limited"),
        rpm,
        "the stand-in got exactly rpm requests from all processes: {lines:?}"
    );
    assert_eq!(ok, rpm, "{lines:?}");
    assert_eq!(limited.len(), children * each - rpm, "{lines:?}");
    for l in limited {
        let parts: Vec<&str> = l.split(' ').collect();
        assert_eq!(
            parts[1],
            ffi::LLMR_ERR_RATE_LIMITED.to_string(),
            "rate limited: {l}"
        );
        let retry_after: f64 = parts[2].parse().unwrap();
        let at: u64 = parts[3].parse().unwrap();
        let expected = window_end.saturating_sub(at) as f64 / 1000.0;
        assert!(
            retry_after > 0.0 && (retry_after - expected).abs() < 1.0,
            "retry_after {retry_after} s, the window ends in {expected} s: {l}"
        );
    }
    let mut con = redis_conn(&redis.url());
    let key = format!("t-rpm:{{limited}}:rpm:{}", start_ms / MINUTE_MS);
    assert_eq!(get(&mut con, &key), Some(rpm as i64), "the shared window");
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut con).unwrap();
    assert!(
        ttl > 0 && ttl <= 66_000,
        "a window key expires after its minute: {ttl} ms"
    );
}

#[test]
fn tpm_and_rpm_are_reserved_against_what_other_processes_used() {
    let _g = common::lock();
    let redis = RedisServer::start(&[]);
    let standin = StandIn::start();
    common::init(
        vec![
            openai("by-tokens", &standin.base("tokens"), json!({"tpm": 100})),
            openai("by-requests", &standin.base("requests"), json!({"rpm": 5})),
        ],
        settings(json!({"redis_url": redis.url(), "redis_prefix": "t-tpm", "redis_timeout": 0.5})),
    );
    assert!(wait_reachable(Duration::from_secs(10)));
    within_one_minute(5_000);
    let minute = now_ms() / MINUTE_MS;
    let mut con = redis_conn(&redis.url());
    // Another process used 95 of the 100 tokens and all 5 requests of this minute.
    let tpm_key = format!("t-tpm:{{by-tokens}}:tpm:{minute}");
    let _: () = redis::cmd("SET")
        .arg(&tpm_key)
        .arg(95)
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("t-tpm:{{by-requests}}:rpm:{minute}"))
        .arg(5)
        .query(&mut con)
        .unwrap();
    let e = complete(&ask("a prompt of more than five tokens, surely")).unwrap_err();
    assert_eq!(e["error"]["status"], "rate_limited", "{e}");
    let retry_after = e["error"]["retry_after"].as_f64().unwrap();
    let expected = ((minute + 1) * MINUTE_MS).saturating_sub(now_ms()) as f64 / 1000.0;
    assert!((retry_after - expected).abs() < 1.0, "{e}");
    assert_eq!(standin.total(), 0, "nothing was sent");
    assert_eq!(
        get(&mut con, &tpm_key),
        Some(95),
        "a refusal reserves nothing"
    );

    // Room again: the reservation, then the settle with the real usage, land in Redis.
    let _: () = redis::cmd("SET")
        .arg(&tpm_key)
        .arg(0)
        .query(&mut con)
        .unwrap();
    let resp = complete(&ask("hello")).unwrap();
    assert_eq!(common::served_by(&resp), "by-tokens");
    let total = resp["usage"]["total_tokens"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&mut con, &tpm_key) != Some(total) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        get(&mut con, &tpm_key),
        Some(total),
        "the window holds what was used"
    );
    assert_eq!(
        get(&mut con, &format!("t-tpm:{{by-tokens}}:rpm:{minute}")),
        Some(1)
    );
}

#[test]
fn a_cooldown_in_one_process_is_honoured_by_another_within_a_second() {
    let _g = common::lock();
    let redis = RedisServer::start(&[]);
    let standin = StandIn::start();
    let entries = vec![
        openai("flaky", &standin.base("e500"), json!({})),
        openai("good", &standin.base("good"), json!({})),
    ];
    let s = settings(json!({
        "redis_url": redis.url(),
        "redis_prefix": "t-cool",
        "redis_timeout": 0.5,
        "allowed_fails": 0,
        "num_retries": 0,
        "cooldown_time": 60,
    }));
    let config = common::config(entries.clone(), s.clone());
    common::init(entries, s);
    assert!(wait_reachable(Duration::from_secs(10)));
    let child = spawn_child("cooldown", &config, 40, false);
    let cooled = child
        .wait_for("cooled")
        .expect("the child's failure cooled `flaky` down");
    let cooled_at: u64 = cooled.split(' ').nth(1).unwrap().parse().unwrap();
    let sent_to_flaky = standin.count("e500");
    assert_eq!(
        sent_to_flaky, 1,
        "allowed_fails 0: one failure cools it down"
    );
    // This process sees it without having sent anything to `flaky`.
    let deadline = Instant::now() + Duration::from_secs(5);
    let seen_at = loop {
        let cooling = stats()["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == "flaky" && d["cooling_down"] == json!(true));
        if cooling {
            break now_ms();
        }
        assert!(
            Instant::now() < deadline,
            "the cooldown never reached this process"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        seen_at.saturating_sub(cooled_at) <= 1_000,
        "seen {} ms after it was set",
        seen_at - cooled_at
    );
    for _ in 0..20 {
        let resp = complete(&ask("hello")).unwrap();
        assert_eq!(common::served_by(&resp), "good");
    }
    assert_eq!(
        standin.count("e500"),
        sent_to_flaky,
        "nothing more went to `flaky`"
    );
    let reason = &stats()["deployments"][0]["cooldown"]["reason"];
    assert!(
        reason
            .as_str()
            .unwrap()
            .contains("failures within a minute"),
        "the reason travels: {reason}"
    );
    child.finish();
}

#[test]
fn redis_killed_and_restarted_mid_run_loses_no_request() {
    let _g = common::lock();
    let logs = capture_logs();
    let mut redis = RedisServer::start(&[]);
    let standin = StandIn::start();
    common::init(
        vec![openai("d", &standin.base("ok"), json!({"rpm": 10_000}))],
        settings(json!({"redis_url": redis.url(), "redis_prefix": "t-kill", "redis_timeout": 0.5})),
    );
    assert!(wait_reachable(Duration::from_secs(10)));
    let mut sent = 0;
    let mut run = |n: usize| {
        for _ in 0..n {
            let r = complete(&ask("hello"));
            assert!(r.is_ok(), "a request failed: {r:?}");
            sent += 1;
        }
    };
    run(10);
    redis.kill();
    run(10);
    assert!(
        stats()["shared_state"]["redis_reachable"] == json!(false),
        "Redis is down"
    );
    redis.restart();
    assert!(
        wait_reachable(Duration::from_secs(15)),
        "shared state resumes once Redis is back"
    );
    let before = now_ms() / MINUTE_MS;
    run(10);
    let after = now_ms() / MINUTE_MS;
    assert_eq!(standin.count("ok"), sent, "every request was answered");
    let mut con = redis_conn(&redis.url());
    let landed: i64 = (before..=after)
        .filter_map(|m| get(&mut con, &format!("t-kill:{{d}}:rpm:{m}")))
        .sum();
    assert_eq!(
        landed, 10,
        "the reservations after the restart are in the new Redis"
    );
    llmr::shutdown();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        count_lines(&logs, "shared state lost"),
        1,
        "one warning: {:?}",
        logs.lock().unwrap()
    );
    assert_eq!(count_lines(&logs, "shared state back"), 1);
    llmr::set_logger(None::<fn(llmr::log::Level, &str)>, None);
}

#[test]
fn a_slow_redis_does_not_slow_requests() {
    let _g = common::lock();
    let redis = RedisServer::start(&[]);
    let standin = StandIn::start();
    common::init(
        vec![openai("d", &standin.base("ok"), json!({"rpm": 10_000}))],
        settings(json!({"redis_url": redis.url(), "redis_prefix": "t-slow"})),
    );
    assert!(wait_reachable(Duration::from_secs(10)));
    assert!(complete(&ask("hello")).is_ok());
    let url = redis.url();
    let sleeper = std::thread::spawn(move || {
        let mut con = redis_conn(&url);
        let _: redis::RedisResult<()> = redis::cmd("DEBUG").arg("SLEEP").arg(3).query(&mut con);
    });
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    for _ in 0..5 {
        assert!(complete(&ask("hello")).is_ok());
    }
    assert!(
        t.elapsed() < Duration::from_millis(2_000),
        "answered via local state while Redis sleeps for 3 s: took {:?}",
        t.elapsed()
    );
    sleeper.join().unwrap();
    assert_eq!(standin.count("ok"), 6);
    assert!(
        wait_reachable(Duration::from_secs(10)),
        "shared state is back once Redis answers again"
    );
}

#[test]
fn a_redis_that_never_answers_does_not_block_requests() {
    let _g = common::lock();
    // Accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis://127.0.0.1:{}/0",
        silent.local_addr().unwrap().port()
    );
    common::init(
        vec![mock("a", json!({"rpm": 100}))],
        settings(json!({"redis_url": url})),
    );
    let t = Instant::now();
    for _ in 0..5 {
        assert!(complete(&ask("hello")).is_ok());
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let s = stats();
    assert_eq!(s["shared_state"]["enabled"], true);
    assert_eq!(s["shared_state"]["redis_reachable"], false);
}

#[test]
fn the_redis_password_never_shows() {
    let _g = common::lock();
    let logs = capture_logs();
    let redis = RedisServer::start(&["--requirepass", "right-pass-0123456789"]);
    let standin = StandIn::start();
    let entries = vec![openai("d", &standin.base("ok"), json!({"rpm": 100}))];

    // A wrong password: Redis refuses; requests go on; nothing shows the password.
    let wrong = format!("redis://:wrong-pass-9876543210@127.0.0.1:{}/0", redis.port);
    common::init(
        entries.clone(),
        settings(json!({"redis_url": wrong, "num_retries": 0})),
    );
    assert!(complete(&ask("hello")).is_ok());
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_lines(&logs, "shared state lost") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count_lines(&logs, "shared state lost"), 1);
    let mut seen = vec![
        llmr::stats().unwrap(),
        llmr::router_info().unwrap(),
        llmr::metrics_text(),
    ];
    seen.extend(logs.lock().unwrap().iter().cloned());
    llmr::shutdown();

    // The right one, from the environment: shared state works, the URL is shown masked.
    std::env::set_var(
        "LLMR_TEST_REDIS_URL",
        format!(
            "redis://default:right-pass-0123456789@127.0.0.1:{}/0",
            redis.port
        ),
    );
    common::init(
        entries,
        settings(json!({"redis_url": "os.environ/LLMR_TEST_REDIS_URL"})),
    );
    assert!(wait_reachable(Duration::from_secs(10)));
    let info: Value = serde_json::from_str(&llmr::router_info().unwrap()).unwrap();
    assert_eq!(
        info["router_settings"]["redis_url"],
        format!("redis://default:***@127.0.0.1:{}/0", redis.port)
    );
    seen.push(info.to_string());
    seen.push(llmr::stats().unwrap());
    llmr::shutdown();

    // A config that cannot be used says so without quoting the URL.
    let bad = common::config(
        vec![mock("a", json!({}))],
        settings(json!({"redis_url": "redis://:right-pass-0123456789@host:notaport"})),
    );
    let e = llmr::init(&bad).unwrap_err();
    assert_eq!(e.status, llmr::Status::Config);
    seen.push(e.to_json());
    let unset = common::config(
        vec![mock("a", json!({}))],
        settings(json!({"redis_url": "os.environ/LLMR_TEST_REDIS_UNSET"})),
    );
    let e = llmr::init(&unset).unwrap_err();
    assert!(e.message.contains("LLMR_TEST_REDIS_UNSET"), "{}", e.message);

    seen.extend(logs.lock().unwrap().iter().cloned());
    for text in &seen {
        assert!(
            !text.contains("right-pass-0123456789") && !text.contains("wrong-pass-9876543210"),
            "a Redis password shows: {text}"
        );
    }
    llmr::set_logger(None::<fn(llmr::log::Level, &str)>, None);
}

#[test]
fn reload_onto_the_same_redis_keeps_the_shared_store_and_shutdown_stops_it() {
    let _g = common::lock();
    let redis = RedisServer::start(&[]);
    let entries = vec![mock("a", json!({"rpm": 100}))];
    let s = settings(json!({"redis_url": redis.url(), "redis_prefix": "t-reload"}));
    common::init(entries.clone(), s.clone());
    assert!(wait_reachable(Duration::from_secs(10)));
    let clients = || -> usize {
        let mut con = redis_conn(&redis.url());
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
        list.lines().count() - 1 // less this one
    };
    assert_eq!(clients(), 1, "one connection per router");
    llmr::reload(&common::config(entries.clone(), s.clone())).unwrap();
    assert!(wait_reachable(Duration::from_secs(10)));
    assert_eq!(clients(), 1, "a reload onto the same Redis keeps it");
    let other = settings(json!({"redis_url": redis.url(), "redis_prefix": "t-reload-2"}));
    llmr::reload(&common::config(entries.clone(), other)).unwrap();
    assert!(wait_reachable(Duration::from_secs(10)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while clients() != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        clients(),
        1,
        "a reload onto another namespace closes the old connection"
    );
    llmr::shutdown();
    let deadline = Instant::now() + Duration::from_secs(5);
    while clients() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(clients(), 0, "shutdown closes the connection");
    let mut con = redis_conn(&redis.url());
    let procs: i64 = redis::cmd("ZCARD")
        .arg("t-reload-2:procs")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        procs, 0,
        "a process that shut down leaves the heartbeat set"
    );
}

#[test]
fn a_rediss_url_whose_tls_fails_leaves_requests_on_local_state() {
    let _g = common::lock();
    // A plain server behind a rediss:// URL: the TLS handshake fails, the library goes on.
    let redis = RedisServer::start(&[]);
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    common::init(
        vec![mock("a", json!({"rpm": 100}))],
        settings(json!({"redis_url": url})),
    );
    for _ in 0..3 {
        assert!(complete(&ask("hello")).is_ok());
    }
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(complete(&ask("hello")).is_ok());
    assert_eq!(stats()["shared_state"]["redis_reachable"], false);
}

#[test]
fn with_redis_lost_each_process_enforces_its_share_of_the_limit() {
    let _g = common::lock();
    let mut redis = RedisServer::start(&[]);
    let standin = StandIn::start();
    common::init(
        vec![openai("d", &standin.base("share"), json!({"rpm": 9}))],
        settings(
            json!({"redis_url": redis.url(), "redis_prefix": "t-share", "redis_timeout": 0.5}),
        ),
    );
    assert!(wait_reachable(Duration::from_secs(10)));
    within_one_minute(10_000);
    // Two other processes are alive: their heartbeats.
    let mut con = redis_conn(&redis.url());
    let _: () = redis::cmd("ZADD")
        .arg("t-share:procs")
        .arg(now_ms())
        .arg("other-1")
        .arg(now_ms())
        .arg("other-2")
        .query(&mut con)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats()["shared_state"]["processes"] != json!(3) {
        assert!(
            Instant::now() < deadline,
            "the heartbeats were never counted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(complete(&ask("hello")).is_ok(), "sent through Redis");
    redis.kill();
    // 9 rpm over 3 processes: 3 for this one this minute, of which it used 1 already.
    let results: Vec<Result<Value, Value>> = (0..5).map(|_| complete(&ask("hello"))).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 2, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r["error"]["status"], "rate_limited", "{r}");
    }
    assert_eq!(standin.count("share"), 3);
}

#[test]
fn other_processes_in_flight_latency_and_failures_count_here() {
    let _g = common::lock();
    let redis = RedisServer::start(&[]);
    let standin = StandIn::start();
    common::init(
        vec![
            openai("flaky", &standin.base("e500"), json!({})),
            openai("good", &standin.base("good"), json!({})),
        ],
        settings(json!({
            "redis_url": redis.url(),
            "redis_prefix": "t-view",
            "redis_timeout": 0.5,
            "allowed_fails": 3,
            "num_retries": 0,
            "routing_strategy": "least-busy",
        })),
    );
    assert!(wait_reachable(Duration::from_secs(10)));
    // What other processes wrote: 5 requests in flight on `good`, two latency samples, and
    // 3 failures of `flaky` within the minute (allowed_fails 3: one more cools it down).
    let mut con = redis_conn(&redis.url());
    let _: () = redis::cmd("SET")
        .arg("t-view:{good}:inflight")
        .arg(5)
        .arg("PX")
        .arg(60_000)
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("t-view:{good}:latency")
        .arg("3000,10")
        .arg("1000,10")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("t-view:{flaky}:fails")
        .arg(3)
        .arg("PX")
        .arg(60_000)
        .query(&mut con)
        .unwrap();
    let good = |s: &Value| {
        s["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == "good")
            .cloned()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let g = good(&stats());
        if g["in_flight"] == json!(5) && g["latency_ms"]["avg"] == json!(2000.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other processes' figures never showed: {g}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // least-busy: `good` is busy elsewhere, so `flaky` is picked — and its one failure here
    // is the fourth within the minute.
    let e = complete(&ask("hello")).unwrap_err();
    assert_eq!(e["error"]["deployment_id"], "flaky", "{e}");
    let flaky = &stats()["deployments"][0];
    assert_eq!(flaky["cooling_down"], true, "{flaky}");
    assert!(
        flaky["cooldown"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("4 failures"),
        "{flaky}"
    );
}
