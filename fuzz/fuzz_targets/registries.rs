//! K3s's `registries.yaml`: never panics, and a refusal names the file.
#![no_main]

use std::path::Path;

use kagami_fuzz::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = text(data) else { return };
    match kagami_config::registries::parse(input, Path::new("registries.yaml")) {
        Ok(registries) => {
            for mirrored in registries.mirrored() {
                let _ = registries.mirror_for(mirrored);
            }
        }
        Err(error) => assert!(error.to_string().starts_with("registries.yaml"), "{error}"),
    }
});
