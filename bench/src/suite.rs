//! The whole run: the stand-in in its own process, then each row in its own, one after
//! another; the stand-in's CPU is read around each row.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::modes::{Kind, Mode, MODES};

struct StandIn {
    child: Child,
    port: u16,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl StandIn {
    fn start() -> StandIn {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .arg("standin")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the stand-in");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port");
        let port = line.trim().parse().expect("stand-in port");
        StandIn { child, port }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The stand-in's CPU seconds so far.
    fn cpu_s(&self) -> f64 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("stand-in");
        write!(
            s,
            "GET /__cpu HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .expect("write");
        let mut r = String::new();
        s.read_to_string(&mut r).expect("read");
        r.rsplit("\r\n\r\n")
            .next()
            .and_then(|b| b.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1e6
    }
}

/// A redis-server of the run's own on a free loopback port, stopped at the end.
struct Redis {
    child: Child,
    url: String,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    /// Err says why not (no `redis-server`, or it did not come up).
    fn start() -> Result<Redis, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("redis-server could not start ({e}); apt-get install redis-server")
            })?;
        let redis = Redis {
            child,
            url: format!("redis://127.0.0.1:{port}/0"),
        };
        for _ in 0..100 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let mut pong = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut pong).is_ok()
                    && &pong == b"+PONG\r\n"
                {
                    return Ok(redis);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(format!("redis-server on port {port} did not answer"))
    }
}

fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The Python of a venv under target/ with litellm installed, installing it the first time;
/// Err says why not.
fn litellm_python() -> Result<PathBuf, String> {
    let venv = bench_dir().join("../target/bench-venv");
    let py = venv.join("bin/python");
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import litellm"])
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has(&py) {
        return Ok(py);
    }
    eprintln!("bench: installing litellm into {} (once)", venv.display());
    let ok = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "litellm"])
            .status()
            .is_ok_and(|s| s.success());
    if ok && has(&py) {
        Ok(py)
    } else {
        Err("could not create target/bench-venv with litellm (python3 -m venv, pip install litellm)".into())
    }
}

fn run_row(
    mode: &Mode,
    standin: &StandIn,
    litellm: &Result<PathBuf, String>,
    redis: &Result<Redis, String>,
) -> Option<Value> {
    match redis {
        Err(why) if mode.redis => {
            eprintln!("bench: {}: skipped: {why}", mode.name);
            return None;
        }
        _ => {}
    }
    let mut cmd = match (mode.kind, litellm) {
        (Kind::LiteLlm, Err(why)) => {
            eprintln!("bench: {}: skipped: {why}", mode.name);
            return None;
        }
        (Kind::LiteLlm, Ok(py)) => {
            let mut c = Command::new(py);
            c.arg(bench_dir().join("litellm_row.py"))
                .arg(mode.name)
                .arg(standin.base())
                .arg(mode.concurrency.to_string())
                .arg(mode.requests().to_string())
                .arg(mode.warmup().min(200).to_string())
                .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                .env("LITELLM_LOG", "ERROR")
                .env("NO_PROXY", "127.0.0.1,localhost")
                .env_remove("HTTP_PROXY")
                .env_remove("HTTPS_PROXY");
            c
        }
        _ => {
            let mut c = Command::new(std::env::current_exe().expect("exe"));
            c.arg("row").arg(mode.name).arg(standin.base());
            if let Ok(r) = redis {
                c.env("LLMR_BENCH_REDIS_URL", &r.url);
            }
            c
        }
    };
    eprintln!("bench: {} ({}) …", mode.name, mode.what);
    let cpu0 = standin.cpu_s();
    let out = cmd.stderr(Stdio::inherit()).output().expect("run the row");
    let standin_cpu = standin.cpu_s() - cpu0;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
        eprintln!("bench: {}: failed ({}): {stdout}", mode.name, out.status);
        return None;
    };
    let mut v: Value = serde_json::from_str(line).expect("row result JSON");
    v["standin_cpu_s"] = standin_cpu.into();
    eprintln!("bench: {} → {line}", mode.name);
    Some(v)
}

/// The rows behind the ratio and added-latency targets, each llmr row after its bare one.
const ROUND_ROWS: [&str; 20] = [
    "select-1",
    "select-1000",
    "bare-c1",
    "llmr-complete-1t",
    "bare-c64",
    "bare-64t",
    "llmr-complete-64t",
    "llmr-async-64",
    "bare-stream-c64",
    "bare-stream-64t",
    "llmr-stream-64t",
    "llmr-stream-async-64",
    "bare-c64-h2",
    "bare-64t-h2",
    "llmr-complete-64t-h2",
    "llmr-async-64-h2",
    "bare-stream-c64-h2",
    "bare-stream-64t-h2",
    "llmr-stream-64t-h2",
    "llmr-stream-async-64-h2",
];

/// How many more rounds of [`ROUND_ROWS`] run after the first pass (`BENCH_ROUNDS`, default 8:
/// a round takes ~12 s, and with 5 rounds one slow spell of this VM still moved a median).
fn extra_rounds() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

pub fn run(only: &[String]) {
    crate::measure::raise_nofile();
    let selected: Vec<&Mode> = MODES
        .iter()
        .filter(|m| only.is_empty() || only.iter().any(|o| o == m.name))
        .collect();
    let litellm = if selected.iter().any(|m| m.kind == Kind::LiteLlm) {
        litellm_python()
    } else {
        Err("not selected".into())
    };
    let redis = if selected.iter().any(|m| m.redis) {
        Redis::start()
    } else {
        Err("not selected".into())
    };
    let standin = StandIn::start();
    let run_rows = |modes: &[&'static Mode]| -> Vec<(&'static Mode, Value)> {
        modes
            .iter()
            .filter_map(|m| Some((*m, run_row(m, &standin, &litellm, &redis)?)))
            .collect()
    };
    let results = run_rows(&selected);
    // The target rows again, bare and llmr one after the other, for the ratio targets: this
    // VM's speed drifts by ±20–30% from one minute to the next, so one pass cannot tell a
    // ratio of 0.8 from one of 0.9 (bench/README.md, "Rounds").
    let again: Vec<&Mode> = selected
        .iter()
        .copied()
        .filter(|m| ROUND_ROWS.contains(&m.name))
        .collect();
    let mut rounds = vec![results
        .iter()
        .filter(|(m, _)| ROUND_ROWS.contains(&m.name))
        .cloned()
        .collect::<Vec<_>>()];
    let extra = extra_rounds();
    for round in 1..=extra {
        eprintln!("bench: round {} of {} …", round + 1, extra + 1);
        rounds.push(run_rows(&again));
    }
    drop(standin);
    drop(redis);
    let table = crate::report::render(&results, &rounds, litellm.as_ref().err());
    println!("{table}");
    if only.is_empty() {
        let path = bench_dir().join("results.md");
        std::fs::write(&path, table).expect("write bench/results.md");
        eprintln!("bench: wrote {}", path.display());
    }
}
