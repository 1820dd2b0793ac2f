#![allow(clippy::unwrap_used)]
use bm13xx::sim::sha256d::sha256d_lanes;
use bm13xx::verify::midstate;
fn run<const L: usize>() {
    let ms = midstate(&[7u8; 64]);
    let n = 20_000_000u32;
    let t = std::time::Instant::now();
    let tw = [1u32, 2, 3];
    let mut acc = 0;
    for i in (0..n).step_by(L) {
        let h = sha256d_lanes::<L>(&ms, &tw, core::array::from_fn(|k| i + k as u32));
        acc ^= h[L - 1][7];
    }
    let el = t.elapsed().as_secs_f64();
    println!("{acc} L={L} {:.2} MH/s", n as f64 / el / 1e6);
}
fn main() {
    run::<1>();
    run::<2>();
    run::<3>();
    run::<4>();
    run::<8>();
}
