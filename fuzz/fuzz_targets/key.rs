//! `Key::from_str`: never panics; accepted keys round-trip; and the tag key
//! of any reference that parses is itself a key that parses back.
#![no_main]

use kagami_core::{Key, Reference};
use kagami_fuzz::{round_trips, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = text(data) else { return };
    round_trips::<Key>(input);
    if let Ok(reference) = input.parse::<Reference>()
        && let Some(key) = Key::for_tag(&reference)
    {
        let printed = key.to_string();
        assert_eq!(
            printed.parse::<Key>().ok(),
            Some(key),
            "{input:?} → {printed:?}"
        );
    }
});
