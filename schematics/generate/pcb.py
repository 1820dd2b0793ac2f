"""Builds the .kicad_pcb from the schematic's own netlist, the way "Update PCB from
Schematic" does, then places, routes and pours it. Needs KiCad 9's `pcbnew` Python module
(Debian's python3; scripts/kicad.sh installs it).

Starting from the kicad-cli netlist means references, values, footprints, symbol paths and
net names match the schematic by construction, which DRC's schematic parity check confirms.
"""

import math
import os
import xml.etree.ElementTree as ET

import pcbnew

from .route import BLOCKED, Router, RouteError
from .sch import PROVENANCE

KICAD_FOOTPRINTS = "/usr/share/kicad/footprints"
HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT_LIB = os.path.join(os.path.dirname(HERE), "lib", "hearth.pretty")


def read_netlist(path):
    root = ET.parse(path).getroot()
    comps = {}
    for c in root.iter("comp"):
        ref = c.get("ref")
        fields = {f.get("name"): (f.text or "") for f in c.iter("field")}
        sheet = c.find("sheetpath").get("tstamps")
        comps[ref] = {
            "value": c.findtext("value"),
            "footprint": c.findtext("footprint"),
            "path": sheet + c.findtext("tstamps"),
            "fields": fields,
        }
    nets = {}
    for n in root.iter("net"):
        nets[n.get("name")] = [(node.get("ref"), node.get("pin")) for node in n.iter("node")]
    return comps, nets


def load_footprint(lib_id):
    lib, name = lib_id.split(":", 1)
    directory = PROJECT_LIB if lib == "hearth" else os.path.join(KICAD_FOOTPRINTS, lib + ".pretty")
    fp = pcbnew.FootprintLoad(directory, name)
    if fp is None:
        raise FileNotFoundError(f"footprint {lib_id} not found in {directory}")
    fp.SetFPID(pcbnew.LIB_ID(lib, name))
    return fp


def mm(v):
    return pcbnew.FromMM(v)


def pt(x, y):
    return pcbnew.VECTOR2I(mm(x), mm(y))


def build_board(design, layout, netlist_path, pcb_path, write_rules):
    # Item ids from a fixed seed: regenerating an unchanged design gives an unchanged file.
    pcbnew.KIID.SeedGenerator(1370)
    comps, nets = read_netlist(netlist_path)
    board = pcbnew.BOARD()
    # KiCad's pcbnew module writes the file (its generator says so); the title block says
    # where it comes from.
    tb = board.GetTitleBlock()
    tb.SetTitle(design.title)
    tb.SetRevision(design.revision)
    tb.SetCompany("Hearth")
    tb.SetComment(0, PROVENANCE)
    tb.SetComment(1, design.licence)
    board.SetCopperLayerCount(layout.copper_layers)
    net_items = {}
    for name in sorted(nets):
        ni = pcbnew.NETINFO_ITEM(board, name)
        board.Add(ni)
        net_items[name] = ni
    pin_net = {(ref, pin): name for name, nodes in nets.items() for ref, pin in nodes}

    parts = {p.ref: p for p in design.parts}
    footprints = {}
    for ref in sorted(comps):
        c = comps[ref]
        part = parts[ref]
        if not c["footprint"]:
            continue  # no footprint drawn yet: the schematic marks it "not on board"
        at = layout.positions.get(ref, part.at)
        if at is None:
            raise ValueError(f"{ref} has no PCB position in the design")
        fp = load_footprint(c["footprint"])
        board.Add(fp)
        fp.SetReference(ref)
        fp.SetValue(c["value"])
        fp.SetPath(pcbnew.KIID_PATH(c["path"]))
        fp.SetSheetfile(os.path.basename(pcb_path).replace(".kicad_pcb", ".kicad_sch"))
        fp.SetSheetname("")
        x, y, rot = at[:3]
        fp.SetPosition(pt(x, y))
        fp.SetOrientationDegrees(rot)
        if len(at) > 3 and at[3] == "B":
            fp.Flip(fp.GetPosition(), pcbnew.FLIP_DIRECTION_LEFT_RIGHT)
        if ref in layout.references:
            fp.Reference().SetPosition(pt(*layout.references[ref]))
        if ref in layout.fab_references:
            fp.Reference().SetLayer(pcbnew.B_Fab if fp.GetLayer() == pcbnew.B_Cu else pcbnew.F_Fab)
        for pad in fp.Pads():
            name = pin_net.get((ref, pad.GetNumber()))
            if name is not None:
                pad.SetNet(net_items[name])
        footprints[ref] = fp

    # Mounting holes: board-only footprints, outside the schematic.
    for i, (x, y) in enumerate(layout.holes, 1):
        fp = load_footprint("MountingHole:MountingHole_3.2mm_M3")
        board.Add(fp)
        fp.SetReference(f"H{i}")
        fp.SetValue("M3")
        fp.SetBoardOnly(True)
        fp.SetExcludedFromBOM(True)
        fp.SetExcludedFromPosFiles(True)
        fp.SetPosition(pt(x, y))

    # Outline.
    w, h = layout.size
    corners = [(0, 0), (w, 0), (w, h), (0, h)]
    for a, b in zip(corners, corners[1:] + corners[:1]):
        seg = pcbnew.PCB_SHAPE(board)
        seg.SetShape(pcbnew.SHAPE_T_SEGMENT)
        seg.SetStart(pt(*a))
        seg.SetEnd(pt(*b))
        seg.SetLayer(pcbnew.Edge_Cuts)
        seg.SetWidth(mm(0.1))
        board.Add(seg)

    for name, rect, *below in layout.reserved:
        add_reserved(board, name, rect, layout.copper_layers, bool(below))
    for label, rect in layout.drawings:
        add_drawing(board, label, rect)

    route(board, layout, footprints, net_items)

    for zone_spec in layout.zones:
        add_zone(board, net_items[zone_spec["net"]], zone_spec, layout)
        # A pour on the body's side of a through-hole part would join its pins where they
        # cannot be soldered (under the socket's body): keep it out from under the body.
        pour_layer = 1 if zone_spec["layer"] == "B" else 0
        for fp in tht_parts(board):
            if body_layer(fp) == pour_layer:
                add_no_pour(board, fp, pour_layer)

    for text, (x, y), size in layout.texts:
        t = pcbnew.PCB_TEXT(board)
        t.SetText(text)
        t.SetPosition(pt(x, y))
        t.SetLayer(pcbnew.F_SilkS)
        t.SetTextSize(pcbnew.VECTOR2I(mm(size), mm(size)))
        t.SetTextThickness(mm(size * 0.15))
        t.SetHorizJustify(pcbnew.GR_TEXT_H_ALIGN_LEFT)
        board.Add(t)

    pcbnew.SaveBoard(pcb_path, board)
    if layout.zones:
        # The zone filler needs a board as loaded from a file (connectivity, project
        # settings); filling the board built above crashes KiCad 9.0.8.
        write_rules()
        board = pcbnew.LoadBoard(pcb_path)
        ds = board.GetDesignSettings()
        # The filler keeps the board's own minimums; the same values as the project file.
        ds.m_MinClearance = mm(layout.clearance)
        ds.m_HoleClearance = mm(0.25)
        ds.m_CopperEdgeClearance = mm(layout.edge_clearance)
        ds.m_HoleToHoleMin = mm(0.5)
        board.BuildConnectivity()
        pcbnew.ZONE_FILLER(board).Fill(board.Zones())
        check_board(board, layout)
        pcbnew.SaveBoard(pcb_path, board)
    else:
        check_board(board, layout)
    if layout.stackup:
        write_stackup(pcb_path, layout.stackup)


def write_stackup(pcb_path, spec):
    """The layer stack-up, which KiCad keeps in the board's setup section (its Python
    module does not expose it): written into the saved file in KiCad's own layout."""
    inner = iter(("In1.Cu", "In2.Cu", "In3.Cu", "In4.Cu"))
    layers = [("F.SilkS", [("type", '"Top Silk Screen"')]),
              ("F.Paste", [("type", '"Top Solder Paste"')]),
              ("F.Mask", [("type", '"Top Solder Mask"'), ("thickness", "0.01")]),
              ("F.Cu", [("type", '"copper"'), ("thickness", f"{spec['outer_um'] / 1000:g}")])]
    for i, (kind, thickness) in enumerate(spec["dielectrics"], 1):
        layers.append((f"dielectric {i}", [("type", f'"{kind}"'), ("thickness", f"{thickness:g}"),
                                          ("material", '"FR4"'), ("epsilon_r", "4.5"), ("loss_tangent", "0.02")]))
        if i < len(spec["dielectrics"]):
            layers.append((next(inner), [("type", '"copper"'), ("thickness", f"{spec['inner_um'] / 1000:g}")]))
    layers += [("B.Cu", [("type", '"copper"'), ("thickness", f"{spec['outer_um'] / 1000:g}")]),
               ("B.Mask", [("type", '"Bottom Solder Mask"'), ("thickness", "0.01")]),
               ("B.Paste", [("type", '"Bottom Solder Paste"')]),
               ("B.SilkS", [("type", '"Bottom Silk Screen"')])]
    lines = ["\t\t(stackup"]
    for name, attrs in layers:
        lines.append(f'\t\t\t(layer "{name}"')
        lines += [f"\t\t\t\t({k} {v})" for k, v in attrs]
        lines.append("\t\t\t)")
    lines += [f'\t\t\t(copper_finish "{spec["finish"]}")', "\t\t\t(dielectric_constraints no)", "\t\t)"]
    text = open(pcb_path, encoding="utf-8").read()
    if "(stackup" in text:
        raise ValueError(f"{pcb_path} has a stack-up already")
    head, sep, tail = text.partition("\t(setup\n")
    if not sep:
        raise ValueError(f"{pcb_path}: no setup section")
    with open(pcb_path, "w", encoding="utf-8") as f:
        f.write(head + sep + "\n".join(lines) + "\n" + tail)


def add_reserved(board, name, rect, copper_layers, below):
    """A rule area free of tracks and vias: on every copper layer, or with `below` on all
    but the top (under a part whose top pads are reached on the top)."""
    area = pcbnew.ZONE(board)
    area.SetIsRuleArea(True)
    area.SetZoneName(name)
    layers = pcbnew.LSET()
    top = [] if below else [pcbnew.F_Cu]
    for layer in top + [pcbnew.B_Cu] + [pcbnew.In1_Cu + 2 * i for i in range(copper_layers - 2)]:
        layers.AddLayer(layer)
    area.SetLayerSet(layers)
    area.SetDoNotAllowTracks(True)
    area.SetDoNotAllowVias(True)
    area.SetDoNotAllowCopperPour(False)
    area.SetDoNotAllowPads(False)
    area.SetDoNotAllowFootprints(False)
    x0, y0, x1, y1 = rect
    outline = area.Outline()
    outline.NewOutline()
    for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)):
        outline.Append(mm(x), mm(y))
    board.Add(area)
    add_drawing(board, name, rect, outline=False)


def add_drawing(board, label, rect, outline=True):
    x0, y0, x1, y1 = rect
    if outline:
        shape = pcbnew.PCB_SHAPE(board)
        shape.SetShape(pcbnew.SHAPE_T_RECT)
        shape.SetStart(pt(x0, y0))
        shape.SetEnd(pt(x1, y1))
        shape.SetLayer(pcbnew.Dwgs_User)
        shape.SetWidth(mm(0.15))
        board.Add(shape)
    t = pcbnew.PCB_TEXT(board)
    t.SetText(label)
    t.SetPosition(pt(x0 + 1.0, y0 + 1.5))
    t.SetLayer(pcbnew.Dwgs_User)
    t.SetTextSize(pcbnew.VECTOR2I(mm(1.0), mm(1.0)))
    t.SetTextThickness(mm(0.15))
    t.SetHorizJustify(pcbnew.GR_TEXT_H_ALIGN_LEFT)
    board.Add(t)


def check_board(board, layout):
    if not layout.plated:
        check_tht_sides(board)
    if not layout.partial:
        # A pour cut into pieces by tracks strands the vias in the pieces: DRC would find
        # it; fail here, where the router can be told.
        board.BuildConnectivity()
        missing = board.GetConnectivity().GetUnconnectedCount(False)
        if missing:
            raise RouteError(f"{missing} connections missing after routing and pouring (run DRC on the board to see them)")


def add_no_pour(board, fp, layer):
    area = pcbnew.ZONE(board)
    area.SetIsRuleArea(True)
    area.SetZoneName(f"no pour under {fp.GetReference()}")
    area.SetLayer(pcbnew.F_Cu if layer == 0 else pcbnew.B_Cu)
    area.SetDoNotAllowCopperPour(True)
    area.SetDoNotAllowTracks(False)
    area.SetDoNotAllowVias(False)
    area.SetDoNotAllowPads(False)
    area.SetDoNotAllowFootprints(False)
    x0, y0, x1, y1 = body_rect(fp)
    outline = area.Outline()
    outline.NewOutline()
    for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)):
        outline.Append(mm(x), mm(y))
    board.Add(area)


def check_tht_sides(board):
    """Fails the generation if copper reaches a through-hole pin on its part's body side:
    a track, a via under the body, or a pour's connection. On the milled bridge (no plated
    holes) such a joint is under the body, where it cannot be soldered, so the pin would
    be connected on paper only."""
    problems = []
    for fp in tht_parts(board):
        ref = fp.GetReference()
        side = body_layer(fp)
        layer = pcbnew.F_Cu if side == 0 else pcbnew.B_Cu
        lname = board.GetLayerName(layer)
        court = fp.GetCourtyard(fp.GetLayer())
        for t in board.GetTracks():
            if t.Type() == pcbnew.PCB_VIA_T:
                if court.Contains(t.GetPosition()):
                    problems.append(f"{ref}: via at {xy(t.GetPosition())} under its body")
                continue
            if t.GetLayer() != layer:
                continue
            for pad in fp.Pads():
                if not is_tht(pad) or pad.GetNetCode() != t.GetNetCode() or pad.GetNetCode() <= 0:
                    continue
                reach = max(pad.GetSize(layer).x, pad.GetSize(layer).y) / 2 + t.GetWidth() / 2
                if segment_distance(pad.GetPosition(), t.GetStart(), t.GetEnd()) < reach:
                    problems.append(f"{ref}.{pad.GetNumber()} ({pad.GetNetname()}): {lname} track, on the body's side")
        for zone in board.Zones():
            if zone.GetIsRuleArea() or not zone.IsOnLayer(layer):
                continue
            fill = zone.GetFilledPolysList(layer)
            for pad in fp.Pads():
                if is_tht(pad) and pad.GetNetCode() == zone.GetNetCode() and pad.GetNetCode() > 0:
                    reach = min(pad.GetSize(layer).x, pad.GetSize(layer).y) // 2 + mm(0.05)
                    if fill.Collide(pad.GetPosition(), reach):
                        problems.append(f"{ref}.{pad.GetNumber()} ({pad.GetNetname()}): joined by the {lname} pour, on the body's side")
    if problems:
        raise RouteError("through-hole pins reached on their part's body side (not solderable there on an "
                         "unplated board):\n  " + "\n  ".join(sorted(set(problems))))


def xy(p):
    return f"({pcbnew.ToMM(p.x):.2f}, {pcbnew.ToMM(p.y):.2f})"


def segment_distance(p, a, b):
    px, py, ax, ay, bx, by = p.x, p.y, a.x, a.y, b.x, b.y
    vx, vy = bx - ax, by - ay
    ll = vx * vx + vy * vy
    t = 0.0 if ll == 0 else max(0.0, min(1.0, ((px - ax) * vx + (py - ay) * vy) / ll))
    return math.hypot(ax + t * vx - px, ay + t * vy - py)


def add_zone(board, net, spec, layout):
    zone = pcbnew.ZONE(board)
    zone.SetLayer(pcbnew.B_Cu if spec["layer"] == "B" else pcbnew.F_Cu)
    zone.SetNet(net)
    w, h = layout.size
    m = 0.5
    outline = zone.Outline()
    outline.NewOutline()
    for x, y in spec.get("polygon", [(m, m), (w - m, m), (w - m, h - m), (m, h - m)]):
        outline.Append(mm(x), mm(y))
    zone.SetLocalClearance(mm(layout.clearance + 0.1))
    zone.SetMinThickness(mm(0.4))
    zone.SetThermalReliefGap(mm(0.5))
    zone.SetThermalReliefSpokeWidth(mm(0.6))
    zone.SetPadConnection(pcbnew.ZONE_CONNECTION_THERMAL)
    zone.SetIslandRemovalMode(pcbnew.ISLAND_REMOVAL_MODE_ALWAYS)
    zone.SetAssignedPriority(0)
    board.Add(zone)


def is_tht(pad):
    return pad.GetAttribute() == pcbnew.PAD_ATTRIB_PTH


def body_layer(fp):
    """0 (top) or 1 (bottom): the side a footprint's body sits on."""
    return 0 if fp.GetLayer() == pcbnew.F_Cu else 1


def solder_layers(pad):
    """The copper a pad may be reached by. A through-hole pin is soldered on the side
    opposite its part's body only: on a milled board without plated holes (the bridge) the
    other side's ring is cut off from it, under the body, where no iron reaches it."""
    if is_tht(pad):
        return [1 - body_layer(pad.GetParentFootprint())]
    return pad_layers(pad)


def body_rect(fp):
    """The courtyard's bounding box on the body's side (mm)."""
    bb = fp.GetCourtyard(fp.GetLayer()).BBox()
    return (pcbnew.ToMM(bb.GetLeft()), pcbnew.ToMM(bb.GetTop()), pcbnew.ToMM(bb.GetRight()), pcbnew.ToMM(bb.GetBottom()))


def tht_parts(board):
    return [fp for fp in board.GetFootprints() if any(is_tht(p) for p in fp.Pads())]


def pad_layers(pad):
    layers = []
    if pad.IsOnLayer(pcbnew.F_Cu):
        layers.append(0)
    if pad.IsOnLayer(pcbnew.B_Cu):
        layers.append(1)
    return layers


def rect_of(item):
    bb = item.GetBoundingBox()
    return (pcbnew.ToMM(bb.GetLeft()), pcbnew.ToMM(bb.GetTop()), pcbnew.ToMM(bb.GetRight()), pcbnew.ToMM(bb.GetBottom()))


def route(board, layout, footprints, net_items):
    w, h = layout.size
    widths = {layout.track} | set(layout.net_widths.values())
    r = Router(0, 0, w, h, layout.grid, layout.clearance, widths, layout.via[0], layout.edge_clearance, layout.bottom_cost)
    net_ids = {name: i for i, name in enumerate(sorted(net_items))}
    pads_by_net = {}
    for fp in board.GetFootprints():
        for pad in fp.Pads():
            layers = pad_layers(pad)
            if pad.GetAttribute() == pcbnew.PAD_ATTRIB_NPTH:
                r.add_hole(rect_of(pad))
                continue
            name = pad.GetNetname()
            nid = net_ids.get(name, BLOCKED) if name else BLOCKED
            r.add_rect(nid, layers, rect_of(pad))
            if name:
                p = pad.GetPosition()
                reach = layers if layout.plated else solder_layers(pad)
                pads_by_net.setdefault(name, []).append(
                    ((pcbnew.ToMM(p.x), pcbnew.ToMM(p.y)), reach, f"{fp.GetReference()}.{pad.GetNumber()}")
                )
        for zone in fp.Zones():
            if zone.GetIsRuleArea() and zone.GetDoNotAllowTracks():
                r.add_hole(rect_of(zone))

    for layers, rect in layout.keepouts:
        r.add_rect(BLOCKED, layers, rect)
    # No copper on the body's side of a through-hole part (after the pads, so its own pads'
    # body-side rings are blocked too): its pins are reached from the side they are
    # soldered on, and vias stand clear of its body, where a rivet head has room.
    for fp in [] if layout.plated else tht_parts(board):
        r.add_rect(BLOCKED, (body_layer(fp),), body_rect(fp))
    for _, rect, *below in layout.reserved:
        r.add_rect(BLOCKED, (1,) if below else (0, 1), rect)

    failures = []
    order = [n for n in layout.route_first if n in pads_by_net]
    poured = {z["net"] for z in layout.zones}
    order = [n for n in order if n not in poured]
    rest = [n for n in pads_by_net if n not in order and n not in poured and len(pads_by_net[n]) > 1]
    if layout.route_only is not None:
        missing = [n for n in layout.route_only if n not in pads_by_net]
        if missing:
            raise RouteError(f"route_only names nets the board lacks: {', '.join(missing)}")
        order = [n for n in order if n in layout.route_only]
        rest = [n for n in rest if n in layout.route_only]

    def span(n):
        xs = [p[0][0] for p in pads_by_net[n]]
        ys = [p[0][1] for p in pads_by_net[n]]
        return (max(xs) - min(xs)) + (max(ys) - min(ys))

    order += sorted(rest, key=span)
    for name in order:
        nid = net_ids[name]
        width = layout.net_widths.get(name, layout.track)
        pads = pads_by_net[name]
        centres = [p[0] for p in pads]
        # Prim's order: each pad joins the nearest pad already connected.
        done = [0]
        todo = list(range(1, len(pads)))
        while todo:
            best = min(
                ((math.dist(pads[a][0], pads[b][0]), a, b) for a in done for b in todo),
            )
            _, a, b = best
            ok = r.route(nid, name, pads[b][0], pads[a][0], width, layout.track, centres, pads[b][1], pads[a][1])
            if not ok:
                failures.append(f"{name}: {pads[b][2]} -> {pads[a][2]}")
            done.append(b)
            todo.remove(b)
    # Nets poured on one layer: every pad off that layer gets a via down to the pour. These
    # come after the other nets, and each via must land in the pour's main body: a via in a
    # pocket that other nets' tracks have fenced off would be joined to nothing.
    for spec in layout.zones:
        name = spec["net"]
        pour_layer = 1 if spec["layer"] == "B" else 0
        nid = net_ids[name]
        main = r.main_area(pour_layer, layout.track, nid)
        for centre, layers, label in pads_by_net.get(name, []):
            if pour_layer in layers:
                continue
            if not r.route(nid, name, centre, None, layout.track, layout.track, [centre], layers, [pour_layer],
                           via_cost=1.0, accept=main.__contains__):
                failures.append(f"{name}: {label} -> a via to the pour")
    if failures:
        raise RouteError("no route for:\n  " + "\n  ".join(failures))

    names = {i: n for n, i in net_ids.items()}
    for nid, layer, a, b, width in r.tracks:
        t = pcbnew.PCB_TRACK(board)
        t.SetStart(pt(*a))
        t.SetEnd(pt(*b))
        t.SetWidth(mm(width))
        t.SetLayer(pcbnew.F_Cu if layer == 0 else pcbnew.B_Cu)
        t.SetNet(net_items[names[nid]])
        board.Add(t)
    for nid, p in r.vias:
        v = pcbnew.PCB_VIA(board)
        v.SetPosition(pt(*p))
        v.SetViaType(pcbnew.VIATYPE_THROUGH)
        v.SetWidth(mm(layout.via[0]))
        v.SetDrill(mm(layout.via[1]))
        v.SetNet(net_items[names[nid]])
        board.Add(v)
    # Pad centres are snapped to the grid by the router: join each snapped end to its pad.
    for name, pads in pads_by_net.items():
        if name not in order and name not in poured:
            continue
        nid = net_ids[name]
        ends = {}
        for tnid, layer, a, b, width in r.tracks:
            if tnid == nid:
                for e in (a, b):
                    ends.setdefault((round(e[0], 4), round(e[1], 4), layer), width)
        for (px, py), layers, _ in pads:
            gx, gy = r.xy(*r.cell(px, py))
            for layer in layers:
                if (round(gx, 4), round(gy, 4), layer) in ends and (abs(gx - px) > 1e-6 or abs(gy - py) > 1e-6):
                    t = pcbnew.PCB_TRACK(board)
                    t.SetStart(pt(px, py))
                    t.SetEnd(pt(gx, gy))
                    t.SetWidth(mm(layout.track))
                    t.SetLayer(pcbnew.F_Cu if layer == 0 else pcbnew.B_Cu)
                    t.SetNet(net_items[name])
                    board.Add(t)


def placed_pads(part, layout):
    """{pad number: (x, y)} of a part's footprint where the layout puts it (mm)."""
    at = layout.positions.get(part.ref, part.at)
    fp = load_footprint(part.footprint)
    board = pcbnew.BOARD()
    board.Add(fp)
    fp.SetPosition(pt(*at[:2]))
    fp.SetOrientationDegrees(at[2])
    if len(at) > 3 and at[3] == "B":
        fp.Flip(fp.GetPosition(), pcbnew.FLIP_DIRECTION_LEFT_RIGHT)
    return {p.GetNumber(): (round(pcbnew.ToMM(p.GetPosition().x), 3), round(pcbnew.ToMM(p.GetPosition().y), 3))
            for p in fp.Pads()}


def check_mating(lower, lower_layout, lower_ref, upper, upper_layout, upper_ref):
    """Two boards stacked in one frame: every pin of the lower board's connector must lie
    under the same-numbered pin of the upper board's, and every mounting hole of the upper
    board over one of the lower's (for its standoff)."""
    a = placed_pads(next(p for p in lower.parts if p.ref == lower_ref), lower_layout)
    b = placed_pads(next(p for p in upper.parts if p.ref == upper_ref), upper_layout)
    problems = [f"pin {n}: {lower.title} {lower_ref} at {a.get(n)}, {upper.title} {upper_ref} at {b.get(n)}"
                for n in sorted(set(a) | set(b), key=int) if a.get(n) != b.get(n)]
    for h in upper_layout.holes:
        if not any(math.dist(h, g) < 0.01 for g in lower_layout.holes):
            problems.append(f"{upper.title}'s mounting hole at {h} has none under it on {lower.title}")
    if problems:
        raise ValueError("the boards do not stack:\n  " + "\n  ".join(problems))
