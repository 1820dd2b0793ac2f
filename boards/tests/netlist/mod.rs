//! Cross-checks a board definition (`boards/*.toml`) against the KiCad netlists of the
//! boards it is built from (`schematics/<design>/<design>.netlist.xml`, exported by kicad-cli
//! and committed), so that firmware, daemon and hardware cannot drift apart. No KiCad needed.
//!
//! Nets are followed the way the signal goes: across 0 Ω links and net ties (one net),
//! across mated board-to-board connectors (pin n to pin n), and through the buffers and level
//! translators in [`PASS_THROUGH`] (input channel to output channel).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use hearth_boards::Board;

/// One part of a netlist.
#[derive(Debug, Clone)]
pub struct Part {
    /// Value field.
    pub value: String,
    /// Symbol name (the netlist's `libsource part`).
    pub symbol: String,
}

/// One pin on a net.
#[derive(Debug, Clone)]
pub struct Node {
    pub part: String,
    pub pin: String,
    /// Pin name from the symbol (`pinfunction`), e.g. "GP8" or "EN/UVLO".
    pub function: String,
}

/// A kicad-cli `kicadxml` netlist.
#[derive(Debug, Clone, Default)]
pub struct Netlist {
    pub parts: BTreeMap<String, Part>,
    /// Net name → pins.
    pub nets: BTreeMap<String, Vec<Node>>,
}

impl Netlist {
    pub fn parse(xml: &str) -> Result<Netlist, String> {
        let doc = roxmltree::Document::parse(xml).map_err(|e| format!("not a netlist: {e}"))?;
        let mut out = Netlist::default();
        for comp in doc.descendants().filter(|n| n.has_tag_name("comp")) {
            let reference = comp.attribute("ref").ok_or("a <comp> without ref")?;
            let child_text = |tag: &str| {
                comp.children()
                    .find(|c| c.has_tag_name(tag))
                    .and_then(|c| c.text())
                    .unwrap_or_default()
                    .to_string()
            };
            let symbol = comp
                .children()
                .find(|c| c.has_tag_name("libsource"))
                .and_then(|c| c.attribute("part"))
                .unwrap_or_default()
                .to_string();
            out.parts.insert(
                reference.to_string(),
                Part {
                    value: child_text("value"),
                    symbol,
                },
            );
        }
        for net in doc.descendants().filter(|n| n.has_tag_name("net")) {
            let name = net.attribute("name").ok_or("a <net> without name")?;
            let nodes = net
                .children()
                .filter(|c| c.has_tag_name("node"))
                .map(|c| Node {
                    part: c.attribute("ref").unwrap_or_default().to_string(),
                    pin: c.attribute("pin").unwrap_or_default().to_string(),
                    function: c.attribute("pinfunction").unwrap_or_default().to_string(),
                })
                .collect();
            out.nets.insert(name.to_string(), nodes);
        }
        if out.parts.is_empty() {
            return Err("the netlist has no parts".into());
        }
        Ok(out)
    }
}

/// Parts a signal passes through: symbol → (pin, pin) channel pairs by pin name.
pub const PASS_THROUGH: &[(&str, &[(&str, &str)])] = &[
    (
        "TXB0104D",
        &[("A1", "B1"), ("A2", "B2"), ("A3", "B3"), ("A4", "B4")],
    ),
    (
        "SN74AVC4T774",
        &[("A1", "B1"), ("A2", "B2"), ("A3", "B3"), ("A4", "B4")],
    ),
    ("SN74LVC1G07DBV", &[("A", "Y")]),
];

/// The bus pins of each I2C part the firmware drives: (data, clock).
const BUS_PINS: &[(&str, &str, &str)] = &[
    ("EMC2101", "SMDATA", "SMCLK"),
    ("TPS546D24A", "PMB_DATA", "PMB_CLK"),
    ("INA260", "SDA", "SCL"),
];

/// A part in one of the designs.
type PartId = (usize, String);

/// Several netlists joined into one circuit.
pub struct Assembly {
    pub designs: Vec<(String, Netlist)>,
    /// (design, net) → electrical group (union-find root after `build`).
    group: HashMap<(usize, String), usize>,
    parent: Vec<usize>,
    /// Group of every pin: (design, part, pin number).
    pins: HashMap<(usize, String, String), usize>,
}

impl Assembly {
    pub fn new(designs: Vec<(String, Netlist)>) -> Assembly {
        let mut a = Assembly {
            designs,
            group: HashMap::new(),
            parent: Vec::new(),
            pins: HashMap::new(),
        };
        for d in 0..a.designs.len() {
            let nets: Vec<(String, Vec<Node>)> = a.designs[d]
                .1
                .nets
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            for (name, nodes) in nets {
                let id = a.parent.len();
                a.parent.push(id);
                a.group.insert((d, name), id);
                for node in nodes {
                    a.pins.insert((d, node.part, node.pin), id);
                }
            }
        }
        // 0 Ω links and net ties are one net.
        for d in 0..a.designs.len() {
            let links: Vec<String> = a.designs[d]
                .1
                .parts
                .iter()
                .filter(|(_, p)| {
                    p.symbol.starts_with("NetTie")
                        || (p.symbol == "R"
                            && matches!(p.value.as_str(), "0" | "0R" | "0Ω" | "0 Ω"))
                })
                .map(|(r, _)| r.clone())
                .collect();
            for r in links {
                let groups: Vec<usize> = a.pins_of(d, &r).into_iter().map(|(_, g)| g).collect();
                for g in groups.windows(2) {
                    a.union(g[0], g[1]);
                }
            }
        }
        a
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        self.parent[ra] = rb;
    }

    /// Every pin of a part: (pin number, group).
    fn pins_of(&self, design: usize, part: &str) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = self
            .pins
            .iter()
            .filter(|((d, p, _), _)| *d == design && p == part)
            .map(|((_, _, pin), g)| (pin.clone(), *g))
            .collect();
        out.sort();
        out
    }

    pub fn design_index(&self, name: &str) -> Option<usize> {
        self.designs.iter().position(|(n, _)| n == name)
    }

    /// Resolves `"<design>:<ref>"`.
    pub fn resolve(&self, spec: &str) -> Result<PartId, String> {
        let (design, reference) = spec
            .split_once(':')
            .ok_or_else(|| format!("{spec:?}: expected \"<design>:<reference>\""))?;
        let d = self
            .design_index(design)
            .ok_or_else(|| format!("{spec:?}: {design} is not one of the board's designs"))?;
        if !self.designs[d].1.parts.contains_key(reference) {
            return Err(format!("{spec:?}: {design} has no part {reference}"));
        }
        Ok((d, reference.to_string()))
    }

    /// Mates two connectors pin for pin.
    pub fn join(&mut self, a: &str, b: &str) -> Result<(), String> {
        let (da, ra) = self.resolve(a)?;
        let (db, rb) = self.resolve(b)?;
        let pa = self.pins_of(da, &ra);
        let pb: BTreeMap<String, usize> = self.pins_of(db, &rb).into_iter().collect();
        if pa.len() != pb.len() {
            return Err(format!(
                "{a} has {} pins and {b} {}: they cannot mate",
                pa.len(),
                pb.len()
            ));
        }
        for (pin, ga) in pa {
            let gb = *pb
                .get(&pin)
                .ok_or_else(|| format!("{b} has no pin {pin} to meet {a} pin {pin}"))?;
            self.union(ga, gb);
        }
        Ok(())
    }

    /// The group of a part's pin found by its name (the first, for repeated names).
    fn pin_named(&mut self, part: &PartId, name: &str) -> Option<usize> {
        let (d, r) = part;
        let found = self.designs[*d]
            .1
            .nets
            .values()
            .flatten()
            .find(|n| &n.part == r && n.function == name)
            .map(|n| n.pin.clone())?;
        let g = *self.pins.get(&(*d, r.clone(), found))?;
        Some(self.find(g))
    }

    /// Every part whose symbol is `symbol`.
    pub fn parts_with_symbol(&self, symbol: &str) -> Vec<PartId> {
        let mut out = Vec::new();
        for (d, (_, n)) in self.designs.iter().enumerate() {
            for (r, p) in &n.parts {
                if p.symbol == symbol {
                    out.push((d, r.clone()));
                }
            }
        }
        out
    }

    pub fn label(&self, part: &PartId) -> String {
        format!("{}:{}", self.designs[part.0].0, part.1)
    }

    /// Net names in a group, for messages.
    fn group_names(&mut self, g: usize) -> String {
        let root = self.find(g);
        let keys: Vec<(usize, String)> = self.group.keys().cloned().collect();
        let mut names = BTreeSet::new();
        for (d, n) in keys {
            let id = self.group[&(d, n.clone())];
            if self.find(id) == root {
                names.insert(format!(
                    "{}:{}",
                    self.designs[d].0,
                    n.trim_start_matches('/')
                ));
            }
        }
        names.into_iter().collect::<Vec<_>>().join(" = ")
    }

    /// Groups reachable from `start` through pass-through parts.
    fn reach(&mut self, start: usize) -> BTreeSet<usize> {
        let mut channels: Vec<(usize, usize)> = Vec::new();
        for (symbol, pairs) in PASS_THROUGH {
            for part in self.parts_with_symbol(symbol) {
                for (a, b) in pairs.iter() {
                    if let (Some(ga), Some(gb)) =
                        (self.pin_named(&part, a), self.pin_named(&part, b))
                    {
                        channels.push((ga, gb));
                    }
                }
            }
        }
        let start = self.find(start);
        let mut seen = BTreeSet::from([start]);
        let mut queue = VecDeque::from([start]);
        while let Some(g) = queue.pop_front() {
            for &(a, b) in &channels {
                let next = if a == g {
                    b
                } else if b == g {
                    a
                } else {
                    continue;
                };
                if seen.insert(next) {
                    queue.push_back(next);
                }
            }
        }
        seen
    }

    fn is_ground(&mut self, g: usize) -> bool {
        let root = self.find(g);
        let grounds: Vec<usize> = self
            .group
            .iter()
            .filter(|((_, n), _)| n.trim_start_matches('/') == "GND")
            .map(|(_, id)| *id)
            .collect();
        grounds.into_iter().any(|id| self.find(id) == root)
    }

    fn is_unconnected(&mut self, g: usize) -> bool {
        let root = self.find(g);
        let keys: Vec<((usize, String), usize)> =
            self.group.iter().map(|(k, v)| (k.clone(), *v)).collect();
        keys.into_iter()
            .filter(|(_, id)| self.find(*id) == root)
            .all(|((_, n), _)| n.starts_with("unconnected-"))
    }
}

/// The MCU pin for GPIO `n`: "GP8" on a Pico module, "GPIO8" on a bare RP2040.
fn gpio_names(n: u8) -> [String; 2] {
    [format!("GP{n}"), format!("GPIO{n}")]
}

/// Everything wrong between a board definition and its designs (empty = consistent).
pub fn check(board: &Board, designs: Vec<(String, Netlist)>) -> Vec<String> {
    let mut p = Vec::new();
    let Some(schematic) = &board.schematic else {
        return vec!["the board has no [schematic] section".into()];
    };
    let mut a = Assembly::new(designs);
    for [x, y] in &schematic.joins {
        if let Err(e) = a.join(x, y) {
            p.push(format!("schematic.joins: {e}"));
        }
    }
    // The chips.
    let chips = a.parts_with_symbol(&board.asic.model);
    if chips.len() != usize::from(board.asic.count) {
        p.push(format!(
            "asic: the board says {} x {}, the schematics have {} ({})",
            board.asic.count,
            board.asic.model,
            chips.len(),
            chips
                .iter()
                .map(|c| a.label(c))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mcu = match a.resolve(&schematic.mcu) {
        Ok(m) => m,
        Err(e) => {
            p.push(format!("schematic.mcu: {e}"));
            return p;
        }
    };
    let gpio = |a: &mut Assembly, key: &str, n: u8, p: &mut Vec<String>| -> Option<usize> {
        let names = gpio_names(n);
        let found = names.iter().find_map(|name| a.pin_named(&mcu, name));
        if found.is_none() {
            p.push(format!(
                "{key} = {n}: {} has no pin {}",
                a.label(&mcu),
                names[0]
            ));
        }
        found
    };
    // Each MCU pin must reach the pin that does its job.
    let must_reach = |a: &mut Assembly,
                      key: &str,
                      n: u8,
                      symbol: &str,
                      pin: &str,
                      p: &mut Vec<String>| {
        let Some(start) = gpio(a, key, n, p) else {
            return;
        };
        let reached = a.reach(start);
        let targets: Vec<PartId> = a.parts_with_symbol(symbol);
        let hit = targets
            .iter()
            .any(|t| a.pin_named(t, pin).is_some_and(|g| reached.contains(&g)));
        if !hit {
            let names = a.group_names(start);
            p.push(format!(
                    "{key} = {n}: GPIO {n} is on {names}, which does not reach the {pin} pin of any {symbol}"
                ));
        }
    };
    let model = board.asic.model.clone();
    must_reach(
        &mut a,
        "asic.tx_pin",
        board.asic.tx_pin,
        &model,
        "CI",
        &mut p,
    );
    must_reach(
        &mut a,
        "asic.rx_pin",
        board.asic.rx_pin,
        &model,
        "RO",
        &mut p,
    );
    must_reach(
        &mut a,
        "asic.reset_pin",
        board.asic.reset_pin,
        &model,
        "NRSTI",
        &mut p,
    );
    must_reach(
        &mut a,
        "power.enable_pin",
        board.power.enable_pin,
        "TPS546D24A",
        "EN/UVLO",
        &mut p,
    );
    must_reach(
        &mut a,
        "fan.pwm_pin",
        board.fan.pwm_pin,
        "Fan_4pin",
        "PWM",
        &mut p,
    );
    // The enable line is pulled down: the rail is off whenever the MCU is not driving it.
    if let Some(en) = gpio(
        &mut a,
        "power.enable_pin",
        board.power.enable_pin,
        &mut Vec::new(),
    ) {
        let en = a.find(en);
        let resistors = a.parts_with_symbol("R");
        let pulled = resistors.iter().any(|r| {
            let gs: Vec<usize> = a.pins_of(r.0, &r.1).into_iter().map(|(_, g)| g).collect();
            let roots: Vec<usize> = gs.iter().map(|g| a.find(*g)).collect();
            roots.len() == 2
                && ((roots[0] == en && a.is_ground(roots[1]))
                    || (roots[1] == en && a.is_ground(roots[0])))
        });
        if !pulled {
            p.push(format!(
                "power.enable_pin = {}: no pull-down resistor to GND on the enable line",
                board.power.enable_pin
            ));
        }
    }
    // I2C: every device on the bus, at the address its straps give.
    let sda = gpio(&mut a, "i2c.sda_pin", board.i2c.sda_pin, &mut p).map(|g| a.find(g));
    let scl = gpio(&mut a, "i2c.scl_pin", board.i2c.scl_pin, &mut p).map(|g| a.find(g));
    let mut derived: BTreeMap<u8, String> = BTreeMap::new();
    for device in &board.i2c.devices {
        let parts = a.parts_with_symbol(&device.part);
        let [part] = parts.as_slice() else {
            p.push(format!(
                "i2c device {} at 0x{:02X}: the schematics have {} of it",
                device.part,
                device.address,
                parts.len()
            ));
            continue;
        };
        let label = a.label(part);
        let Some(&(_, data_pin, clock_pin)) = BUS_PINS.iter().find(|(s, _, _)| *s == device.part)
        else {
            p.push(format!(
                "i2c device {}: no bus pins known for it",
                device.part
            ));
            continue;
        };
        for (line, pin, want) in [("SDA", data_pin, sda), ("SCL", clock_pin, scl)] {
            let got = a.pin_named(part, pin);
            if got.is_none() || got != want {
                p.push(format!(
                    "i2c device {} ({label}): its {pin} is not on the MCU's {line}",
                    device.part
                ));
            }
        }
        match strapped_address(&mut a, part, &device.part, sda, scl) {
            Ok(address) => {
                // What the straps can give and what the board validation allows must agree.
                if !hearth_boards::strap_addresses(&device.part)
                    .is_some_and(|allowed| allowed.contains(&address))
                {
                    p.push(format!(
                        "i2c device {} ({label}): its straps give 0x{address:02X}, which \
                         hearth_boards::strap_addresses does not list for it",
                        device.part
                    ));
                }
                if address != device.address {
                    p.push(format!(
                        "i2c device {} ({label}): the board says 0x{:02X}, its straps give 0x{address:02X}",
                        device.part, device.address
                    ));
                }
                if let Some(other) = derived.insert(address, label.clone()) {
                    p.push(format!(
                        "i2c address 0x{address:02X} is used by both {other} and {label}"
                    ));
                }
            }
            Err(e) => p.push(format!("i2c device {} ({label}): {e}", device.part)),
        }
    }
    // The translator's chip side runs from the chips' IO rail.
    for translator in a.parts_with_symbol("TXB0104D") {
        let vcca = a.pin_named(&translator, "VCCA");
        for chip in &chips {
            let io = a.pin_named(chip, "VDDIO_12_0");
            if io.is_some() && vcca != io {
                p.push(format!(
                    "{}: VCCA is not the chips' IO rail ({} VDDIO_12_0)",
                    a.label(&translator),
                    a.label(chip)
                ));
            }
        }
    }
    // The core regulator senses the chips' rail itself, with no divider: its internal
    // divider (VOUT_SCALE_LOOP, written by the firmware) sets the range.
    for vr in a.parts_with_symbol("TPS546D24A") {
        let sense = a.pin_named(&vr, "VOSNS");
        for chip in &chips {
            if sense != a.pin_named(chip, "VDD") {
                p.push(format!(
                    "{}: VOSNS does not sense {} VDD directly",
                    a.label(&vr),
                    a.label(chip)
                ));
            }
        }
    }
    p
}

/// The 7-bit address a part's straps select.
fn strapped_address(
    a: &mut Assembly,
    part: &PartId,
    symbol: &str,
    sda: Option<usize>,
    scl: Option<usize>,
) -> Result<u8, String> {
    match symbol {
        // Fixed (EMC2101 datasheet: SMBus address 0x4C for the -R variant).
        "EMC2101" => Ok(0x4C),
        // INA260 datasheet table 2: A1 and A0 each to GND, VS, SDA or SCL.
        "INA260" => {
            let vs = a.pin_named(part, "VS");
            let mut code = |pin: &str| -> Result<u8, String> {
                let g = a
                    .pin_named(part, pin)
                    .ok_or_else(|| format!("{pin} is not connected"))?;
                let g = a.find(g);
                if a.is_ground(g) {
                    Ok(0)
                } else if Some(g) == vs {
                    Ok(1)
                } else if Some(g) == sda {
                    Ok(2)
                } else if Some(g) == scl {
                    Ok(3)
                } else {
                    Err(format!(
                        "{pin} is on {}: not GND, VS, SDA or SCL",
                        a.group_names(g)
                    ))
                }
            };
            Ok(0x40 + 4 * code("A1")? + code("A0")?)
        }
        // TPS546D24A ADRSEL (TPS546D24S datasheet SLUSF26 §7.5.2.4, the D24A's pin
        // strapping): open = the address in NVM, 0x24 from the factory; shorted to AGND =
        // 0x7F. A resistor strap would need its value table.
        "TPS546D24A" => {
            let g = a
                .pin_named(part, "ADRSEL")
                .ok_or("no ADRSEL pin in the netlist")?;
            if a.is_unconnected(g) {
                Ok(0x24)
            } else if a.is_ground(g) {
                Ok(0x7F)
            } else {
                Err(format!(
                    "ADRSEL is on {}: resistor straps are not decoded; leave it open (0x24)",
                    a.group_names(g)
                ))
            }
        }
        other => Err(format!("no strap rule for {other}")),
    }
}
