//! Where a key or list item sits in YAML text.
//!
//! `yaml_serde` keeps positions only in its errors: its `Value` has no
//! spans. So to learn a node's line we read the text again with a visitor
//! that walks down a path and fails on purpose when it reaches the target;
//! the parser stamps that failure with the target's position, which is the
//! parser's own notion of where the node is (flow style, quoting, anchors
//! and all). Config files are a few kilobytes, so a re-read per lookup
//! costs microseconds.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A mapping key, compared as text (`6443:` is the key `"6443"`).
    Key(String),
    /// A list item, 0-based.
    Index(usize),
}

/// Renders a path as `mirrors.docker.io.endpoint[0]`, the way yq and
/// yaml_serde write paths.
pub(crate) fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// The marker our deliberate failures carry, so that they cannot be taken
/// for a real error of the text.
const SENTINEL: &str = "\u{1}kagami-config: found it\u{1}";

/// The 1-based line of the node at `path` (of the key, for a mapping entry);
/// `None` if the path does not exist. An empty path is the document root.
pub(crate) fn line_of(text: &str, path: &[Seg]) -> Option<usize> {
    let result = Seek { path }.deserialize(yaml_serde::Deserializer::from_str(text));
    sentinel_line(result)
}

/// The line of `path`, or of its nearest ancestor that can be found: an
/// error is better placed near its cause than nowhere.
pub(crate) fn line_near(text: &str, path: &[Seg]) -> Option<usize> {
    (0..=path.len())
        .rev()
        .find_map(|len| line_of(text, &path[..len]))
}

/// The first key that repeats a key of the same mapping, as a dotted path,
/// with its line. `yaml_serde` refuses such a document but places the
/// error at the start of the mapping; this finds the repeat itself.
pub(crate) fn first_duplicate(text: &str) -> Option<(String, usize)> {
    let found = RefCell::new(None);
    let result = Walk { found: &found }.deserialize(yaml_serde::Deserializer::from_str(text));
    // yaml_serde writes the mapping's path (same notation as `render`)
    // before the message, unless the mapping is the root.
    let parent = match &result {
        Err(err) => err
            .to_string()
            .split_once(SENTINEL)
            .and_then(|(before, _)| before.strip_suffix(": ").map(str::to_owned)),
        Ok(()) => None,
    };
    let line = sentinel_line(result)?;
    let key = found.into_inner()?;
    Some(match parent {
        Some(parent) => (format!("{parent}.{key}"), line),
        None => (key, line),
    })
}

fn sentinel_line(result: Result<(), yaml_serde::Error>) -> Option<usize> {
    match result {
        Err(err) if err.to_string().contains(SENTINEL) => err.location().map(|l| l.line()),
        _ => None,
    }
}

fn found<E: de::Error>() -> E {
    E::custom(SENTINEL)
}

/// Compares a key, read as text, with the target.
fn compare_key<E: de::Error>(text: String, target: &str, fail: bool) -> Result<bool, E> {
    match (text == target, fail) {
        (true, true) => Err(found()),
        (matched, _) => Ok(matched),
    }
}

/// Walks down `path`, skipping everything else.
struct Seek<'p> {
    path: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        if self.path.is_empty() {
            de.deserialize_any(Hit)
        } else {
            de.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping or a list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(target), rest)) = self.path.split_first() else {
            return Ok(());
        };
        let key = KeySeed {
            target,
            fail: rest.is_empty(),
        };
        while let Some(matched) = map.next_key_seed(key)? {
            if matched {
                return map.next_value_seed(Seek { path: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(target), rest)) = self.path.split_first() else {
            return Ok(());
        };
        for _ in 0..*target {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Seek { path: rest })?;
        Ok(())
    }
}

/// Fails on whatever node it is handed, so that the parser marks it.
struct Hit;

impl<'de> Visitor<'de> for Hit {
    type Value = ();

    // Every `visit_*` left to its default fails with an "invalid type"
    // error whose text includes this, which is all we need.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SENTINEL)
    }
}

/// Reads one mapping key; says whether it is the target, or fails on it
/// when the target is the key itself.
#[derive(Clone, Copy)]
struct KeySeed<'t> {
    target: &'t str,
    fail: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        compare_key(v.to_owned(), self.target, self.fail)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        compare_key(v.to_string(), self.target, self.fail)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        compare_key(v.to_string(), self.target, self.fail)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        compare_key(v.to_string(), self.target, self.fail)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        compare_key(v.to_string(), self.target, self.fail)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

/// Walks the whole document and fails on the first repeated key of a
/// mapping, recording it.
#[derive(Clone, Copy)]
struct Walk<'f> {
    found: &'f RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while map
            .next_key_seed(UniqueKey {
                seen: &mut seen,
                found: self.found,
            })?
            .is_some()
        {
            map.next_value_seed(self)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
}

/// Reads a key, failing on it if its mapping has had it before.
struct UniqueKey<'s, 'f> {
    seen: &'s mut HashSet<String>,
    found: &'f RefCell<Option<String>>,
}

impl UniqueKey<'_, '_> {
    fn check<E: de::Error>(self, key: String) -> Result<(), E> {
        if self.seen.insert(key.clone()) {
            return Ok(());
        }
        *self.found.borrow_mut() = Some(key);
        Err(found())
    }
}

impl<'de> DeserializeSeed<'de> for UniqueKey<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKey<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.check(v.to_owned())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.check(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.check(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.check(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.check(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.check("null".to_owned())
    }
    // Keys that are themselves mappings or lists are too odd to chase.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Seg {
        Seg::Key(k.to_owned())
    }

    const DOC: &str = "\
# a comment
mirrors:
  docker.io:
  \"registry.example.com:5000\":
    endpoint:
      - https://a.example.com
      - 'https://b.example.com'
    rewrite: {\"^a/(.*)\": \"b/$1\"}
configs: {}
6443: port
";

    #[test]
    fn finds_keys_and_items_where_the_parser_puts_them() {
        assert_eq!(line_of(DOC, &[key("mirrors")]), Some(2));
        assert_eq!(line_of(DOC, &[key("mirrors"), key("docker.io")]), Some(3));
        let reg = [key("mirrors"), key("registry.example.com:5000")];
        assert_eq!(line_of(DOC, &reg), Some(4));
        let endpoint = [reg[0].clone(), reg[1].clone(), key("endpoint")];
        assert_eq!(line_of(DOC, &endpoint), Some(5));
        let second = [&endpoint[..], &[Seg::Index(1)]].concat();
        assert_eq!(line_of(DOC, &second), Some(7));
        let rule = [
            reg[0].clone(),
            reg[1].clone(),
            key("rewrite"),
            key("^a/(.*)"),
        ];
        assert_eq!(line_of(DOC, &rule), Some(8));
        assert_eq!(line_of(DOC, &[key("configs")]), Some(9));
        assert_eq!(line_of(DOC, &[key("6443")]), Some(10));
        assert_eq!(line_of(DOC, &[]), Some(2));
    }

    #[test]
    fn a_missing_path_has_no_line_but_its_ancestor_does() {
        assert_eq!(line_of(DOC, &[key("nope")]), None);
        let deep = [key("mirrors"), key("docker.io"), key("endpoint")];
        assert_eq!(line_of(DOC, &deep), None);
        assert_eq!(line_near(DOC, &deep), Some(3));
        assert_eq!(line_of(DOC, &[key("mirrors"), Seg::Index(0)]), None);
    }

    #[test]
    fn finds_the_repeated_key_not_the_mapping() {
        let text = "a: 1\nb:\n  x: 1\n  y: 2\n  x: 3\n";
        assert_eq!(first_duplicate(text), Some(("b.x".to_owned(), 5)));
        assert_eq!(
            first_duplicate("a: 1\nb: 2\na: 3\n"),
            Some(("a".to_owned(), 3))
        );
        assert_eq!(first_duplicate("a: 1\nb: 2\n"), None);
    }

    #[test]
    fn renders_paths_like_yq() {
        let path = [
            key("mirrors"),
            key("docker.io"),
            key("endpoint"),
            Seg::Index(0),
        ];
        assert_eq!(render(&path), "mirrors.docker.io.endpoint[0]");
    }
}
