//! The `Range` request header, as RFC 9110 §14 reads it for one blob.
//!
//! Only a single byte range is served: `bytes=a-b`, `bytes=a-` and
//! `bytes=-n`. A header that is malformed, names another unit, or asks for
//! several ranges is ignored, and the whole blob is sent with 200, as the
//! RFC allows. A well-formed range that selects no byte of the blob is
//! unsatisfiable (416).

use std::fmt;
use std::ops::Range;

/// One byte range as the client wrote it, before the blob's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteRange {
    /// `bytes=a-b`: bytes `a` to `b` inclusive (`a <= b`).
    FromTo(u64, u64),
    /// `bytes=a-`: from byte `a` to the end.
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// The range selects no byte of the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unsatisfiable;

impl ByteRange {
    /// Reads a `Range` header value; `None` means "ignore it".
    pub(crate) fn parse(header: &str) -> Option<ByteRange> {
        let (unit, spec) = header.trim().split_once('=')?;
        if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
            return None;
        }
        let (first, last) = spec.trim().split_once('-')?;
        match (number(first)?, number(last)?) {
            (Some(first), Some(last)) if first <= last => Some(ByteRange::FromTo(first, last)),
            (Some(first), None) => Some(ByteRange::From(first)),
            (None, Some(suffix)) => Some(ByteRange::Suffix(suffix)),
            _ => None,
        }
    }

    /// The bytes this range selects in a blob of `size` bytes, as a
    /// half-open range for [`kagami_core::store::Store::read`].
    pub(crate) fn resolve(self, size: u64) -> Result<Range<u64>, Unsatisfiable> {
        let range = match self {
            ByteRange::FromTo(first, last) => first..last.saturating_add(1).min(size),
            ByteRange::From(first) => first..size,
            ByteRange::Suffix(suffix) => size.saturating_sub(suffix)..size,
        };
        if range.start >= range.end {
            return Err(Unsatisfiable);
        }
        Ok(range)
    }
}

impl fmt::Display for ByteRange {
    /// The `Range` header value that asks for this range.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByteRange::FromTo(first, last) => write!(f, "bytes={first}-{last}"),
            ByteRange::From(first) => write!(f, "bytes={first}-"),
            ByteRange::Suffix(suffix) => write!(f, "bytes=-{suffix}"),
        }
    }
}

/// A `Content-Range` response header, as a peer sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContentRange {
    /// `bytes s-e/size`: the half-open `range` of a blob of `size` bytes.
    Part { range: Range<u64>, size: u64 },
    /// `bytes */size`: nothing selected in a blob of `size` bytes.
    Unsatisfied { size: u64 },
}

impl ContentRange {
    /// Reads a `Content-Range` value; `None` for anything malformed or
    /// inconsistent (an end before the start, or past the size).
    pub(crate) fn parse(header: &str) -> Option<ContentRange> {
        let spec = header.trim().strip_prefix("bytes ")?;
        let (range, size) = spec.split_once('/')?;
        let size = number(size)??;
        if range == "*" {
            return Some(ContentRange::Unsatisfied { size });
        }
        let (first, last) = range.split_once('-')?;
        let (first, last) = (number(first)??, number(last)??);
        if first > last || last >= size {
            return None;
        }
        Some(ContentRange::Part {
            range: first..last + 1,
            size,
        })
    }
}

/// `Some(None)` for an empty side of the dash, `None` for anything that is
/// not a plain decimal number that fits in a `u64`.
fn number(text: &str) -> Option<Option<u64>> {
    if text.is_empty() {
        return Some(None);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().map(Some)
}

/// The `Content-Range` value of a partial response.
pub(crate) fn content_range(range: &Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{size}", range.start, range.end - 1)
}

/// The `Content-Range` value of a 416 response.
pub(crate) fn unsatisfied_range(size: u64) -> String {
    format!("bytes */{size}")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parse_table() {
        use ByteRange::*;
        let cases: &[(&str, Option<ByteRange>)] = &[
            ("bytes=0-0", Some(FromTo(0, 0))),
            ("bytes=0-99", Some(FromTo(0, 99))),
            ("bytes=100-", Some(From(100))),
            ("bytes=-5", Some(Suffix(5))),
            ("bytes=-0", Some(Suffix(0))),
            ("Bytes=1-2", Some(FromTo(1, 2))),
            (" bytes=1-2 ", Some(FromTo(1, 2))),
            ("bytes=18446744073709551615-", Some(From(u64::MAX))),
            // Ignored: malformed, reversed, multiple ranges, other units.
            ("bytes=5-1", None),
            ("bytes=-", None),
            ("bytes=", None),
            ("bytes", None),
            ("", None),
            ("bytes=a-b", None),
            ("bytes=+1-2", None),
            ("bytes=1-2-3", None),
            ("bytes=0-1,5-6", None),
            ("bytes=0-1, 5-6", None),
            ("items=0-1", None),
            ("bytes=18446744073709551616-", None),
            ("bytes=1 -2", None),
        ];
        for (header, want) in cases {
            assert_eq!(ByteRange::parse(header), *want, "for {header:?}");
        }
    }

    type Resolved = Result<Range<u64>, Unsatisfiable>;

    #[test]
    fn resolve_table() {
        use ByteRange::*;
        let cases: &[(ByteRange, u64, Resolved)] = &[
            (FromTo(0, 0), 10, Ok(0..1)),
            (FromTo(0, 9), 10, Ok(0..10)),
            (FromTo(2, 1000), 10, Ok(2..10)),
            (FromTo(9, u64::MAX), 10, Ok(9..10)),
            (FromTo(10, 20), 10, Err(Unsatisfiable)),
            (From(0), 10, Ok(0..10)),
            (From(9), 10, Ok(9..10)),
            (From(10), 10, Err(Unsatisfiable)),
            (Suffix(3), 10, Ok(7..10)),
            (Suffix(10), 10, Ok(0..10)),
            (Suffix(1000), 10, Ok(0..10)),
            (Suffix(0), 10, Err(Unsatisfiable)),
            // An empty blob has no byte to select.
            (From(0), 0, Err(Unsatisfiable)),
            (Suffix(5), 0, Err(Unsatisfiable)),
            (FromTo(0, 0), 0, Err(Unsatisfiable)),
        ];
        for (range, size, want) in cases {
            assert_eq!(range.resolve(*size), *want, "{range:?} of {size}");
        }
    }

    #[test]
    fn content_range_is_inclusive() {
        assert_eq!(content_range(&(0..1), 10), "bytes 0-0/10");
        assert_eq!(content_range(&(7..10), 10), "bytes 7-9/10");
        assert_eq!(unsatisfied_range(10), "bytes */10");
    }

    #[test]
    fn ranges_render_as_the_header_that_parses_back() {
        use ByteRange::*;
        for range in [FromTo(0, 0), FromTo(5, 99), From(7), Suffix(3)] {
            assert_eq!(ByteRange::parse(&range.to_string()), Some(range));
        }
        assert_eq!(FromTo(5, 99).to_string(), "bytes=5-99");
    }

    #[test]
    fn content_range_table() {
        use ContentRange::*;
        let cases: &[(&str, Option<ContentRange>)] = &[
            (
                "bytes 0-0/10",
                Some(Part {
                    range: 0..1,
                    size: 10,
                }),
            ),
            (
                "bytes 7-9/10",
                Some(Part {
                    range: 7..10,
                    size: 10,
                }),
            ),
            ("bytes */10", Some(Unsatisfied { size: 10 })),
            ("bytes */0", Some(Unsatisfied { size: 0 })),
            ("bytes 9-7/10", None),
            ("bytes 0-10/10", None),
            ("bytes 0-1/*", None),
            ("bytes 0-1", None),
            ("items 0-1/10", None),
            ("bytes -1/10", None),
            ("", None),
        ];
        for (header, want) in cases {
            assert_eq!(ContentRange::parse(header), *want, "for {header:?}");
        }
        assert_eq!(
            ContentRange::parse(&content_range(&(3..8), 10)),
            Some(Part {
                range: 3..8,
                size: 10
            })
        );
    }

    proptest! {
        #[test]
        fn never_panics(header in any::<String>(), size in any::<u64>()) {
            if let Some(range) = ByteRange::parse(&header) {
                let _ = range.resolve(size);
            }
        }

        #[test]
        fn resolved_ranges_lie_inside_the_blob(
            header in "bytes=[0-9]{0,20}-[0-9]{0,20}",
            size in 0u64..1_000_000,
        ) {
            if let Some(Ok(range)) = ByteRange::parse(&header).map(|r| r.resolve(size)) {
                prop_assert!(range.start < range.end);
                prop_assert!(range.end <= size);
            }
        }
    }
}
