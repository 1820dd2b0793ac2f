//! Real factory captures (docs: tests/data/README.md): every job frame decodes to its fields and
//! re-encodes byte for byte, every reply decodes to the recorded job id, version and nonce, the
//! rebuilt header's sha256d has the recorded hash and at least the ticket-mask threshold of leading
//! zero bits, and every `"expect": "invalid"` pairing is rejected.
//!
//! Extra capture files in the same format (for example the held-out set) can be checked too:
//! `BM13XX_CAPTURES=/path/a.json:/path/b.json cargo test -p bm13xx --test captures`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bm13xx::job::{FullHeaderJob, roll_version};
use bm13xx::model::ChipModel;
use bm13xx::register::DEFAULT_VERSION_MASK;
use bm13xx::response::{Response, parse_response};
use bm13xx::verify::check_full_header;
use serde::Deserialize;

#[derive(Deserialize)]
struct Captures {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    expect: String,
    chip: String,
    job_frame: String,
    response: String,
    job_id: u8,
    version: u32,
    nonce: u32,
    header: String,
    hash: String,
    leading_zero_bits: u32,
    ticket_mask_threshold_bits: u32,
    job_byte: u8,
    base_version: u32,
    version_field: u16,
    small_core: u8,
    excess_bits_reported: u8,
    actual_job_frame: Option<String>,
    actual_leading_zero_bits: Option<u32>,
    actual_hash: Option<String>,
}

fn capture_files() -> Vec<std::path::PathBuf> {
    let mut files = vec![
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bm13xx-captures.json"),
    ];
    if let Ok(extra) = std::env::var("BM13XX_CAPTURES") {
        files.extend(
            extra
                .split(':')
                .filter(|s| !s.is_empty())
                .map(std::path::PathBuf::from),
        );
    }
    files
}

fn display_hash(internal: &[u8; 32]) -> String {
    let mut h = *internal;
    h.reverse();
    hex::encode(h)
}

/// What a host does with a reply: look the job up by id and accept only a hash that meets the
/// ticket threshold.
fn accepted(job: &FullHeaderJob, model: ChipModel, response: &[u8], threshold: u32) -> Option<u32> {
    let Ok(Response::Nonce(raw)) = parse_response(response) else {
        return None;
    };
    let reply = model.decode_nonce(&raw);
    if reply.job_id != job.job_id {
        return None;
    }
    let checked = check_full_header(job, &reply, DEFAULT_VERSION_MASK);
    (checked.zero_bits >= threshold).then_some(checked.zero_bits)
}

#[test]
fn every_captured_case_decodes_and_validates() {
    let mut checked = 0;
    let mut invalid = 0;
    let mut high_ids = 0;
    for path in capture_files() {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let captures: Captures = serde_json::from_str(&text).unwrap();
        assert!(
            !captures.cases.is_empty(),
            "{} has no cases",
            path.display()
        );
        for (i, case) in captures.cases.iter().enumerate() {
            let what = format!(
                "{} case {i} ({} {})",
                path.display(),
                case.chip,
                case.response
            );
            let model =
                ChipModel::from_name(&case.chip).unwrap_or_else(|| panic!("{what}: unknown chip"));
            let frame = hex::decode(&case.job_frame).unwrap();
            let response = hex::decode(&case.response).unwrap();

            // The job frame: fields, and a byte-exact re-encode with the LEN byte it carried.
            let job =
                FullHeaderJob::decode(&frame).unwrap_or_else(|e| panic!("{what}: job frame: {e}"));
            assert_eq!(
                job.encode_with_len_byte(frame[3]).as_slice(),
                frame.as_slice(),
                "{what}: re-encode"
            );
            assert_eq!(
                model.job_byte(job.job_id),
                case.job_byte,
                "{what}: job byte"
            );
            assert_eq!(job.version, case.base_version, "{what}: base version");

            // The reply.
            let Ok(Response::Nonce(raw)) = parse_response(&response) else {
                panic!("{what}: not a nonce reply")
            };
            let reply = model.decode_nonce(&raw);
            assert_eq!(
                raw.version_field,
                Some(case.version_field),
                "{what}: version field"
            );
            assert_eq!(reply.nonce, case.nonce, "{what}: nonce");
            assert_eq!(reply.small_core, case.small_core, "{what}: small core");
            assert_eq!(
                reply.excess_zero_bits, case.excess_bits_reported,
                "{what}: excess bits"
            );
            assert_eq!(reply.job_id, case.job_id, "{what}: job id");
            assert_eq!(
                roll_version(job.version, reply.version_bits, DEFAULT_VERSION_MASK),
                case.version
            );

            // The header and its hash.
            let result = check_full_header(&job, &reply, DEFAULT_VERSION_MASK);
            assert_eq!(
                hex::encode(job.header(result.version, result.nonce)),
                case.header,
                "{what}: header"
            );
            assert_eq!(display_hash(&result.hash), case.hash, "{what}: hash");
            assert_eq!(
                result.zero_bits, case.leading_zero_bits,
                "{what}: leading zero bits"
            );
            let threshold = case.ticket_mask_threshold_bits;

            match case.expect.as_str() {
                "valid" => {
                    assert!(result.zero_bits >= threshold, "{what}: below threshold");
                    assert_eq!(
                        u32::from(reply.excess_zero_bits),
                        result.zero_bits - threshold,
                        "{what}: E"
                    );
                    assert_eq!(
                        accepted(&job, model, &response, threshold),
                        Some(result.zero_bits)
                    );
                    if case.job_id >= 16 {
                        high_ids += 1;
                    }
                }
                "invalid" => {
                    invalid += 1;
                    assert_eq!(
                        accepted(&job, model, &response, threshold),
                        None,
                        "{what}: must be rejected"
                    );
                    // ... while the job the chip really hashed proves the reply itself is sound.
                    let actual = hex::decode(case.actual_job_frame.as_ref().unwrap()).unwrap();
                    let actual = FullHeaderJob::decode(&actual).unwrap();
                    let bits = accepted(&actual, model, &response, threshold);
                    assert_eq!(bits, case.actual_leading_zero_bits, "{what}: actual job");
                    let actual_result = check_full_header(&actual, &reply, DEFAULT_VERSION_MASK);
                    assert_eq!(Some(display_hash(&actual_result.hash)), case.actual_hash);
                }
                other => panic!("{what}: unknown expectation {other}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 603, "only {checked} cases checked");
    assert!(invalid >= 3, "only {invalid} invalid cases");
    assert!(
        high_ids > 0,
        "no BM1368 reply with a job id of 16 or more was checked"
    );
}
