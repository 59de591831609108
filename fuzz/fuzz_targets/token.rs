//! Join tokens: never panic; an accepted token round-trips.
#![no_main]

use kagami_cluster::Token;
use kagami_fuzz::{round_trips, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = text(data) else { return };
    round_trips::<Token>(input);
});
