//! Stratum miners of every common shape mine real blocks through Hearth on regtest: each
//! replays its client's session (message order, parameter forms, submit format, from their
//! sources: docs/stratum-clients.md), the node accepts the blocks, and every coinbase pays the
//! daemon's address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::stratum::{Miner, Solved};
use hearth::daemon::Daemon;
use hearth::events::Event;
use serde_json::{Value, json};

/// How a client writes the sixth `mining.submit` parameter, and its nonce.
#[derive(Debug, Clone, Copy)]
enum SubmitForm {
    /// Five params.
    NoVersion,
    /// `rolled ^ job version` (ESP-Miner, NerdQAxe).
    Xor,
    /// `rolled & mask` (cgminer, Braiins bmminer).
    Masked,
    /// `rolled & !job version` (stock Antminer).
    AndNotBase,
    /// The full rolled version ANDed with 1fffe000 (Braiins' translator).
    FullAndMask,
}

#[derive(Debug, Clone, Copy)]
struct Shape {
    name: &'static str,
    form: SubmitForm,
    /// NerdMiner writes the nonce without leading zeros.
    unpadded_nonce: bool,
    /// cpuminer sends every share with id 4.
    fixed_submit_id: Option<u64>,
}

/// Run `shape`'s connection set-up; returns the miner with its first job.
async fn connect(shape: &Shape, addr: SocketAddr) -> Miner {
    let mut m = Miner::connect(addr).await;
    let worker = format!("bcrt1qexample.{}", shape.name);
    match shape.name {
        "esp-miner" => {
            // configure, subscribe, authorize back to back, then suggest and extranonce.
            m.send(r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"ffffffff"}]}"#).await;
            m.send(r#"{"id":2,"method":"mining.subscribe","params":["bitaxe/BM1370/v2.9.0"]}"#)
                .await;
            m.send(&format!(
                r#"{{"id":3,"method":"mining.authorize","params":["{worker}","x"]}}"#
            ))
            .await;
            let r = m.reply(json!(1)).await;
            m.take_configure(&r);
            let r = m.reply(json!(2)).await;
            m.take_subscribe(&r);
            assert_eq!(m.reply(json!(3)).await["result"], json!(true));
            m.send(r#"{"id":4,"method":"mining.suggest_difficulty","params":[1000]}"#)
                .await;
            m.send(r#"{"id":5,"method":"mining.extranonce.subscribe","params":[]}"#)
                .await;
            m.reply(json!(4)).await;
            m.reply(json!(5)).await;
        }
        "nerdqaxe" => {
            m.send(r#"{"id": 1, "method": "mining.subscribe", "params": ["NerdQAxe++/BM1370/v1.0.30"]}"#).await;
            m.send(r#"{"id": 2, "method": "mining.configure", "params": [["version-rolling"], {"version-rolling.mask": "1fffe000"}]}"#).await;
            m.send(&format!(
                r#"{{"id": 3, "method": "mining.authorize", "params": ["{worker}", "x"]}}"#
            ))
            .await;
            m.send(r#"{"id": 4, "method": "mining.suggest_difficulty", "params": [1000]}"#)
                .await;
            let r = m.reply(json!(1)).await;
            m.take_subscribe(&r);
            let r = m.reply(json!(2)).await;
            m.take_configure(&r);
            m.reply(json!(3)).await;
            m.reply(json!(4)).await;
        }
        "nerdminer" => {
            // Reads exactly one line after subscribe and takes it as the reply.
            m.send(r#"{"id": 1, "method": "mining.subscribe", "params": ["NerdMinerV2"]}"#)
                .await;
            let r = m.next_is_reply(json!(1)).await;
            m.take_subscribe(&r);
            assert!([2, 4, 8].contains(&m.extranonce2_size));
            m.send(&format!(
                r#"{{"params": ["{worker}", "x"], "id": 2, "method": "mining.authorize"}}"#
            ))
            .await;
            m.send(r#"{"id": 3, "method": "mining.suggest_difficulty", "params": [0.00015]}"#)
                .await;
            m.reply(json!(2)).await;
            m.reply(json!(3)).await;
        }
        "cgminer" => {
            // Waits for each reply; configure's must be the very next line, granting a mask.
            m.send(r#"{"id": 0, "method": "mining.configure", "params": [["version-rolling"], {"version-rolling.mask": "ffffffff"}]}"#).await;
            let r = m.next_is_reply(json!(0)).await;
            m.take_configure(&r);
            assert_ne!(m.version_mask, 0);
            m.send(r#"{"id": 1, "method": "mining.subscribe", "params": ["cgminer/4.12.0"]}"#)
                .await;
            let r = m.next_is_reply(json!(1)).await;
            m.take_subscribe(&r);
            assert!((2..=8).contains(&m.extranonce2_size));
            m.send(&format!(
                r#"{{"id": 2, "method": "mining.authorize", "params": ["{worker}", "x"]}}"#
            ))
            .await;
            m.reply(json!(2)).await;
            m.send(r#"{"id": 3, "method": "mining.suggest_difficulty", "params": [512]}"#)
                .await;
            m.reply(json!(3)).await;
        }
        "cpuminer" => {
            m.send(r#"{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5.1"]}"#)
                .await;
            let r = m.next_is_reply(json!(1)).await;
            m.take_subscribe(&r);
            m.send(&format!(
                r#"{{"id": 2, "method": "mining.authorize", "params": ["{worker}", "x"]}}"#
            ))
            .await;
            m.reply(json!(2)).await;
        }
        "braiins-translator" => {
            // Needs exactly 1fffe000 back; then subscribe with four params, back to back.
            m.send(r#"{"id":0,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":16}]}"#).await;
            let r = m.next_is_reply(json!(0)).await;
            m.take_configure(&r);
            assert_eq!(m.version_mask, 0x1fff_e000);
            m.send(r#"{"id":1,"method":"mining.subscribe","params":["bosminer-plus-tuner 0.2.0",null,"127.0.0.1:3333",null]}"#).await;
            m.send(r#"{"id":2,"method":"mining.extranonce.subscribe","params":[]}"#)
                .await;
            m.send(&format!(
                r#"{{"id":3,"method":"mining.authorize","params":["{worker}","x"]}}"#
            ))
            .await;
            let r = m.reply(json!(1)).await;
            m.take_subscribe(&r);
            m.reply(json!(2)).await;
            m.reply(json!(3)).await;
        }
        "braiins-bmminer" => {
            // The malformed key Braiins OS bmminer sends.
            m.send(r#"{"id": 0, "method": "mining.configure", "params": [["version-rolling"], {"version-rolling.bit-count": 2, "version-rolling.mask": "ffffffff"}]}"#).await;
            let r = m.next_is_reply(json!(0)).await;
            m.take_configure(&r);
            m.send(r#"{"id": 1, "method": "mining.subscribe", "params": ["bmminer/2.0.0"]}"#)
                .await;
            let r = m.next_is_reply(json!(1)).await;
            m.take_subscribe(&r);
            m.send(&format!(
                r#"{{"id": 2, "method": "mining.authorize", "params": ["{worker}", "x"]}}"#
            ))
            .await;
            m.reply(json!(2)).await;
        }
        "antminer" => {
            m.send(r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"ffffffff","version-rolling.min-bit-count":2}]}"#).await;
            let r = m.next_is_reply(json!(1)).await;
            m.take_configure(&r);
            m.send(
                r#"{"id":2,"method":"mining.subscribe","params":["antminer_s19/Tue Jan 10 2023"]}"#,
            )
            .await;
            let r = m.next_is_reply(json!(2)).await;
            m.take_subscribe(&r);
            assert!(m.extranonce2_size <= 8);
            m.send(&format!(
                r#"{{"id":3,"method":"mining.authorize","params":["{worker}","x"]}}"#
            ))
            .await;
            m.reply(json!(3)).await;
        }
        other => panic!("no shape {other}"),
    }
    m.jobs_at_least(1).await;
    m
}

fn submit_line(shape: &Shape, id: u64, worker: &str, base: u32, s: &Solved) -> String {
    let nonce = if shape.unpadded_nonce {
        format!("{:x}", s.nonce)
    } else {
        format!("{:08x}", s.nonce)
    };
    let mut params = vec![
        json!(worker),
        json!(s.job_id),
        json!(hex::encode(&s.extranonce2)),
        json!(format!("{:08x}", s.ntime)),
        json!(nonce),
    ];
    let mask = 0x1fff_e000u32;
    let sixth = match shape.form {
        SubmitForm::NoVersion => None,
        SubmitForm::Xor => Some(s.version ^ base),
        SubmitForm::Masked => Some(s.version & mask),
        SubmitForm::AndNotBase => Some(s.version & !base),
        SubmitForm::FullAndMask => Some(s.version & 0x1fff_e000),
    };
    if let Some(v) = sixth {
        params.push(json!(format!("{v:08x}")));
    }
    json!({"id": id, "method": "mining.submit", "params": params}).to_string()
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "esp-miner",
        form: SubmitForm::Xor,
        unpadded_nonce: false,
        fixed_submit_id: None,
    },
    Shape {
        name: "nerdqaxe",
        form: SubmitForm::Xor,
        unpadded_nonce: false,
        fixed_submit_id: None,
    },
    Shape {
        name: "nerdminer",
        form: SubmitForm::NoVersion,
        unpadded_nonce: true,
        fixed_submit_id: None,
    },
    Shape {
        name: "cgminer",
        form: SubmitForm::Masked,
        unpadded_nonce: false,
        fixed_submit_id: None,
    },
    Shape {
        name: "cpuminer",
        form: SubmitForm::NoVersion,
        unpadded_nonce: false,
        fixed_submit_id: Some(4),
    },
    Shape {
        name: "braiins-translator",
        form: SubmitForm::FullAndMask,
        unpadded_nonce: false,
        fixed_submit_id: None,
    },
    Shape {
        name: "braiins-bmminer",
        form: SubmitForm::Masked,
        unpadded_nonce: false,
        fixed_submit_id: None,
    },
    Shape {
        name: "antminer",
        form: SubmitForm::AndNotBase,
        unpadded_nonce: false,
        fixed_submit_id: None,
    },
];

#[tokio::test]
async fn miners_of_every_shape_mine_blocks_the_node_accepts() {
    let node = common::node(&[]).await;
    let rpc = node.rpc().unwrap();
    let (address, _) = common::address("P2WPKH");
    let journal = tempfile::tempdir().unwrap();
    // Regtest: difficulties far below 1 so that the test miners find shares in milliseconds;
    // the suggestions real firmwares send (1000, 512) are held to the maximum.
    let stratum = "[stratum]\nlisten = \"127.0.0.1:0\"\nstart_difficulty = 0.0000001\nmax_difficulty = 0.000001\n";
    let config = common::config_for(&node, &address.to_string(), journal.path(), stratum);
    let daemon = Daemon::start(config).await.unwrap();
    let addr = daemon.stratum_addr.unwrap();
    let mut events = daemon.events.subscribe();

    for (i, shape) in SHAPES.iter().enumerate() {
        let mut m = connect(shape, addr).await;
        let worker = format!("bcrt1qexample.{}", shape.name);
        let device = format!("stratum:{worker}");
        // Two blocks each: the second on the new tip that the first one made.
        for round in 0..2u32 {
            let tips_seen = m.jobs.len();
            let job = m.jobs.last().unwrap().clone();
            let en2 = {
                let mut e = vec![0u8; m.extranonce2_size];
                e[0] = i as u8;
                e[m.extranonce2_size - 1] = round as u8;
                e
            };
            let rolled_bits = if matches!(shape.form, SubmitForm::NoVersion) {
                0
            } else {
                0x0000_4000 << (i % 4)
            };
            let solved = m.solve(&en2, rolled_bits, 0);
            let id = shape.fixed_submit_id.unwrap_or(100 + u64::from(round));
            m.send(&submit_line(shape, id, &worker, job.version, &solved))
                .await;
            let r = m.reply(json!(id)).await;
            assert_eq!(r["result"], json!(true), "{}: {r}", shape.name);
            let accepted = common::wait_event(
                &mut events,
                Duration::from_secs(60),
                "the stratum miner's block on chain",
                |e| matches!(e, Event::BlockAccepted { device: d, .. } if *d == device),
            )
            .await;
            let Event::BlockAccepted { hash, .. } = accepted else {
                unreachable!()
            };
            // The node has it, with the miner's nonce, and the coinbase pays the daemon.
            let block = common::call(&rpc, "getblock", json!([hash.to_string(), 2])).await;
            assert_eq!(block["nonce"], json!(solved.nonce), "{}", shape.name);
            assert_eq!(
                u32::from_str_radix(block["versionHex"].as_str().unwrap(), 16).unwrap(),
                solved.version,
                "{}",
                shape.name
            );
            let coinbase = &block["tx"][0];
            assert_eq!(
                coinbase["vout"][0]["scriptPubKey"]["address"],
                json!(address.to_string()),
                "{}",
                shape.name
            );
            // The next tip's job arrives clean.
            m.jobs_at_least(tips_seen + 1).await;
            while m.jobs.last().unwrap().prev == job.prev {
                m.jobs_at_least(m.jobs.len() + 1).await;
            }
            assert!(m.jobs.last().unwrap().clean, "{}", shape.name);
        }
    }
    let stats = daemon.stats.snapshot();
    for shape in SHAPES {
        let name = format!("stratum:bcrt1qexample.{}", shape.name);
        let d = stats.iter().find(|d| d.name == name).unwrap();
        assert!(d.blocks_accepted >= 2, "{name}: {d:?}");
        assert_eq!(d.rejected, 0, "{name}");
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_miner_whose_line_is_refused_does_not_hold_up_the_others() {
    // Sanity for the pipeline under a mixed crowd: a miner that only sends garbage is dropped
    // while another keeps mining blocks.
    let node = common::node(&[]).await;
    let (address, _) = common::address("P2TR");
    let journal = tempfile::tempdir().unwrap();
    let stratum = "[stratum]\nlisten = \"127.0.0.1:0\"\nstart_difficulty = 0.0000001\nmax_difficulty = 0.000001\nhandshake_timeout_secs = 1\n";
    let config = common::config_for(&node, &address.to_string(), journal.path(), stratum);
    let daemon = Daemon::start(config).await.unwrap();
    let addr = daemon.stratum_addr.unwrap();
    let mut events = daemon.events.subscribe();
    let mut garbage = Miner::connect(addr).await;
    for _ in 0..200 {
        if garbage.write_raw(b"{{{{not json\n").await.is_err() {
            break;
        }
    }
    assert!(garbage.closed_within(Duration::from_secs(5)).await);
    let shape = SHAPES[0];
    let mut m = connect(&shape, addr).await;
    let job = m.jobs.last().unwrap().clone();
    let solved = m.solve(&[9, 9, 9, 9], 0x2000, 0);
    m.send(&submit_line(&shape, 50, "w", job.version, &solved))
        .await;
    assert_eq!(m.reply(json!(50)).await["result"], json!(true));
    common::accepted_blocks(&mut events, 1, Duration::from_secs(60)).await;
    let _: Value = json!(null);
    daemon.shutdown().await;
}
