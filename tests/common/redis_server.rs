//! A real `redis-server` on a free 127.0.0.1 port for one test, killed when dropped.
//!
//! Debian's `redis-server` package; installed with apt-get when missing and the tests run as
//! root (as CI does), else the test fails saying so — it never passes without Redis.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

const BINARY: &str = "redis-server";

fn installed() -> bool {
    Command::new(BINARY)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_installed() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if installed() {
            return;
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if root {
            let _ = Command::new("sh")
                .args([
                    "-c",
                    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server",
                ])
                .stdout(Stdio::null())
                .status();
        }
    });
    assert!(
        installed(),
        "these tests need a real `redis-server` (Debian: apt-get install redis-server); it is not installed and could not be installed"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl RedisServer {
    /// Starts a server without persistence; `extra` are more `redis-server` arguments.
    pub fn start(extra: &[&str]) -> RedisServer {
        ensure_installed();
        let port = free_port();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--enable-debug-command",
            "local",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut s = RedisServer {
            port,
            args,
            child: None,
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (its data goes with it: no persistence).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(BINARY)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let password = self
            .args
            .iter()
            .position(|a| a == "--requirepass")
            .map(|i| self.args[i + 1].clone());
        loop {
            if let Ok(reply) = self.raw_command(password.as_deref(), "PING") {
                if reply.contains("PONG") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One inline command on a fresh connection, its raw reply.
    fn raw_command(&self, password: Option<&str>, cmd: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        if let Some(p) = password {
            write!(s, "AUTH {p}\r\n")?;
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf)?;
        }
        write!(s, "{cmd}\r\n")?;
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
