//! A cursor over JSON text for hand-written readers of one common shape (the OpenAI chunk and
//! answer scans): each method reads one token or value and returns `None` for anything it does
//! not read — an unexpected shape, an escape it leaves alone, invalid JSON — and the reader
//! then gives the whole text to serde. So the cursor never needs to tell invalid JSON from an
//! unhandled shape, and it accepts nothing serde would refuse.

use std::borrow::Cow;

use crate::json_string;

/// How deep an ignored value may nest before the text goes to serde (serde's limit is 128).
const MAX_DEPTH: usize = 16;

/// The known fields met so far: serde's derive refuses a field given twice, so this does too.
#[derive(Default)]
pub(crate) struct Seen(u8);

impl Seen {
    pub(crate) fn first(&mut self, bit: u8) -> Option<()> {
        let had = self.0 & (1 << bit) != 0;
        self.0 |= 1 << bit;
        (!had).then_some(())
    }
}

/// The text and the position of the next byte to read.
pub(crate) struct Scan<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Scan<'a> {
    pub(crate) fn new(s: &'a str) -> Scan<'a> {
        Scan { s, i: 0 }
    }

    /// After the value read: only whitespace may follow (serde refuses trailing characters).
    pub(crate) fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.s.len()
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    pub(crate) fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    pub(crate) fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    pub(crate) fn literal(&mut self, word: &str) -> bool {
        self.ws();
        let hit = self.s.as_bytes()[self.i..].starts_with(word.as_bytes());
        if hit {
            self.i += word.len();
        }
        hit
    }

    pub(crate) fn null(&mut self) -> bool {
        self.literal("null")
    }

    /// `{ "key": value, … }`, `field` reading each value.
    pub(crate) fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, &str) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{').then_some(())?;
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.ws();
            // A key with an escape is rare enough to leave to serde.
            let key = self.plain_string()?;
            self.eat(b':').then_some(())?;
            field(self, key)?;
            if self.eat(b',') {
                continue;
            }
            return self.eat(b'}').then_some(());
        }
    }

    /// `[ item, … ]`.
    pub(crate) fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[').then_some(())?;
        if self.eat(b']') {
            return Some(());
        }
        loop {
            item(self)?;
            if self.eat(b',') {
                continue;
            }
            return self.eat(b']').then_some(());
        }
    }

    pub(crate) fn nullable_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null() {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A string or `null`, owned: an optional text field of the value being built.
    #[inline]
    pub(crate) fn optional_string(&mut self) -> Option<Option<String>> {
        self.nullable_string().map(|s| s.map(Cow::into_owned))
    }

    /// A string without escapes, borrowed: what nearly every key and value is. `None` at an
    /// escape or a control character (and past the end).
    #[inline]
    pub(crate) fn plain_string(&mut self) -> Option<&'a str> {
        self.eat(b'"').then_some(())?;
        let start = self.i;
        let end = json_string::plain_end(self.s.as_bytes(), start);
        (self.s.as_bytes().get(end) == Some(&b'"')).then_some(())?;
        self.i = end + 1;
        // `start` follows and `end` is an ASCII quote: both are char boundaries.
        self.s.get(start..end)
    }

    /// A string, borrowed unless it has escapes.
    #[inline]
    pub(crate) fn string(&mut self) -> Option<Cow<'a, str>> {
        let at = self.i;
        if let Some(s) = self.plain_string() {
            return Some(Cow::Borrowed(s));
        }
        self.i = at;
        self.escaped_string().map(Cow::Owned)
    }

    /// A string with escapes. `\u` escapes go to serde (surrogate pairs and their errors are
    /// serde's to get right).
    #[cold]
    fn escaped_string(&mut self) -> Option<String> {
        self.eat(b'"').then_some(())?;
        let b = self.s.as_bytes();
        let mut owned = String::new();
        let mut from = self.i;
        loop {
            self.i = json_string::plain_end(b, self.i);
            match *b.get(self.i)? {
                b'"' => {
                    owned.push_str(&self.s[from..self.i]);
                    self.i += 1;
                    return Some(owned);
                }
                b'\\' => {
                    owned.push_str(&self.s[from..self.i]);
                    owned.push(match *b.get(self.i + 1)? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        _ => return None,
                    });
                    self.i += 2;
                    from = self.i;
                }
                // JSON forbids raw control characters in strings; serde says so.
                _ => return None,
            }
        }
    }

    /// A non-negative integer without fraction or exponent (anything else goes to serde).
    pub(crate) fn uint(&mut self) -> Option<u64> {
        self.ws();
        let b = self.s.as_bytes();
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(d @ b'0'..=b'9') = b.get(self.i).copied() {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        let leading_zero = digits > 1 && b[start] == b'0';
        let more = matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        (digits > 0 && !leading_zero && !more).then_some(n)
    }

    /// A `u32` (a list index), as [`Scan::uint`]; larger values go to serde.
    #[inline]
    pub(crate) fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.uint()?).ok()
    }

    /// An unknown field's value, whatever it holds, checked as serde checks what it ignores.
    /// Strings with `\u` escapes, and nesting deeper than [`MAX_DEPTH`], go to serde.
    pub(crate) fn skip_value(&mut self) -> Option<()> {
        self.skip_nested(0)
    }

    fn skip_nested(&mut self, depth: usize) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'-' | b'0'..=b'9' => self.number(),
            b'{' if depth < MAX_DEPTH => self.object(|s, _| s.skip_nested(depth + 1)),
            b'[' if depth < MAX_DEPTH => self.array(|s| s.skip_nested(depth + 1)),
            _ => (self.null() || self.literal("true") || self.literal("false")).then_some(()),
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, checked, not converted.
    pub(crate) fn number(&mut self) -> Option<()> {
        let b = self.s.as_bytes();
        let digits = |i: &mut usize| {
            let start = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - start
        };
        let mut i = self.i;
        i += usize::from(b.get(i) == Some(&b'-'));
        let int_start = i;
        let n = digits(&mut i);
        if n == 0 || (n > 1 && b[int_start] == b'0') {
            return None;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            (digits(&mut i) > 0).then_some(())?;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            i += usize::from(matches!(b.get(i), Some(b'+' | b'-')));
            (digits(&mut i) > 0).then_some(())?;
        }
        self.i = i;
        Some(())
    }
}
