//! The MLLP decoder on any stream, cut in two at a point the first byte picks: the same
//! frames and errors either way, no frame over the limit; never a panic.
#![no_main]

use empi::hl7::mllp::MllpDecoder;
use libfuzzer_sys::fuzz_target;

fn decode(pieces: &[&[u8]]) -> Vec<Result<Vec<u8>, String>> {
    let mut d = MllpDecoder::new(64);
    let mut out = Vec::new();
    for p in pieces {
        out.extend(d.push(p).into_iter().map(|r| r.map_err(|e| e.to_string())));
    }
    out.extend(d.finish().map(|e| Err(e.to_string())));
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let at = usize::from(cut).min(stream.len());
    let whole = decode(&[stream]);
    assert_eq!(whole, decode(&[&stream[..at], &stream[at..]]));
    assert!(whole.iter().flatten().all(|f| f.len() <= 64));
});
