//! `llmr-standin [--port N] [--threads N] [--record-limit N]`
//!
//! Starts the stand-in, prints `LISTENING http://127.0.0.1:PORT` on one line
//! and serves until its standard input closes (when that is a pipe or a
//! socket) or it is killed. With any other standard input (a terminal,
//! `/dev/null`, a file) it serves until killed.

use std::io::{Read, Write};
use std::process::ExitCode;

use llmr_testkit::StandIn;

const USAGE: &str = "usage: llmr-standin [--port N] [--threads N] [--record-limit N]";

fn main() -> ExitCode {
    let mut builder = StandIn::builder();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            eprintln!("llmr-standin: {flag} needs a value\n{USAGE}");
            return ExitCode::from(2);
        };
        let Ok(n) = value.parse::<usize>() else {
            eprintln!("llmr-standin: {flag} takes a number, not {value:?}\n{USAGE}");
            return ExitCode::from(2);
        };
        builder = match flag.as_str() {
            "--port" | "-p" => match u16::try_from(n) {
                Ok(port) => builder.port(port),
                Err(_) => {
                    eprintln!("llmr-standin: no port {n}");
                    return ExitCode::from(2);
                }
            },
            "--threads" => builder.threads(n),
            "--record-limit" => builder.record_limit(n),
            _ => {
                eprintln!("llmr-standin: unknown option {flag}\n{USAGE}");
                return ExitCode::from(2);
            }
        };
    }

    let standin = match builder.start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("llmr-standin: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "LISTENING {}", standin.url())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);

    if stdin_is_a_channel() {
        let mut sink = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    } else {
        loop {
            std::thread::park();
        }
    }
    drop(standin);
    ExitCode::SUCCESS
}

/// Whether standard input is a pipe or a socket, whose closing means the
/// parent is done with us.
#[cfg(unix)]
fn stdin_is_a_channel() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| std::fs::File::from(fd).metadata())
        .map(|m| m.file_type().is_fifo() || m.file_type().is_socket())
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn stdin_is_a_channel() -> bool {
    true
}
