//! The table of one run, the targets checked against it, and the machine it ran on.

use std::fmt::Write;
use std::process::Command;

use serde_json::Value;

use crate::modes::{Kind, Mode};

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// A figure to one decimal, or "—" where the row has none (LiteLLM's allocations).
fn one_decimal(x: f64) -> String {
    if x.is_nan() {
        "—".into()
    } else {
        format!("{x:.1}")
    }
}

fn get<'a>(results: &'a [(&Mode, Value)], name: &str) -> Option<&'a Value> {
    results.iter().find(|(m, _)| m.name == name).map(|(_, v)| v)
}

/// Throughput of a row: chunks per second for streams, else requests per second.
fn rate(m: &Mode, v: &Value) -> f64 {
    f(v, rate_key(m))
}

/// What a row's speed is measured in: chunks/s for streams, requests/s otherwise.
fn rate_key(m: &Mode) -> &'static str {
    if matches!(m.kind, Kind::Stream | Kind::StreamAsync | Kind::BareStream) {
        "chunks_per_s"
    } else {
        "rps"
    }
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub fn machine() -> String {
    format!(
        "- cores: {} (`nproc`), CPU: {}\n- memory: {}\n- kernel: {}\n- rustc: {}\n",
        sh("nproc"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'"),
        sh("grep MemTotal /proc/meminfo | awk '{printf \"%.1f GiB\", $2/1048576}'"),
        sh("uname -sr"),
        sh("rustc --version"),
    )
}

/// The run's table and its targets; `rounds` are the throughput rows of each round (the first
/// pass, then the repeats), for the ratio targets.
pub fn render(
    results: &[(&Mode, Value)],
    rounds: &[Vec<(&Mode, Value)>],
    litellm_skipped: Option<&String>,
) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "# llmr bench results\n\nOne `make bench` run (see bench/README.md for what each row measures). \
The stand-in and the rows share the machine's cores.\n\n## Machine\n\n{}", machine());
    let _ = writeln!(t, "## Requests\n\n| row | what | requests | req/s | chunks/s | p50 µs | p99 µs | CPU s / 1k req | stand-in CPU s / 1k req | peak RSS MiB | allocs / req | vs bare | vs LiteLLM |");
    let _ = writeln!(
        t,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    );
    for (m, v) in results {
        if !matches!(
            m.kind,
            Kind::BareComplete
                | Kind::BareStream
                | Kind::Complete
                | Kind::CompleteAsync
                | Kind::Stream
                | Kind::StreamAsync
                | Kind::LiteLlm
        ) {
            continue;
        }
        let n = f(v, "requests");
        let stream = matches!(m.kind, Kind::Stream | Kind::StreamAsync | Kind::BareStream);
        let vs_bare =
            m.bare
                .and_then(|b| Some((b, get(results, b)?)))
                .map_or(String::new(), |(b, bv)| {
                    let bm = crate::modes::find(b).expect("bare row");
                    let mut s = format!(
                        "{:.2}× {}",
                        rate(m, v) / rate(bm, bv),
                        if stream { "chunks/s" } else { "req/s" }
                    );
                    if let Some((tb, tbv)) =
                        m.threads_bare.and_then(|b| Some((b, get(results, b)?)))
                    {
                        let tbm = crate::modes::find(tb).expect("bare row");
                        let _ = write!(s, " ({:.2}× {tb})", rate(m, v) / rate(tbm, tbv));
                    }
                    if m.concurrency == 1 {
                        let _ = write!(
                            s,
                            "; +{:.1} µs p50, +{:.1} µs p99",
                            f(v, "p50_us") - f(bv, "p50_us"),
                            f(v, "p99_us") - f(bv, "p99_us")
                        );
                    }
                    s
                });
        let vs_litellm = m
            .litellm
            .and_then(get_in(results))
            .map_or(String::new(), |lv| {
                format!("{:.0}× req/s", f(v, "rps") / f(lv, "rps"))
            });
        let _ =
            writeln!(
            t,
            "| {} | {} | {} | {:.0} | {} | {:.1} | {:.1} | {:.3} | {:.3} | {:.1} | {} | {} | {} |",
            m.name, m.what, n, f(v, "rps"),
            if stream { format!("{:.0}", f(v, "chunks_per_s")) } else { "—".into() },
            f(v, "p50_us"), f(v, "p99_us"), f(v, "cpu_s_per_1k"),
            f(v, "standin_cpu_s") * 1000.0 / n,
            f(v, "peak_rss_kib") / 1024.0, one_decimal(f(v, "allocs_per_req")), vs_bare, vs_litellm
        );
    }
    if let Some(why) = litellm_skipped {
        let _ = writeln!(t, "\nLiteLLM rows skipped: {why}.");
    }
    let _ = writeln!(t, "\n## Selection scaling (MOCK deployments, no network, 1 thread)\n\n| row | deployments | requests | µs / request (p50) | p99 µs | CPU s / 1k req | allocs / req |\n|---|---:|---:|---:|---:|---:|---:|");
    for (m, v) in results.iter().filter(|(m, _)| m.kind == Kind::Select) {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.1} | {:.1} | {:.3} | {:.1} |",
            m.name,
            m.deployments,
            f(v, "requests"),
            f(v, "p50_us"),
            f(v, "p99_us"),
            f(v, "cpu_s_per_1k"),
            f(v, "allocs_per_req")
        );
    }
    let _ = writeln!(t, "\n## Init and memory\n");
    if let Some(v) = get(results, "llmr-init-1000") {
        let _ = writeln!(
            t,
            "- `llmr_init` with 1,000 deployments: median {:.2} ms (min {:.2}, max {:.2}) of 5",
            f(v, "init_ms_median"),
            f(v, "init_ms_min"),
            f(v, "init_ms_max")
        );
    }
    for (m, v) in results
        .iter()
        .filter(|(m, _)| matches!(m.kind, Kind::HoldStreams | Kind::BareHold))
    {
        let _ = writeln!(t, "- `{}` ({}): {} streams: {} ended, {} failed; RSS {:.1} MiB before, {:.1} MiB with all open, peak {:.1} MiB; {:.1} s, {:.2} CPU s",
            m.name, m.what, v["streams"], v["done"], v["failures"], f(v, "rss_before_kib") / 1024.0, f(v, "rss_all_open_kib") / 1024.0, f(v, "peak_rss_kib") / 1024.0, f(v, "secs"), f(v, "cpu_s"));
    }
    if rounds.len() > 1 {
        let _ = writeln!(t, "\n{}", rounds_table(rounds));
    }
    let _ = writeln!(t, "\n## Targets\n\n{}", targets(results, rounds));
    t
}

fn get_in<'a>(results: &'a [(&Mode, Value)]) -> impl Fn(&str) -> Option<&'a Value> {
    move |name| get(results, name)
}

/// Each round's target rows (req/s, or chunks/s for streams), llmr's as a ratio to the bare
/// row of the same round, and the latency llmr added at concurrency 1 in that round.
fn rounds_table(rounds: &[Vec<(&Mode, Value)>]) -> String {
    // The selection rows have no bare row: their column is the ratio of their p50s.
    let names: Vec<&str> = rounds[0]
        .iter()
        .map(|(m, _)| m.name)
        .filter(|n| !n.starts_with("select"))
        .collect();
    let mut t = String::from("## Rounds (the target rows again, one after the other)\n\n| round |");
    for n in &names {
        let _ = write!(t, " {n} |");
    }
    t.push_str(" added p50 / p99 µs | select-1000 / select-1 p50 |");
    let _ = write!(t, "\n|---|{}\n", "---:|".repeat(names.len() + 2));
    for (i, round) in rounds.iter().enumerate() {
        let _ = write!(t, "| {} |", i + 1);
        for n in &names {
            let Some((m, v)) = round.iter().find(|(m, _)| m.name == *n) else {
                t.push_str(" — |");
                continue;
            };
            let x = rate(m, v);
            let _ = write!(t, " {x:.0}");
            // Each llmr row against its bare row of the same round (and, for the blocking
            // rows, the bare row on as many threads).
            let mut against = m.bare.into_iter().chain(m.threads_bare).filter_map(|b| {
                let (bm, bv) = round.iter().find(|(bm, _)| bm.name == b)?;
                Some(x / rate(bm, bv))
            });
            if let Some(r) = against.next() {
                let _ = write!(t, " ({r:.2}×");
                if let Some(r) = against.next() {
                    let _ = write!(t, "; {r:.2}× threads");
                }
                t.push(')');
            }
            t.push_str(" |");
        }
        match (added_in(round, "p50_us"), added_in(round, "p99_us")) {
            (Some(p50), Some(p99)) => {
                let _ = write!(t, " {p50:+.1} / {p99:+.1} |");
            }
            _ => t.push_str(" — |"),
        }
        match selection_in(round) {
            Some(x) => {
                let _ = write!(t, " {x:.2}× |");
            }
            None => t.push_str(" — |"),
        }
        t.push('\n');
    }
    t
}

/// What llmr added to the bare client's latency `k` at concurrency 1 in one round.
fn added_in(round: &[(&Mode, Value)], k: &str) -> Option<f64> {
    Some(f(get(round, "llmr-complete-1t")?, k) - f(get(round, "bare-c1")?, k))
}

/// How much slower choosing among 1,000 deployments was than among one, in one round (p50).
fn selection_in(round: &[(&Mode, Value)]) -> Option<f64> {
    Some(f(get(round, "select-1000")?, "p50_us") / f(get(round, "select-1")?, "p50_us"))
}

/// The median, lowest and highest of `x` (finite values only), and how many there were.
fn spread(mut x: Vec<f64>) -> Option<(f64, f64, f64, usize)> {
    x.retain(|x| x.is_finite());
    if x.is_empty() {
        return None;
    }
    x.sort_by(f64::total_cmp);
    let n = x.len();
    let median = if n % 2 == 1 {
        x[n / 2]
    } else {
        (x[n / 2 - 1] + x[n / 2]) / 2.0
    };
    Some((median, x[0], x[n - 1], n))
}

/// A ratio in each round where both rows ran: the median, the lowest and the highest.
fn ratio_of_rounds(
    rounds: &[Vec<(&Mode, Value)>],
    a: &str,
    b: &str,
    k: &str,
) -> Option<(f64, f64, f64, usize)> {
    spread(
        rounds
            .iter()
            .filter_map(|r| Some(f(get(r, a)?, k) / f(get(r, b)?, k)))
            .collect(),
    )
}

fn targets(r: &[(&Mode, Value)], rounds: &[Vec<(&Mode, Value)>]) -> String {
    let mut t = String::new();
    // The 64-in-flight ratios: the median of the rounds, with their spread.
    let mut median_check = |what: &str, a: &str, b: &str, k: &str| {
        let _ = match ratio_of_rounds(rounds, a, b, k) {
            Some((m, lo, hi, n)) => writeln!(
                t,
                "- {what}: {m:.2}× (median of {n} rounds; {lo:.2}–{hi:.2}×) — {}",
                if m >= 0.85 { "met" } else { "**missed**" }
            ),
            None => writeln!(t, "- {what}: not measured in this run"),
        };
    };
    median_check(
        "non-streaming throughput at 64 in flight ≥ 0.85× bare (llmr_complete, 64 threads)",
        "llmr-complete-64t",
        "bare-c64",
        "rps",
    );
    median_check(
        "non-streaming throughput at 64 in flight ≥ 0.85× bare (llmr_complete_async, 64 in flight)",
        "llmr-async-64",
        "bare-c64",
        "rps",
    );
    median_check(
        "streaming ≥ 0.85× bare chunk rate (llmr_stream, 64 threads)",
        "llmr-stream-64t",
        "bare-stream-c64",
        "chunks_per_s",
    );
    median_check(
        "streaming ≥ 0.85× bare chunk rate (llmr_stream_async, 64 in flight)",
        "llmr-stream-async-64",
        "bare-stream-c64",
        "chunks_per_s",
    );
    // Not targets: what the 64 threads cost the HTTP stack by themselves, and the blocking
    // rows against the bare client on as many threads (the same threading, no routing).
    let pairs = crate::modes::MODES.iter().filter_map(|m| {
        let (threads, bare) = (m.threads_bare?, m.bare?);
        Some([(threads, bare, rate_key(m)), (m.name, threads, rate_key(m))])
    });
    for (a, b, k) in pairs.flatten() {
        if let Some((m, lo, hi, n)) = ratio_of_rounds(rounds, a, b, k) {
            let _ = writeln!(
                t,
                "- (reference, not a target) {a} / {b}: {m:.2}× (median of {n} rounds; {lo:.2}–{hi:.2}×)"
            );
        }
    }
    // Not targets either: the same calls over HTTPS + HTTP/2, where llmr sends through reqwest
    // as the bare client does (the rows above are plain HTTP, llmr's own HTTP/1.1 client).
    for m in crate::modes::MODES
        .iter()
        .filter(|m| m.tls && m.kind != Kind::HoldStreams)
    {
        let Some(bare) = m.bare else { continue };
        if let Some((med, lo, hi, n)) = ratio_of_rounds(rounds, m.name, bare, rate_key(m)) {
            let _ = writeln!(
                t,
                "- (reference, not a target) over HTTPS + HTTP/2, {} / {bare}: {med:.2}× (median of {n} rounds; {lo:.2}–{hi:.2}×)",
                m.name
            );
        }
    }
    // Like the ratios: the median over the rounds, each llmr row right after its bare one.
    let mut added_check = |what: &str, k: &str, limit: f64| {
        let _ = match spread(rounds.iter().filter_map(|r| added_in(r, k)).collect()) {
            Some((m, lo, hi, n)) => writeln!(
                t,
                "- {what}: {m:.1} µs (median of {n} rounds; {lo:.1} to {hi:.1} µs) — {}",
                if m <= limit { "met" } else { "**missed**" }
            ),
            None => writeln!(t, "- {what}: not measured in this run"),
        };
    };
    added_check(
        "added latency at concurrency 1, p50 ≤ 20 µs",
        "p50_us",
        20.0,
    );
    added_check(
        "added latency at concurrency 1, p99 ≤ 100 µs",
        "p99_us",
        100.0,
    );
    let mut check = |what: &str, got: Option<(f64, bool)>, unit: &str| {
        let _ = match got {
            Some((x, ok)) => writeln!(
                t,
                "- {what}: {x:.2}{unit} — {}",
                if ok { "met" } else { "**missed**" }
            ),
            None => writeln!(t, "- {what}: not measured in this run"),
        };
    };
    let ratio = |a: &str, b: &str, k: &str| Some(f(get(r, a)?, k) / f(get(r, b)?, k));
    check(
        "≥ 100× LiteLLM Router throughput (64 in flight)",
        ratio("llmr-complete-64t", "litellm-c64", "rps").map(|x| (x, x >= 100.0)),
        "×",
    );
    let held_under_200_mb = |name: &str| {
        get(r, name).map(|v| {
            let mb = f(v, "peak_rss_kib") * 1024.0 / 1e6;
            (
                mb,
                mb < 200.0 && v["done"] == v["streams"] && v["failures"] == 0,
            )
        })
    };
    check(
        "10,000 streams open under 200 MB RSS (HTTP/1.1: a connection each)",
        held_under_200_mb("llmr-hold-10000"),
        " MB peak",
    );
    check(
        "10,000 streams open under 200 MB RSS (HTTPS + HTTP/2, 100 streams per connection)",
        held_under_200_mb("llmr-hold-10000-h2"),
        " MB peak",
    );
    check(
        "llmr_init with 1,000 deployments under 10 ms",
        get(r, "llmr-init-1000").map(|v| (f(v, "init_ms_median"), f(v, "init_ms_median") < 10.0)),
        " ms",
    );
    // Like the ratios: the median over the rounds (the p50s are ~3 µs: one pass is noise).
    let _ = match spread(rounds.iter().filter_map(|r| selection_in(r)).collect()) {
        Some((m, lo, hi, n)) => writeln!(
            t,
            "- selection flat from 1 to 1,000 deployments (p50 ratio select-1000 / select-1 ≤ 1.5): \
             {m:.2}× (median of {n} rounds; {lo:.2}–{hi:.2}×) — {}",
            if m <= 1.5 { "met" } else { "**missed**" }
        ),
        None => writeln!(t, "- selection flat from 1 to 1,000 deployments: not measured in this run"),
    };
    t
}
