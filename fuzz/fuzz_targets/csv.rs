//! The CSV reader on any bytes, with the identity mapping and in strict mode: every input
//! is read or refused with an error naming a field or the file; never a panic.
#![no_main]

use empi::input::{read_csv_from, ReadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for strict in [false, true] {
        let opts = ReadOptions {
            strict,
            ..ReadOptions::default()
        };
        let _ = read_csv_from(data, None, &opts);
    }
});
