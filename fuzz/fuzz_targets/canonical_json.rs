//! Strict JSON parsing and RFC 8785 output on arbitrary bytes: never panics, and canonical output
//! is a fixed point (canonicalizing it again gives the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(canonical) = agentrail_event::json::canonicalize(data) {
        let again = agentrail_event::json::canonicalize(&canonical)
            .expect("canonical output must parse");
        assert_eq!(again, canonical, "canonical form is not a fixed point");
    }
});
