//! The firmware's decisions, without hardware: power-up, job cadence, nonce verification with
//! real chip traffic, and every safety path (over-temperature, throttling, a failed sensor, a
//! regulator fault, a silent host).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bm13xx::model::ChipModel;
use bm13xx::response::{Response, parse_response};
use hearth_board::controller::{Action, BoardConfig, Controller, QUEUE_DEPTH, Sensors};
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
        max_frequency_khz: 800_000,
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
    run(|out| c.on_sensors(0, healthy(50), &mut |x| out(x)));
    let a = run(|out| c.tick(0, &mut |x| out(x)));
    assert!(
        a.contains(&Action::PowerUp {
            core_mv: 1150,
            frequency_khz: 525_000,
            generation: 1,
        }),
        "{a:?}"
    );
    run(|out| c.on_chain_up(10, 1, &mut |x| out(x)));
    run(|out| c.on_sensors(20, healthy(50), &mut |x| out(x)));
    c
}

/// Sensor readings every 250 ms from `from` to `to` (exclusive), with a tick and a host ping
/// after each, as the firmware's main loop delivers them; returns every action.
fn run_for(c: &mut Controller, from: u32, to: u32, sensors: Sensors) -> Vec<Action> {
    let mut all = Vec::new();
    for t in (from..to).step_by(250) {
        all.extend(run(|out| c.on_sensors(t, sensors, &mut |x| out(x))));
        all.extend(run(|out| c.tick(t, &mut |x| out(x))));
        all.extend(run(|out| {
            c.on_host(t, HostToBoard::Ping { seq: t }, &mut |x| out(x))
        }));
    }
    all
}

fn power_ups(actions: &[Action]) -> Vec<u32> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::PowerUp { generation, .. } => Some(*generation),
            _ => None,
        })
        .collect()
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
    assert!(
        run(|out| c.tick(0, &mut |x| out(x))).is_empty(),
        "no power before a chip temperature"
    );
    run(|out| c.on_sensors(40, healthy(45), &mut |x| out(x)));
    let boot = run(|out| c.tick(50, &mut |x| out(x)));
    assert_eq!(
        boot,
        vec![Action::PowerUp {
            core_mv: 1150,
            frequency_khz: 525_000,
            generation: 1,
        }]
    );
    let up = run(|out| c.on_chain_up(100, 1, &mut |x| out(x)));
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
    all.extend(run_for(&mut c, 350, 10_350, healthy(50)));
    let t = 10_350;
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
    assert_eq!(
        a[..2],
        [Action::PowerDown, Action::SetFan(100)],
        "power off first, then the fan: {a:?}"
    );
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
    // The sensor recovers: six failures need six good readings before the board trusts it.
    let mut all = Vec::new();
    for i in 0..5 {
        all.extend(run(|out| {
            c.on_sensors(4000 + i * 250, healthy(50), &mut |x| out(x))
        }));
    }
    assert!(faults(&all).is_empty(), "{all:?}");
    let a = run(|out| c.on_sensors(5250, healthy(50), &mut |x| out(x)));
    assert_eq!(faults(&a), vec![Fault::Cleared]);
    let a = run(|out| c.tick(5300, &mut |x| out(x)));
    assert_eq!(power_ups(&a), vec![2]);
}

#[test]
fn a_sensor_that_fails_every_other_reading_still_stops_the_board() {
    let mut c = hashing();
    let mut failed = healthy(50);
    failed.asic_mc = Some(Err(()));
    let mut all = Vec::new();
    // Two bad, one good: the bucket fills by one per three readings.
    for i in 0..30u32 {
        let s = if i % 3 == 2 { healthy(50) } else { failed };
        all.extend(run(|out| c.on_sensors(1000 + i * 250, s, &mut |x| out(x))));
    }
    assert!(all.contains(&Action::PowerDown), "{all:?}");
    assert_eq!(c.state(), hearth_link::BoardState::Safe);
}

#[test]
fn no_fresh_chip_temperature_while_powered_stops_the_board() {
    let mut c = hashing();
    // The last reading was at 20 ms; nothing since (the sensor read stalled).
    assert!(faults(&run(|out| c.tick(1900, &mut |x| out(x)))).is_empty());
    let a = run(|out| c.tick(2100, &mut |x| out(x)));
    assert!(a.contains(&Action::PowerDown), "{a:?}");
    assert_eq!(
        faults(&a),
        vec![Fault::SensorFailure {
            sensor: hearth_link::Sensor::AsicTemperature
        }]
    );
    // Readings come back: cleared and powered up again.
    let a = run_for(&mut c, 2200, 2500, healthy(50));
    assert!(faults(&a).contains(&Fault::Cleared), "{a:?}");
    assert_eq!(power_ups(&a), vec![2]);
}

#[test]
fn a_hot_regulator_stops_the_board_even_without_a_chip_temperature() {
    let mut c = hashing();
    let mut s = healthy(50);
    s.asic_mc = Some(Err(()));
    s.vr_mc = Some(120_000);
    let a = run(|out| c.on_sensors(1000, s, &mut |x| out(x)));
    assert!(a.contains(&Action::PowerDown), "{a:?}");
    assert!(
        faults(&a).contains(&Fault::RegulatorOverTemperature { temp_mc: 120_000 }),
        "{a:?}"
    );
    // Still hot: no power-up even once the chip sensor is back.
    let a = run_for(
        &mut c,
        1250,
        5000,
        Sensors {
            vr_mc: Some(110_000),
            ..healthy(50)
        },
    );
    assert!(power_ups(&a).is_empty(), "{a:?}");
    // Cooled by the hysteresis: back up.
    let a = run_for(&mut c, 5000, 5500, healthy(50));
    assert_eq!(power_ups(&a), vec![2], "{a:?}");
}

#[test]
fn the_host_cannot_reset_its_way_out_of_a_hardware_fault() {
    let mut c = hashing();
    run(|out| c.on_sensors(1000, healthy(86), &mut |x| out(x)));
    let a = run(|out| c.on_host(1100, HostToBoard::Reset, &mut |x| out(x)));
    assert!(faults(&a).is_empty(), "{a:?}");
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Send(BoardToHost::Log { .. })))
    );
    let a = run_for(&mut c, 1200, 3000, healthy(80));
    assert!(power_ups(&a).is_empty(), "still hot: {a:?}");
    assert_eq!(c.state(), hearth_link::BoardState::Safe);
    // A reset while healthy power-cycles the chain.
    let a = run_for(&mut c, 3000, 3500, healthy(60));
    assert_eq!(power_ups(&a), vec![2]);
    run(|out| c.on_chain_up(3500, 2, &mut |x| out(x)));
    let a = run(|out| c.on_host(3600, HostToBoard::Reset, &mut |x| out(x)));
    assert!(a.contains(&Action::PowerDown), "{a:?}");
    let a = run(|out| c.tick(3650, &mut |x| out(x)));
    assert_eq!(power_ups(&a), vec![3]);
}

#[test]
fn an_answer_to_an_abandoned_power_up_is_ignored() {
    let mut c = Controller::new(config(), 0);
    run(|out| c.on_sensors(0, healthy(50), &mut |x| out(x)));
    assert_eq!(power_ups(&run(|out| c.tick(0, &mut |x| out(x)))), vec![1]);
    // The host goes silent mid power-up, then comes back: a second power-up starts.
    run(|out| c.tick(10_000, &mut |x| out(x)));
    run(|out| c.on_sensors(10_050, healthy(50), &mut |x| out(x)));
    run(|out| c.on_host(10_100, HostToBoard::Ping { seq: 1 }, &mut |x| out(x)));
    assert_eq!(
        power_ups(&run(|out| c.tick(10_150, &mut |x| out(x)))),
        vec![2]
    );
    // The first bring-up's answers arrive late: ignored.
    assert!(run(|out| c.on_chain_up(10_200, 1, &mut |x| out(x))).is_empty());
    assert!(run(|out| c.on_chain_failed(10_200, 1, "late", &mut |x| out(x))).is_empty());
    assert_eq!(c.state(), hearth_link::BoardState::Starting);
    let a = run(|out| c.on_chain_up(10_300, 2, &mut |x| out(x)));
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Send(BoardToHost::WorkLow { .. })))
    );
}

#[test]
fn a_regulator_fault_during_power_up_stops_it() {
    let mut c = Controller::new(config(), 0);
    run(|out| c.on_sensors(0, healthy(50), &mut |x| out(x)));
    assert_eq!(power_ups(&run(|out| c.tick(0, &mut |x| out(x)))), vec![1]);
    let mut s = healthy(50);
    s.vr_fault = Some(0x0010);
    let a = run(|out| c.on_sensors(250, s, &mut |x| out(x)));
    assert_eq!(a.first(), Some(&Action::PowerDown), "{a:?}");
    assert!(run(|out| c.on_chain_up(300, 1, &mut |x| out(x))).is_empty());
}

#[test]
fn the_host_cannot_clock_the_chips_past_the_model_envelope() {
    let mut c = hashing();
    let a = run(|out| {
        c.on_host(
            100,
            HostToBoard::SetFrequency { khz: 2_000_000 },
            &mut |x| out(x),
        )
    });
    assert_eq!(
        a,
        vec![Action::SetFrequency {
            from_khz: 525_000,
            to_khz: 800_000
        }]
    );
    let a = run(|out| {
        c.on_host(200, HostToBoard::SetFrequency { khz: 1_000 }, &mut |x| {
            out(x)
        })
    });
    assert_eq!(
        a,
        vec![Action::SetFrequency {
            from_khz: 800_000,
            to_khz: 50_000
        }]
    );
}

#[test]
fn the_board_keeps_asking_for_work_while_its_queue_stays_low() {
    let mut c = hashing();
    let work_lows = |a: &[Action]| {
        a.iter()
            .filter(|x| matches!(x, Action::Send(BoardToHost::WorkLow { .. })))
            .count()
    };
    // The host had nothing (no template yet): asked at chain-up (10 ms), then every 2 s.
    let a = run_for(&mut c, 100, 6100, healthy(50));
    assert_eq!(work_lows(&a), 2, "at 2.1 s and 4.1 s: {a:?}");
    // Work arrives and the queue stays above the low mark: no more asking.
    let mut a = Vec::new();
    for id in 0..QUEUE_DEPTH as u32 {
        a.extend(run(|out| {
            c.on_host(6100, HostToBoard::Work(bitaxe_work(id)), &mut |x| out(x))
        }));
    }
    a.extend(run_for(&mut c, 6200, 9200, healthy(50)));
    assert_eq!(work_lows(&a), 0, "{a:?}");
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
    run(|out| c.on_sensors(8_900, healthy(50), &mut |x| out(x)));
    assert!(faults(&run(|out| c.tick(9_000, &mut |x| out(x)))).is_empty());
    run(|out| c.on_sensors(10_000, healthy(50), &mut |x| out(x)));
    let a = run(|out| c.tick(10_100, &mut |x| out(x)));
    assert!(
        matches!(faults(&a)[..], [Fault::HostSilent { .. }]),
        "{a:?}"
    );
    assert!(a.contains(&Action::PowerDown));
    assert!(c.fan() >= 50, "fan stays on in the safe state");
    let a = run(|out| c.on_host(12_000, HostToBoard::Ping { seq: 2 }, &mut |x| out(x)));
    assert!(faults(&a).contains(&Fault::Cleared));
    run(|out| c.on_sensors(12_000, healthy(50), &mut |x| out(x)));
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
