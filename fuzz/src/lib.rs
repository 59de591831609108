//! The one check every kagami-core fuzz target makes, shared so that the
//! targets and `kagami-core/src/proptests.rs` agree on what "round-trips"
//! means: a value a parser accepts prints back to text that parses to the
//! same value. A panic anywhere is the other failure libFuzzer reports.

use std::fmt::{Debug, Display};
use std::str::FromStr;

/// Parses `input` as `T`; if it is accepted, asserts that its printed form
/// parses again to an equal value.
pub fn round_trips<T>(input: &str)
where
    T: FromStr + Display + PartialEq + Debug,
{
    if let Ok(value) = input.parse::<T>() {
        let printed = value.to_string();
        let again = printed.parse::<T>();
        assert!(
            again.is_ok(),
            "{input:?} → {printed:?} does not parse again"
        );
        assert_eq!(again.ok(), Some(value), "{input:?} → {printed:?} changed");
    }
}

/// Fuzz bytes as text; the string parsers only ever see `&str`, so input
/// that is not UTF-8 has nothing to test.
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
