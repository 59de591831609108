//! `MediaType::detect` on raw bytes and `MediaType::from_str` on text:
//! neither panics, and any type found prints to a string that parses back.
#![no_main]

use kagami_core::MediaType;
use kagami_fuzz::{round_trips, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(found) = MediaType::detect(data) {
        assert_eq!(found.as_str().parse::<MediaType>().ok(), Some(found));
    }
    if let Some(input) = text(data) {
        round_trips::<MediaType>(input);
    }
});
