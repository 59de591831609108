//! `Digest::from_str`: never panics; accepted digests round-trip.
#![no_main]

use kagami_core::Digest;
use kagami_fuzz::{round_trips, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(input) = text(data) {
        round_trips::<Digest>(input);
    }
});
