//! Strict JSON parsing and RFC 8785 output on arbitrary bytes: never panics, canonical output is
//! a fixed point (canonicalizing it again gives the same bytes), and the fast canonical check
//! agrees with "canonicalizing changes nothing".
#![no_main]

use agentrail_event::json::{canonicalize, check_canonical};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let result = canonicalize(data);
    assert_eq!(
        check_canonical(data).is_ok(),
        result.as_deref().is_ok_and(|c| c == data),
        "check_canonical disagrees"
    );
    if let Ok(canonical) = result {
        let again = canonicalize(&canonical).expect("canonical output must parse");
        assert_eq!(again, canonical, "canonical form is not a fixed point");
        assert!(check_canonical(&canonical).is_ok(), "canonical output fails the fast check");
    }
});
