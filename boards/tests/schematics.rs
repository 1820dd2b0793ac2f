//! Every board definition with a `[schematic]` section agrees with its committed KiCad
//! netlists; broken copies of the definition and of the netlists are caught, each naming
//! what is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod netlist;

use std::path::PathBuf;

use hearth_boards::{Board, boards_dir, load_all};
use netlist::{Netlist, Node, Part, check};

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

/// Board definitions that are not drawn in this repository, each with the reason. Every other
/// board must have a `[schematic]` section: leaving it out must not skip the cross-check.
/// (Today every board in boards/ is drawn here, so the list is empty.)
const NOT_DRAWN_HERE: &[(&str, &str)] = &[];

/// Boards that would escape the cross-check: no `[schematic]` and no listed reason, or a
/// listed reason that no longer applies.
fn unchecked_boards(boards: &[Board], not_drawn_here: &[(&str, &str)]) -> Vec<String> {
    let mut p = Vec::new();
    for board in boards {
        let id = board.board.id.as_str();
        let listed = not_drawn_here.iter().any(|(x, _)| *x == id);
        match (&board.schematic, listed) {
            (None, false) => p.push(format!(
                "{id}: no [schematic] section, so nothing checks it against a design: add one, \
                 or list it in NOT_DRAWN_HERE (boards/tests/schematics.rs) with the reason"
            )),
            (Some(_), true) => p.push(format!(
                "{id}: listed in NOT_DRAWN_HERE but has a [schematic] section: take it off the list"
            )),
            _ => {}
        }
    }
    for (id, _) in not_drawn_here {
        if !boards.iter().any(|b| b.board.id == *id) {
            p.push(format!(
                "NOT_DRAWN_HERE lists {id}, which is not a board in boards/"
            ));
        }
    }
    p
}

#[test]
fn every_board_agrees_with_its_schematics() {
    let boards = load_all(&boards_dir()).unwrap();
    let unchecked = unchecked_boards(&boards, NOT_DRAWN_HERE);
    assert!(unchecked.is_empty(), "{}", unchecked.join("\n"));
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

#[test]
fn a_board_without_a_schematic_needs_a_reason() {
    let mut bare = assembled();
    bare.schematic = None;
    let p = unchecked_boards(std::slice::from_ref(&bare), &[]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("hearth-bm1370-r1: no [schematic] section"));
    let listed = [("hearth-bm1370-r1", "a bought board")];
    assert!(unchecked_boards(std::slice::from_ref(&bare), &listed).is_empty());
    // A reason that no longer applies is stale.
    let p = unchecked_boards(&[assembled()], &listed);
    assert!(p[0].contains("take it off the list"), "{p:?}");
    let p = unchecked_boards(&[], &listed);
    assert!(p[0].contains("not a board in boards/"), "{p:?}");
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

const HASHBOARD: &str = "hearth-single-1370";
const BRIDGE: &str = "hearth-bridge";

fn design<'a>(nets: &'a mut [(String, Netlist)], design: &str) -> &'a mut Netlist {
    &mut nets.iter_mut().find(|(d, _)| d == design).unwrap().1
}

/// The pin number of `part`'s pin named `function` (e.g. "CI").
fn pin(nets: &mut [(String, Netlist)], on: &str, part: &str, function: &str) -> String {
    design(nets, on)
        .nets
        .values()
        .flatten()
        .find(|n| n.part == part && n.function == function)
        .unwrap_or_else(|| panic!("{on}:{part} has no pin {function}"))
        .pin
        .clone()
}

/// The net `part`'s pin named `function` is on.
fn net_of(nets: &mut [(String, Netlist)], on: &str, part: &str, function: &str) -> String {
    design(nets, on)
        .nets
        .iter()
        .find(|(_, nodes)| {
            nodes
                .iter()
                .any(|n| n.part == part && n.function == function)
        })
        .unwrap_or_else(|| panic!("{on}:{part}.{function} is on no net"))
        .0
        .clone()
}

/// Moves the pin named `function` to `net`.
fn rewire_named(nets: &mut [(String, Netlist)], on: &str, part: &str, function: &str, net: &str) {
    let number = pin(nets, on, part, function);
    rewire(nets, on, part, &number, net);
}

/// Adds a two-pin part (a resistor, a 0 Ω link, a net tie) between nets `a` and `b`.
fn add_two_pin(
    nets: &mut [(String, Netlist)],
    on: &str,
    reference: &str,
    (symbol, value): (&str, &str),
    a: &str,
    b: &str,
) {
    let n = design(nets, on);
    n.parts.insert(
        reference.to_string(),
        Part {
            value: value.to_string(),
            symbol: symbol.to_string(),
        },
    );
    for (pin, net) in [("1", a), ("2", b)] {
        n.nets.entry(net.to_string()).or_default().push(Node {
            part: reference.to_string(),
            pin: pin.to_string(),
            function: String::new(),
        });
    }
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

#[test]
fn two_devices_strapped_to_one_address_are_caught() {
    // The INA260's A1 on SCL instead of GND: 0x40 + 4·3 + 0 = 0x4C, the EMC2101's address.
    let a1_on_scl = |nets: &mut Vec<(String, Netlist)>| {
        let scl = net_of(nets, HASHBOARD, "U4", "SCL");
        rewire_named(nets, HASHBOARD, "U4", "A1", &scl);
    };
    let p = problems_with(|_| {}, a1_on_scl);
    has(
        &p,
        "i2c device INA260 (hearth-single-1370:U4): the board says 0x40, its straps give 0x4C",
    );
    has(
        &p,
        "i2c address 0x4C is used by both hearth-single-1370:U3 and hearth-single-1370:U4",
    );
    // With the board file agreeing with the straps, the clash is still caught on its own.
    let p = problems_with(|b| b.i2c.devices[2].address = 0x4C, a1_on_scl);
    assert!(!p.iter().any(|x| x.contains("the board says")), "{p:?}");
    has(
        &p,
        "i2c address 0x4C is used by both hearth-single-1370:U3 and hearth-single-1370:U4",
    );
}

#[test]
fn every_address_the_straps_give_is_one_the_board_may_use() {
    // INA260: A1 and A0 each on GND, VS, SDA or SCL (datasheet table 2).
    for (a1, a1_code) in [("GND", 0u8), ("VS", 1), ("SDA", 2), ("SCL", 3)] {
        for (a0, a0_code) in [("GND", 0u8), ("VS", 1), ("SDA", 2), ("SCL", 3)] {
            let want = 0x40 + 4 * a1_code + a0_code;
            let p = problems_with(
                |b| b.i2c.devices[2].address = want,
                |nets| {
                    let net = |nets: &mut Vec<(String, Netlist)>, to: &str| match to {
                        "GND" => "/GND".to_string(),
                        function => net_of(nets, HASHBOARD, "U4", function),
                    };
                    let (n1, n0) = (net(nets, a1), net(nets, a0));
                    rewire_named(nets, HASHBOARD, "U4", "A1", &n1);
                    rewire_named(nets, HASHBOARD, "U4", "A0", &n0);
                },
            );
            assert!(
                !p.iter()
                    .any(|x| x.contains("INA260") && !x.contains("used by both")),
                "A1={a1} A0={a0} should give 0x{want:02X}: {p:?}"
            );
        }
    }
    // TPS546D24A: ADRSEL open (0x24, checked by every_board_agrees...) or on AGND (0x7F).
    let p = problems_with(
        |b| b.i2c.devices[1].address = 0x7F,
        |nets| rewire_named(nets, HASHBOARD, "U2", "ADRSEL", "/GND"),
    );
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn zero_ohm_links_and_net_ties_join_nets_but_only_where_they_go() {
    // A 0 Ω link or a net tie spliced into the chip's CI line: still one net.
    for link in [
        ("R", "0"),
        ("R", "0R"),
        ("R", "0 Ω"),
        ("NetTie_2", "NetTie"),
    ] {
        let p = problems_with(
            |_| {},
            |nets| {
                let ci = net_of(nets, HASHBOARD, "U1", "CI");
                rewire_named(nets, HASHBOARD, "U1", "CI", "/CHAIN_CI_CHIP");
                add_two_pin(nets, HASHBOARD, "R99", link, &ci, "/CHAIN_CI_CHIP");
            },
        );
        assert!(p.is_empty(), "{link:?} in the CI line: {p:?}");
    }
    // A series resistor is not a link: the line no longer reaches CI as one net.
    let p = problems_with(
        |_| {},
        |nets| {
            let ci = net_of(nets, HASHBOARD, "U1", "CI");
            rewire_named(nets, HASHBOARD, "U1", "CI", "/CHAIN_CI_CHIP");
            add_two_pin(nets, HASHBOARD, "R99", ("R", "22"), &ci, "/CHAIN_CI_CHIP");
        },
    );
    has(&p, "does not reach the CI pin of any BM1370");
    // A 0 Ω link to the wrong pin: the line goes to the chip's BI, its CI is left open.
    let p = problems_with(
        |_| {},
        |nets| {
            let ci = net_of(nets, HASHBOARD, "U1", "CI");
            let bi = net_of(nets, HASHBOARD, "U1", "BI");
            rewire_named(nets, HASHBOARD, "U1", "CI", "unconnected-(U1-CI-Pad6)");
            add_two_pin(nets, HASHBOARD, "R99", ("R", "0"), &ci, &bi);
        },
    );
    has(
        &p,
        "asic.tx_pin = 8: GPIO 8 is on hearth-bridge:MCU_TX, which does not reach the CI pin of any BM1370",
    );
}

#[test]
fn a_divider_in_the_regulator_sense_path_is_caught() {
    // VOSNS through a 10k/10k divider from the core rail: the internal divider
    // (VOUT_SCALE_LOOP) would then regulate twice the set point.
    let p = problems_with(
        |_| {},
        |nets| {
            let vcore = net_of(nets, HASHBOARD, "U1", "VDD");
            rewire_named(nets, HASHBOARD, "U2", "VOSNS", "/VOSNS_DIV");
            add_two_pin(nets, HASHBOARD, "R98", ("R", "10k"), &vcore, "/VOSNS_DIV");
            add_two_pin(nets, HASHBOARD, "R97", ("R", "10k"), "/VOSNS_DIV", "/GND");
        },
    );
    has(
        &p,
        "hearth-single-1370:U2: VOSNS does not sense hearth-single-1370:U1 VDD directly",
    );
    // Through a 0 Ω link it is still direct.
    let p = problems_with(
        |_| {},
        |nets| {
            let vcore = net_of(nets, HASHBOARD, "U1", "VDD");
            rewire_named(nets, HASHBOARD, "U2", "VOSNS", "/VOSNS_LINK");
            add_two_pin(nets, HASHBOARD, "R98", ("R", "0"), &vcore, "/VOSNS_LINK");
        },
    );
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn a_translator_off_the_chips_io_rail_is_caught() {
    // The bridge's TXB0104 chip side on the Pico's 3.3 V instead of the chips' 1.2 V IO rail.
    let p = problems_with(
        |_| {},
        |nets| {
            let v3 = net_of(nets, BRIDGE, "U2", "VCCB");
            rewire_named(nets, BRIDGE, "U2", "VCCA", &v3);
        },
    );
    has(
        &p,
        "hearth-bridge:U2: VCCA is not the chips' IO rail (hearth-single-1370:U1 VDDIO_12_0)",
    );
}
