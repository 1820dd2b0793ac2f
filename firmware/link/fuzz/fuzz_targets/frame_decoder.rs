//! Fuzz the link decoder from both sides: arbitrary bytes in arbitrary chunks never panic, and
//! whatever decodes re-encodes to a frame that decodes to the same message.
#![no_main]

use hearth_link::{BoardToHost, FrameDecoder, HostToBoard, MAX_FRAME, encode};
use libfuzzer_sys::fuzz_target;

fn check<M: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(bytes: &[u8], chunk: usize) {
    let mut decoder = FrameDecoder::new();
    let mut decoded: Vec<M> = Vec::new();
    for piece in bytes.chunks(chunk) {
        decoder.feed(piece, |r: Result<M, _>| {
            if let Ok(m) = r {
                decoded.push(m);
            }
        });
    }
    for m in decoded {
        let mut out = [0u8; MAX_FRAME];
        let frame = encode(&m, &mut out).expect("a decoded message re-encodes").to_vec();
        let mut again = None;
        FrameDecoder::new().feed(&frame, |r: Result<M, _>| again = Some(r));
        assert_eq!(again, Some(Ok(m)));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else { return };
    let chunk = usize::from(control).max(1);
    check::<HostToBoard>(bytes, chunk);
    check::<BoardToHost>(bytes, chunk);
});
