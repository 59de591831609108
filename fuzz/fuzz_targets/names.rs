//! `Registry`, `Repository` and `Tag` parsers on the same input: none
//! panics, and whatever each accepts round-trips.
#![no_main]

use kagami_core::{Registry, Repository, Tag};
use kagami_fuzz::{round_trips, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(input) = text(data) {
        round_trips::<Registry>(input);
        round_trips::<Repository>(input);
        round_trips::<Tag>(input);
    }
});
