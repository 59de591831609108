//! `Reference::from_str`: never panics; an accepted reference prints its
//! normalised form, which parses back to the same reference.
#![no_main]

use kagami_core::Reference;
use kagami_fuzz::{round_trips, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(input) = text(data) {
        round_trips::<Reference>(input);
    }
});
