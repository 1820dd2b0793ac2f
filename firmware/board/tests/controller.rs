//! The firmware's decisions, without hardware: power-up, job cadence, nonce verification with
//! real chip traffic, and every safety path (over-temperature, throttling, a failed sensor, a
//! regulator fault, a silent host).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bm13xx::model::ChipModel;
use bm13xx::response::{Response, parse_response};
use hearth_board::controller::{
    Action, BoardConfig, Controller, FAN_STALL_MS, FAN_STALL_STOP_MS, InputPower, QUEUE_DEPTH,
    RECOVERY_BACKOFF_MS, RECOVERY_HEALTHY_READINGS, RESET_MIN_INTERVAL_MS, Reading,
    RegulatorReading, Sensors, WARNING_CLEAR_INTERVAL_MS,
};
use hearth_board::pmbus::Health;
use hearth_board::thermal::ThermalLimits;
use hearth_link::{BoardToHost, Enumeration, Fault, HostToBoard, WorkItem};

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

fn regulator(health: Health, status_word: u16) -> RegulatorReading {
    RegulatorReading {
        health,
        status_word,
        temp_mc: 50_000,
        vout_mv: 1150,
        iout_ma: 10_000,
    }
}

fn healthy(asic_c: i32) -> Sensors {
    Sensors {
        asic_mc: Reading::Value(asic_c * 1000),
        board_mc: Reading::Value(40_000),
        regulator: Reading::Value(regulator(Health::Ok, 0)),
        input: Reading::Value(InputPower {
            mv: 5000,
            ma: 3000,
            mw: 15_000,
        }),
        fan_rpm: Reading::Value(4000),
    }
}

/// `s` with the regulator at `temp_mc`.
fn vr_at(mut s: Sensors, temp_mc: i32) -> Sensors {
    if let Reading::Value(r) = &mut s.regulator {
        r.temp_mc = temp_mc;
    }
    s
}

/// `s` with the regulator reporting `health` and `status_word`.
fn vr_status(mut s: Sensors, health: Health, status_word: u16) -> Sensors {
    if let Reading::Value(r) = &mut s.regulator {
        r.health = health;
        r.status_word = status_word;
    }
    s
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
    c.on_sensors(0, healthy(50)).to_vec();
    let a = c.tick(0).to_vec();
    assert!(
        a.contains(&Action::PowerUp {
            core_mv: 1150,
            frequency_khz: 525_000,
            generation: 1,
        }),
        "{a:?}"
    );
    c.on_chain_up(10, 1).to_vec();
    c.on_sensors(20, healthy(50)).to_vec();
    c
}

/// Sensor readings every 250 ms from `from` to `to` (exclusive), with a tick and a host ping
/// after each, as the firmware's main loop delivers them; returns every action.
fn run_for(c: &mut Controller, from: u32, to: u32, sensors: Sensors) -> Vec<Action> {
    let mut all = Vec::new();
    for t in (from..to).step_by(250) {
        all.extend(c.on_sensors(t, sensors).to_vec());
        all.extend(c.tick(t).to_vec());
        all.extend(c.on_host(t, HostToBoard::Ping { seq: t }).to_vec());
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
    assert_eq!(
        c.tick(0).to_vec(),
        vec![Action::PowerDown],
        "the first tick cuts a rail a previous run may have left on; no power-up before a chip temperature"
    );
    assert!(c.tick(10).is_empty());
    c.on_sensors(40, healthy(45)).to_vec();
    let boot = c.tick(50).to_vec();
    assert_eq!(
        boot,
        vec![Action::PowerUp {
            core_mv: 1150,
            frequency_khz: 525_000,
            generation: 1,
        }]
    );
    let up = c.on_chain_up(100, 1).to_vec();
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
        all.extend(
            c.on_host(100 + id, HostToBoard::Work(bitaxe_work(id)))
                .to_vec(),
        );
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
    c.on_host(t, HostToBoard::ClearWork).to_vec();
    let a = c
        .on_host(t + 1, HostToBoard::Work(bitaxe_work(99)))
        .to_vec();
    assert_eq!(sent_jobs(&a).len(), 1);
}

#[test]
fn real_nonces_are_verified_and_reported_once() {
    let mut c = hashing();
    let a = c.on_host(100, HostToBoard::Work(bitaxe_work(7))).to_vec();
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
    let a = c.on_nonce(200, &nonce).to_vec();
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
    assert!(c.on_nonce(201, &nonce).to_vec().is_empty());
    // A corrupted nonce does not verify: counted, not reported.
    let mut bad = nonce;
    bad.nonce ^= 0x0100;
    assert!(c.on_nonce(202, &bad).to_vec().is_empty());
    let t = c.telemetry(300);
    assert_eq!((t.chips[0].nonces, t.chips[0].errors), (1, 1));
}

/// `bitaxe_work(id)` from a template that sets `bits` inside BIP320's range (testdummy's bit 28
/// on regtest, a deployment signalling): the daemon leaves those bits out of the mask.
fn signalling_work(id: u32, bits: u32) -> WorkItem {
    let mut item = bitaxe_work(id);
    item.version |= bits;
    item.version_mask = 0x1FFF_E000 & !bits;
    item
}

fn version_masks(actions: &[Action]) -> Vec<u32> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SetVersionMask(mask) => Some(*mask),
            _ => None,
        })
        .collect()
}

#[test]
fn the_chips_roll_each_job_s_own_version_mask() {
    let mut c = hashing();
    // After bring-up the first job writes its mask (the controller does not guess what the
    // bring-up left), and the write goes before the job.
    let a = c.on_host(100, HostToBoard::Work(bitaxe_work(1))).to_vec();
    let mask_at = a
        .iter()
        .position(|x| matches!(x, Action::SetVersionMask(_)));
    let job_at = a.iter().position(|x| matches!(x, Action::SendJob(_)));
    assert_eq!(version_masks(&a), vec![0x1FFF_E000]);
    assert!(mask_at < job_at && job_at.is_some(), "{a:?}");
    // The same mask again: no write.
    c.on_host(600, HostToBoard::ClearWork).to_vec();
    let a = c.on_host(601, HostToBoard::Work(bitaxe_work(2))).to_vec();
    assert_eq!(sent_jobs(&a).len(), 1);
    assert!(version_masks(&a).is_empty(), "{a:?}");
    // A template with bit 28 set: the chips must stop rolling it, before that job.
    c.on_host(1200, HostToBoard::ClearWork).to_vec();
    let item = signalling_work(3, 1 << 28);
    let a = c.on_host(1201, HostToBoard::Work(item.clone())).to_vec();
    assert_eq!(version_masks(&a), vec![0x0FFF_E000]);
    let job_at = a
        .iter()
        .position(|x| matches!(x, Action::SendJob(_)))
        .unwrap();
    let mask_at = a
        .iter()
        .position(|x| matches!(x, Action::SetVersionMask(_)))
        .unwrap();
    assert!(mask_at < job_at, "{a:?}");
    assert_eq!(sent_jobs(&a)[0].version, item.version);
    // Jobs at the cadence keep that mask without rewriting it, until a template changes it.
    c.on_host(1300, HostToBoard::Work(signalling_work(4, 1 << 28)))
        .to_vec();
    c.on_host(1301, HostToBoard::Work(bitaxe_work(5))).to_vec();
    let a = run_for(&mut c, 1500, 3000, healthy(50));
    assert_eq!(sent_jobs(&a).len(), 2, "{a:?}");
    assert_eq!(version_masks(&a), vec![0x1FFF_E000], "{a:?}");
}

#[test]
fn after_a_dropped_chain_command_the_next_job_writes_its_mask_again() {
    let mut c = hashing();
    c.on_host(100, HostToBoard::Work(bitaxe_work(1))).to_vec();
    c.on_chain_command_dropped();
    c.on_host(101, HostToBoard::ClearWork).to_vec();
    let a = c.on_host(102, HostToBoard::Work(bitaxe_work(2))).to_vec();
    assert_eq!(version_masks(&a), vec![0x1FFF_E000], "{a:?}");
}

#[test]
fn pause_switches_the_hash_clock_off_and_reports_idle_only_once_it_is_off() {
    let mut c = hashing();
    for id in 0..4 {
        c.on_host(100 + id, HostToBoard::Work(bitaxe_work(id)))
            .to_vec();
    }
    assert_eq!(c.state(), hearth_link::BoardState::Hashing);
    let a = c.on_host(200, HostToBoard::Pause).to_vec();
    assert_eq!(count(&a, &Action::StopHashing), 1, "{a:?}");
    assert_eq!(
        c.state(),
        hearth_link::BoardState::Hashing,
        "not Idle before the clock-off write went out"
    );
    // A stale confirmation (another power-up) does not count.
    c.on_hashing_stopped(250, 7).to_vec();
    assert_eq!(c.state(), hearth_link::BoardState::Hashing);
    c.on_hashing_stopped(300, 1).to_vec();
    assert_eq!(c.state(), hearth_link::BoardState::Idle);
    // Paused: no job, no second clock-off, the clock reported as stopped.
    let a = run_for(&mut c, 500, 3000, healthy(50));
    assert!(sent_jobs(&a).is_empty(), "{a:?}");
    assert_eq!(count(&a, &Action::StopHashing), 0);
    assert_eq!(c.telemetry(3000).frequency_khz, 0);
    assert_eq!(c.telemetry(3000).state, hearth_link::BoardState::Idle);
    // Resume: the clock comes back first, and the next job only once it has.
    let a = c.on_host(3000, HostToBoard::Resume).to_vec();
    assert_eq!(count(&a, &Action::ResumeHashing), 1, "{a:?}");
    assert!(sent_jobs(&a).is_empty());
    let a = run_for(&mut c, 3000, 4000, healthy(50));
    assert!(
        sent_jobs(&a).is_empty(),
        "no job while the clock ramps: {a:?}"
    );
    assert_eq!(count(&a, &Action::ResumeHashing), 0, "{a:?}");
    let a = c.on_hashing_resumed(4000, 1).to_vec();
    assert_eq!(sent_jobs(&a).len(), 1, "{a:?}");
    assert_eq!(c.state(), hearth_link::BoardState::Hashing);
    assert_eq!(c.telemetry(4000).frequency_khz, 525_000);
}

#[test]
fn a_clock_command_lost_on_the_way_to_the_chain_is_issued_again() {
    let mut c = hashing();
    c.on_host(100, HostToBoard::Work(bitaxe_work(1))).to_vec();
    let a = c.on_host(200, HostToBoard::Pause).to_vec();
    assert_eq!(count(&a, &Action::StopHashing), 1);
    c.on_chain_command_dropped();
    let a = c.tick(250).to_vec();
    assert_eq!(count(&a, &Action::StopHashing), 1, "{a:?}");
    c.on_hashing_stopped(300, 1).to_vec();
    let a = c.on_host(400, HostToBoard::Resume).to_vec();
    assert_eq!(count(&a, &Action::ResumeHashing), 1);
    c.on_chain_command_dropped();
    let a = c.tick(450).to_vec();
    assert_eq!(count(&a, &Action::ResumeHashing), 1, "{a:?}");
}

#[test]
fn a_board_paused_across_a_power_cycle_stops_its_clock_once_the_chain_is_up() {
    let mut c = hashing();
    c.on_host(100, HostToBoard::Pause).to_vec();
    c.on_hashing_stopped(150, 1).to_vec();
    // A regulator fault: the core goes down (that stops the chips for good) ...
    let a = c
        .on_sensors(200, vr_status(healthy(50), Health::Fault, 0x0040))
        .to_vec();
    assert_eq!(a.first(), Some(&Action::PowerDown));
    assert!(
        !a.contains(&Action::StopHashing),
        "power down is enough: {a:?}"
    );
    // ... and once the host clears it and the chain comes back, still paused: clock off again.
    let mut now = 200;
    let mut generation = None;
    while generation.is_none() && now < 400_000 {
        now += 250;
        let mut a = c.on_sensors(now, healthy(50)).to_vec();
        a.extend(c.tick(now).to_vec());
        a.extend(c.on_host(now, HostToBoard::Ping { seq: now }).to_vec());
        generation = power_ups(&a).first().copied();
    }
    let generation = generation.expect("powered up again");
    c.on_host(now + 5, HostToBoard::Work(bitaxe_work(9)))
        .to_vec();
    let a = c.on_chain_up(now + 10, generation).to_vec();
    assert!(sent_jobs(&a).is_empty(), "{a:?}");
    assert_eq!(count(&a, &Action::StopHashing), 1, "{a:?}");
    assert_ne!(c.state(), hearth_link::BoardState::Idle);
    c.on_hashing_stopped(now + 20, generation).to_vec();
    assert_eq!(c.state(), hearth_link::BoardState::Idle);
}

#[test]
fn over_temperature_stops_hashing_with_the_fan_at_full_and_recovers_with_hysteresis() {
    let mut c = hashing();
    let a = c.on_sensors(1000, healthy(86)).to_vec();
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
    let a = c.on_sensors(2000, healthy(80)).to_vec();
    assert!(faults(&a).is_empty() && !a.contains(&Action::PowerDown));
    let a = c.tick(2500).to_vec();
    assert!(!a.iter().any(|x| matches!(x, Action::PowerUp { .. })));
    // Cooled below 75 °C: fault cleared, power back on.
    let a = c.on_sensors(3000, healthy(70)).to_vec();
    assert_eq!(faults(&a), vec![Fault::Cleared]);
    let a = c.tick(3001).to_vec();
    assert!(
        a.iter().any(|x| matches!(x, Action::PowerUp { .. })),
        "{a:?}"
    );
}

#[test]
fn throttling_steps_the_clock_down_and_back() {
    let mut c = hashing();
    let a = c.on_sensors(1000, healthy(76)).to_vec();
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
    let a = c.on_sensors(7000, healthy(76)).to_vec();
    assert!(
        a.contains(&Action::SetFrequency {
            from_khz: 472_500,
            to_khz: 420_000
        }),
        "{a:?}"
    );
    let a = c.on_sensors(8000, healthy(64)).to_vec();
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
    failed.asic_mc = Reading::Failed;
    let a = c.on_sensors(1000, failed).to_vec();
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
        all.extend(c.on_sensors(2000 + i * 250, failed).to_vec());
    }
    assert!(all.contains(&Action::PowerDown));
    // The sensor recovers: six failures need six good readings before the board trusts it.
    let mut all = Vec::new();
    for i in 0..5 {
        all.extend(c.on_sensors(4000 + i * 250, healthy(50)).to_vec());
    }
    assert!(faults(&all).is_empty(), "{all:?}");
    let a = c.on_sensors(5250, healthy(50)).to_vec();
    assert_eq!(faults(&a), vec![Fault::Cleared]);
    let a = c.tick(5300).to_vec();
    assert_eq!(power_ups(&a), vec![2]);
}

#[test]
fn a_sensor_that_fails_every_other_reading_still_stops_the_board() {
    let mut c = hashing();
    let mut failed = healthy(50);
    failed.asic_mc = Reading::Failed;
    let mut all = Vec::new();
    // Two bad, one good: the bucket fills by one per three readings.
    for i in 0..30u32 {
        let s = if i % 3 == 2 { healthy(50) } else { failed };
        all.extend(c.on_sensors(1000 + i * 250, s).to_vec());
    }
    assert!(all.contains(&Action::PowerDown), "{all:?}");
    assert_eq!(c.state(), hearth_link::BoardState::Safe);
}

#[test]
fn no_fresh_chip_temperature_while_powered_stops_the_board() {
    let mut c = hashing();
    // The last reading was at 20 ms; nothing since (the sensor read stalled).
    assert!(faults(&c.tick(1900)).is_empty());
    let a = c.tick(2100).to_vec();
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
    s.asic_mc = Reading::Failed;
    let s = vr_at(s, 120_000);
    let a = c.on_sensors(1000, s).to_vec();
    assert!(a.contains(&Action::PowerDown), "{a:?}");
    assert!(
        faults(&a).contains(&Fault::RegulatorOverTemperature { temp_mc: 120_000 }),
        "{a:?}"
    );
    // Still hot: no power-up even once the chip sensor is back.
    let a = run_for(&mut c, 1250, 5000, vr_at(healthy(50), 110_000));
    assert!(power_ups(&a).is_empty(), "{a:?}");
    // Cooled by the hysteresis: back up.
    let a = run_for(&mut c, 5000, 5500, healthy(50));
    assert_eq!(power_ups(&a), vec![2], "{a:?}");
}

#[test]
fn the_host_cannot_reset_its_way_out_of_a_hardware_fault() {
    let mut c = hashing();
    c.on_sensors(1000, healthy(86)).to_vec();
    let a = c.on_host(1100, HostToBoard::Reset).to_vec();
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
    c.on_chain_up(3500, 2).to_vec();
    let a = c.on_host(3600, HostToBoard::Reset).to_vec();
    assert!(a.contains(&Action::PowerDown), "{a:?}");
    let a = c.tick(3650).to_vec();
    assert_eq!(power_ups(&a), vec![3]);
}

#[test]
fn an_answer_to_an_abandoned_power_up_is_ignored() {
    let mut c = Controller::new(config(), 0);
    c.on_sensors(0, healthy(50)).to_vec();
    assert_eq!(power_ups(&c.tick(0)), vec![1]);
    // The host goes silent mid power-up, then comes back: a second power-up starts.
    c.tick(10_000).to_vec();
    c.on_sensors(10_050, healthy(50)).to_vec();
    c.on_host(10_100, HostToBoard::Ping { seq: 1 }).to_vec();
    assert_eq!(power_ups(&c.tick(10_150)), vec![2]);
    // The first bring-up's answers arrive late: ignored.
    assert!(c.on_chain_up(10_200, 1).to_vec().is_empty());
    assert!(c.on_chain_failed(10_200, 1, "late").to_vec().is_empty());
    assert_eq!(c.state(), hearth_link::BoardState::Starting);
    let a = c.on_chain_up(10_300, 2).to_vec();
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Send(BoardToHost::WorkLow { .. })))
    );
}

#[test]
fn a_regulator_fault_during_power_up_stops_it() {
    let mut c = Controller::new(config(), 0);
    c.on_sensors(0, healthy(50)).to_vec();
    assert_eq!(power_ups(&c.tick(0)), vec![1]);
    let s = vr_status(healthy(50), Health::Fault, 0x0010);
    let a = c.on_sensors(250, s).to_vec();
    assert_eq!(a.first(), Some(&Action::PowerDown), "{a:?}");
    assert!(c.on_chain_up(300, 1).to_vec().is_empty());
}

#[test]
fn the_host_cannot_clock_the_chips_past_the_model_envelope() {
    let mut c = hashing();
    let a = c
        .on_host(100, HostToBoard::SetFrequency { khz: 2_000_000 })
        .to_vec();
    assert_eq!(
        a,
        vec![Action::SetFrequency {
            from_khz: 525_000,
            to_khz: 800_000
        }]
    );
    let a = c
        .on_host(200, HostToBoard::SetFrequency { khz: 1_000 })
        .to_vec();
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
        a.extend(c.on_host(6100, HostToBoard::Work(bitaxe_work(id))).to_vec());
    }
    a.extend(run_for(&mut c, 6200, 9200, healthy(50)));
    assert_eq!(work_lows(&a), 0, "{a:?}");
}

#[test]
fn a_regulator_fault_powers_the_core_down() {
    let mut c = hashing();
    let s = vr_status(healthy(50), Health::Fault, 0x0004);
    let a = c.on_sensors(1000, s).to_vec();
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
    c.on_host(100, HostToBoard::Ping { seq: 1 }).to_vec();
    c.on_sensors(8_900, healthy(50)).to_vec();
    assert!(faults(&c.tick(9_000)).is_empty());
    c.on_sensors(10_000, healthy(50)).to_vec();
    let a = c.tick(10_100).to_vec();
    assert!(
        matches!(faults(&a)[..], [Fault::HostSilent { .. }]),
        "{a:?}"
    );
    assert!(a.contains(&Action::PowerDown));
    assert!(c.fan() >= 50, "fan stays on in the safe state");
    let a = c.on_host(12_000, HostToBoard::Ping { seq: 2 }).to_vec();
    assert!(faults(&a).contains(&Fault::Cleared));
    c.on_sensors(12_000, healthy(50)).to_vec();
    let a = c.tick(12_001).to_vec();
    assert!(a.iter().any(|x| matches!(x, Action::PowerUp { .. })));
}

#[test]
fn telemetry_goes_out_every_second() {
    let mut c = hashing();
    let mut count = 0;
    for t in (100..5100).step_by(50) {
        count += c
            .tick(t)
            .to_vec()
            .iter()
            .filter(|a| matches!(a, Action::Send(BoardToHost::Telemetry(_))))
            .count();
        c.on_host(t, HostToBoard::Ping { seq: t }).to_vec();
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

fn count(actions: &[Action], what: &Action) -> usize {
    actions.iter().filter(|a| *a == what).count()
}

fn fans(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SetFan(p) => Some(*p),
            _ => None,
        })
        .collect()
}

// --- Item 1: the rail is cut whatever the controller believes -------------------------------

#[test]
fn the_safe_state_sends_power_down_even_when_the_controller_believes_power_is_off() {
    // Never powered up (no chip temperature yet): the controller believes the rail is off, but
    // after an MCU reset it may be on. The host goes silent: PowerDown all the same.
    let mut c = Controller::new(config(), 0);
    assert_eq!(c.tick(0).to_vec(), vec![Action::PowerDown], "boot");
    let a = c.tick(10_000).to_vec();
    assert!(
        matches!(faults(&a)[..], [Fault::HostSilent { .. }]),
        "{a:?}"
    );
    assert_eq!(a.first(), Some(&Action::PowerDown), "{a:?}");
}

// --- Item 4: warnings throttle, faults stop, and the board recovers from a fault ------------

#[test]
fn a_regulator_warning_throttles_instead_of_stopping() {
    let mut c = hashing();
    let warn = vr_status(healthy(50), Health::Warning, 0x0004);
    let a = c.on_sensors(1000, warn).to_vec();
    assert!(!a.contains(&Action::PowerDown), "{a:?}");
    assert!(
        a.contains(&Action::SetFrequency {
            from_khz: 525_000,
            to_khz: 472_500
        }),
        "{a:?}"
    );
    assert_eq!(c.state(), hearth_link::BoardState::Idle); // hashing, no work queued
    assert!(c.telemetry(1000).frequency_khz == 472_500);
    // Still warning after a throttle step: another step, still no stop.
    let a = run_for(&mut c, 1250, 7000, warn);
    assert!(!a.contains(&Action::PowerDown), "{a:?}");
    assert!(c.telemetry(7000).frequency_khz < 472_500);
    // Cleared (and cool): back to the configured clock.
    let a = c.on_sensors(7250, healthy(50)).to_vec();
    assert!(
        a.iter().any(|x| matches!(
            x,
            Action::SetFrequency {
                to_khz: 525_000,
                ..
            }
        )),
        "{a:?}"
    );
}

#[test]
fn a_regulator_warning_is_cleared_so_that_a_passing_one_does_not_throttle_for_good() {
    // PMBus status bits stay latched until CLEAR_FAULTS: without a clear, the regulator would go
    // on reporting a warning long after a brief one, and the board would stay throttled.
    let mut c = hashing();
    let warn = vr_status(healthy(50), Health::Warning, 0x0004);
    let a = c.on_sensors(1000, warn).to_vec();
    assert_eq!(count(&a, &Action::ClearRegulatorFaults), 1, "{a:?}");
    // Still reported within the interval: no second clear yet (the bus is not flooded).
    let a = run_for(&mut c, 1250, 1000 + WARNING_CLEAR_INTERVAL_MS - 250, warn);
    assert_eq!(count(&a, &Action::ClearRegulatorFaults), 0, "{a:?}");
    // Still there after the interval: cleared again.
    let a = run_for(
        &mut c,
        1000 + WARNING_CLEAR_INTERVAL_MS - 250,
        1250 + WARNING_CLEAR_INTERVAL_MS,
        warn,
    );
    assert_eq!(count(&a, &Action::ClearRegulatorFaults), 1, "{a:?}");
    // Nothing is cleared while the regulator is healthy.
    let a = run_for(
        &mut c,
        1250 + WARNING_CLEAR_INTERVAL_MS,
        1250 + 3 * WARNING_CLEAR_INTERVAL_MS,
        healthy(50),
    );
    assert_eq!(count(&a, &Action::ClearRegulatorFaults), 0, "{a:?}");
}

#[test]
fn host_changes_made_during_bring_up_are_applied_once_the_chain_is_up() {
    let mut c = Controller::new(config(), 0);
    c.on_sensors(0, healthy(50)).to_vec();
    let a = c.tick(0).to_vec();
    assert!(!power_ups(&a).is_empty(), "{a:?}");
    // While the chain comes up (seconds of PLL ramp), the host asks for other settings.
    let a = c.on_host(5, HostToBoard::SetVoltage { mv: 1200 }).to_vec();
    assert!(
        !a.contains(&Action::SetCoreVoltage(1200)),
        "not while starting: {a:?}"
    );
    c.on_host(6, HostToBoard::SetFrequency { khz: 500_000 })
        .to_vec();
    let up = c.on_chain_up(10, 1).to_vec();
    assert!(up.contains(&Action::SetCoreVoltage(1200)), "{up:?}");
    assert!(
        up.contains(&Action::SetFrequency {
            from_khz: 525_000,
            to_khz: 500_000
        }),
        "{up:?}"
    );
    assert_eq!(c.telemetry(20).frequency_khz, 500_000);
}

#[test]
fn a_regulator_fault_recovers_after_a_backoff_clear_faults_and_healthy_readings() {
    let mut c = hashing();
    let fault = vr_status(healthy(50), Health::Fault, 0x0020);
    let a = c.on_sensors(1000, fault).to_vec();
    assert_eq!(a.first(), Some(&Action::PowerDown));
    assert_eq!(
        faults(&a),
        vec![Fault::RegulatorFault {
            status_word: 0x0020
        }]
    );
    // The status stays latched until CLEAR_FAULTS; nothing happens before the backoff.
    let a = run_for(&mut c, 1250, 1000 + RECOVERY_BACKOFF_MS, fault);
    assert_eq!(count(&a, &Action::ClearRegulatorFaults), 0, "{a:?}");
    assert!(power_ups(&a).is_empty());
    // The CLEAR_FAULTS goes out on the tick after the backoff (the reading before it still
    // shows the latched fault).
    let a = run_for(
        &mut c,
        1000 + RECOVERY_BACKOFF_MS,
        1250 + RECOVERY_BACKOFF_MS,
        fault,
    );
    assert_eq!(count(&a, &Action::ClearRegulatorFaults), 1, "{a:?}");
    // Healthy after CLEAR_FAULTS: cleared after enough readings, then power.
    let start = 1250 + RECOVERY_BACKOFF_MS;
    let a = run_for(
        &mut c,
        start,
        start + 250 * u32::from(RECOVERY_HEALTHY_READINGS) + 250,
        healthy(50),
    );
    assert!(faults(&a).contains(&Fault::Cleared), "{a:?}");
    assert_eq!(power_ups(&a), vec![2], "{a:?}");
    // A second trip waits twice as long.
    run_for(&mut c, start + 3000, start + 3250, healthy(50));
    c.on_chain_up(start + 3250, 2);
    let trip = start + 4000;
    c.on_sensors(trip, fault);
    let a = run_for(
        &mut c,
        trip + 250,
        trip + 2 * RECOVERY_BACKOFF_MS - 250,
        healthy(50),
    );
    assert_eq!(
        count(&a, &Action::ClearRegulatorFaults),
        0,
        "backoff doubled"
    );
    let a = run_for(
        &mut c,
        trip + 2 * RECOVERY_BACKOFF_MS - 250,
        trip + 2 * RECOVERY_BACKOFF_MS + 3000,
        healthy(50),
    );
    assert_eq!(count(&a, &Action::ClearRegulatorFaults), 1, "{a:?}");
    assert_eq!(power_ups(&a), vec![3], "{a:?}");
}

#[test]
fn bad_input_power_recovers_once_it_is_back_in_limits() {
    let mut c = hashing();
    let mut high = healthy(50);
    high.input = Reading::Value(InputPower {
        mv: 6_000,
        ma: 3_000,
        mw: 18_000,
    });
    let a = c.on_sensors(1000, high).to_vec();
    assert_eq!(a.first(), Some(&Action::PowerDown));
    assert!(matches!(
        faults(&a)[..],
        [Fault::InputPower {
            input_mv: 6_000,
            ..
        }]
    ));
    let a = run_for(&mut c, 1250, 1000 + RECOVERY_BACKOFF_MS + 250, high);
    assert!(power_ups(&a).is_empty(), "still out of limits: {a:?}");
    let a = run_for(
        &mut c,
        12_000,
        12_000 + RECOVERY_BACKOFF_MS * 2 + 3000,
        healthy(50),
    );
    assert!(faults(&a).contains(&Fault::Cleared), "{a:?}");
    assert_eq!(power_ups(&a), vec![2], "{a:?}");
}

// --- Item 5: the host cannot override the thermal policy ------------------------------------

#[test]
fn a_host_fan_request_can_only_raise_the_fan_above_the_policy() {
    let mut c = hashing();
    // 50 °C: the policy wants its minimum, 25 %.
    assert_eq!(c.fan(), 25);
    let a = c
        .on_host(100, HostToBoard::SetFan { percent: Some(0) })
        .to_vec();
    assert!(fans(&a).is_empty(), "0 % refused: {a:?}");
    assert_eq!(c.fan(), 25);
    // Hot: the policy raises the fan past the host's request.
    c.on_host(200, HostToBoard::SetFan { percent: Some(40) });
    assert_eq!(c.fan(), 40);
    c.on_sensors(300, healthy(70));
    assert!(c.fan() > 40, "policy above the request: {}", c.fan());
    // A higher request wins; cancelling it goes back to the policy.
    c.on_host(400, HostToBoard::SetFan { percent: Some(100) });
    assert_eq!(c.fan(), 100);
    c.on_host(500, HostToBoard::SetFan { percent: None });
    assert_eq!(
        c.fan(),
        hearth_board::thermal::fan_percent(&config().limits, 70_000)
    );
}

#[test]
fn a_frequency_raise_is_held_while_throttled_and_applied_once_cool() {
    let mut c = hashing();
    c.on_sensors(1000, healthy(76));
    assert_eq!(c.telemetry(1000).frequency_khz, 472_500);
    let a = c
        .on_host(1100, HostToBoard::SetFrequency { khz: 800_000 })
        .to_vec();
    assert!(
        !a.iter().any(|x| matches!(x, Action::SetFrequency { .. })),
        "no raise while throttled: {a:?}"
    );
    assert_eq!(c.telemetry(1100).frequency_khz, 472_500);
    // Lowering is always allowed.
    let a = c
        .on_host(1200, HostToBoard::SetFrequency { khz: 400_000 })
        .to_vec();
    assert!(
        a.contains(&Action::SetFrequency {
            from_khz: 472_500,
            to_khz: 400_000
        }),
        "{a:?}"
    );
    c.on_host(1300, HostToBoard::SetFrequency { khz: 800_000 });
    // Cooled: the held request applies.
    let a = c.on_sensors(2000, healthy(60)).to_vec();
    assert!(
        a.contains(&Action::SetFrequency {
            from_khz: 400_000,
            to_khz: 800_000
        }),
        "{a:?}"
    );
}

// --- Item 6: a stalled fan ------------------------------------------------------------------

#[test]
fn a_stalled_fan_is_a_fault_then_full_speed_then_a_stop_and_recovers() {
    let mut c = hashing();
    let mut stalled = healthy(50);
    stalled.fan_rpm = Reading::Value(0);
    let a = run_for(&mut c, 1000, 1000 + FAN_STALL_MS, stalled);
    assert!(faults(&a).is_empty(), "spin-up grace: {a:?}");
    let a = run_for(&mut c, 1000 + FAN_STALL_MS, 1250 + FAN_STALL_MS, stalled);
    assert_eq!(
        faults(&a),
        vec![Fault::SensorFailure {
            sensor: hearth_link::Sensor::Fan
        }]
    );
    assert_eq!(fans(&a), vec![100]);
    assert!(!a.contains(&Action::PowerDown), "not yet: {a:?}");
    let a = run_for(
        &mut c,
        1250 + FAN_STALL_MS,
        1000 + FAN_STALL_STOP_MS + 250,
        stalled,
    );
    assert_eq!(
        count(&a, &Action::PowerDown),
        1,
        "stops when it persists: {a:?}"
    );
    assert_eq!(c.state(), hearth_link::BoardState::Safe);
    assert_eq!(c.fan(), 100);
    // The fan turns again: cleared, powered up.
    let a = run_for(&mut c, 12_000, 15_000, healthy(50));
    assert!(faults(&a).contains(&Fault::Cleared), "{a:?}");
    assert_eq!(power_ups(&a), vec![2], "{a:?}");
}

// --- Item 7: the watchdog proves the sensor round and the safety tick ----------------------

#[test]
fn the_watchdog_is_fed_only_while_the_sensor_round_and_the_tick_both_run() {
    let mut c = hashing(); // last sensors at 20 ms, last tick at 0 ms
    assert!(c.watchdog_may_feed(500));
    // Ticks keep coming, the sensor round has stopped (a hung I2C read).
    for t in (50..2000).step_by(50) {
        c.tick(t);
    }
    assert!(
        !c.watchdog_may_feed(2000),
        "the loop turns but the sensors do not"
    );
    c.on_sensors(2000, healthy(50));
    assert!(c.watchdog_may_feed(2000));
    // Sensors keep coming, the tick has stopped.
    for t in (2250..4000).step_by(250) {
        c.on_sensors(t, healthy(50));
    }
    assert!(!c.watchdog_may_feed(4000), "no safety tick for 2 s");
    c.tick(4000);
    assert!(c.watchdog_may_feed(4000));
}

// --- Item 8: the smaller gaps ---------------------------------------------------------------

#[test]
fn an_input_monitor_that_stops_answering_stops_the_board() {
    let mut c = hashing();
    let mut silent = healthy(50);
    silent.input = Reading::Failed;
    let a = c.on_sensors(1000, silent).to_vec();
    assert_eq!(
        faults(&a),
        vec![Fault::SensorFailure {
            sensor: hearth_link::Sensor::PowerMonitor
        }],
        "reported at once"
    );
    let a = run_for(&mut c, 1250, 2500, silent);
    assert_eq!(count(&a, &Action::PowerDown), 1, "{a:?}");
    assert_eq!(c.state(), hearth_link::BoardState::Safe);
    // It answers again: the board recovers like any input-power trip.
    let a = run_for(&mut c, 2500, 2500 + RECOVERY_BACKOFF_MS + 4000, healthy(50));
    assert_eq!(power_ups(&a), vec![2], "{a:?}");
}

#[test]
fn host_resets_power_cycle_the_rail_at_most_once_per_interval() {
    let mut c = hashing();
    let mut all = Vec::new();
    // 20 Hz of Reset for 2 s, with the main loop's ticks and sensor rounds.
    for t in (100..2100).step_by(50) {
        all.extend(c.on_host(t, HostToBoard::Reset).to_vec());
        all.extend(c.tick(t).to_vec());
        if t % 250 == 0 {
            all.extend(c.on_sensors(t, healthy(50)).to_vec());
        }
        if let Some(g) = power_ups(&all).last() {
            all.extend(c.on_chain_up(t, *g).to_vec());
        }
    }
    assert_eq!(count(&all, &Action::PowerDown), 1, "{all:?}");
    assert_eq!(power_ups(&all), vec![2]);
    // After the interval, one more is honoured.
    let a = c
        .on_host(100 + RESET_MIN_INTERVAL_MS, HostToBoard::Reset)
        .to_vec();
    assert_eq!(count(&a, &Action::PowerDown), 1, "{a:?}");
}

#[test]
fn a_failed_core_voltage_change_is_reported_and_stops_the_board() {
    let mut c = hashing();
    let a = c
        .on_host(100, HostToBoard::SetVoltage { mv: 1200 })
        .to_vec();
    assert_eq!(a, vec![Action::SetCoreVoltage(1200)]);
    // The firmware's regulator write failed: the controller hears of it.
    let a = c
        .on_power_error(110, "core regulator does not answer on I2C")
        .to_vec();
    assert_eq!(a.first(), Some(&Action::PowerDown));
    assert!(
        a.iter().any(|x| matches!(x, Action::Send(BoardToHost::Log { text, .. }) if text.contains("does not answer"))),
        "{a:?}"
    );
    assert_eq!(c.state(), hearth_link::BoardState::Safe);
}

#[test]
fn a_core_voltage_above_the_chip_envelope_stops_the_board() {
    let mut c = hashing();
    let mut s = healthy(50);
    if let Reading::Value(r) = &mut s.regulator {
        r.vout_mv = 1_400; // envelope 1300 mV + 5 % = 1365 mV
    }
    let a = c.on_sensors(1000, s).to_vec();
    assert_eq!(a.first(), Some(&Action::PowerDown), "{a:?}");
}

mod capacity {
    //! [`MAX_ACTIONS`] is enough: every event, in random sequences that reach every state
    //! (faults, recovery, throttling, power-ups, work, nonces), returns at most that many actions,
    //! and none is ever dropped.
    use super::*;
    use hearth_board::controller::MAX_ACTIONS;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Event {
        Tick(u32),
        Sensors(u32, Sensors),
        Host(u32, HostToBoard),
        ChainUp(u32),
        ChainFailed(u32),
        PowerError(u32),
        HashingStopped(u32),
        HashingResumed(u32),
        CommandDropped,
    }

    fn reading<T: std::fmt::Debug + Clone + 'static>(
        value: impl Strategy<Value = T> + 'static,
    ) -> impl Strategy<Value = Reading<T>> {
        prop_oneof![
            6 => value.prop_map(Reading::Value),
            1 => Just(Reading::Failed),
            1 => Just(Reading::Absent),
        ]
    }

    fn sensors() -> impl Strategy<Value = Sensors> {
        let health = prop_oneof![Just(Health::Ok), Just(Health::Warning), Just(Health::Fault)];
        let regulator = (health, 0u16..=0xFFFF, 20_000i32..130_000, 0u16..1500).prop_map(
            |(health, status_word, temp_mc, vout_mv)| RegulatorReading {
                health,
                status_word,
                temp_mc,
                vout_mv,
                iout_ma: 10_000,
            },
        );
        let input =
            (4_000u32..6_000, 0u32..30_000).prop_map(|(mv, mw)| InputPower { mv, ma: 3000, mw });
        (
            reading(20_000i32..100_000),
            reading(regulator),
            reading(input),
            reading(prop_oneof![Just(0u32), 1000u32..6000]),
        )
            .prop_map(|(asic_mc, regulator, input, fan_rpm)| Sensors {
                asic_mc,
                board_mc: Reading::Value(40_000),
                regulator,
                input,
                fan_rpm,
            })
    }

    fn host() -> impl Strategy<Value = HostToBoard> {
        prop_oneof![
            Just(HostToBoard::Hello),
            (0u32..64).prop_map(|id| HostToBoard::Work(bitaxe_work(id))),
            Just(HostToBoard::ClearWork),
            (0u32..1_000_000).prop_map(|khz| HostToBoard::SetFrequency { khz }),
            (900u16..1400).prop_map(|mv| HostToBoard::SetVoltage { mv }),
            proptest::option::of(0u8..=100).prop_map(|percent| HostToBoard::SetFan { percent }),
            Just(HostToBoard::Pause),
            Just(HostToBoard::Resume),
            Just(HostToBoard::Reset),
            (0u32..10).prop_map(|seq| HostToBoard::Ping { seq }),
            (1u8..40).prop_map(|bits| HostToBoard::SetShareFloor { bits }),
            Just(HostToBoard::ScanI2c),
            Just(HostToBoard::GetEnumeration),
        ]
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => (1u32..3000).prop_map(Event::Tick),
            4 => (1u32..3000, sensors()).prop_map(|(dt, s)| Event::Sensors(dt, s)),
            3 => (1u32..3000, host()).prop_map(|(dt, m)| Event::Host(dt, m)),
            1 => (1u32..100).prop_map(Event::ChainUp),
            1 => (1u32..100).prop_map(Event::ChainFailed),
            1 => (1u32..100).prop_map(Event::PowerError),
            1 => (1u32..100).prop_map(Event::HashingStopped),
            1 => (1u32..100).prop_map(Event::HashingResumed),
            1 => Just(Event::CommandDropped),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn no_event_produces_more_actions_than_fit(events in proptest::collection::vec(event(), 1..200)) {
            let mut c = Controller::new(config(), 0);
            let mut now = 0u32;
            let mut generation = 0;
            for e in events {
                let actions = match e {
                    Event::Tick(dt) => { now += dt; c.tick(now) }
                    Event::Sensors(dt, s) => { now += dt; c.on_sensors(now, s) }
                    Event::Host(dt, m) => { now += dt; c.on_host(now, m) }
                    Event::ChainUp(dt) => { now += dt; c.on_chain_up(now, generation) }
                    Event::ChainFailed(dt) => { now += dt; c.on_chain_failed(now, generation, "x") }
                    Event::PowerError(dt) => { now += dt; c.on_power_error(now, "x") }
                    Event::HashingStopped(dt) => { now += dt; c.on_hashing_stopped(now, generation) }
                    Event::HashingResumed(dt) => { now += dt; c.on_hashing_resumed(now, generation) }
                    Event::CommandDropped => { c.on_chain_command_dropped(); Default::default() }
                };
                for a in &actions {
                    if let Action::PowerUp { generation: g, .. } = a {
                        generation = *g;
                    }
                }
                // A margin of half the list: a future action or two must not overflow it.
                prop_assert!(actions.len() <= MAX_ACTIONS / 2, "{} actions: {actions:?}", actions.len());
            }
            prop_assert_eq!(c.actions_dropped(), 0);
        }
    }
}

#[test]
fn the_host_asks_for_an_i2c_scan_and_the_last_enumeration() {
    let mut c = Controller::new(config(), 0);
    let a = c.on_host(10, HostToBoard::ScanI2c);
    assert_eq!(a.as_slice(), &[Action::ScanI2c]);

    // Before any bring-up: nothing tried yet.
    let a = c.on_host(20, HostToBoard::GetEnumeration);
    assert_eq!(
        a.as_slice(),
        &[Action::Send(BoardToHost::Enumeration(
            Enumeration::default()
        ))]
    );

    // A bring-up that found the wrong chip is passed on at once, and remembered.
    let found = Enumeration {
        attempts: 1,
        chips_found: 1,
        chip_id: Some(0x1368),
        up: false,
        error: heapless::String::try_from("a chip reports another model").unwrap(),
    };
    let a = c.on_enumeration(found.clone());
    assert_eq!(
        a.as_slice(),
        &[Action::Send(BoardToHost::Enumeration(found.clone()))]
    );
    let a = c.on_host(30, HostToBoard::GetEnumeration);
    assert_eq!(
        a.as_slice(),
        &[Action::Send(BoardToHost::Enumeration(found))]
    );
}
