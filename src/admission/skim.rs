//! A JSON cursor that finds where values begin and end a machine word at a
//! time: the reading layer's first pass.
//!
//! The reconcile's no-op reads a request of some 13 KB, two thirds of which
//! are the two stamped Jobs (`object`'s and `oldObject`'s): JSON inside a JSON
//! string, a `\"` every few characters. serde_json finds a string's end one
//! escape at a time, and spent half of the no-op there (callgrind). This
//! cursor looks at eight bytes at once and steps over an escape without
//! leaving the word it is in.
//!
//! It checks what serde_json checks when it skips a value (the grammar,
//! the escapes, no control character in a string, nesting as deep as
//! serde_json reads into typed values;
//! UTF-8 once, for the whole text), so a `Raw` it returns is the JSON text
//! of one value. It says only *where* the text stops being JSON: the
//! reading layer then reads the request again with serde_json, whose error
//! says what is wrong.

use std::borrow::Cow;

/// The JSON text of one value, as the cursor found it. Equal when the
/// texts are (compared a word at a time: `same_bytes`).
#[derive(Debug, Clone, Copy)]
pub(in crate::admission) struct Raw<'a>(&'a str);

impl PartialEq for Raw<'_> {
    fn eq(&self, other: &Self) -> bool {
        same_bytes(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for Raw<'_> {}

impl<'a> Raw<'a> {
    pub fn get(self) -> &'a str {
        self.0
    }

    /// JSON text that serde_json has read as one value.
    pub fn from_serde(raw: &'a serde_json::value::RawValue) -> Raw<'a> {
        Raw(raw.get())
    }
}

/// For the precise reading: serde_json's `RawValue`, as `Raw`.
impl<'de: 'a, 'a> serde::Deserialize<'de> for Raw<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'de serde_json::value::RawValue>::deserialize(deserializer).map(Raw::from_serde)
    }
}

/// Where the text stops being JSON (a byte offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::admission) struct NotJson(pub usize);

/// serde_json's recursion limit for typed values (it reads 127 arrays in
/// arrays into a `Value`).
const MAX_DEPTH: usize = 128;

pub(in crate::admission) struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, at: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        while let Some(&byte) = bytes.get(self.at) {
            if !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(byte);
            }
            self.at += 1;
        }
        None
    }

    fn expect(&mut self, byte: u8) -> Result<(), NotJson> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(NotJson(self.at))
        }
    }

    /// Whether the next value is an object.
    pub fn at_object(&mut self) -> bool {
        self.peek() == Some(b'{')
    }

    /// Enters the object that comes next.
    pub fn begin_object(&mut self) -> Result<(), NotJson> {
        self.expect(b'{')
    }

    /// The next member's name in the object entered, and its value next;
    /// `None` after the last (the object is then left).
    pub fn next_member(&mut self, first: &mut bool) -> Result<Option<Cow<'a, str>>, NotJson> {
        let Some(name) = self.member_name(first)? else {
            return Ok(None);
        };
        let text = name.get();
        let quoted = text
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .filter(|inner| !inner.contains('\\'));
        Ok(Some(match quoted {
            Some(inner) => Cow::Borrowed(inner),
            None => Cow::Owned(serde_json::from_str(text).map_err(|_| NotJson(self.at))?),
        }))
    }

    /// The next member's name as JSON text, up to its `:`; `None` after
    /// the last (the object is then left).
    #[inline(always)]
    fn member_name(&mut self, first: &mut bool) -> Result<Option<Raw<'a>>, NotJson> {
        match (std::mem::take(first), self.peek()) {
            (_, Some(b'}')) => {
                self.at += 1;
                return Ok(None);
            }
            (false, Some(b',')) => self.at += 1,
            (true, _) => {}
            (false, _) => return Err(NotJson(self.at)),
        }
        if self.peek() != Some(b'"') {
            return Err(NotJson(self.at));
        }
        let name = self.string()?;
        self.expect(b':')?;
        Ok(Some(name))
    }

    /// The object that comes next read by `read`, or `None` for null (as
    /// serde reads an `Option`); anything else is not what was expected.
    pub fn object_or_null<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, NotJson>,
    ) -> Result<Option<T>, NotJson> {
        if self.at_object() {
            return read(self).map(Some);
        }
        match self.value()?.get() {
            "null" => Ok(None),
            _ => Err(NotJson(self.at)),
        }
    }

    /// Steps over the next value.
    pub fn value(&mut self) -> Result<Raw<'a>, NotJson> {
        self.nested(0)
    }

    /// Steps over the next value, which is likely `expected` (`oldObject`'s
    /// stamped Job is most often `object`'s, byte for byte). Where it is a
    /// string, an object or an array, its first bytes decide where it ends:
    /// bytes equal to `expected`'s are that value, found by one comparison
    /// instead of a scan. Anything else is scanned.
    pub fn value_like(&mut self, expected: Option<Raw<'_>>) -> Result<Raw<'a>, NotJson> {
        let start = self.position();
        let delimited = expected
            .map(Raw::get)
            .filter(|text| matches!(text.as_bytes().first(), Some(b'"' | b'{' | b'[')));
        if let Some(expected) = delimited
            && let Some(here) = self.bytes().get(start..start + expected.len())
            && same_bytes(here, expected.as_bytes())
        {
            self.at = start + expected.len();
            return Ok(self.since(start));
        }
        self.value()
    }

    /// The whole text has been read (but whitespace).
    pub fn end(mut self) -> Result<(), NotJson> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(NotJson(self.at)),
        }
    }

    /// The text from `start` to where the cursor is.
    pub fn since(&self, start: usize) -> Raw<'a> {
        Raw(self.text.get(start..self.at).unwrap_or_default())
    }

    /// Where the cursor is.
    pub fn offset(&self) -> usize {
        self.at
    }

    /// Where the next value begins.
    pub fn position(&mut self) -> usize {
        self.peek();
        self.at
    }

    fn nested(&mut self, depth: usize) -> Result<Raw<'a>, NotJson> {
        let start = self.position();
        match self.bytes().get(start) {
            Some(b'"') => return self.string(),
            Some(b'{' | b'[') if depth >= MAX_DEPTH => return Err(NotJson(start)),
            Some(b'{') => {
                self.at += 1;
                let mut first = true;
                while self.member_name(&mut first)?.is_some() {
                    self.nested(depth + 1)?;
                }
            }
            Some(b'[') => {
                self.at += 1;
                if self.peek() == Some(b']') {
                    self.at += 1;
                } else {
                    loop {
                        self.nested(depth + 1)?;
                        match self.peek() {
                            Some(b']') => {
                                self.at += 1;
                                break;
                            }
                            Some(b',') => self.at += 1,
                            _ => return Err(NotJson(self.at)),
                        }
                    }
                }
            }
            Some(b't') => self.literal(b"true")?,
            Some(b'f') => self.literal(b"false")?,
            Some(b'n') => self.literal(b"null")?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(NotJson(start)),
        }
        Ok(self.since(start))
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), NotJson> {
        if self.bytes().get(self.at..self.at + word.len()) == Some(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(NotJson(self.at))
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), NotJson> {
        let bytes = self.bytes();
        let digits = |at: &mut usize| {
            let start = *at;
            while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at > start
        };
        let mut at = self.at;
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        match bytes.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => {
                digits(&mut at);
            }
            _ => return Err(NotJson(at)),
        }
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            if !digits(&mut at) {
                return Err(NotJson(at));
            }
        }
        if matches!(bytes.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(bytes.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            if !digits(&mut at) {
                return Err(NotJson(at));
            }
        }
        self.at = at;
        Ok(())
    }

    /// The string that begins at the cursor (at its `"`), quotes included.
    fn string(&mut self) -> Result<Raw<'a>, NotJson> {
        let bytes = self.bytes();
        let start = self.at;
        let mut at = start + 1;
        loop {
            // A word at a time while a whole word is left.
            while let Some(word) = bytes.get(at..at + 8) {
                let mut word_bytes = [0; 8];
                word_bytes.copy_from_slice(word);
                let mut special = special_bytes(u64::from_le_bytes(word_bytes));
                if special == 0 {
                    at += 8;
                    continue;
                }
                let base = at;
                loop {
                    let found = base + (special.trailing_zeros() / 8) as usize;
                    match bytes.get(found) {
                        Some(b'"') => {
                            self.at = found + 1;
                            return Ok(self.since(start));
                        }
                        Some(b'\\') => at = found + escape_length(bytes, found)?,
                        // Right after a match, the word trick can flag a
                        // byte that is none (`special_bytes`): step over it.
                        Some(&byte) if byte >= 0x20 => at = found + 1,
                        _ => return Err(NotJson(found)),
                    }
                    if at >= base + 8 {
                        break;
                    }
                    // Forget what lies before `at` in this word: the escape.
                    special &= !0u64 << ((at - base) * 8);
                    if special == 0 {
                        at = base + 8;
                        break;
                    }
                }
            }
            // The last few bytes, one at a time.
            match bytes.get(at) {
                Some(b'"') => {
                    self.at = at + 1;
                    return Ok(self.since(start));
                }
                Some(b'\\') => at += escape_length(bytes, at)?,
                Some(&byte) if byte >= 0x20 => at += 1,
                _ => return Err(NotJson(at)),
            }
        }
    }
}

/// Where, from `at` on, the first `"`, `\\` or control character is (the
/// characters a JSON string escapes): `bytes.len()` if none.
pub(in crate::admission) fn next_to_escape(bytes: &[u8], mut at: usize) -> usize {
    while let Some(word) = bytes.get(at..at + 8) {
        let mut word_bytes = [0; 8];
        word_bytes.copy_from_slice(word);
        let special = special_bytes(u64::from_le_bytes(word_bytes));
        if special != 0 {
            // The lowest flagged byte is always a true one.
            return at + (special.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while bytes
        .get(at)
        .is_some_and(|&byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
    {
        at += 1;
    }
    at.min(bytes.len())
}

/// `a == b` for slices of one length, eight bytes at a time: in Wasm,
/// `memcmp` compares a byte at a time, and costs more than the scan it saves.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let word = |chunk: &[u8]| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        u64::from_ne_bytes(bytes)
    };
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    a.len() == b.len()
        && a_words.remainder() == b_words.remainder()
        && a_words.zip(b_words).all(|(a, b)| word(a) == word(b))
}

const ONES: u64 = u64::MAX / 255;
const HIGH_BITS: u64 = ONES << 7;

/// The high bit of each byte of `word` that is `"`, `\` or a control
/// character (below 0x20): the bytes a string's scan must stop at. Exact
/// for the lowest such byte; above a match, a borrow can also flag the byte
/// that differs from the matched one in its lowest bit (`#` after `"`), so
/// the scan looks at each flagged byte before it believes it.
fn special_bytes(word: u64) -> u64 {
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x;
    (zero_byte(quote) | zero_byte(backslash) | (word.wrapping_sub(ONES * 0x20) & !word)) & HIGH_BITS
}

/// How long the escape at `at` (its `\`) is: 2, or 6 for `\uXXXX`.
#[inline(always)]
fn escape_length(bytes: &[u8], at: usize) -> Result<usize, NotJson> {
    let escaped = bytes.get(at + 1);
    // A stamped Job in a request is almost all `\"`.
    if escaped == Some(&b'"') {
        return Ok(2);
    }
    match escaped {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(2),
        Some(b'u')
            if bytes
                .get(at + 2..at + 6)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) =>
        {
            Ok(6)
        }
        _ => Err(NotJson(at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    /// What the cursor makes of `text` as one value: its raw text, or where
    /// it stops being JSON.
    fn skim(text: &str) -> Result<&str, NotJson> {
        let mut cursor = Cursor::new(text);
        let raw = cursor.value()?;
        cursor.end()?;
        Ok(raw.get())
    }

    /// The cursor accepts exactly what serde_json accepts when it skips a
    /// value, and finds the same text.
    fn agrees_with_serde_json(text: &str) {
        let serde = serde_json::from_str::<&serde_json::value::RawValue>(text).map(|raw| raw.get());
        match (skim(text), serde) {
            (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs, "{text:?}"),
            (Err(_), Err(_)) => {}
            (ours, theirs) => panic!("{text:?}: cursor {ours:?}, serde_json {theirs:?}"),
        }
    }

    #[rstest]
    #[case::empty("")]
    #[case::object(r#" {"a": [1, -2.5e+3, true, false, null, "x"], "b": {}} "#)]
    #[case::empty_containers(r#"[{}, [], ""]"#)]
    #[case::escapes(r#""\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00""#)]
    #[case::lone_surrogate(r#""\udaaa""#)]
    #[case::escaped_quotes_then_hash("\"\\\"#\\\"#\\\"#\\\"#a\"")]
    #[case::utf8("\"é – 😀\"")]
    #[case::trailing_comma_object(r#"{"a": 1,}"#)]
    #[case::trailing_comma_array("[1,]")]
    #[case::missing_colon(r#"{"a" 1}"#)]
    #[case::name_not_string("{a: 1}")]
    #[case::bad_escape(r#""\x""#)]
    #[case::short_unicode(r#""\u12""#)]
    #[case::bad_hex(r#""\u12g4""#)]
    #[case::control_character("\"a\u{1}b\"")]
    #[case::tab_in_string("\"a\tb\"")]
    #[case::unterminated(r#""abc"#)]
    #[case::unterminated_escape(r#""abc\"#)]
    #[case::leading_zero("01")]
    #[case::minus_alone("-")]
    #[case::dot_alone("1.")]
    #[case::exponent_alone("1e")]
    #[case::exponent_sign_alone("1e+")]
    #[case::plus("+1")]
    #[case::literal_cut("tru")]
    #[case::literal_long("nulll")]
    #[case::two_values("1 2")]
    #[case::close_only("}")]
    #[case::nested_128(&format!("{}{}", "[".repeat(128), "]".repeat(128)))]
    #[case::nested_objects_128(&format!("{}1{}", r#"{"a":"#.repeat(128), "}".repeat(128)))]
    fn reads_as_serde_json_reads(#[case] text: &str) {
        agrees_with_serde_json(text);
    }

    /// At serde_json's limit for typed values, the cursor stops (its
    /// recursion is bounded: the guest's stack is small); the precise
    /// reading takes over, as for anything the cursor refuses.
    #[test]
    fn nesting_stops_at_serde_jsons_limit() {
        let arrays = |depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(skim(&arrays(MAX_DEPTH)).is_ok());
        assert_eq!(skim(&arrays(MAX_DEPTH + 1)), Err(NotJson(MAX_DEPTH)));
        assert!(skim(&arrays(100_000)).is_err());
    }

    /// Every position of a special byte in a word, and every kind of byte
    /// after it (the word trick's false matches follow a true one).
    #[test]
    fn each_alignment_of_escapes_and_quotes() {
        for padding in 0..17 {
            for tail in [
                "\\\"#",
                "\\\\]",
                "\\u0041#",
                "#\\\"",
                "\\\"\\\"\\\"",
                "\u{1}",
                " !",
            ] {
                for more in ["", "abcdefghijklmnop"] {
                    let text = format!("\"{}{tail}{more}\"", "a".repeat(padding));
                    agrees_with_serde_json(&text);
                    agrees_with_serde_json(&format!("[{text},{text}]"));
                }
            }
        }
    }

    #[test]
    fn the_fixtures_read_alike() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e-tests/fixtures");
        for entry in std::fs::read_dir(fixtures).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            agrees_with_serde_json(&text);
            assert!(skim(&text).is_ok());
        }
    }

    #[rstest]
    #[case::same_string(r#""a\"b""#, r#""a\"b""#)]
    #[case::same_object(r#"{"a": [1]}"#, r#"{"a": [1]}"#)]
    #[case::longer_string(r#""a\"b""#, r#""a\"bc""#)]
    #[case::number_prefix("12", "123")]
    #[case::literal("true", "true")]
    #[case::other(r#""x""#, r#""y""#)]
    fn a_likely_value_is_the_value_there(#[case] expected: &str, #[case] text: &str) {
        let expected = Cursor::new(expected).value().unwrap();
        let document = format!("[{text}, 0]");
        let mut cursor = Cursor::new(&document);
        cursor.expect(b'[').unwrap();
        let found = cursor.value_like(Some(expected)).unwrap();
        assert_eq!(found.get(), text);
        cursor.expect(b',').unwrap();
        assert_eq!(cursor.value().unwrap().get(), "0");
        // A damaged text after equal bytes is still refused.
        let mut damaged = Cursor::new(r#"["a"x"#);
        damaged.expect(b'[').unwrap();
        let equal = Cursor::new(r#""a""#).value().unwrap();
        assert!(damaged.value_like(Some(equal)).is_ok());
        assert!(damaged.expect(b',').is_err());
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let text = b"0123456789abcdefghij";
        for start in 0..text.len() {
            for end in start..=text.len() {
                let a = &text[start..end];
                for other in [
                    a.to_vec(),
                    [a, b"x"].concat(),
                    a.iter().rev().copied().collect(),
                ] {
                    assert_eq!(
                        same_bytes(a, &other),
                        a == other.as_slice(),
                        "{a:?} {other:?}"
                    );
                }
                let mut changed = a.to_vec();
                if let Some(last) = changed.last_mut() {
                    *last ^= 1;
                    assert!(!same_bytes(a, &changed));
                }
            }
        }
    }

    #[test]
    fn member_names_are_borrowed_unless_escaped() {
        let mut cursor = Cursor::new(r#"{"plain": 1, "esc\u0061ped": [2], "q\"": {"x": null}}"#);
        cursor.begin_object().unwrap();
        let mut first = true;
        let mut read = Vec::new();
        while let Some(name) = cursor.next_member(&mut first).unwrap() {
            let borrowed = matches!(name, Cow::Borrowed(_));
            read.push((name.into_owned(), borrowed, cursor.value().unwrap().get()));
        }
        cursor.end().unwrap();
        assert_eq!(
            read,
            [
                ("plain".to_owned(), true, "1"),
                ("escaped".to_owned(), false, "[2]"),
                ("q\"".to_owned(), false, r#"{"x": null}"#),
            ]
        );
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            "\\PC*".prop_map(serde_json::Value::from),
            "[\"\\\\a#\\]\\u{1}-\\u{1f}]{0,40}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z\"\\\\]{0,6}", inner, 0..8)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any JSON value, compact or pretty, and any one-byte change of it.
        #[test]
        fn any_value_and_any_damage_read_as_serde_json_reads(
            value in json_value(),
            pretty in any::<bool>(),
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(&b"\"\\{}[],:0-.eE+tfnu \x01#]a"[..]),
            damage in 0..3u8,
        ) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            agrees_with_serde_json(&text);
            let mut bytes = text.into_bytes();
            let at = at.index(bytes.len() + 1);
            match damage {
                0 => bytes.insert(at, byte),
                1 if at < bytes.len() => drop(bytes.remove(at)),
                _ if at < bytes.len() => bytes[at] = byte,
                _ => bytes.push(byte),
            }
            if let Ok(text) = String::from_utf8(bytes) {
                agrees_with_serde_json(&text);
            }
        }
    }
}
