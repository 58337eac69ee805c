//! Event validation of arbitrary JSON and NDJSON bodies: never panics.
#![no_main]

use agentrail_event::batch::{BatchFormat, parse_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_batch(data, BatchFormat::Json);
    let _ = parse_batch(data, BatchFormat::Ndjson);
});
