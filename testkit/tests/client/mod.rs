//! A raw HTTP/1.1 client over std's TcpStream, strict enough to notice
//! framing mistakes.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

pub struct Client {
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the body ended where its framing said.
    pub complete: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// SSE events as (event name, data) pairs.
    pub fn events(&self) -> Vec<(Option<String>, String)> {
        let text = self.text();
        text.split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let mut name = None;
                let mut data = String::new();
                for line in e.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                (name, data)
            })
            .collect()
    }

    /// The data of each SSE event parsed as JSON (`[DONE]` skipped).
    pub fn event_json(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|(_, d)| d != "[DONE]")
            .map(|(_, d)| serde_json::from_str(&d).unwrap())
            .collect()
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    pub fn send(&mut self, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.send_raw(req.as_bytes());
    }

    pub fn post(&mut self, path: &str, body: &Value) -> Response {
        self.send("POST", path, &body.to_string(), &[]);
        self.read_response().unwrap()
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.send("GET", path, "", &[]);
        self.read_response().unwrap()
    }

    /// Reads a response head.
    pub fn read_head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("header line");
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        Ok((status, headers))
    }

    /// Reads a whole response; a body cut short comes back with
    /// `complete: false`.
    pub fn read_response(&mut self) -> io::Result<Response> {
        let (status, headers) = self.read_head()?;
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
            complete: true,
        };
        if r.header("transfer-encoding") == Some("chunked") {
            r.complete = self.read_chunked(&mut r.body);
        } else if let Some(len) = r.header("content-length") {
            let len: usize = len.parse().unwrap();
            r.body = vec![0; len];
            let mut got = 0;
            while got < len {
                match self.reader.read(&mut r.body[got..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            r.complete = got == len;
            r.body.truncate(got);
        } else {
            let _ = self.reader.read_to_end(&mut r.body);
        }
        Ok(r)
    }

    fn read_chunked(&mut self, body: &mut Vec<u8>) -> bool {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
            let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
            if size == 0 {
                line.clear();
                return self.reader.read_line(&mut line).is_ok() && line == "\r\n";
            }
            let mut data = vec![0; size + 2];
            if self.reader.read_exact(&mut data).is_err() {
                return false;
            }
            assert_eq!(&data[size..], b"\r\n");
            body.extend_from_slice(&data[..size]);
        }
    }

    /// Whether the server closed the connection (EOF or reset) within the
    /// read timeout set here.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.stream().set_read_timeout(Some(timeout)).unwrap();
        let mut b = [0u8; 1];
        let closed = match self.reader.read(&mut b) {
            Ok(0) => true,
            Ok(_) => panic!("unexpected data"),
            Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
        };
        self.stream()
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        closed
    }
}
