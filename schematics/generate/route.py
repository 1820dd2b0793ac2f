"""A small two-layer maze router (A* on a grid), enough for a sparse hand-placed board.

It routes one net at a time, pad to pad in nearest-first order, with 45-degree moves and
vias. Clearance is kept by marking, for every track width and for vias, which grid cells a
track centre of another net may not enter: obstacles are inflated by the clearance, half the
width and the grid's worst rounding, so the result is clean for KiCad's exact DRC. Pads of
the net being routed are passable, and near them a wide net may neck down to the narrow
width, the way a person routes a wide track into a fine-pitch pin.
"""

import heapq
import math

FREE = -1
BLOCKED = -2
DIRS = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)]


class RouteError(Exception):
    pass


class Router:
    def __init__(self, x0, y0, x1, y1, step, clearance, widths, via_diameter, edge_clearance, bottom_cost=1.5):
        self.bottom_cost = bottom_cost
        self.x0, self.y0, self.step = x0, y0, step
        self.nx = int(math.ceil((x1 - x0) / step)) + 1
        self.ny = int(math.ceil((y1 - y0) / step)) + 1
        self.clearance = clearance
        self.via_d = via_diameter
        self.margin = step * 0.5
        # One owner map per (layer, class); a class is a track width, or "via".
        self.classes = sorted(set(widths)) + ["via"]
        self.owner = {
            (layer, c): [FREE] * (self.nx * self.ny) for layer in (0, 1) for c in self.classes
        }
        self.tracks = []  # (net, layer, (x, y), (x, y), width)
        self.vias = []  # (net, (x, y))
        # The board edge.
        for c in self.classes:
            r = self._radius(c, 0) + edge_clearance - self.clearance
            for layer in (0, 1):
                own = self.owner[(layer, c)]
                for ix in range(self.nx):
                    for iy in range(self.ny):
                        x, y = self.xy(ix, iy)
                        if x - x0 < r or x1 - x < r or y - y0 < r or y1 - y < r:
                            own[iy * self.nx + ix] = BLOCKED

    # ------------------------------------------------------------------ geometry

    def xy(self, ix, iy):
        return self.x0 + ix * self.step, self.y0 + iy * self.step

    def cell(self, x, y):
        return int(round((x - self.x0) / self.step)), int(round((y - self.y0) / self.step))

    def _radius(self, c, extra):
        half = self.via_d / 2 if c == "via" else c / 2
        return half + self.clearance + self.margin + extra

    def _mark(self, layer, c, net, cells):
        own = self.owner[(layer, c)]
        for i in cells:
            o = own[i]
            if o == FREE:
                own[i] = net
            elif o != net:
                own[i] = BLOCKED

    def _cells_rect(self, x0, y0, x1, y1, r):
        ix0, iy0 = self.cell(x0 - r, y0 - r)
        ix1, iy1 = self.cell(x1 + r, y1 + r)
        out = []
        for iy in range(max(iy0 - 1, 0), min(iy1 + 2, self.ny)):
            for ix in range(max(ix0 - 1, 0), min(ix1 + 2, self.nx)):
                x, y = self.xy(ix, iy)
                dx = max(x0 - x, 0, x - x1)
                dy = max(y0 - y, 0, y - y1)
                if dx * dx + dy * dy < r * r:
                    out.append(iy * self.nx + ix)
        return out

    def _cells_segment(self, a, b, r):
        (ax, ay), (bx, by) = a, b
        ix0, iy0 = self.cell(min(ax, bx) - r, min(ay, by) - r)
        ix1, iy1 = self.cell(max(ax, bx) + r, max(ay, by) + r)
        out = []
        vx, vy = bx - ax, by - ay
        ll = vx * vx + vy * vy
        for iy in range(max(iy0 - 1, 0), min(iy1 + 2, self.ny)):
            for ix in range(max(ix0 - 1, 0), min(ix1 + 2, self.nx)):
                x, y = self.xy(ix, iy)
                t = 0.0 if ll == 0 else max(0.0, min(1.0, ((x - ax) * vx + (y - ay) * vy) / ll))
                dx, dy = ax + t * vx - x, ay + t * vy - y
                if dx * dx + dy * dy < r * r:
                    out.append(iy * self.nx + ix)
        return out

    # ------------------------------------------------------------------ obstacles

    def add_rect(self, net, layers, rect):
        """A pad (or keepout, net BLOCKED) covering the axis-aligned rect on `layers`."""
        x0, y0, x1, y1 = rect
        for c in self.classes:
            cells = self._cells_rect(x0, y0, x1, y1, self._radius(c, 0))
            for layer in layers:
                self._mark(layer, c, net, cells)

    def add_hole(self, rect):
        self.add_rect(BLOCKED, (0, 1), rect)

    def add_track(self, net, layer, a, b, width):
        self.tracks.append((net, layer, a, b, width))
        for c in self.classes:
            cells = self._cells_segment(a, b, self._radius(c, width / 2))
            self._mark(layer, c, net, cells)

    def add_via(self, net, p):
        self.vias.append((net, p))
        for c in self.classes:
            cells = self._cells_segment(p, p, self._radius(c, self.via_d / 2))
            for layer in (0, 1):
                self._mark(layer, c, net, cells)

    # ------------------------------------------------------------------ search

    def _near_own_via(self, net, p):
        """Two vias of one net side by side are a detour, and too close to drill."""
        limit = self.via_d + self.clearance
        return any(n == net and math.dist(p, q) < limit for n, q in self.vias)

    def _ok(self, layer, c, net, i):
        o = self.owner[(layer, c)][i]
        return o == FREE or o == net

    def main_area(self, layer, width, net):
        """The cells of the largest connected area on `layer` where a track of `width` on
        `net` may run: where a pour of that net is one piece (the pour's own clearance and
        minimum width are no larger than the router's)."""
        own = self.owner[(layer, width)]
        nx, ny = self.nx, self.ny
        seen = bytearray(nx * ny)
        best = []
        for start in range(nx * ny):
            if seen[start] or own[start] not in (FREE, net):
                continue
            seen[start] = 1
            comp = [start]
            k = 0
            while k < len(comp):
                i = comp[k]
                k += 1
                ix, iy = i % nx, i // nx
                for j, ok in ((i - 1, ix > 0), (i + 1, ix < nx - 1), (i - nx, iy > 0), (i + nx, iy < ny - 1)):
                    if ok and not seen[j] and own[j] in (FREE, net):
                        seen[j] = 1
                        comp.append(j)
            if len(comp) > len(best):
                best = comp
        return set(best)

    def route(self, net, name, start, goal, width, narrow, pads, layers_start, layers_goal, via_cost=30.0, accept=None):
        """Routes from `start` to `goal` (points); `pads` are this net's pad centres, near
        which the track may neck down to `narrow`. With no goal, the route ends at the first
        cell on layers_goal[0] that `accept` (a cell index test) allows. Returns False when
        no path exists."""
        nx = self.nx
        sx, sy = self.cell(*start)
        # With no goal, the search ends at the first cell on layers_goal[0]: a via down to
        # a ground pour.
        gx, gy = self.cell(*goal) if goal is not None else (sx, sy)
        neck_cells = set()
        neck_r = max(width, 1.0) + 0.6
        for px, py in pads:
            neck_cells.update(self._cells_segment((px, py), (px, py), neck_r))

        def passable(layer, i):
            if self._ok(layer, width, net, i):
                return width
            if width != narrow and i in neck_cells and self._ok(layer, narrow, net, i):
                return narrow
            return None

        def h(ix, iy):
            if goal is None:
                return 0.0
            dx, dy = abs(ix - gx), abs(iy - gy)
            return (dx + dy) + (math.sqrt(2) - 2) * min(dx, dy)

        open_ = []
        best = {}
        came = {}
        for layer in layers_start:
            i = sy * nx + sx
            if passable(layer, i) is None:
                continue
            best[(i, layer)] = 0.0
            heapq.heappush(open_, (h(sx, sy), 0.0, i, layer, -1))
        goal_states = {(gy * nx + gx, layer) for layer in layers_goal}
        to_layer = layers_goal[0] if goal is None else None
        found = None
        while open_:
            f, g, i, layer, d_prev = heapq.heappop(open_)
            if g > best.get((i, layer), math.inf):
                continue
            if (i, layer) in goal_states or (to_layer is not None and layer == to_layer and (accept is None or accept(i))):
                found = (i, layer)
                break
            ix, iy = i % nx, i // nx
            for d, (dx, dy) in enumerate(DIRS):
                jx, jy = ix + dx, iy + dy
                if not (0 <= jx < nx and 0 <= jy < self.ny):
                    continue
                j = jy * nx + jx
                if passable(layer, j) is None:
                    continue
                # A diagonal step must not cut the corner of an obstacle.
                if dx and dy and (passable(layer, iy * nx + jx) is None or passable(layer, jy * nx + ix) is None):
                    continue
                cost = (1.4142 if dx and dy else 1.0) + (0.3 if d != d_prev and d_prev >= 0 else 0.0)
                # On a board whose bottom is mostly ground pour, cross there only when the top
                # is full: each bottom step costs extra.
                cost += self.bottom_cost if layer == 1 else 0.0
                ng = g + cost
                if ng < best.get((j, layer), math.inf):
                    best[(j, layer)] = ng
                    came[(j, layer)] = (i, layer)
                    heapq.heappush(open_, (ng + h(jx, jy), ng, j, layer, d))
            # A via.
            other = 1 - layer
            if (
                self._ok(0, "via", net, i)
                and self._ok(1, "via", net, i)
                and passable(other, i) is not None
                and not self._near_own_via(net, self.xy(ix, iy))
            ):
                ng = g + via_cost
                if ng < best.get((i, other), math.inf):
                    best[(i, other)] = ng
                    came[(i, other)] = (i, layer)
                    heapq.heappush(open_, (ng + h(ix, iy), ng, i, other, -1))
        if found is None:
            return False
        # Walk back, then turn the cell path into straight segments of one width.
        path = [found]
        while path[-1] in came:
            path.append(came[path[-1]])
        path.reverse()
        segs = []
        for (i, la), (j, lb) in zip(path, path[1:]):
            if la != lb:
                self.add_via(net, self.xy(i % nx, i // nx))
                continue
            w = width if (passable(la, i) == width and passable(la, j) == width) else narrow
            segs.append((la, i, j, w))
        merged = []
        for la, i, j, w in segs:
            if merged:
                lb, a, b, wb = merged[-1]
                da = (b % nx - a % nx, b // nx - a // nx)
                db = (j % nx - i % nx, j // nx - i // nx)
                na = math.gcd(abs(da[0]), abs(da[1])) or 1
                if lb == la and wb == w and b == i and (da[0] // na, da[1] // na) == db:
                    merged[-1] = (la, a, j, w)
                    continue
            merged.append((la, i, j, w))
        for la, i, j, w in merged:
            self.add_track(net, la, self.xy(i % nx, i // nx), self.xy(j % nx, j // nx), w)
        return True
