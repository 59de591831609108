//! `config.yaml`: never panics, and a refusal names the file.
#![no_main]

use std::path::Path;

use kagami_config::config_file::{self, KnownKey};
use kagami_fuzz::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = text(data) else { return };
    let known = [
        KnownKey::scalar("data-dir"),
        KnownKey::scalar("https-listen-port"),
        KnownKey::bool("embedded-registry"),
        KnownKey::list("mirror"),
        KnownKey::list("node-ip"),
    ];
    if let Err(error) = config_file::parse(input, Path::new("config.yaml"), &known) {
        assert!(error.to_string().starts_with("config.yaml"), "{error}");
    }
});
