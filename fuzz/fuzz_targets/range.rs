//! `Range` and `Content-Range`: never panic; resolved ranges lie inside
//! the blob and their `Content-Range` reads back the same.
#![no_main]

use kagami_fuzz::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = text(data) else { return };
    kagami_registry::fuzzing::range(input);
});
