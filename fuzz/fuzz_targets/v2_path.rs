//! The `/v2/…` path parser: never panics; an accepted route is the path
//! it came from.
#![no_main]

use kagami_fuzz::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = text(data) else { return };
    kagami_registry::fuzzing::route(input);
});
