//! An incremental Server-Sent Events decoder: bytes in, whole events out, whatever the read
//! boundaries. Handles `\n`, `\r\n` and `\r` line ends, multi-line `data:`, comments and `event:`.

/// One event: its name (empty for the default `message`) and its data lines joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Largest event llmr accepts; a stream that never ends an event is a broken stream.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct SseDecoder {
    /// The part of a line that the last read left unfinished.
    line: Vec<u8>,
    /// The event being read; its buffers are kept from one event to the next.
    ev: SseEvent,
    has_data: bool,
    /// The previous byte was `\r`: a following `\n` belongs to the same line end.
    after_cr: bool,
}

impl SseDecoder {
    pub fn new() -> SseDecoder {
        SseDecoder::default()
    }

    /// Feeds bytes; calls `on_event` for each completed event, in order (the event is lent: its
    /// buffers serve the next one). Stops and returns the callback's error, or an error if an
    /// event grows past [`MAX_EVENT_BYTES`].
    pub fn feed<E>(
        &mut self,
        mut bytes: &[u8],
        mut on_event: impl FnMut(&SseEvent) -> Result<(), E>,
        too_big: impl Fn() -> E,
    ) -> Result<(), E> {
        while !bytes.is_empty() {
            if self.after_cr && bytes[0] == b'\n' {
                bytes = &bytes[1..];
                self.after_cr = false;
                continue;
            }
            self.after_cr = false;
            match memchr::memchr2(b'\n', b'\r', bytes) {
                Some(pos) => {
                    self.after_cr = bytes[pos] == b'\r';
                    let ended = if self.line.is_empty() {
                        // The whole line is in this read: read in place, no copy.
                        self.end_line(&bytes[..pos])
                    } else {
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(&bytes[..pos]);
                        let ended = self.end_line(&line);
                        line.clear();
                        self.line = line;
                        ended
                    };
                    bytes = &bytes[pos + 1..];
                    if ended {
                        let r = on_event(&self.ev);
                        self.clear_event();
                        r?;
                    }
                }
                None => {
                    self.line.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
            if self.line.len() + self.ev.data.len() > MAX_EVENT_BYTES {
                return Err(too_big());
            }
        }
        Ok(())
    }

    /// At end of input: an event whose blank line never came is still delivered (some servers
    /// close right after the last `data:` line).
    pub fn finish(&mut self) -> Option<SseEvent> {
        let line = std::mem::take(&mut self.line);
        if (!line.is_empty() && self.end_line(&line)) || self.has_event() {
            self.has_data = false;
            return Some(std::mem::take(&mut self.ev));
        }
        None
    }

    /// Takes one line (without its line end); true when it ended an event (a blank line after
    /// a field).
    fn end_line(&mut self, line: &[u8]) -> bool {
        if line.is_empty() {
            return self.has_event();
        }
        // `from_utf8` checks a word at a time; `from_utf8_lossy` walks byte by byte even when
        // the line is valid (1.6% of a stream's cycles), so it is left for lines that are not.
        let text = match std::str::from_utf8(line) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(line),
        };
        if text.starts_with(':') {
            return false; // comment / keep-alive
        }
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&text[..], ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.ev.data.push('\n');
                }
                self.ev.data.push_str(value);
                self.has_data = true;
            }
            "event" => {
                self.ev.event.clear();
                self.ev.event.push_str(value);
            }
            _ => {} // id, retry and unknown fields do not matter here
        }
        false
    }

    fn has_event(&self) -> bool {
        self.has_data || !self.ev.event.is_empty()
    }

    fn clear_event(&mut self) {
        self.ev.event.clear();
        self.ev.data.clear();
        // One large event (a long tool call's arguments, say) must not pin its buffer for the
        // rest of the stream: 10,000 open streams would each keep theirs.
        if self.ev.data.capacity() > KEPT_BUFFER_BYTES {
            self.ev.data = String::new();
        }
        if self.line.capacity() > KEPT_BUFFER_BYTES {
            self.line = Vec::new();
        }
        self.has_data = false;
    }
}

/// The most buffer capacity a decoder keeps from one event for the next.
const KEPT_BUFFER_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for c in input.chunks(piece) {
            d.feed(
                c,
                |e| {
                    out.push(e.clone());
                    Ok::<(), ()>(())
                },
                || (),
            )
            .unwrap();
        }
        out.extend(d.finish());
        out
    }

    #[test]
    fn events_survive_any_split() {
        let input = b": keep-alive\n\nevent: message_start\ndata: {\"a\":1}\n\ndata: line1\r\ndata: line2\r\n\r\ndata: [DONE]\n\n";
        for piece in 1..input.len() {
            let ev = decode_in_pieces(input, piece);
            assert_eq!(ev.len(), 3, "piece size {piece}");
            assert_eq!(ev[0].event, "message_start");
            assert_eq!(ev[0].data, "{\"a\":1}");
            assert_eq!(ev[1].data, "line1\nline2");
            assert_eq!(ev[2].data, "[DONE]");
        }
    }

    #[test]
    fn a_line_that_is_not_utf8_keeps_its_valid_parts() {
        let ev = decode_in_pieces(b"data: caf\xc3\xa9 \xff end\n\n: \xfe\n\ndata: ok\n\n", 2);
        assert_eq!(
            ev.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
            ["caf\u{e9} \u{fffd} end", "ok"]
        );
    }

    #[test]
    fn bare_cr_line_ends_and_no_space_after_colon() {
        let ev = decode_in_pieces(b"data:x\r\rdata:y\r\r", 3);
        assert_eq!(
            ev.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
            ["x", "y"]
        );
    }

    #[test]
    fn last_event_without_blank_line_is_delivered() {
        let ev = decode_in_pieces(b"data: {\"x\":2}", 4);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].data, "{\"x\":2}");
    }

    #[test]
    fn a_large_event_does_not_pin_its_buffer() {
        let mut d = SseDecoder::new();
        let big = format!("data: {}\n\n", "x".repeat(100_000));
        let mut sizes = Vec::new();
        // In two reads: the first half waits in the line buffer.
        for half in big.as_bytes().chunks(big.len() / 2 + 1) {
            d.feed(
                half,
                |e| {
                    sizes.push(e.data.len());
                    Ok::<(), ()>(())
                },
                || (),
            )
            .unwrap();
        }
        assert_eq!(sizes, [100_000]);
        assert!(d.ev.data.capacity() <= KEPT_BUFFER_BYTES);
        assert!(d.line.capacity() <= KEPT_BUFFER_BYTES);
        // Small events keep theirs.
        d.feed(b"data: small\n\n", |_| Ok::<(), ()>(()), || ())
            .unwrap();
        assert!(d.ev.data.capacity() >= "small".len());
    }

    #[test]
    fn oversize_event_is_an_error() {
        let mut d = SseDecoder::new();
        let big = vec![b'a'; 1024 * 1024];
        let mut r = Ok(());
        d.feed(b"data: ", |_| Ok::<(), &str>(()), || "big").unwrap();
        for _ in 0..20 {
            r = d.feed(&big, |_| Ok(()), || "big");
            if r.is_err() {
                break;
            }
        }
        assert_eq!(r, Err("big"));
    }
}
