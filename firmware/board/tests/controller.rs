//! The firmware's decisions, without hardware: power-up, job cadence, nonce verification with
//! real chip traffic, and every safety path (over-temperature, throttling, a failed sensor, a
//! regulator fault, a silent host).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bm13xx::model::ChipModel;
use bm13xx::response::{Response, parse_response};
use hearth_board::controller::{Action, BoardConfig, Controller, Sensors};
use hearth_board::thermal::ThermalLimits;
use hearth_link::{BoardToHost, Fault, HostToBoard, WorkItem};

fn config() -> BoardConfig {
    BoardConfig {
        board_id: "hearth-bm1370-r1",
        serial: heapless::String::try_from("TEST0001").unwrap(),
        firmware: [0, 1, 0],
        model: ChipModel::Bm1370,
        chips: 1,
        frequency_khz: 525_000,
        min_frequency_khz: 50_000,
        core_mv: 1150,
        core_mv_range: (1000, 1300),
        ticket_difficulty: 256,
        limits: ThermalLimits {
            target_mc: 60_000,
            throttle_mc: 75_000,
            shutdown_mc: 85_000,
            hysteresis_mc: 10_000,
            vr_throttle_mc: 105_000,
            vr_shutdown_mc: 115_000,
            min_fan_percent: 25,
        },
        host_timeout_ms: 10_000,
        input_mv_range: (4500, 5500),
        max_input_mw: 25_000,
        job_interval_ms: 500,
    }
}

/// Run `f` and collect the actions.
fn run(f: impl FnOnce(&mut dyn FnMut(Action))) -> Vec<Action> {
    let mut actions = Vec::new();
    f(&mut |a| actions.push(a));
    actions
}

fn healthy(asic_c: i32) -> Sensors {
    Sensors {
        asic_mc: Some(Ok(asic_c * 1000)),
        board_mc: Some(40_000),
        vr_mc: Some(50_000),
        vr_fault: None,
        vr_ok: true,
        vcore_mv: Some(1150),
        vcore_ma: Some(10_000),
        input_mv: Some(5000),
        input_ma: Some(3000),
        input_mw: Some(15_000),
        fan_rpm: Some(4000),
    }
}

/// The Bitaxe Gamma BM1370 job (docs/bm13xx-vectors.md §3) as a work item.
fn bitaxe_work(id: u32) -> WorkItem {
    let frame = hex(
        "55AA2156680100000000043A0217D7685468 5519A7CB044F887263 55919E61A98BCF71A0C28795EA54DB8C36414B06DDF5F0 0000000000000000965201001D3996BCA3F4670DFCD4F201C162B96DFD55646B 00000020721C",
    );
    let job = bm13xx::job::FullHeaderJob::decode(&frame).unwrap();
    WorkItem {
        id,
        version: job.version,
        version_mask: 0x1FFF_E000,
        prev_block_hash: job.prev_block_hash,
        merkle_root: job.merkle_root,
        ntime: job.ntime,
        nbits: job.nbits,
    }
}

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// A controller powered up and hashing.
fn hashing() -> Controller {
    let mut c = Controller::new(config(), 0);
    let a = run(|out| c.tick(0, &mut |x| out(x)));
    assert!(
        a.contains(&Action::PowerUp {
            core_mv: 1150,
            frequency_khz: 525_000
        }),
        "{a:?}"
    );
    run(|out| c.on_chain_up(10, &mut |x| out(x)));
    run(|out| c.on_sensors(20, healthy(50), &mut |x| out(x)));
    c
}

fn sent_jobs(actions: &[Action]) -> Vec<bm13xx::job::FullHeaderJob> {
    actions
        .iter()
        .filter_map(|a| {
            if let Action::SendJob(j) = a {
                Some(*j)
            } else {
                None
            }
        })
        .collect()
}

fn faults(actions: &[Action]) -> Vec<Fault> {
    actions
        .iter()
        .filter_map(|a| {
            if let Action::Send(BoardToHost::Fault(f)) = a {
                Some(f.clone())
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn boots_powers_up_and_asks_for_work() {
    let mut c = Controller::new(config(), 0);
    assert_eq!(c.fan(), 100, "fan full until the first temperature");
    let boot = run(|out| c.tick(0, &mut |x| out(x)));
    assert_eq!(
        boot,
        vec![Action::PowerUp {
            core_mv: 1150,
            frequency_khz: 525_000
        }]
    );
    let up = run(|out| c.on_chain_up(100, &mut |x| out(x)));
    assert!(up.iter().any(|a| matches!(a, Action::Send(BoardToHost::Hello(caps)) if caps.chip_id == 0x1370 && caps.share_bits == 40)));
    assert!(
        up.iter()
            .any(|a| matches!(a, Action::Send(BoardToHost::WorkLow { queued: 0, .. })))
    );
}

#[test]
fn every_work_item_goes_to_the_chips_exactly_once() {
    let mut c = hashing();
    let mut all = Vec::new();
    for id in 0..10 {
        all.extend(run(|out| {
            c.on_host(100 + id, HostToBoard::Work(bitaxe_work(id)), &mut |x| {
                out(x)
            })
        }));
    }
    // The first goes at once; the rest at the job interval.
    assert_eq!(sent_jobs(&all).len(), 1);
    let mut t = 100;
    for _ in 0..20 {
        t += 500;
        all.extend(run(|out| c.tick(t, &mut |x| out(x))));
    }
    let jobs = sent_jobs(&all);
    assert_eq!(jobs.len(), 10, "ten items, ten jobs, then nothing more");
    let ids: std::collections::HashSet<u8> = jobs.iter().map(|j| j.job_id).collect();
    assert_eq!(ids.len(), 10, "distinct chip job ids");
    // A new block: the queue is dropped and the next item goes out immediately.
    run(|out| c.on_host(t, HostToBoard::ClearWork, &mut |x| out(x)));
    let a = run(|out| c.on_host(t + 1, HostToBoard::Work(bitaxe_work(99)), &mut |x| out(x)));
    assert_eq!(sent_jobs(&a).len(), 1);
}

#[test]
fn real_nonces_are_verified_and_reported_once() {
    let mut c = hashing();
    let a = run(|out| c.on_host(100, HostToBoard::Work(bitaxe_work(7)), &mut |x| out(x)));
    let job = sent_jobs(&a)[0];
    // The captured reply names chip job id 13; our job went out with id `job.job_id`, so
    // re-encode the reply's job field for that id (BM1370: b6 bit 0 + b7 bits 7..4).
    let mut reply = hex("AA554C0352750CD205A29C");
    reply[6] = (reply[6] & !1) | ((job.job_id >> 4) & 1);
    reply[7] = ((job.job_id & 0x0F) << 4) | (reply[7] & 0x0F);
    let crc = bm13xx::crc::response_crc(&reply[2..10], 0x80);
    reply[10] = 0x80 | crc;
    let Response::Nonce(raw) = parse_response(&reply).unwrap() else {
        panic!()
    };
    let nonce = ChipModel::Bm1370.decode_nonce(&raw);
    let a = run(|out| c.on_nonce(200, &nonce, &mut |x| out(x)));
    let report = a
        .iter()
        .find_map(|x| {
            if let Action::Send(BoardToHost::Nonce(n)) = x {
                Some(*n)
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(
        (
            report.work_id,
            report.version,
            report.nonce,
            report.zero_bits
        ),
        (7, 0x20B4_4000, 0x7552_034C, 46)
    );
    // The same reply again is dropped as a duplicate.
    assert!(run(|out| c.on_nonce(201, &nonce, &mut |x| out(x))).is_empty());
    // A corrupted nonce does not verify: counted, not reported.
    let mut bad = nonce;
    bad.nonce ^= 0x0100;
    assert!(run(|out| c.on_nonce(202, &bad, &mut |x| out(x))).is_empty());
    let t = c.telemetry(300);
    assert_eq!((t.chips[0].nonces, t.chips[0].errors), (1, 1));
}

#[test]
fn over_temperature_stops_hashing_with_the_fan_at_full_and_recovers_with_hysteresis() {
    let mut c = hashing();
    let a = run(|out| c.on_sensors(1000, healthy(86), &mut |x| out(x)));
    assert!(a.contains(&Action::PowerDown), "{a:?}");
    assert!(a.contains(&Action::SetFan(100)));
    assert!(matches!(
        faults(&a)[..],
        [Fault::OverTemperature {
            temp_mc: 86_000,
            limit_mc: 85_000
        }]
    ));
    assert_eq!(c.state(), hearth_link::BoardState::Safe);
    // Still hot (80 °C is within the hysteresis): stays down.
    let a = run(|out| c.on_sensors(2000, healthy(80), &mut |x| out(x)));
    assert!(faults(&a).is_empty() && !a.contains(&Action::PowerDown));
    let a = run(|out| c.tick(2500, &mut |x| out(x)));
    assert!(!a.iter().any(|x| matches!(x, Action::PowerUp { .. })));
    // Cooled below 75 °C: fault cleared, power back on.
    let a = run(|out| c.on_sensors(3000, healthy(70), &mut |x| out(x)));
    assert_eq!(faults(&a), vec![Fault::Cleared]);
    let a = run(|out| c.tick(3001, &mut |x| out(x)));
    assert!(
        a.iter().any(|x| matches!(x, Action::PowerUp { .. })),
        "{a:?}"
    );
}

#[test]
fn throttling_steps_the_clock_down_and_back() {
    let mut c = hashing();
    let a = run(|out| c.on_sensors(1000, healthy(76), &mut |x| out(x)));
    assert!(
        a.contains(&Action::SetFrequency {
            from_khz: 525_000,
            to_khz: 472_500
        }),
        "{a:?}"
    );
    assert!(matches!(
        faults(&a)[..],
        [Fault::Throttling {
            frequency_khz: 472_500,
            ..
        }]
    ));
    let a = run(|out| c.on_sensors(7000, healthy(76), &mut |x| out(x)));
    assert!(
        a.contains(&Action::SetFrequency {
            from_khz: 472_500,
            to_khz: 420_000
        }),
        "{a:?}"
    );
    let a = run(|out| c.on_sensors(8000, healthy(64), &mut |x| out(x)));
    assert!(
        a.contains(&Action::SetFrequency {
            from_khz: 420_000,
            to_khz: 525_000
        }),
        "{a:?}"
    );
    assert_eq!(faults(&a), vec![Fault::Cleared]);
}

#[test]
fn a_failed_temperature_sensor_runs_the_fan_at_full_then_stops_hashing() {
    let mut c = hashing();
    let mut failed = healthy(50);
    failed.asic_mc = Some(Err(()));
    let a = run(|out| c.on_sensors(1000, failed, &mut |x| out(x)));
    assert!(a.contains(&Action::SetFan(100)));
    assert!(matches!(
        faults(&a)[..],
        [Fault::SensorFailure {
            sensor: hearth_link::Sensor::AsicTemperature
        }]
    ));
    assert!(
        !a.contains(&Action::PowerDown),
        "one bad reading is not yet a shutdown"
    );
    let mut all = Vec::new();
    for i in 0..5 {
        all.extend(run(|out| {
            c.on_sensors(2000 + i * 250, failed, &mut |x| out(x))
        }));
    }
    assert!(all.contains(&Action::PowerDown));
    // The sensor recovers: cleared, power up again.
    let a = run(|out| c.on_sensors(5000, healthy(50), &mut |x| out(x)));
    assert_eq!(faults(&a), vec![Fault::Cleared]);
}

#[test]
fn a_regulator_fault_powers_the_core_down() {
    let mut c = hashing();
    let mut s = healthy(50);
    s.vr_fault = Some(0x0004);
    let a = run(|out| c.on_sensors(1000, s, &mut |x| out(x)));
    assert!(a.contains(&Action::PowerDown) && a.contains(&Action::SetFan(100)));
    assert_eq!(
        faults(&a),
        vec![Fault::RegulatorFault {
            status_word: 0x0004
        }]
    );
}

#[test]
fn a_silent_host_puts_the_board_in_its_safe_state_until_it_speaks_again() {
    let mut c = hashing();
    run(|out| c.on_host(100, HostToBoard::Ping { seq: 1 }, &mut |x| out(x)));
    assert!(faults(&run(|out| c.tick(9_000, &mut |x| out(x)))).is_empty());
    let a = run(|out| c.tick(10_100, &mut |x| out(x)));
    assert!(
        matches!(faults(&a)[..], [Fault::HostSilent { .. }]),
        "{a:?}"
    );
    assert!(a.contains(&Action::PowerDown));
    assert!(c.fan() >= 50, "fan stays on in the safe state");
    let a = run(|out| c.on_host(12_000, HostToBoard::Ping { seq: 2 }, &mut |x| out(x)));
    assert!(faults(&a).contains(&Fault::Cleared));
    let a = run(|out| c.tick(12_001, &mut |x| out(x)));
    assert!(a.iter().any(|x| matches!(x, Action::PowerUp { .. })));
}

#[test]
fn telemetry_goes_out_every_second() {
    let mut c = hashing();
    let mut count = 0;
    for t in (100..5100).step_by(50) {
        count += run(|out| c.tick(t, &mut |x| out(x)))
            .iter()
            .filter(|a| matches!(a, Action::Send(BoardToHost::Telemetry(_))))
            .count();
        run(|out| c.on_host(t, HostToBoard::Ping { seq: t }, &mut |x| out(x)));
    }
    assert_eq!(count, 5);
}

#[test]
fn chip_counters_from_register_polls_reach_telemetry() {
    let mut c = hashing();
    let reply = |register, value| bm13xx::response::RegisterReply {
        value,
        chip_address: 0,
        register,
    };
    c.on_register(&reply(0x8C, 12_345));
    c.on_register(&reply(0x4C, 7));
    c.on_register(&reply(0x14, 99)); // other registers are ignored
    let t = c.telemetry(1000);
    assert_eq!(
        (t.chips[0].hash_counter, t.chips[0].error_counter),
        (12_345, 7)
    );
}
