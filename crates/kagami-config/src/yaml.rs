//! Reading a YAML file into a `yaml_serde::Value`, with the parser's
//! errors turned into ours (file, line, and a plain word on the two
//! mistakes people make most: a bare `*`, a repeated key), and the
//! vocabulary both file formats use to check values.

use std::io::{self, Read};
use std::path::Path;

use yaml_serde::Value;

use crate::Error;
use crate::locate::{self, Seg};

/// Config files are hand-written; anything bigger is a mistake (or not a
/// config file), and reading it would only waste memory.
pub(crate) const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Reads `path` as UTF-8 text; `Ok(None)` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    let read_error = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(read_error(err)),
    };
    let mut text = String::new();
    let read = file
        .take(MAX_FILE_SIZE + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if read as u64 > MAX_FILE_SIZE {
        return Err(read_error(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE_SIZE} bytes; this is not a config file"),
        )));
    }
    Ok(Some(text))
}

/// Reads `path` as UTF-8 text; a missing file is an error.
pub(crate) fn read(path: &Path) -> Result<String, Error> {
    read_optional(path)?.ok_or_else(|| Error::Read {
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
    })
}

/// One YAML document being checked: its text (to find lines in) and name.
pub(crate) struct Doc<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Doc<'_> {
    /// Parses the text. `star_hint` finishes the sentence for a bare `*`:
    /// what the quoted `"*"` would have meant in this file.
    pub(crate) fn parse(&self, star_hint: &str) -> Result<Value, Error> {
        yaml_serde::from_str(self.text).map_err(|err| self.syntax_error(&err, star_hint))
    }

    fn syntax_error(&self, err: &yaml_serde::Error, star_hint: &str) -> Error {
        let line = err.location().map(|l| l.line());
        let text = err.to_string();
        // libyaml's words for `*` not followed by an anchor name. A key of
        // `*` is the usual way to get there: K3s's "mirror everything".
        if text.contains("while scanning an alias") {
            return self.error_at_line(
                line,
                None,
                format!("a bare * is a YAML alias; write \"*\" (quoted) {star_hint}"),
            );
        }
        if text.contains("duplicate entry with key")
            && let Some((key, line)) = locate::first_duplicate(self.text)
        {
            return self.error_at_line(
                Some(line),
                Some(key),
                "appears twice in the same mapping; keep one".to_owned(),
            );
        }
        if text.contains("more than one document") {
            return self.error_at_line(
                line,
                None,
                "holds more than one YAML document (a second ---); write one".to_owned(),
            );
        }
        self.error_at_line(line, None, text)
    }

    fn error_at_line(&self, line: Option<usize>, key: Option<String>, message: String) -> Error {
        Error::Parse {
            path: self.path.to_owned(),
            line,
            key,
            message,
        }
    }

    /// An error about the node at `at`, placed on its line.
    pub(crate) fn error(&self, at: &[Seg], message: impl Into<String>) -> Error {
        let key = (!at.is_empty()).then(|| locate::render(at));
        self.error_at_line(locate::line_near(self.text, at), key, message.into())
    }

    /// The line of the node at `at` (0 if it cannot be found, which does
    /// not happen for keys that are plain text).
    pub(crate) fn line(&self, at: &[Seg]) -> usize {
        locate::line_of(self.text, at).unwrap_or(0)
    }
}

/// A mapping key as text, if it is a scalar.
pub(crate) fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A value for an error message: "a list", "the number 5".
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the text {:?}", excerpt(s)),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(tagged) => format!("a value tagged {}", tagged.tag),
    }
}

/// Keeps quoted input in messages to a readable length.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// Levenshtein distance, for "did you mean" on unknown keys.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a typo.
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (word.chars().count() / 4).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("data-dir", "data-dir"), 0);
        assert_eq!(edit_distance("data-dri", "data-dir"), 2);
        assert_eq!(edit_distance("datadir", "data-dir"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn closest_suggests_only_near_misses() {
        let keys = ["data-dir", "https-listen-port", "token"];
        assert_eq!(
            closest("https-listen-prot", keys),
            Some("https-listen-port")
        );
        assert_eq!(closest("datadir", keys), Some("data-dir"));
        assert_eq!(closest("write-kubeconfig", keys), None);
    }

    #[test]
    fn excerpt_cuts_long_text_on_a_char_boundary() {
        let long = "é".repeat(100);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), 81);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("short"), "short");
    }
}
