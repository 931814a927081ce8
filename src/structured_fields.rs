//! Structured Field dictionaries (RFC 8941 §3.2), parsed strictly by the algorithms of
//! §4.2: a field value that does not parse fails as a whole, as RFC 9213 §2.1 requires of
//! targeted cache-control fields (`CDN-Cache-Control` and the like), which a cache must then
//! ignore. Parameters are checked and dropped; the cache has no use for them.

use alloc::string::String;
use alloc::vec::Vec;

/// A bare item (RFC 8941 §3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BareItem {
    /// An Integer (§3.3.1): at most 15 digits.
    Integer(i64),
    /// A Decimal (§3.3.2), in thousandths.
    Decimal(i64),
    /// A String (§3.3.3), unescaped.
    String(String),
    /// A Token (§3.3.4).
    Token(String),
    /// A Byte Sequence (§3.3.5), still base64-encoded.
    ByteSequence(String),
    /// A Boolean (§3.3.6).
    Boolean(bool),
}

/// A dictionary member's value (RFC 8941 §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberValue {
    /// An item (a member with no value is `Boolean(true)`).
    Item(BareItem),
    /// An inner list (§3.1.1) of items.
    InnerList(Vec<BareItem>),
}

/// A dictionary: keys in order of first appearance, a repeated key's value overwritten by
/// the last (§4.2.2).
pub type Dictionary = Vec<(String, MemberValue)>;

/// Why a field value is not a dictionary (the position is for tests and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset where parsing failed.
    pub at: usize,
}

/// Parses the lines of one field as a dictionary (RFC 8941 §4.2: lines are combined with
/// commas, leading and trailing spaces removed).
pub fn parse_dictionary_lines<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
) -> Result<Dictionary, ParseError> {
    let mut combined = Vec::new();
    for (i, line) in lines.enumerate() {
        if i > 0 {
            combined.extend_from_slice(b", ");
        }
        combined.extend_from_slice(line);
    }
    parse_dictionary(&combined)
}

/// Parses a field value as a dictionary (RFC 8941 §4.2, §4.2.2).
pub fn parse_dictionary(input: &[u8]) -> Result<Dictionary, ParseError> {
    let mut p = Parser { input, pos: 0 };
    p.skip(|b| b == b' ');
    let end = input
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(p.pos, |i| i + 1);
    p.input = &input[..end];
    let mut dictionary: Dictionary = Vec::new();
    while !p.done() {
        let key = p.key()?;
        let value = if p.eat(b'=') {
            p.item_or_inner_list()?
        } else {
            p.parameters()?;
            MemberValue::Item(BareItem::Boolean(true))
        };
        match dictionary.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) => *existing = value,
            None => dictionary.push((key, value)),
        }
        p.skip(|b| b == b' ' || b == b'\t');
        if p.done() {
            break;
        }
        if !p.eat(b',') {
            return Err(p.error());
        }
        p.skip(|b| b == b' ' || b == b'\t');
        if p.done() {
            return Err(p.error());
        }
    }
    Ok(dictionary)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn error(&self) -> ParseError {
        ParseError { at: self.pos }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip(&mut self, what: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&what) {
            self.pos += 1;
        }
    }

    /// §4.2.3.3: `( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`.
    fn key(&mut self) -> Result<String, ParseError> {
        match self.peek() {
            Some(b) if b.is_ascii_lowercase() || b == b'*' => {}
            _ => return Err(self.error()),
        }
        let start = self.pos;
        self.skip(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*')
        });
        Ok(ascii(&self.input[start..self.pos]))
    }

    /// §4.2.1.1.
    fn item_or_inner_list(&mut self) -> Result<MemberValue, ParseError> {
        if self.peek() != Some(b'(') {
            let item = self.bare_item()?;
            self.parameters()?;
            return Ok(MemberValue::Item(item));
        }
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip(|b| b == b' ');
            if self.eat(b')') {
                self.parameters()?;
                return Ok(MemberValue::InnerList(items));
            }
            items.push(self.bare_item()?);
            self.parameters()?;
            match self.peek() {
                Some(b' ') | Some(b')') => {}
                _ => return Err(self.error()),
            }
        }
    }

    /// §4.2.3.2: `*( ";" *SP key [ "=" bare-item ] )`, checked and dropped.
    fn parameters(&mut self) -> Result<(), ParseError> {
        while self.eat(b';') {
            self.skip(|b| b == b' ');
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Ok(())
    }

    /// §4.2.3.1.
    fn bare_item(&mut self) -> Result<BareItem, ParseError> {
        match self.peek() {
            Some(b'-') => self.number(),
            Some(b) if b.is_ascii_digit() => self.number(),
            Some(b'"') => self.string(),
            Some(b) if b.is_ascii_alphabetic() || b == b'*' => Ok(self.token()),
            Some(b':') => self.byte_sequence(),
            Some(b'?') => self.boolean(),
            _ => Err(self.error()),
        }
    }

    /// §4.2.4: Integer (at most 15 digits) or Decimal (at most 12 digits, a point, 1 to 3).
    fn number(&mut self) -> Result<BareItem, ParseError> {
        let negative = self.eat(b'-');
        let start = self.pos;
        self.skip(|b| b.is_ascii_digit());
        let integer_digits = self.pos - start;
        if integer_digits == 0 {
            return Err(self.error());
        }
        let integer = digits_value(&self.input[start..self.pos]);
        if !self.eat(b'.') {
            if integer_digits > 15 {
                return Err(self.error());
            }
            return Ok(BareItem::Integer(if negative { -integer } else { integer }));
        }
        let fraction_start = self.pos;
        self.skip(|b| b.is_ascii_digit());
        let fraction_digits = self.pos - fraction_start;
        if integer_digits > 12 || !(1..=3).contains(&fraction_digits) {
            return Err(self.error());
        }
        let mut thousandths = digits_value(&self.input[fraction_start..self.pos]);
        for _ in fraction_digits..3 {
            thousandths *= 10;
        }
        let value = integer * 1000 + thousandths;
        Ok(BareItem::Decimal(if negative { -value } else { value }))
    }

    /// §4.2.5: printable ASCII between quotes, `\"` and `\\` escaped.
    fn string(&mut self) -> Result<BareItem, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error());
            };
            self.pos += 1;
            match b {
                b'"' => return Ok(BareItem::String(out)),
                b'\\' => match self.peek() {
                    Some(escaped @ (b'"' | b'\\')) => {
                        self.pos += 1;
                        out.push(char::from(escaped));
                    }
                    _ => return Err(self.error()),
                },
                0x20..=0x7e => out.push(char::from(b)),
                _ => return Err(self.error()),
            }
        }
    }

    /// §4.2.6: `( ALPHA / "*" ) *( tchar / ":" / "/" )`.
    fn token(&mut self) -> BareItem {
        let start = self.pos;
        self.pos += 1;
        self.skip(|b| crate::cache_control::is_tchar(b) || b == b':' || b == b'/');
        BareItem::Token(ascii(&self.input[start..self.pos]))
    }

    /// §4.2.7: base64 between colons.
    fn byte_sequence(&mut self) -> Result<BareItem, ParseError> {
        self.pos += 1;
        let start = self.pos;
        self.skip(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        let encoded = ascii(&self.input[start..self.pos]);
        if !self.eat(b':') {
            return Err(self.error());
        }
        Ok(BareItem::ByteSequence(encoded))
    }

    /// §4.2.8: `?0` or `?1`.
    fn boolean(&mut self) -> Result<BareItem, ParseError> {
        self.pos += 1;
        let value = match self.peek() {
            Some(b'1') => true,
            Some(b'0') => false,
            _ => return Err(self.error()),
        };
        self.pos += 1;
        Ok(BareItem::Boolean(value))
    }
}

/// The value of at most 15 ASCII digits.
fn digits_value(digits: &[u8]) -> i64 {
    digits
        .iter()
        .take(15)
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'))
}

fn ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn ok(input: &str) -> Dictionary {
        parse_dictionary(input.as_bytes()).unwrap_or_else(|e| panic!("{input:?}: {e:?}"))
    }

    fn fails(input: &str) {
        assert!(
            parse_dictionary(input.as_bytes()).is_err(),
            "{input:?} parsed"
        );
    }

    fn item(value: BareItem) -> MemberValue {
        MemberValue::Item(value)
    }

    /// The dictionary examples of RFC 8941 §3.2.
    #[test]
    fn rfc_8941_examples() {
        assert_eq!(
            ok(r#"en="Applepie", da=:w4ZibGV0w6ZybGU=:"#),
            vec![
                ("en".to_string(), item(BareItem::String("Applepie".into()))),
                (
                    "da".to_string(),
                    item(BareItem::ByteSequence("w4ZibGV0w6ZybGU=".into()))
                ),
            ]
        );
        assert_eq!(
            ok("a=?0, b, c; foo=bar"),
            vec![
                ("a".to_string(), item(BareItem::Boolean(false))),
                ("b".to_string(), item(BareItem::Boolean(true))),
                ("c".to_string(), item(BareItem::Boolean(true))),
            ]
        );
        assert_eq!(
            ok("rating=1.5, feelings=(joy sadness)"),
            vec![
                ("rating".to_string(), item(BareItem::Decimal(1500))),
                (
                    "feelings".to_string(),
                    MemberValue::InnerList(vec![
                        BareItem::Token("joy".into()),
                        BareItem::Token("sadness".into())
                    ])
                ),
            ]
        );
        assert_eq!(ok("a=(1 2), b=3, c=4;aa=bb, d=(5 6);valid").len(), 4);
    }

    #[test]
    fn cache_directives() {
        assert_eq!(
            ok("max-age=10000, no-store"),
            vec![
                ("max-age".to_string(), item(BareItem::Integer(10000))),
                ("no-store".to_string(), item(BareItem::Boolean(true))),
            ]
        );
        assert_eq!(ok("  max-age=1  ").len(), 1, "surrounding spaces");
        assert_eq!(ok("").len(), 0, "empty is an empty dictionary");
        assert_eq!(
            ok("max-age=1, max-age=2"),
            vec![("max-age".to_string(), item(BareItem::Integer(2)))],
            "the last value wins"
        );
        assert_eq!(
            ok(r#"private="set-cookie""#)[0].1,
            item(BareItem::String("set-cookie".into()))
        );
        assert_eq!(ok("a=-7, b=0.25")[1].1, item(BareItem::Decimal(250)));
    }

    #[test]
    fn junk_fails_the_whole_field() {
        for junk in [
            "max-age=10000, &&&&&",
            "max-age=10000,",
            ",max-age=1",
            "Max-Age=1",
            "max-age=1 no-store",
            "max-age==1",
            "max-age=\"10000",
            "max-age=1234567890123456",
            "max-age=1.2345",
            "max-age=1.",
            "a=?2",
            "a=:abc",
            "a=\"\u{e9}\"",
            "a=\"\\x\"",
            "a=(1 2",
            "a=(1,2)",
            "a;=1",
            "a=-",
        ] {
            fails(junk);
        }
        assert!(parse_dictionary(b"a=\"\x01\"").is_err());
        assert_eq!(ok("max-age=1\t,b").len(), 2, "OWS around commas");
    }

    #[test]
    fn lines_are_combined() {
        let lines = [b"max-age=1".as_slice(), b"no-store".as_slice()];
        assert_eq!(parse_dictionary_lines(lines.into_iter()).unwrap().len(), 2);
        let lines = [b"max-age=1".as_slice(), b"&".as_slice()];
        assert!(parse_dictionary_lines(lines.into_iter()).is_err());
    }
}
