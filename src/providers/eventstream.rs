//! The AWS event-stream binary framing (`application/vnd.amazon.eventstream`, PROVIDERS.md §8.5):
//! what Bedrock's ConverseStream answers with.
//!
//! ```text
//! +-------------+--------------+-------------+---------+---------+-------------+
//! | total u32   | headers u32  | prelude crc | headers | payload | message crc |
//! +-------------+--------------+-------------+---------+---------+-------------+
//! ```
//! All integers are big-endian. `total` counts the whole message, both CRCs included; the prelude
//! CRC covers bytes 0..8, the message CRC bytes 0..total-4 (CRC-32, IEEE / zlib polynomial).
//!
//! [`Decoder`] takes bytes as they arrive, split anywhere, and hands out whole messages. The
//! prelude is checked as soon as its 12 bytes are in, so a corrupt length is refused before
//! anything is buffered for it; both CRCs are checked before a message is handed out.

use std::fmt;

/// The largest message accepted (the limit of AWS's own decoders: 16 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// The largest headers section accepted (AWS's limit: 128 KiB).
pub const MAX_HEADERS_BYTES: usize = 128 * 1024;
/// Prelude (total length, headers length, prelude CRC) plus the trailing message CRC.
const OVERHEAD: usize = 16;
const PRELUDE: usize = 12;

// ---------------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, as zlib and crc32fast compute it)

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

/// CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

// ---------------------------------------------------------------------------------------------
// Messages

/// A header value, by its wire type tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderValue {
    /// Types 0 (true) and 1 (false): no value bytes.
    Bool(bool),
    /// Type 2.
    Byte(i8),
    /// Type 3.
    Int16(i16),
    /// Type 4.
    Int32(i32),
    /// Type 5.
    Int64(i64),
    /// Type 6: u16 length, then the bytes.
    Bytes(Vec<u8>),
    /// Type 7: u16 length, then UTF-8.
    String(String),
    /// Type 8: milliseconds since the Unix epoch.
    Timestamp(i64),
    /// Type 9: 16 bytes.
    Uuid([u8; 16]),
}

/// One decoded message.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Message {
    /// Headers in wire order.
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Vec<u8>,
}

impl Message {
    /// The first header of this name with a string value.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }

    /// The header of this name, whatever its type.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// Why bytes are not a valid event stream. Once a decoder has reported one, the stream is
/// unusable: framing is lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    PreludeCrc {
        expected: u32,
        computed: u32,
    },
    MessageCrc {
        expected: u32,
        computed: u32,
    },
    /// `total_len` below the 16-byte minimum or above [`MAX_MESSAGE_BYTES`].
    MessageLength(u32),
    /// `headers_len` above [`MAX_HEADERS_BYTES`] or larger than the message leaves room for.
    HeadersLength {
        headers: u32,
        total: u32,
    },
    /// A header that runs past the headers section, has an unknown type or a bad name/value.
    BadHeader(String),
    /// The stream ended inside a message.
    Truncated {
        buffered: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::PreludeCrc { expected, computed } => write!(
                f,
                "prelude CRC mismatch (message says {expected:#010x}, computed {computed:#010x})"
            ),
            DecodeError::MessageCrc { expected, computed } => write!(
                f,
                "message CRC mismatch (message says {expected:#010x}, computed {computed:#010x})"
            ),
            DecodeError::MessageLength(n) => write!(
                f,
                "message length {n} is outside 16..={MAX_MESSAGE_BYTES} bytes"
            ),
            DecodeError::HeadersLength { headers, total } => write!(
                f,
                "headers length {headers} does not fit a message of {total} bytes (at most {MAX_HEADERS_BYTES})"
            ),
            DecodeError::BadHeader(why) => write!(f, "malformed header: {why}"),
            DecodeError::Truncated { buffered } => write!(
                f,
                "stream ended inside a message ({buffered} bytes of it received)"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Incremental decoder: [`Decoder::push`] bytes as they arrive, then take every whole message
/// with [`Decoder::next_message`].
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the next message starts in `buf` (consumed bytes are dropped lazily).
    start: usize,
    /// The validated prelude of the message being received: (total, headers) lengths.
    prelude: Option<(usize, usize)>,
    failed: bool,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Appends bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= 64 * 1024 && self.start * 2 >= self.buf.len() {
            // Most of the buffer is consumed: move the rest down instead of growing.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received that are not part of a message handed out yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole message, `Ok(None)` until one is complete. After an error every call
    /// repeats an error: framing cannot be recovered.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if self.failed {
            return Err(DecodeError::BadHeader(
                "the stream was already found corrupt".into(),
            ));
        }
        let r = self.decode_one();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// The stream ended: an error when it ended inside a message.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(DecodeError::Truncated { buffered }),
        }
    }

    fn decode_one(&mut self) -> Result<Option<Message>, DecodeError> {
        let avail = &self.buf[self.start..];
        let (total, headers_len) = match self.prelude {
            Some(p) => p,
            None => {
                if avail.len() < PRELUDE {
                    return Ok(None);
                }
                let p = check_prelude(&avail[..PRELUDE])?;
                self.prelude = Some(p);
                p
            }
        };
        if avail.len() < total {
            return Ok(None);
        }
        let frame = &avail[..total];
        let expected = be32(&frame[total - 4..]);
        let computed = crc32(&frame[..total - 4]);
        if expected != computed {
            return Err(DecodeError::MessageCrc { expected, computed });
        }
        let headers = parse_headers(&frame[PRELUDE..PRELUDE + headers_len])?;
        let payload = frame[PRELUDE + headers_len..total - 4].to_vec();
        self.start += total;
        self.prelude = None;
        Ok(Some(Message { headers, payload }))
    }
}

/// Checks the 12 prelude bytes; returns (total, headers) lengths.
fn check_prelude(p: &[u8]) -> Result<(usize, usize), DecodeError> {
    let expected = be32(&p[8..12]);
    let computed = crc32(&p[..8]);
    if expected != computed {
        return Err(DecodeError::PreludeCrc { expected, computed });
    }
    let total = be32(&p[0..4]);
    let headers = be32(&p[4..8]);
    if (total as usize) < OVERHEAD || total as usize > MAX_MESSAGE_BYTES {
        return Err(DecodeError::MessageLength(total));
    }
    if headers as usize > MAX_HEADERS_BYTES || headers as usize > total as usize - OVERHEAD {
        return Err(DecodeError::HeadersLength { headers, total });
    }
    Ok((total as usize, headers as usize))
}

fn parse_headers(mut b: &[u8]) -> Result<Vec<(String, HeaderValue)>, DecodeError> {
    fn take<'a>(b: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if b.len() < n {
            return Err(DecodeError::BadHeader(format!(
                "{what} runs past the headers section"
            )));
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let name_len = take(&mut b, 1, "header name length")?[0] as usize;
        if name_len == 0 {
            return Err(DecodeError::BadHeader("empty header name".into()));
        }
        let name = std::str::from_utf8(take(&mut b, name_len, "header name")?)
            .map_err(|_| DecodeError::BadHeader("header name is not UTF-8".into()))?
            .to_owned();
        let kind = take(&mut b, 1, "header value type")?[0];
        let value = match kind {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(take(&mut b, 1, "byte header")?[0] as i8),
            3 => {
                let v = take(&mut b, 2, "int16 header")?;
                HeaderValue::Int16(i16::from_be_bytes([v[0], v[1]]))
            }
            4 => HeaderValue::Int32(be32(take(&mut b, 4, "int32 header")?) as i32),
            5 | 8 => {
                let v = take(&mut b, 8, "int64 header")?;
                let n = i64::from_be_bytes(v.try_into().expect("8 bytes"));
                if kind == 5 {
                    HeaderValue::Int64(n)
                } else {
                    HeaderValue::Timestamp(n)
                }
            }
            6 | 7 => {
                let len = take(&mut b, 2, "header value length")?;
                let len = u16::from_be_bytes([len[0], len[1]]) as usize;
                let v = take(&mut b, len, "header value")?;
                if kind == 6 {
                    HeaderValue::Bytes(v.to_vec())
                } else {
                    HeaderValue::String(
                        std::str::from_utf8(v)
                            .map_err(|_| {
                                DecodeError::BadHeader(format!("`{name}` is not UTF-8"))
                            })?
                            .to_owned(),
                    )
                }
            }
            9 => HeaderValue::Uuid(take(&mut b, 16, "uuid header")?.try_into().expect("16")),
            other => {
                return Err(DecodeError::BadHeader(format!(
                    "`{name}` has unknown value type {other}"
                )))
            }
        };
        out.push((name, value));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Encoding (for tests and stand-ins that speak the format)

/// Encodes one message.
///
/// # Panics
/// If a header name is empty or longer than 255 bytes, a string or byte value longer than
/// 65535 bytes, or the message larger than [`MAX_MESSAGE_BYTES`].
pub fn encode(headers: &[(&str, HeaderValue)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        assert!(
            !name.is_empty() && name.len() <= 255,
            "header name length 1..=255"
        );
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        match value {
            HeaderValue::Bool(true) => h.push(0),
            HeaderValue::Bool(false) => h.push(1),
            HeaderValue::Byte(v) => {
                h.push(2);
                h.push(*v as u8);
            }
            HeaderValue::Int16(v) => {
                h.push(3);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Int32(v) => {
                h.push(4);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Int64(v) => {
                h.push(5);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Bytes(v) => {
                h.push(6);
                h.extend_from_slice(&u16::try_from(v.len()).expect("<= 65535").to_be_bytes());
                h.extend_from_slice(v);
            }
            HeaderValue::String(v) => {
                h.push(7);
                h.extend_from_slice(&u16::try_from(v.len()).expect("<= 65535").to_be_bytes());
                h.extend_from_slice(v.as_bytes());
            }
            HeaderValue::Timestamp(v) => {
                h.push(8);
                h.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Uuid(v) => {
                h.push(9);
                h.extend_from_slice(v);
            }
        }
    }
    let total = OVERHEAD + h.len() + payload.len();
    assert!(total <= MAX_MESSAGE_BYTES, "message too large");
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// An `event` message as Bedrock sends it: `:event-type`, `:content-type` JSON, `:message-type`.
pub fn event(event_type: &str, json: &[u8]) -> Vec<u8> {
    encode(
        &[
            (":event-type", HeaderValue::String(event_type.to_owned())),
            (
                ":content-type",
                HeaderValue::String("application/json".to_owned()),
            ),
            (":message-type", HeaderValue::String("event".to_owned())),
        ],
        json,
    )
}

/// An `exception` message: `:exception-type` names it, the payload is `{"message": …}`.
pub fn exception(exception_type: &str, json: &[u8]) -> Vec<u8> {
    encode(
        &[
            (
                ":exception-type",
                HeaderValue::String(exception_type.to_owned()),
            ),
            (
                ":content-type",
                HeaderValue::String("application/json".to_owned()),
            ),
            (":message-type", HeaderValue::String("exception".to_owned())),
        ],
        json,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's event-stream test vectors (aws-sdk-js-v3 `eventstream-marshaller` fixtures, also
    /// shipped with aws-c-event-stream): encoded bytes and what they decode to.
    const EMPTY_MESSAGE: &[u8] = &[0, 0, 0, 16, 0, 0, 0, 0, 5, 194, 72, 235, 125, 152, 200, 255];
    const PAYLOAD_NO_HEADERS: &[u8] = &[
        0, 0, 0, 29, 0, 0, 0, 0, 253, 82, 140, 90, 123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114,
        39, 125, 195, 101, 57, 54,
    ];
    const PAYLOAD_ONE_STR_HEADER: &[u8] = &[
        0, 0, 0, 61, 0, 0, 0, 32, 7, 253, 131, 150, 12, 99, 111, 110, 116, 101, 110, 116, 45, 116,
        121, 112, 101, 7, 0, 16, 97, 112, 112, 108, 105, 99, 97, 116, 105, 111, 110, 47, 106, 115,
        111, 110, 123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39, 125, 141, 156, 8, 177,
    ];
    const INT32_HEADER: &[u8] = &[
        0, 0, 0, 43, 0, 0, 0, 14, 52, 139, 236, 123, 8, 101, 118, 101, 110, 116, 45, 105, 100, 4,
        0, 0, 160, 12, 123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39, 125, 211, 137, 2, 133,
    ];
    const INT32_EVENT_TYPE_HEADER: &[u8] = &[
        0, 0, 0, 45, 0, 0, 0, 16, 65, 196, 36, 184, 10, 101, 118, 101, 110, 116, 45, 116, 121, 112,
        101, 4, 0, 0, 160, 12, 123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39, 125, 54, 244,
        128, 160,
    ];
    const FOO_BAR: &[u8] = b"{'foo':'bar'}";

    fn decode_all(bytes: &[u8]) -> Result<Vec<Message>, DecodeError> {
        let mut d = Decoder::new();
        d.push(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.next_message()? {
            out.push(m);
        }
        d.finish()?;
        Ok(out)
    }

    fn one(bytes: &[u8]) -> Message {
        let mut all = decode_all(bytes).unwrap();
        assert_eq!(all.len(), 1);
        all.pop().unwrap()
    }

    #[test]
    fn crc32_is_ieee() {
        // The classic check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
    }

    #[test]
    fn aws_positive_vectors_decode() {
        assert_eq!(one(EMPTY_MESSAGE), Message::default());
        let m = one(PAYLOAD_NO_HEADERS);
        assert!(m.headers.is_empty());
        assert_eq!(m.payload, FOO_BAR);
        let m = one(PAYLOAD_ONE_STR_HEADER);
        assert_eq!(m.header_str("content-type"), Some("application/json"));
        assert_eq!(m.payload, FOO_BAR);
        let m = one(INT32_HEADER);
        assert_eq!(m.header("event-id"), Some(&HeaderValue::Int32(0xa00c)));
        assert_eq!(m.header_str("event-id"), None, "not a string header");
        assert_eq!(m.payload, FOO_BAR);
        let m = one(INT32_EVENT_TYPE_HEADER);
        assert_eq!(m.header("event-type"), Some(&HeaderValue::Int32(40972)));
        assert_eq!(m.payload, FOO_BAR);
    }

    #[test]
    fn the_encoder_reproduces_the_aws_vectors() {
        assert_eq!(encode(&[], b""), EMPTY_MESSAGE);
        assert_eq!(encode(&[], FOO_BAR), PAYLOAD_NO_HEADERS);
        assert_eq!(
            encode(
                &[(
                    "content-type",
                    HeaderValue::String("application/json".into())
                )],
                FOO_BAR
            ),
            PAYLOAD_ONE_STR_HEADER
        );
        assert_eq!(
            encode(&[("event-id", HeaderValue::Int32(0xa00c))], FOO_BAR),
            INT32_HEADER
        );
    }

    #[test]
    fn aws_negative_vectors_are_refused() {
        // corrupted_headers: one header byte changed, so the message CRC fails.
        let mut v = PAYLOAD_ONE_STR_HEADER.to_vec();
        v[20] = 43;
        assert!(matches!(
            decode_all(&v),
            Err(DecodeError::MessageCrc { .. })
        ));
        // corrupted_header_len: the headers length changed, so the prelude CRC fails.
        let mut v = PAYLOAD_ONE_STR_HEADER.to_vec();
        v[6] = 1;
        assert!(matches!(
            decode_all(&v),
            Err(DecodeError::PreludeCrc { .. })
        ));
        // corrupted_length.
        let mut v = PAYLOAD_NO_HEADERS.to_vec();
        v[0] = 1;
        assert!(matches!(
            decode_all(&v),
            Err(DecodeError::PreludeCrc { .. })
        ));
        // corrupted_payload.
        let mut v = PAYLOAD_NO_HEADERS.to_vec();
        v[24] = 141;
        let e = decode_all(&v).unwrap_err();
        assert!(matches!(e, DecodeError::MessageCrc { .. }), "{e}");
        assert!(e.to_string().contains("message CRC mismatch"), "{e}");
    }

    #[test]
    fn every_header_type_round_trips() {
        let headers = [
            ("t", HeaderValue::Bool(true)),
            ("f", HeaderValue::Bool(false)),
            ("b", HeaderValue::Byte(-7)),
            ("s", HeaderValue::Int16(-300)),
            ("i", HeaderValue::Int32(70_000)),
            ("l", HeaderValue::Int64(-5_000_000_000)),
            ("bytes", HeaderValue::Bytes(vec![0, 255, 1])),
            (":event-type", HeaderValue::String("contentBlockDelta".into())),
            ("ts", HeaderValue::Timestamp(1_700_000_000_123)),
            ("u", HeaderValue::Uuid(*b"0123456789abcdef")),
        ];
        let m = one(&encode(&headers, b"{}"));
        let want: Vec<(String, HeaderValue)> = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect();
        assert_eq!(m.headers, want);
        assert_eq!(m.payload, b"{}");
        assert_eq!(m.header_str(":event-type"), Some("contentBlockDelta"));
    }

    fn bedrock_frames() -> Vec<u8> {
        let mut all = Vec::new();
        all.extend(event("messageStart", br#"{"role":"assistant"}"#));
        all.extend(event(
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"text":"Hello"},"p":"abcdefgh"}"#,
        ));
        all.extend(event("messageStop", br#"{"stopReason":"end_turn"}"#));
        all.extend(event(
            "metadata",
            br#"{"usage":{"inputTokens":3,"outputTokens":1,"totalTokens":4}}"#,
        ));
        all
    }

    #[test]
    fn split_at_every_byte_gives_the_same_messages() {
        let all = bedrock_frames();
        let whole = decode_all(&all).unwrap();
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[1].header_str(":event-type"), Some("contentBlockDelta"));
        assert_eq!(whole[1].header_str(":message-type"), Some("event"));
        // Every two-piece split.
        for cut in 0..=all.len() {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for piece in [&all[..cut], &all[cut..]] {
                d.push(piece);
                while let Some(m) = d.next_message().unwrap() {
                    got.push(m);
                }
            }
            d.finish().unwrap();
            assert_eq!(got, whole, "cut at {cut}");
        }
        // One byte at a time.
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &all {
            d.push(std::slice::from_ref(b));
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, whole);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn a_stream_cut_inside_a_message_is_truncated() {
        let all = bedrock_frames();
        let mut d = Decoder::new();
        d.push(&all[..all.len() - 3]);
        let mut n = 0;
        while d.next_message().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
        let e = d.finish().unwrap_err();
        assert!(matches!(e, DecodeError::Truncated { .. }), "{e}");
    }

    #[test]
    fn exception_frames_carry_their_type() {
        let m = one(&exception(
            "throttlingException",
            br#"{"message":"Too many tokens, please wait before trying again."}"#,
        ));
        assert_eq!(m.header_str(":message-type"), Some("exception"));
        assert_eq!(m.header_str(":exception-type"), Some("throttlingException"));
        assert!(m.payload.starts_with(b"{\"message\""));
    }

    #[test]
    fn a_bad_prelude_is_refused_before_its_length_is_waited_for() {
        // A prelude claiming 16 MiB with a wrong CRC: refused after 12 bytes, nothing buffered
        // waiting for the rest.
        let mut v = vec![0x00, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 1, 2, 3, 4];
        let mut d = Decoder::new();
        d.push(&v);
        assert!(matches!(
            d.next_message(),
            Err(DecodeError::PreludeCrc { .. })
        ));
        assert!(d.next_message().is_err(), "errors stick");
        // The same length with a right CRC is still too long.
        let crc = crc32(&v[..8]);
        v[8..12].copy_from_slice(&crc.to_be_bytes());
        v[0] = 0x7F;
        let crc = crc32(&v[..8]);
        v[8..12].copy_from_slice(&crc.to_be_bytes());
        let mut d = Decoder::new();
        d.push(&v);
        assert!(matches!(
            d.next_message(),
            Err(DecodeError::MessageLength(_))
        ));
        // Too short to be a message, and headers that do not fit.
        for (total, headers) in [(15u32, 0u32), (20, 5), (1000, 200_000)] {
            let mut p = Vec::new();
            p.extend_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&headers.to_be_bytes());
            let crc = crc32(&p);
            p.extend_from_slice(&crc.to_be_bytes());
            let mut d = Decoder::new();
            d.push(&p);
            assert!(d.next_message().is_err(), "{total} {headers}");
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        // A string header whose length runs past the section, with valid CRCs.
        let mut h = vec![1, b'a', 7, 0, 50];
        h.extend_from_slice(b"short");
        let frame = raw_frame(&h, b"");
        assert!(matches!(
            decode_all(&frame),
            Err(DecodeError::BadHeader(_))
        ));
        // Unknown value type.
        let frame = raw_frame(&[1, b'a', 42], b"");
        let e = decode_all(&frame).unwrap_err();
        assert!(e.to_string().contains("unknown value type 42"), "{e}");
        // Non-UTF-8 string value.
        let frame = raw_frame(&[1, b'a', 7, 0, 1, 0xFF], b"");
        assert!(decode_all(&frame).is_err());
    }

    /// A frame around raw header bytes, with correct CRCs.
    fn raw_frame(headers: &[u8], payload: &[u8]) -> Vec<u8> {
        let total = 16 + headers.len() + payload.len();
        let mut out = Vec::new();
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        let c = crc32(&out);
        out.extend_from_slice(&c.to_be_bytes());
        out.extend_from_slice(headers);
        out.extend_from_slice(payload);
        let c = crc32(&out);
        out.extend_from_slice(&c.to_be_bytes());
        out
    }

    #[test]
    fn a_long_stream_does_not_keep_consumed_bytes() {
        let frame = event("contentBlockDelta", &[b'x'; 1000]);
        let mut d = Decoder::new();
        for _ in 0..1000 {
            d.push(&frame[..500]);
            assert!(d.next_message().unwrap().is_none());
            d.push(&frame[500..]);
            assert!(d.next_message().unwrap().is_some());
        }
        assert!(d.buf.capacity() < 200 * 1024, "{}", d.buf.capacity());
    }
}
