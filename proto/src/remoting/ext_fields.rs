//! A remoting header's extension fields ([`ExtFields`]): names and values in name order, the
//! order RocketMQ signs them in and Apogee writes them in.
//!
//! Every name and value of one header lives in one string, and the fields are a small sorted
//! list of positions into it: a decoded send request (about a dozen fields) costs two
//! allocations instead of two per field plus a tree's nodes, and its drop two frees. A field
//! set again keeps its old text in the string until the header is dropped.

use serde::ser::{Serialize, SerializeMap, Serializer};
use std::fmt;

/// Where one field's name and value are in [`ExtFields::text`]: the name is
/// `text[name..value]`, the value `text[value..end]`.
#[derive(Clone, Copy, Debug)]
struct Span {
    name: u32,
    value: u32,
    end: u32,
}

/// Extension fields by name (unique), iterated in byte order of their names.
#[derive(Clone, Default)]
pub struct ExtFields {
    text: String,
    spans: Vec<Span>,
}

impl ExtFields {
    pub fn new() -> ExtFields {
        ExtFields::default()
    }

    /// Room for `fields` fields of `bytes` bytes of names and values in all.
    pub fn with_capacity(fields: usize, bytes: usize) -> ExtFields {
        ExtFields {
            text: String::with_capacity(bytes),
            spans: Vec::with_capacity(fields),
        }
    }

    /// Room for `fields` more fields of `bytes` more bytes of names and values.
    pub fn reserve(&mut self, fields: usize, bytes: usize) {
        self.text.reserve(bytes);
        self.spans.reserve(fields);
    }

    fn name_of(&self, span: &Span) -> &str {
        &self.text[span.name as usize..span.value as usize]
    }

    /// The name's bytes, for comparisons: no check of char boundaries, which the spans
    /// were made on.
    fn name_bytes(&self, span: &Span) -> &[u8] {
        &self.text.as_bytes()[span.name as usize..span.value as usize]
    }

    fn value_of(&self, span: &Span) -> &str {
        &self.text[span.value as usize..span.end as usize]
    }

    /// Where `name` is (Ok) or would go (Err).
    fn search(&self, name: &str) -> Result<usize, usize> {
        self.spans
            .binary_search_by(|span| compare(self.name_bytes(span), name.as_bytes()))
    }

    /// Where `name` is or would go, for setting it: fields written in name order (as Apogee
    /// and its client write them) are appended after one comparison with the last.
    fn insertion_point(&self, name: &str) -> Result<usize, usize> {
        match self.spans.last() {
            None => Err(0),
            Some(last) if compare(self.name_bytes(last), name.as_bytes()).is_lt() => {
                Err(self.spans.len())
            }
            _ => self.search(name),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.search(name).ok()?;
        Some(self.value_of(&self.spans[i]))
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.search(name).is_ok()
    }

    /// Sets `name` to `value` (replacing a value it had).
    ///
    /// # Panics
    /// When the fields' text would pass 4 GiB (a header is at most 16 MiB).
    pub fn insert(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) {
        let (name, value) = (name.as_ref(), value.as_ref());
        // Copied as they are: a decoded header's every field comes this way, and formatting
        // machinery per field cost more than the copy.
        self.insert_written(name, |text| text.push_str(value));
    }

    /// Sets `name` to the decimal digits of `value`, with no formatting machinery (the
    /// numbers of every send's answer).
    pub fn insert_int(&mut self, name: &str, value: impl itoa::Integer) {
        self.insert_written(name, |text| {
            text.push_str(itoa::Buffer::new().format(value));
        });
    }

    /// Sets `name` to `value` written out (a number, say) with no string in between.
    ///
    /// # Panics
    /// As [`ExtFields::insert`].
    pub fn insert_display(&mut self, name: &str, value: impl fmt::Display) {
        use fmt::Write as _;
        self.insert_written(name, |text| {
            write!(text, "{value}").expect("writing to a String does not fail")
        });
    }

    /// Sets `name` to the value `write` appends to the text.
    fn insert_written(&mut self, name: &str, write: impl FnOnce(&mut String)) {
        let start = self.text.len();
        self.text.push_str(name);
        let value_start = self.text.len();
        write(&mut self.text);
        let offset = |n: usize| u32::try_from(n).expect("extension fields over 4 GiB");
        let span = Span {
            name: offset(start),
            value: offset(value_start),
            end: offset(self.text.len()),
        };
        match self.insertion_point(name) {
            Ok(i) => self.spans[i] = span,
            Err(i) => self.spans.insert(i, span),
        }
    }

    /// Removes `name`; whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.search(name) {
            Ok(i) => {
                self.spans.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Names and values in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.spans
            .iter()
            .map(|span| (self.name_of(span), self.value_of(span)))
    }
}

/// Byte order of two names, compared in place: names are a few bytes long, where a call to
/// `memcmp` per comparison (what `str`'s order makes) cost more than the comparison itself
/// (about a tenth of the broker's CPU per remoting send in a profile).
fn compare(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

impl PartialEq for ExtFields {
    fn eq(&self, other: &ExtFields) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> ExtFields {
        let mut fields = ExtFields::new();
        for (name, value) in iter {
            fields.insert(name, value);
        }
        fields
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for ExtFields {
    fn from(pairs: [(K, V); N]) -> ExtFields {
        pairs.into_iter().collect()
    }
}

/// A JSON object of strings, in name order.
impl Serialize for ExtFields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_kept_in_name_order_and_a_name_set_again_has_its_last_value() {
        let mut f = ExtFields::new();
        for (name, value) in [
            ("b", "2"),
            ("a", "1"),
            ("c", ""),
            ("b", "two"),
            ("", "empty name"),
        ] {
            f.insert(name, value);
        }
        let all: Vec<(&str, &str)> = f.iter().collect();
        assert_eq!(
            all,
            [("", "empty name"), ("a", "1"), ("b", "two"), ("c", "")]
        );
        assert_eq!(f.get("b"), Some("two"));
        assert_eq!(f.get("c"), Some(""));
        f.insert_display("n", 42u64);
        assert_eq!(f.get("n"), Some("42"));
        f.insert_int("i", -7i32);
        f.insert_int("u", u64::MAX);
        assert_eq!(
            (f.get("i"), f.get("u")),
            (Some("-7"), Some("18446744073709551615"))
        );
        assert!(f.remove("i") && f.remove("u"));
        assert!(f.remove("n"));
        assert_eq!(f.get("d"), None);
        assert!(f.remove("a"));
        assert!(!f.remove("a"));
        assert_eq!(f.len(), 3);
        assert!(!f.contains_key("a"));
    }

    #[test]
    fn equal_fields_are_equal_however_they_were_built() {
        let mut built = ExtFields::new();
        built.insert("x", "old");
        built.insert("y", "2");
        built.insert("x", "1");
        let collected: ExtFields = [("y", "2"), ("x", "1")].into();
        assert_eq!(built, collected);
        assert_ne!(built, ExtFields::from([("x", "1")]));
        assert_eq!(format!("{collected:?}"), r#"{"x": "1", "y": "2"}"#);
        assert_eq!(
            serde_json::to_string(&collected).unwrap(),
            r#"{"x":"1","y":"2"}"#
        );
    }

    #[test]
    fn names_and_values_may_hold_any_text() {
        let f: ExtFields = [("ключ", "значение\u{1}\u{2}"), ("k", "v")].into();
        assert_eq!(f.get("ключ"), Some("значение\u{1}\u{2}"));
        assert_eq!(f.iter().next(), Some(("k", "v")));
    }

    #[test]
    fn the_order_is_strs_byte_order_whatever_order_the_names_come_in() {
        let names = ["", "a", "ab", "abc", "b", "ba", "z", "\u{7f}", "é", "ключ"];
        let mut sorted = names.to_vec();
        sorted.sort();
        for start in 0..names.len() {
            let mut f = ExtFields::new();
            for name in names.iter().cycle().skip(start).take(names.len()) {
                f.insert(name, name);
            }
            // The name inserted last, set again.
            let last = names[(start + names.len() - 1) % names.len()];
            f.insert(last, "again");
            assert_eq!(f.iter().map(|(n, _)| n).collect::<Vec<_>>(), sorted);
            assert_eq!(f.get(last), Some("again"));
            for name in names.iter().filter(|n| **n != last) {
                assert_eq!(f.get(name), Some(*name));
            }
            assert_eq!(f.get("aa"), None);
        }
    }
}
