//! A `Patient/$match` body on any bytes: `empi::fhir::read_match_request` reads it or
//! refuses it with a 400 OperationOutcome naming the element; never a panic.
#![no_main]

use empi::fhir::{self, FhirConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = fhir::read_match_request(data, &FhirConfig::default(), 20_000) {
        assert_eq!(fhir::outcome_of(&e).status, 400);
    }
});
