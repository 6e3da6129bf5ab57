//! A POST as HTTP/1.1 bytes: the head and the body in one buffer, written in one go.

use reqwest::header::{
    HeaderMap, ACCEPT, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, USER_AGENT,
};
use reqwest::Url;

use crate::global::USER_AGENT as USER_AGENT_VALUE;

/// The request for `url` with `headers` and `body`. `Host`, `User-Agent` and `Accept` are added
/// when `headers` lack them (as reqwest adds them); the framing is always this body's
/// `Content-Length`: a framing header in `headers` (from a config's extra headers) is left out,
/// so that no header can make the server read the body differently from how it is sent.
pub(super) fn write(url: &Url, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let (path, query) = (url.path(), url.query());
    let target_len = path.len() + query.map_or(0, |q| q.len() + 1);
    let mut out = Vec::with_capacity(128 + target_len + headers_len(headers) + body.len());
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(if path.is_empty() { "/" } else { path }.as_bytes());
    if let Some(q) = query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(HOST) {
        let host = url.host_str().unwrap_or_default();
        line(&mut out, b"host", host.as_bytes());
        if let Some(port) = url.port() {
            out.truncate(out.len() - 2);
            out.push(b':');
            out.extend_from_slice(itoa::Buffer::new().format(port).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION {
            continue;
        }
        line(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !headers.contains_key(USER_AGENT) {
        line(&mut out, b"user-agent", USER_AGENT_VALUE.as_bytes());
    }
    if !headers.contains_key(ACCEPT) {
        line(&mut out, b"accept", b"*/*");
    }
    line(
        &mut out,
        b"content-length",
        itoa::Buffer::new().format(body.len()).as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn headers_len(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};

    #[test]
    fn a_post_carries_host_agent_accept_and_its_length() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let url = Url::parse("http://127.0.0.1:11434/v1/chat/completions?a=1#frag").unwrap();
        let out = write(&url, &h, b"{\"x\":1}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "POST /v1/chat/completions?a=1 HTTP/1.1\r\nhost: 127.0.0.1:11434\r\n\
                 authorization: Bearer k\r\ncontent-type: application/json\r\n\
                 user-agent: {USER_AGENT_VALUE}\r\naccept: */*\r\ncontent-length: 7\r\n\r\n{{\"x\":1}}"
            )
        );
    }

    #[test]
    fn the_default_port_is_left_out_and_given_headers_win_but_framing_is_ours() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("gateway.internal"));
        h.insert(USER_AGENT, HeaderValue::from_static("mine"));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(CONNECTION, HeaderValue::from_static("close"));
        let out = write(&Url::parse("http://[::1]/").unwrap(), &h, b"");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST / HTTP/1.1\r\nhost: gateway.internal\r\nuser-agent: mine\r\naccept: */*\r\ncontent-length: 0\r\n\r\n"
        );
        let out = write(
            &Url::parse("http://[::1]:80/p").unwrap(),
            &HeaderMap::new(),
            b"",
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("POST /p HTTP/1.1\r\nhost: [::1]\r\n"));
    }
}
