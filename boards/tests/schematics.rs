//! Every board definition with a `[schematic]` section agrees with its committed KiCad
//! netlists; broken copies of the definition and of the netlists are caught, each naming
//! what is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod netlist;

use std::path::PathBuf;

use hearth_boards::{Board, boards_dir, load_all};
use netlist::{Netlist, Node, check};

fn schematics_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schematics")
}

fn netlists(board: &Board) -> Vec<(String, Netlist)> {
    let schematic = board.schematic.as_ref().expect("a [schematic] section");
    schematic
        .designs
        .iter()
        .map(|d| {
            let path = schematics_dir().join(d).join(format!("{d}.netlist.xml"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let n = Netlist::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (d.clone(), n)
        })
        .collect()
}

fn assembled() -> Board {
    load_all(&boards_dir())
        .unwrap()
        .into_iter()
        .find(|b| b.board.id == "hearth-bm1370-r1")
        .unwrap()
}

#[test]
fn every_board_agrees_with_its_schematics() {
    let boards = load_all(&boards_dir()).unwrap();
    let mut checked = 0;
    for board in boards.iter().filter(|b| b.schematic.is_some()) {
        let problems = check(board, netlists(board));
        assert!(
            problems.is_empty(),
            "{}:\n  {}",
            board.board.id,
            problems.join("\n  ")
        );
        checked += 1;
    }
    assert!(checked >= 1, "no board has a [schematic] section");
}

fn problems_with(
    edit_board: impl FnOnce(&mut Board),
    edit_nets: impl FnOnce(&mut Vec<(String, Netlist)>),
) -> Vec<String> {
    let mut board = assembled();
    edit_board(&mut board);
    let mut nets = netlists(&board);
    edit_nets(&mut nets);
    check(&board, nets)
}

fn has(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem containing {needle:?}, got:\n  {}",
        problems.join("\n  ")
    );
}

/// Moves a pin from whatever net it is on to `net` (created if new).
fn rewire(nets: &mut [(String, Netlist)], design: &str, part: &str, pin: &str, net: &str) {
    let n = &mut nets.iter_mut().find(|(d, _)| d == design).unwrap().1;
    let mut moved: Option<Node> = None;
    for nodes in n.nets.values_mut() {
        if let Some(i) = nodes.iter().position(|x| x.part == part && x.pin == pin) {
            moved = Some(nodes.remove(i));
        }
    }
    let node = moved.unwrap_or_else(|| panic!("{design}:{part}.{pin} is on no net"));
    n.nets.entry(net.to_string()).or_default().push(node);
}

#[test]
fn a_broken_board_definition_is_caught() {
    let p = problems_with(
        |b| {
            b.asic.count = 2;
            b.asic.tx_pin = 12;
            b.asic.reset_pin = 30;
            b.i2c.devices[2].address = 0x41;
        },
        |_| {},
    );
    has(
        &p,
        "asic: the board says 2 x BM1370, the schematics have 1 (hearth-single-1370:U1)",
    );
    has(&p, "asic.tx_pin = 12: GPIO 12 is on");
    has(&p, "does not reach the CI pin of any BM1370");
    has(&p, "asic.reset_pin = 30: hearth-bridge:U1 has no pin GP30");
    has(
        &p,
        "i2c device INA260 (hearth-single-1370:U4): the board says 0x41, its straps give 0x40",
    );
}

#[test]
fn a_broken_schematic_is_caught() {
    let p = problems_with(
        |_| {},
        |nets| {
            // The chip's CI left unconnected.
            rewire(
                nets,
                "hearth-single-1370",
                "U1",
                "6",
                "unconnected-(U1-CI-Pad6)",
            );
            // The INA260's A0 strapped to SCL: 0x43.
            rewire(nets, "hearth-single-1370", "U4", "5", "/I2C_SCL");
            // No pull-down on the regulator enable on either board.
            rewire(nets, "hearth-bridge", "R4", "2", "/R4_OPEN");
            rewire(nets, "hearth-single-1370", "R1", "2", "/R1_OPEN");
            // The EMC2101's clock on a wrong net.
            rewire(nets, "hearth-single-1370", "U3", "8", "/FAN_TACH");
            // The regulator's address strap grounded: 0x7F.
            rewire(nets, "hearth-single-1370", "U2", "31", "/GND");
        },
    );
    has(
        &p,
        "asic.tx_pin = 8: GPIO 8 is on hearth-bridge:MCU_TX, which does not reach the CI pin of any BM1370",
    );
    has(&p, "the board says 0x40, its straps give 0x43");
    has(&p, "no pull-down resistor to GND on the enable line");
    has(
        &p,
        "i2c device EMC2101 (hearth-single-1370:U3): its SMCLK is not on the MCU's SCL",
    );
    has(
        &p,
        "i2c device TPS546D24A (hearth-single-1370:U2): the board says 0x24, its straps give 0x7F",
    );
}

#[test]
fn nets_are_followed_across_the_connector_and_through_the_translator() {
    // Unmate the connector: nothing on the hashboard is reachable any more.
    let mut board = assembled();
    board.schematic.as_mut().unwrap().joins.clear();
    let p = check(&board, netlists(&board));
    has(&p, "does not reach the CI pin of any BM1370");
    has(&p, "does not reach the EN/UVLO pin of any TPS546D24A");
    has(&p, "its SMDATA is not on the MCU's SDA");
    // A swapped connector pin pair (CI and RO crossed on the hashboard side).
    let p = problems_with(
        |_| {},
        |nets| {
            rewire(nets, "hearth-single-1370", "J1", "10", "/CHAIN_RO_X");
            rewire(nets, "hearth-single-1370", "J1", "12", "/CHAIN_CI");
            rewire(nets, "hearth-single-1370", "J1", "10", "/CHAIN_RO");
        },
    );
    assert!(
        p.iter().any(|x| x.contains("reach the CI pin"))
            && p.iter().any(|x| x.contains("reach the RO pin")),
        "crossed chain lines must be caught: {p:?}"
    );
}

#[test]
fn a_committed_netlist_that_does_not_parse_is_named() {
    let e = Netlist::parse("<export><components/></export>").unwrap_err();
    assert!(e.contains("no parts"), "{e}");
    assert!(
        Netlist::parse("not xml")
            .unwrap_err()
            .contains("not a netlist")
    );
}
