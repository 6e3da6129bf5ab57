//! JSON strings, eight bytes at a time: where a run of plain bytes ends (reading), and a string
//! written as serde_json writes it (writing; used by `response_json` and `chunk_json`).
//!
//! Most strings on the request path are short and plain (keys, ids, model names, a few words of
//! content). serde_json looks at them a byte at a time through its writer; finding their end a
//! word at a time and copying them whole is several times cheaper (bench/README.md, session 18).

/// Where the first `"`, `\` or control character at or after `i` is (`b.len()` when none).
pub fn plain_end(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    while let Some(w) = b.get(i..i + 8) {
        let v = u64::from_le_bytes(w.try_into().expect("eight bytes"));
        // Each term flags its bytes' high bit; a borrow may flag bytes after a true match, never
        // before one, so the lowest flag is the first such byte.
        let hits = (zero(v ^ (ONES * u64::from(b'"')))
            | zero(v ^ (ONES * u64::from(b'\\')))
            | (v.wrapping_sub(ONES * 0x20) & !v))
            & HIGH;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// Appends `s` as a JSON string, byte for byte as serde_json writes it (it escapes exactly `"`,
/// `\` and the control characters, which send a string here to serde_json).
pub fn write(out: &mut Vec<u8>, s: &str) {
    if plain_end(s.as_bytes(), 0) == s.len() {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, s).expect("a string always serialises");
    }
}

/// Appends `s` as [`write`] does, or `null`.
pub fn write_optional(out: &mut Vec<u8>, s: &Option<String>) {
    match s {
        Some(s) => write(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_end_finds_the_first_quote_backslash_or_control_byte() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Mostly ordinary bytes (so the eight-byte steps run), and every kind of border byte.
        let bytes = b"aaaaaaaaaaaaaaa\"\\\x00\x1f\x20\x21\x7f\x80\xff\x5b\x5d";
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let b: Vec<u8> = (0..len)
                .map(|_| bytes[(next() % bytes.len() as u64) as usize])
                .collect();
            for start in 0..=len {
                let naive = (start..len)
                    .find(|&i| b[i] == b'"' || b[i] == b'\\' || b[i] < 0x20)
                    .unwrap_or(len);
                assert_eq!(plain_end(&b, start), naive, "{b:?} from {start}");
            }
        }
    }

    #[test]
    fn strings_are_written_as_serde_writes_them() {
        for s in [
            "",
            "plain",
            "a longer plain string, past eight bytes",
            "quote \" inside",
            "back\\slash",
            "new\nline and \t tab",
            "\u{0}\u{1f}\u{7f}",
            "ünïcödé 日本 🙂",
            "</script>",
        ] {
            let mut out = b"x".to_vec();
            write(&mut out, s);
            let mut want = b"x".to_vec();
            serde_json::to_writer(&mut want, s).unwrap();
            assert_eq!(out, want, "{s:?}");
        }
    }
}
