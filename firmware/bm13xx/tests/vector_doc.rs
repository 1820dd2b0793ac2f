//! Every frame in docs/bm13xx-vectors.md, read from the document itself so the two cannot drift:
//! command frames decode and re-encode byte for byte (and the one misprinted CRC is rejected),
//! job frames decode to the fields the document lists and re-encode byte for byte, responses
//! parse, and each captured nonce reply re-hashes against its job to the documented hash.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bm13xx::command::Command;
use bm13xx::job::{FullHeaderJob, MidstateJob};
use bm13xx::model::ChipModel;
use bm13xx::register::DEFAULT_VERSION_MASK;
use bm13xx::response::{Response, ResponseDecoder, parse_response};
use bm13xx::verify::check_full_header;

struct Entry {
    title: String,
    frames: Vec<Vec<u8>>,
    lines: Vec<String>,
}

fn entries() -> Vec<Entry> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/bm13xx-vectors.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out: Vec<Entry> = Vec::new();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("#### ") {
            out.push(Entry {
                title: title.to_string(),
                frames: Vec::new(),
                lines: Vec::new(),
            });
        } else if let Some(entry) = out.last_mut() {
            if line.starts_with("- bytes") {
                // Every `...` group of hex bytes on the line is one frame.
                for (i, group) in line.split('`').enumerate() {
                    let hex: String = group.split_whitespace().collect();
                    if i % 2 == 1 && !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                        entry.frames.push(hex::decode(hex).unwrap());
                    }
                }
            }
            entry.lines.push(line.to_string());
        }
    }
    out
}

fn entry<'a>(all: &'a [Entry], title_start: &str) -> &'a Entry {
    all.iter()
        .find(|e| e.title.starts_with(title_start))
        .unwrap_or_else(|| panic!("no entry {title_start}"))
}

/// `key 0x1234ABCD` from the entry's lines.
fn field(e: &Entry, key: &str) -> Option<u32> {
    e.lines.iter().find_map(|l| {
        let at = l.find(&format!("{key} 0x"))? + key.len() + 3;
        let digits: String = l[at..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        u32::from_str_radix(&digits, 16).ok()
    })
}

fn display(hash_internal: [u8; 32]) -> String {
    let mut h = hash_internal;
    h.reverse();
    hex::encode(h)
}

#[test]
fn every_frame_in_the_vector_document_checks() {
    let all = entries();
    let (mut commands, mut jobs, mut responses) = (0, 0, 0);
    for e in &all {
        let bad_crc = e.lines.iter().any(|l| l.contains("CRC5 BAD"));
        for frame in &e.frames {
            match frame[..2] {
                [0x55, 0xAA] if frame[2] == 0x21 => {
                    jobs += 1;
                    if frame.len() == 88 {
                        let job = FullHeaderJob::decode(frame)
                            .unwrap_or_else(|err| panic!("{}: {err}", e.title));
                        assert_eq!(
                            &job.encode_with_len_byte(frame[3])[..],
                            &frame[..],
                            "{}",
                            e.title
                        );
                        assert_eq!(Some(job.nbits), field(e, "nbits"), "{}", e.title);
                        assert_eq!(Some(job.ntime), field(e, "ntime"), "{}", e.title);
                        assert_eq!(Some(job.version), field(e, "version"), "{}", e.title);
                        let mut merkle = job.merkle_root;
                        merkle.reverse();
                        assert!(
                            e.lines.iter().any(|l| l.contains(&hex::encode(merkle))),
                            "{}: merkle",
                            e.title
                        );
                        let mut prev = job.prev_block_hash;
                        prev.reverse();
                        assert!(
                            e.lines.iter().any(|l| l.contains(&hex::encode(prev))),
                            "{}: prev",
                            e.title
                        );
                    } else {
                        let job = MidstateJob::decode(frame)
                            .unwrap_or_else(|err| panic!("{}: {err}", e.title));
                        let mut buf = [0u8; 152];
                        assert_eq!(job.encode(&mut buf), &frame[..], "{}", e.title);
                        assert_eq!(Some(job.nbits), field(e, "nbits"), "{}", e.title);
                        assert_eq!(Some(job.ntime), field(e, "ntime"), "{}", e.title);
                    }
                }
                [0x55, 0xAA] => {
                    commands += 1;
                    match Command::decode(frame) {
                        Ok(command) => {
                            assert!(!bad_crc, "{}: a bad CRC was accepted", e.title);
                            assert_eq!(command.encode().as_bytes(), &frame[..], "{}", e.title);
                        }
                        Err(err) => assert!(bad_crc, "{}: {err}", e.title),
                    }
                }
                [0xAA, 0x55] => {
                    responses += 1;
                    parse_response(frame).unwrap_or_else(|err| panic!("{}: {err}", e.title));
                }
                _ => {
                    // Fragments of a slipped stream: together they must yield whole frames.
                    let mut decoder = ResponseDecoder::new(11);
                    let mut found = 0;
                    decoder.feed(&e.frames.concat(), |_| found += 1);
                    assert_eq!(found, 2, "{}", e.title);
                    break;
                }
            }
        }
    }
    assert!(
        commands >= 90 && jobs >= 12 && responses >= 25,
        "{commands} commands, {jobs} jobs, {responses} responses"
    );
}

#[test]
fn captured_nonces_rehash_against_their_jobs() {
    let all = entries();
    let pairs: &[(&str, &str, ChipModel)] = &[
        (
            "BM1370 Bitaxe Gamma share",
            "BM1370 Bitaxe Gamma job",
            ChipModel::Bm1370,
        ),
        (
            "BM1366 early bring-up reply",
            "BM1366 early bring-up job",
            ChipModel::Bm1366,
        ),
        (
            "S19 XP (BM1366) reply",
            "S19 XP factory job id 2",
            ChipModel::Bm1366,
        ),
        (
            "S21 (BM1368) reply for job 16",
            "S21 (BM1368) factory job id 16",
            ChipModel::Bm1368,
        ),
        (
            "S21 (BM1368) first reply",
            "S21 (BM1368) factory first job",
            ChipModel::Bm1368,
        ),
        (
            "S19k Pro (BM1366) reply",
            "S19k Pro (BM1366) factory job id 18",
            ChipModel::Bm1366,
        ),
    ];
    let mut checked = 0;
    for (reply_title, job_title, model) in pairs {
        let job = FullHeaderJob::decode(&entry(&all, job_title).frames[0]).unwrap();
        for e in all.iter().filter(|e| e.title.starts_with(reply_title)) {
            let Response::Nonce(raw) = parse_response(&e.frames[0]).unwrap() else {
                panic!("{}", e.title)
            };
            let reply = model.decode_nonce(&raw);
            assert_eq!(reply.job_id, job.job_id, "{}", e.title);
            assert_eq!(Some(reply.nonce), field(e, "header nonce"), "{}", e.title);
            let result = check_full_header(&job, &reply, DEFAULT_VERSION_MASK);
            assert_eq!(Some(result.version), field(e, "version"), "{}", e.title);
            let hash = display(result.hash);
            assert!(
                e.lines.iter().any(|l| l.contains(&hash)),
                "{}: hash {hash}",
                e.title
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 14);
}

#[test]
fn decode_only_nonce_vectors() {
    // (frame, model, job id, small core, excess, version bits) from §4.3.
    let cases: &[(&str, ChipModel, u8, u8, u8, u32)] = &[
        (
            "AA5518 00A640 0299 22F9 91",
            ChipModel::Bm1370,
            9,
            9,
            1,
            0x045F_2000,
        ),
        (
            "AA55 0735CDCF 025E 002E 96",
            ChipModel::Bm1370,
            5,
            14,
            1,
            0x0005_C000,
        ),
        (
            "AA55 460332E7 00C3 2C83 99",
            ChipModel::Bm1370,
            12,
            3,
            0,
            0x0590_6000,
        ),
        (
            "AA55 2FD596CE 0293 94FB 86",
            ChipModel::Bm1366,
            18,
            3,
            2,
            0x129F_6000,
        ),
        (
            "AA55 52003025 0091 00B1 93",
            ChipModel::Bm1368,
            9,
            1,
            0,
            0x0016_2000,
        ),
        (
            "AA55 7A0176B4 008B 0BDB 9A",
            ChipModel::Bm1368,
            8,
            11,
            0,
            0x017B_6000,
        ),
    ];
    for (hex_frame, model, job, core, excess, bits) in cases {
        let frame = hex::decode(hex_frame.replace(' ', "")).unwrap();
        let Response::Nonce(raw) = parse_response(&frame).unwrap() else {
            panic!()
        };
        let n = model.decode_nonce(&raw);
        assert_eq!(
            (n.job_id, n.small_core, n.excess_zero_bits, n.version_bits),
            (*job, *core, *excess, *bits),
            "{hex_frame}"
        );
    }
    // BM1397: b7 bits 7..2 = job byte >> 2, bits 1..0 = midstate index (ESP-Miner, cgminer).
    let Response::Nonce(raw) = parse_response(&hex::decode("AA5597C328B601639C").unwrap()).unwrap()
    else {
        panic!()
    };
    let n = ChipModel::Bm1397.decode_nonce(&raw);
    assert_eq!(
        (n.job_id, n.midstate_index, n.nonce),
        (0x60 >> 2, 3, 0xB628_C397)
    );
}
