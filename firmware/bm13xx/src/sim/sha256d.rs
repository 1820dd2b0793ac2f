//! sha256d of 80-byte headers from a midstate, two at a time: the emulator's hot loop.
//!
//! The portable path uses `sha2::compress256` (which itself picks SHA-NI when present). On x86_64
//! with the SHA extensions a hand-interleaved two-lane version runs both headers' rounds side by
//! side so the `sha256rnds2` latency of one lane hides behind the other, about 1.6× faster.
//! Round constants and initial values: FIPS 180-4 §4.2.2 and §5.3.3; the lane layout
//! (ABEF/CDGH) is the one Intel's SHA extensions define.

use sha2::compress256;
use sha2::digest::generic_array::GenericArray;

use crate::verify::SHA256_INIT;

/// Header words 16..19 as SHA-256 message words (big-endian reads of header bytes 64..80),
/// without the nonce: merkle-root tail, ntime, nbits.
pub type TailWords = [u32; 3];

/// The final SHA-256 states of sha256d for `L` headers that share a midstate and tail and differ
/// in the nonce word (`nonce_words[i]` = big-endian read of header bytes 76..80).
pub fn sha256d_lanes<const L: usize>(
    midstate: &[u32; 8],
    tail: &TailWords,
    nonce_words: [u32; L],
) -> [[u32; 8]; L] {
    #[cfg(target_arch = "x86_64")]
    {
        if shani::available() {
            return shani::sha256d_lanes(midstate, tail, nonce_words);
        }
    }
    nonce_words.map(|n| portable(midstate, tail, n))
}

fn words_to_block(words: &[u32; 16]) -> [u8; 64] {
    let mut block = [0u8; 64];
    for (i, w) in words.iter().enumerate() {
        block[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
    }
    block
}

fn portable(midstate: &[u32; 8], tail: &TailWords, nonce_word: u32) -> [u32; 8] {
    let mut w = [0u32; 16];
    w[..3].copy_from_slice(tail);
    w[3] = nonce_word;
    w[4] = 0x8000_0000;
    w[15] = 640;
    let mut state = *midstate;
    compress256(
        &mut state,
        &[*GenericArray::from_slice(&words_to_block(&w))],
    );
    let mut w2 = [0u32; 16];
    w2[..8].copy_from_slice(&state);
    w2[8] = 0x8000_0000;
    w2[15] = 256;
    let mut out = SHA256_INIT;
    compress256(&mut out, &[*GenericArray::from_slice(&words_to_block(&w2))]);
    out
}

/// Display-order leading zero bits of a hash given as its final SHA-256 state.
pub fn state_zero_bits(state: &[u32; 8]) -> u32 {
    let mut bits = 0;
    for word in state.iter().rev() {
        // Digest bytes are the words big-endian; display order reverses the bytes, so the most
        // significant display bytes are the last word's bytes from its low end.
        let display = word.swap_bytes();
        if display == 0 {
            bits += 32;
        } else {
            return bits + display.leading_zeros();
        }
    }
    bits
}

/// Digest bytes (internal order) of a final state.
pub fn state_to_digest(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, w) in state.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[allow(
    unsafe_code,
    reason = "SHA-NI intrinsics need #[target_feature]; the one call is guarded by runtime detection"
)]
mod shani {
    use core::arch::x86_64::*;

    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("sha")
            && std::is_x86_feature_detected!("sse2")
            && std::is_x86_feature_detected!("ssse3")
            && std::is_x86_feature_detected!("sse4.1")
    }

    pub(super) fn sha256d_lanes<const L: usize>(
        midstate: &[u32; 8],
        tail: &super::TailWords,
        nonces: [u32; L],
    ) -> [[u32; 8]; L] {
        // SAFETY: `available()` was checked by the caller, so the CPU has every feature the
        // function is compiled for.
        unsafe { lanes_sha256d(midstate, tail, nonces) }
    }

    /// Four message words as one vector, lane 0 = first word.
    #[target_feature(enable = "sse2,sse4.1")]
    #[inline]
    fn v(w: [u32; 4]) -> __m128i {
        _mm_set_epi32(w[3] as i32, w[2] as i32, w[1] as i32, w[0] as i32)
    }

    #[target_feature(enable = "sse2,sse4.1")]
    #[inline]
    fn lanes(x: __m128i) -> [u32; 4] {
        [
            _mm_extract_epi32::<0>(x) as u32,
            _mm_extract_epi32::<1>(x) as u32,
            _mm_extract_epi32::<2>(x) as u32,
            _mm_extract_epi32::<3>(x) as u32,
        ]
    }

    /// One SHA-256 compression of two independent blocks, interleaved.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn compress<const L: usize>(state: [[u32; 8]; L], msg: [[u32; 16]; L]) -> [[u32; 8]; L] {
        let mut s0 = [_mm_setzero_si128(); L];
        let mut s1 = [_mm_setzero_si128(); L];
        let mut m = [[_mm_setzero_si128(); 16]; L];
        for l in 0..L {
            let abcd = v([state[l][0], state[l][1], state[l][2], state[l][3]]);
            let efgh = v([state[l][4], state[l][5], state[l][6], state[l][7]]);
            let tmp = _mm_shuffle_epi32::<0xB1>(abcd); // CDAB
            let efgh = _mm_shuffle_epi32::<0x1B>(efgh); // EFGH
            s0[l] = _mm_alignr_epi8::<8>(tmp, efgh); // ABEF
            s1[l] = _mm_blend_epi16::<0xF0>(efgh, tmp); // CDGH
            for j in 0..4 {
                let w = &msg[l];
                m[l][j] = v([w[4 * j], w[4 * j + 1], w[4 * j + 2], w[4 * j + 3]]);
            }
        }
        let (save0, save1) = (s0, s1);
        for j in 0..16 {
            let k = v([K[4 * j], K[4 * j + 1], K[4 * j + 2], K[4 * j + 3]]);
            for l in 0..L {
                if j >= 4 {
                    let t = _mm_sha256msg1_epu32(m[l][j - 4], m[l][j - 3]);
                    let t = _mm_add_epi32(t, _mm_alignr_epi8::<4>(m[l][j - 1], m[l][j - 2]));
                    m[l][j] = _mm_sha256msg2_epu32(t, m[l][j - 1]);
                }
                let wk = _mm_add_epi32(m[l][j], k);
                s1[l] = _mm_sha256rnds2_epu32(s1[l], s0[l], wk);
                let wk = _mm_shuffle_epi32::<0x0E>(wk);
                s0[l] = _mm_sha256rnds2_epu32(s0[l], s1[l], wk);
            }
        }
        let mut out = [[0u32; 8]; L];
        for l in 0..L {
            let a = _mm_add_epi32(s0[l], save0[l]);
            let b = _mm_add_epi32(s1[l], save1[l]);
            let tmp = _mm_shuffle_epi32::<0x1B>(a); // FEBA
            let b = _mm_shuffle_epi32::<0xB1>(b); // DCHG
            let abcd = _mm_blend_epi16::<0xF0>(tmp, b); // DCBA
            let efgh = _mm_alignr_epi8::<8>(b, tmp); // HGFE
            let x = lanes(abcd);
            let y = lanes(efgh);
            out[l] = [x[0], x[1], x[2], x[3], y[0], y[1], y[2], y[3]];
        }
        out
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn lanes_sha256d<const L: usize>(
        midstate: &[u32; 8],
        tail: &super::TailWords,
        nonces: [u32; L],
    ) -> [[u32; 8]; L] {
        let mut first = [[0u32; 16]; L];
        for (l, block) in first.iter_mut().enumerate() {
            block[..3].copy_from_slice(tail);
            block[3] = nonces[l];
            block[4] = 0x8000_0000;
            block[15] = 640;
        }
        let mid = compress([*midstate; L], first);
        let mut second = [[0u32; 16]; L];
        for (l, block) in second.iter_mut().enumerate() {
            block[..8].copy_from_slice(&mid[l]);
            block[8] = 0x8000_0000;
            block[15] = 256;
        }
        compress([crate::verify::SHA256_INIT; L], second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{midstate, sha256d_from_midstate};

    #[test]
    fn pair_equals_the_reference_path() {
        let mut first = [0u8; 64];
        for (i, b) in first.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(5);
        }
        let ms = midstate(&first);
        let tail_bytes = [
            0x11u8, 0x22, 0x33, 0x44, 0xD7, 0x68, 0x54, 0x68, 0x04, 0x3A, 0x02, 0x17,
        ];
        let tail: TailWords = core::array::from_fn(|i| {
            u32::from_be_bytes([
                tail_bytes[4 * i],
                tail_bytes[4 * i + 1],
                tail_bytes[4 * i + 2],
                tail_bytes[4 * i + 3],
            ])
        });
        for n in [0u32, 1, 0x7552_034C, 0xFFFF_FFFF] {
            let got = sha256d_lanes(&ms, &tail, [n, n ^ 0x5555_5555]);
            for (lane, nonce) in [n, n ^ 0x5555_5555].into_iter().enumerate() {
                let mut t = [0u8; 16];
                t[..12].copy_from_slice(&tail_bytes);
                t[12..].copy_from_slice(&nonce.to_be_bytes());
                assert_eq!(state_to_digest(&got[lane]), sha256d_from_midstate(&ms, &t));
                assert_eq!(portable(&ms, &tail, nonce), got[lane]);
            }
        }
    }
}
