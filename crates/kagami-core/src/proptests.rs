//! Arbitrary and adversarial input for every parser: none may panic, and
//! everything one accepts must print back to text that parses to the same
//! value. The fuzz targets under `fuzz/` drive the same checks.

use proptest::prelude::*;

use crate::{Digest, Key, MediaType, Reference, Registry, Repository, Tag};

/// Text built from the characters the grammars care about, so the search
/// spends its time near the edges instead of in random Unicode.
fn grammar_soup() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9._:/@\\-\\[\\]]{0,80}").expect("valid regex")
}

fn component() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}")
        .expect("valid regex")
}

fn valid_reference() -> impl Strategy<Value = String> {
    let registry = prop_oneof![
        Just(String::new()),
        Just("docker.io/".to_owned()),
        Just("localhost:5000/".to_owned()),
        Just("[::1]:5000/".to_owned()),
        proptest::string::string_regex("[a-z0-9]{1,8}\\.[a-z]{2,4}(:[0-9]{1,5})?/")
            .expect("valid regex"),
    ];
    let tag = proptest::option::of(
        proptest::string::string_regex("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}").expect("valid regex"),
    );
    let digest =
        proptest::option::of(proptest::string::string_regex("[0-9a-f]{64}").expect("valid regex"));
    (
        registry,
        proptest::collection::vec(component(), 1..4),
        tag,
        digest,
    )
        .prop_filter_map(
            "a first part with a '.' would name a registry",
            |(registry, parts, tag, digest)| {
                if registry.is_empty() && parts.len() > 1 && parts[0].contains('.') {
                    return None;
                }
                let mut s = registry + &parts.join("/");
                if let Some(tag) = tag {
                    s = s + ":" + &tag;
                }
                if let Some(hex) = digest {
                    s = s + "@sha256:" + &hex;
                }
                Some(s)
            },
        )
}

fn round_trips<T>(input: &str)
where
    T: std::str::FromStr + std::fmt::Display + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = input.parse::<T>() {
        let printed = value.to_string();
        let again = printed.parse::<T>();
        assert!(
            again.is_ok(),
            "{input:?} → {printed:?} does not parse again"
        );
        assert_eq!(again.ok(), Some(value), "{input:?} → {printed:?} changed");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn digest_never_panics_and_round_trips(input in prop_oneof![any::<String>(), grammar_soup(), "sha(256|512):[0-9a-fA-F]{60,130}"]) {
        round_trips::<Digest>(&input);
    }

    #[test]
    fn names_never_panic_and_round_trip(input in prop_oneof![any::<String>(), grammar_soup()]) {
        round_trips::<Registry>(&input);
        round_trips::<Repository>(&input);
        round_trips::<Tag>(&input);
    }

    #[test]
    fn reference_never_panics_and_round_trips(input in prop_oneof![any::<String>(), grammar_soup(), valid_reference()]) {
        round_trips::<Reference>(&input);
    }

    #[test]
    fn valid_references_are_accepted(input in valid_reference()) {
        let parsed = input.parse::<Reference>();
        // Only the length limit may refuse a grammatical reference.
        if input.len() < 200 {
            prop_assert!(parsed.is_ok(), "{input:?}: {parsed:?}");
        }
    }

    #[test]
    fn key_never_panics_and_round_trips(input in prop_oneof![any::<String>(), grammar_soup(), valid_reference()]) {
        round_trips::<Key>(&input);
        if let Ok(reference) = input.parse::<Reference>()
            && let Some(key) = Key::for_tag(&reference)
        {
            prop_assert_eq!(key.to_string().parse::<Key>().ok(), Some(key));
        }
    }

    #[test]
    fn media_type_detection_never_panics(bytes in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "\\{\"(mediaType|manifests|config|layers|schemaVersion)\":(\\[\\]|\\{\\}|\"[a-z./+]{0,60}\"|[0-9]),?\\}".prop_map(String::into_bytes),
    ]) {
        if let Some(found) = MediaType::detect(&bytes) {
            prop_assert_eq!(found.as_str().parse::<MediaType>().ok(), Some(found));
        }
    }
}
