#!/usr/bin/env python3
"""A private Tor network on loopback for hearth's tests (Python 3.11, stdlib only).

Starts a v3 directory authority (auth0, also a relay), more relays (6 relays in all by
default), an onion service that forwards --virtual-port to --target, and a client with a SOCKS
port (a separate tor by default, the onion service's own tor with --combined). Keys, relay
identities and the onion key live in --cache-dir, so a relaunch takes a few seconds and the
onion address stays the same. Prints to stdout, one per line:

    onion=<56 chars>.onion:<virtual-port>
    socks=127.0.0.1:<port>
    ready

then runs until SIGTERM/SIGINT (or stdin EOF with --exit-on-stdin-eof) and stops every tor it
started. Progress goes to stderr. docs/tor.md describes the design and the measured figures;
usually run through scripts/tor-net.sh, which installs tor first.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import datetime as dt
import fcntl
import ipaddress
import json
import math
import os
import random
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

T0 = time.monotonic()
HERE = Path(__file__).resolve().parent
SHIM_SRC = HERE / "tor-nodelay.c"

# Port layout, as offsets from the base port: the authority's ORPort and DirPort, the SOCKS
# port, the two ControlPorts, then one ORPort per further relay (relay0 at +5, ...).
DIR_OFFSET = 1
SOCKS_OFFSET = 2
CLIENT_CONTROL_OFFSET = 3
HS_CONTROL_OFFSET = 4
DEFAULT_RELAYS = 6
RELAYS: list[str] = []  # auth0, relay0, ...: set from --relays
NPORTS = 0  # 5 + number of relays besides the authority


def set_relays(n: int) -> None:
    global RELAYS, NPORTS
    RELAYS = ["auth0"] + [f"relay{i}" for i in range(n - 1)]
    NPORTS = 4 + n


def or_offset(name: str) -> int:
    return 0 if name == "auth0" else 5 + int(name[len("relay"):])


# Automatic port blocks come from below Linux's ephemeral range (32768-60999), so the outgoing
# connections of the relays themselves can never take a port chosen for a later listener.
AUTO_PORTS = (20000, 32000)
STATE_VERSION = 2
UPLOADS_GRACE = 5.0  # after the first upload, wait at most this long for the others
PROBE_ATTEMPT_TIMEOUT = 20.0
# Files in a tor DataDirectory that describe the network (not the node's own identity). They
# are dropped when the port set changes, so no node trusts a consensus with the old ORPorts.
NETWORK_DOCS = ("cached-", "unverified-", "v3-status-votes", "sr-state", "router-stability",
                "diff-cache")

# Harmless lines every tor of a test network logs; left out of the log tails shown on failure.
LOG_BOILERPLATE = (
    "Tor can't help you", "running on Linux with", "Read configuration file", "MaxMemInQueues",
    "DirAuthority or AlternateDirAuthority", "TestingTorNetwork is set", "running Tor as root",
    "disabled SafeLogging", "Parsing GEOIP", "Configured to measure statistics",
    "You are running a new relay", "medium-term signing key", "V3AuthVotingInterval is very low",
    "ContactInfo config option", "Opening OR listener", "Opening Directory listener",
    "Opening Socks listener", "Opening Control listener", "Opened ", "Set list of supported TLS",
    "Your Tor server's identity key", "Starting with guard context", "Bootstrapped 0%",
)

SOCKS_ERRORS = {
    0x01: "general failure", 0x02: "not allowed", 0x03: "network unreachable",
    0x04: "host unreachable", 0x05: "connection refused", 0x06: "TTL expired",
    0x07: "command not supported", 0x08: "address type not supported",
    0xF0: "onion descriptor not found", 0xF1: "onion descriptor invalid",
    0xF2: "onion introduction failed", 0xF3: "onion rendezvous failed",
    0xF4: "onion client auth missing", 0xF5: "onion client auth wrong",
    0xF6: "onion address invalid", 0xF7: "onion introduction timed out",
}

STDIN_FD: int | None = None  # watched for EOF with --exit-on-stdin-eof


def log(msg: str) -> None:
    try:
        print(f"[tor-net {time.monotonic() - T0:5.1f}s] {msg}", file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):  # nobody reads stderr any more: carry on regardless
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())


class Failure(Exception):
    """A start-up or run-time failure; `nodes` name the tors whose log tails explain it."""

    def __init__(self, msg: str, nodes: list[str] | tuple[str, ...] = ()):
        super().__init__(msg)
        self.nodes = list(nodes)


class Stop(BaseException):
    """SIGTERM/SIGINT/SIGHUP, or stdin EOF: stop everything and exit."""

    def __init__(self, why: str, code: int):
        super().__init__(why)
        self.code = code


def on_signal(signum, _frame):
    raise Stop(signal.Signals(signum).name, 128 + signum)


def pause(seconds: float) -> None:
    """Sleep, but notice stdin EOF (with --exit-on-stdin-eof) at once."""
    if STDIN_FD is None:
        time.sleep(max(0.0, seconds))
        return
    readable, _, _ = select.select([STDIN_FD], [], [], max(0.0, seconds))
    if readable and not os.read(STDIN_FD, 65536):
        raise Stop("stdin closed", 1)


# --- child processes ---------------------------------------------------------------------

_LIBC = ctypes.CDLL(None, use_errno=True)
_LAUNCHER_PID = os.getpid()


def _child_setup() -> None:
    # Die with the launcher even if it is SIGKILLed (PR_SET_PDEATHSIG = 1); tor's
    # __OwningControllerProcess is the second line of defence (it polls, up to 15 s).
    _LIBC.prctl(1, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != _LAUNCHER_PID:
        os._exit(1)


def spawn(argv: list[str], **kw) -> subprocess.Popen:
    # The launcher never starts threads, so preexec_fn is safe here.
    return subprocess.Popen(argv, start_new_session=True, preexec_fn=_child_setup, **kw)


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


# --- ports -------------------------------------------------------------------------------

def port_free(port: int) -> bool:
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tor does (TIME_WAIT is fine)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def block_free(base: int) -> bool:
    return all(port_free(base + i) for i in range(NPORTS))


def choose_base(requested: int | None, cached: int | None) -> int:
    if requested is not None:
        busy = [p for p in range(requested, requested + NPORTS) if not port_free(p)]
        if busy:
            raise Failure(f"--base-port {requested}: ports in use on 127.0.0.1: {busy}")
        return requested
    if cached is not None and block_free(cached):
        return cached
    for _ in range(500):
        base = random.randrange(AUTO_PORTS[0], AUTO_PORTS[1] - NPORTS)
        if block_free(base):
            return base
    raise Failure(f"no {NPORTS} free contiguous ports in {AUTO_PORTS[0]}-{AUTO_PORTS[1]}")


def can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


# --- cached state ------------------------------------------------------------------------

def tor_gencert(auth_keys: Path, dirport: int, create: bool) -> None:
    argv = ["tor-gencert", "--passphrase-fd", "0", "-m", "24", "-a", f"127.0.0.1:{dirport}",
            "-i", str(auth_keys / "authority_identity_key"),
            "-s", str(auth_keys / "authority_signing_key"),
            "-c", str(auth_keys / "authority_certificate")]
    if create:
        argv.insert(1, "--create-identity-key")
    r = subprocess.run(argv, input=b"\n", capture_output=True, timeout=60)
    if r.returncode != 0:
        raise Failure(f"tor-gencert failed: {(r.stdout + r.stderr).decode(errors='replace')}")


def cert_field(cert: Path, key: str) -> str:
    for line in cert.read_text().splitlines():
        if line.startswith(key + " "):
            return line[len(key) + 1:].strip()
    raise Failure(f"{cert}: no '{key}' line")


def read_fingerprint(node_dir: Path) -> str | None:
    try:
        return node_dir.joinpath("fingerprint").read_text().split()[1]
    except (OSError, IndexError):
        return None


def purge_network_docs(net: Path) -> None:
    for node in net.iterdir():
        if not node.is_dir():
            continue
        for f in node.iterdir():
            if f.name.startswith(NETWORK_DOCS):
                shutil.rmtree(f) if f.is_dir() else f.unlink()


def prepare_state(root: Path, base: int, fresh: bool) -> dict:
    """Keys and identities under root/net; regenerated only when missing or with --fresh."""
    net = root / "net"
    state_path = root / "state.json"
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        state = None
    keys = net / "auth0" / "keys"
    needed = [keys / n for n in ("authority_identity_key", "authority_signing_key",
                                 "authority_certificate", "secret_id_key")]
    usable = (state is not None and state.get("version") == STATE_VERSION
              and all(p.exists() for p in needed))
    if fresh or not usable:
        log("fresh state: generating the authority keys" + (" (--fresh)" if fresh else ""))
        shutil.rmtree(net, ignore_errors=True)
        for name in RELAYS + ["hs", "client"]:
            (net / name).mkdir(parents=True, mode=0o700)
        keys.mkdir(mode=0o700)
        tor_gencert(keys, base + DIR_OFFSET, create=True)
        v3ident = cert_field(keys / "authority_certificate", "fingerprint")
        empty = net / "empty.torrc"
        empty.write_text("")
        r = subprocess.run(
            ["tor", "--defaults-torrc", "/dev/null", "-f", str(empty), "--list-fingerprint",
             "--DataDirectory", str(net / "auth0"), "--Nickname", "auth0",
             "--ORPort", str(base + or_offset("auth0")), "--Address", "127.0.0.1",
             "--TestingTorNetwork", "1", "--Log", "err stderr",
             "--DirAuthority", f"x orport={base + or_offset('auth0')} no-v2 v3ident={v3ident} "
                               f"127.0.0.1:{base + DIR_OFFSET} {'0' * 40}"],
            capture_output=True, timeout=60)
        fp = read_fingerprint(net / "auth0")
        if r.returncode != 0 or fp is None:
            raise Failure("tor --list-fingerprint failed: "
                          + (r.stdout + r.stderr).decode(errors="replace")[-2000:])
        state = {"version": STATE_VERSION, "v3ident": v3ident, "auth_fp": fp, "base_port": base,
                 "relays": len(RELAYS)}
    else:
        cert = keys / "authority_certificate"
        expires = dt.datetime.strptime(cert_field(cert, "dir-key-expires"), "%Y-%m-%d %H:%M:%S")
        if state["base_port"] != base:
            log(f"port block changed ({state['base_port']} -> {base}): keeping identities and the "
                "onion key, dropping cached directory documents")
            purge_network_docs(net)
            tor_gencert(keys, base + DIR_OFFSET, create=False)
        elif expires - dt.datetime.utcnow() < dt.timedelta(days=2):
            log("authority certificate about to expire: renewing it")
            tor_gencert(keys, base + DIR_OFFSET, create=False)
        if state.get("relays") != len(RELAYS):
            # The authority would go on listing relays it knows from its cache as running.
            log(f"relay count changed ({state.get('relays')} -> {len(RELAYS)}): dropping cached "
                "directory documents")
            purge_network_docs(net)
            for d in net.glob("relay*"):
                if d.name not in RELAYS:
                    shutil.rmtree(d)
        state["base_port"] = base
        state["relays"] = len(RELAYS)
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, state_path)
    return state


NO_SHIM = "expect SOCKS connects of ~40 ms and RTT p99 of 40-90 ms instead of 1-5 ms"


def build_shim(cache: Path) -> Path | None:
    so = cache / "tor-nodelay.so"
    if not SHIM_SRC.exists():
        log(f"{SHIM_SRC} missing: running WITHOUT the TCP_NODELAY shim ({NO_SHIM})")
        return None
    if so.exists() and so.stat().st_mtime >= SHIM_SRC.stat().st_mtime:
        return so
    gcc = shutil.which("gcc")
    if gcc is None:
        log(f"gcc not found: running WITHOUT the TCP_NODELAY shim ({NO_SHIM})")
        return None
    tmp = cache / f"tor-nodelay.so.{os.getpid()}"
    r = subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(SHIM_SRC), "-ldl"],
                       capture_output=True, timeout=120)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        log(f"building the TCP_NODELAY shim failed, running without it ({NO_SHIM}):\n"
            + (r.stdout + r.stderr).decode(errors="replace"))
        return None
    os.replace(tmp, so)  # atomic: parallel launchers may build it at the same time
    log(f"built the TCP_NODELAY shim {so}")
    return so


# --- tor control protocol ----------------------------------------------------------------

class Control:
    """A minimal tor control-port client (cookie authentication)."""

    def __init__(self, net: "Net", name: str, port: int, deadline: float):
        self.name = name
        self.buf = b""
        self.events: list[tuple[float, str]] = []
        cookie_path = net.dir(name) / "control_auth_cookie"
        while True:
            net.check_alive()
            if cookie_path.exists() and cookie_path.stat().st_size == 32:
                try:
                    self.sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                    break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise Failure(f"{name}: control port {port} did not open", [name])
            pause(0.05)
        self.command("AUTHENTICATE " + cookie_path.read_bytes().hex())

    def _line(self, deadline: float) -> str | None:
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            fds = [self.sock] + ([STDIN_FD] if STDIN_FD is not None else [])
            readable, _, _ = select.select(fds, [], [], max(0.0, min(left, 1.0)))
            if STDIN_FD is not None and STDIN_FD in readable and not os.read(STDIN_FD, 65536):
                raise Stop("stdin closed", 1)
            if self.sock in readable:
                data = self.sock.recv(65536)
                if not data:
                    raise Failure(f"{self.name}: control connection closed", [self.name])
                self.buf += data
            elif left <= 0:
                return None
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def _item(self, deadline: float) -> tuple[str, list[str]] | None:
        """One reply or one asynchronous event: ("reply"|"event", lines)."""
        lines: list[str] = []
        while True:
            line = self._line(deadline if not lines else time.monotonic() + 10)
            if line is None:
                if lines:
                    raise Failure(f"{self.name}: truncated control reply", [self.name])
                return None
            lines.append(line)
            if line[3:4] == "+":  # a data block, ended by "."
                while (data := self._line(time.monotonic() + 10)) != ".":
                    if data is None:
                        raise Failure(f"{self.name}: truncated control reply", [self.name])
                    lines.append(data)
            if line[3:4] == " ":
                return ("event" if line.startswith("650") else "reply", lines)

    def command(self, cmd: str, timeout: float = 10) -> list[str]:
        self.sock.sendall(cmd.encode() + b"\r\n")
        deadline = time.monotonic() + timeout
        while True:
            item = self._item(deadline)
            if item is None:
                raise Failure(f"{self.name}: no answer to {cmd.split()[0]}", [self.name])
            kind, lines = item
            if kind == "event":
                self.events.append((time.monotonic(), " ".join(lines)))
                continue
            if not lines[-1].startswith("250"):
                raise Failure(f"{self.name}: {cmd.split()[0]} failed: {lines[-1]}", [self.name])
            return lines

    def drain_events(self, wait: float) -> list[tuple[float, str]]:
        """Events queued so far plus those arriving within `wait` seconds."""
        deadline = time.monotonic() + wait
        while (item := self._item(deadline)) is not None:
            if item[0] == "event":
                self.events.append((time.monotonic(), " ".join(item[1])))
        out, self.events = self.events, []
        return out

    def bootstrap(self) -> tuple[int, str]:
        line = self.command("GETINFO status/bootstrap-phase")[0]
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        return int(fields.get("PROGRESS", "0")), line.split("=", 1)[-1]


# --- SOCKS5 ------------------------------------------------------------------------------

def socks_connect(socks_port: int, host: str, port: int, timeout: float) -> socket.socket:
    """SOCKS5 CONNECT with a hostname (ATYP 3). Raises OSError with tor's reason on failure."""
    s = socket.create_connection(("127.0.0.1", socks_port), timeout=timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"\x05\x01\x00")
        if recv_exact(s, 2) != b"\x05\x00":
            raise OSError("SOCKS5 handshake refused")
        name = host.encode()
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
        head = recv_exact(s, 4)
        if head[1] != 0:
            raise OSError(f"SOCKS5 reply 0x{head[1]:02x} ({SOCKS_ERRORS.get(head[1], 'unknown')})")
        alen = {1: 4, 4: 16}.get(head[3])
        recv_exact(s, alen + 2 if alen is not None else recv_exact(s, 1)[0] + 2)
        return s
    except BaseException:
        s.close()
        raise


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        data = s.recv(n - len(buf))
        if not data:
            raise OSError("connection closed")
        buf += data
    return buf


# --- the network -------------------------------------------------------------------------

class Net:
    def __init__(self, root: Path, state: dict, base: int, args, shim: Path | None):
        self.root = root
        self.state = state
        self.base = base
        self.args = args
        self.shim = shim
        self.procs: dict[str, subprocess.Popen] = {}
        # The authority votes on a wall-clock schedule: consensus intervals start at
        # k*10 s + offset (TestingV3AuthVotingStartOffset), and it votes 4 s before the next
        # start, or at once if that moment has passed when it schedules (1-1.8 s after
        # launch, later on a busy machine). The launcher picks the offset per run:
        # - fresh (no relay descriptors cached): the relays upload theirs 1.9-2.6 s after
        #   launch; a vote before that gives a consensus of the authority alone and the next
        #   one comes 10 s later. So the first interval starts >= 7.5 s after launch: vote at
        #   3.5-4.5 s, consensus with every relay at 7.5-8.5 s.
        # - cached (descriptors known; AuthDirTestReachability 0 counts them as running): the
        #   first interval starts >= 4 s after launch, so the authority votes as soon as it
        #   has scheduled and the next consensus is out 4-5 s after launch: a still valid
        #   one (see drop_expiring_consensus) serves until then, or the gate waits for it.
        #   (With tor's 5 s initial interval both delays shrink to 1 s; it made no
        #   difference, and one interval keeps the live and the no-consensus case alike.)
        fresh = not any(self.dir("auth0").glob("cached-descriptors*"))
        first = math.ceil(time.time() + (7.5 if fresh else 4.0))
        self.vote_offset = first % 10

    def dir(self, name: str) -> Path:
        return self.root / "net" / name

    def torrc(self, name: str) -> str:
        b, st = self.base, self.state
        lines = [
            "# written by scripts/tor-net.py; rewritten at every start",
            "TestingTorNetwork 1",
            f"DataDirectory {self.dir(name)}",
            f"Nickname {name}",
            f"DirAuthority auth0 orport={b + or_offset('auth0')} no-v2 v3ident={st['v3ident']} "
            f"127.0.0.1:{b + DIR_OFFSET} {st['auth_fp']}",
            "TestingV3AuthInitialVotingInterval 10",
            "TestingV3AuthInitialVoteDelay 2",
            "TestingV3AuthInitialDistDelay 2",
            "V3AuthVotingInterval 10",
            "V3AuthVoteDelay 2",
            "V3AuthDistDelay 2",
            "TestingDirAuthVoteGuard *",
            "TestingDirAuthVoteHSDir *",
            "AssumeReachable 1",
            "PathsNeededToBuildCircuits 0.25",
            "ShutdownWaitLength 0",
            f"__OwningControllerProcess {os.getpid()}",
            "GeoIPFile /dev/null",
            "GeoIPv6File /dev/null",
            "Schedulers Vanilla",
            "RunAsDaemon 0",
            "SafeLogging 0",
            "Log notice stdout",
        ]
        if os.environ.get("TOR_NET_DEBUG_LOG"):  # e.g. "info": a second, detailed log file
            lines += [f"Log {os.environ['TOR_NET_DEBUG_LOG']} file {self.dir(name) / 'debug.log'}",
                      "LogTimeGranularity 1"]
        if name in RELAYS:
            lines += [
                "Address 127.0.0.1",
                f"ORPort 127.0.0.1:{b + or_offset(name)}",
                "SocksPort 0",
                "ExitRelay 0",
                "ExitPolicy reject *:*",
                "ContactInfo hearth test network <nobody@localhost>",
            ]
            if name == "auth0":
                lines += [
                    "AuthoritativeDirectory 1",
                    "V3AuthoritativeDirectory 1",
                    # tor >= 0.4.8: AssumeReachable no longer covers other relays; without
                    # this a restarted authority lists the relays it knows from its cache as
                    # not running until each uploads a new descriptor.
                    "AuthDirTestReachability 0",
                    # Fast and Stable are relative to the other relays (the slowest eighth is
                    # not Fast, below-median uptime is not Stable); onion-service paths need
                    # both, and with 4 relays one missing flag leaves vanguards-lite without a
                    # layer-2 node ("Failed to find node for hop #2"). These cap the thresholds.
                    "AuthDirFastGuarantee 1 bytes",
                    "AuthDirVoteStableGuaranteeMinUptime 0 seconds",
                    "AuthDirVoteStableGuaranteeMTBF 0 seconds",
                    f"TestingV3AuthVotingStartOffset {self.vote_offset}",
                    f"DirPort 127.0.0.1:{b + DIR_OFFSET}",
                ]
        if name not in RELAYS:
            # With only 4 relays vanguards-lite paths often come out as X -> Y -> X (guard
            # and third hop the same relay); Y refuses "to extend back to the previous hop",
            # and the client or service retried such paths for 15-20 s. No use on a test net.
            lines.append("VanguardsLiteEnabled 0")
        if name == "hs":
            host, port = self.args.target_addr
            control = b + (CLIENT_CONTROL_OFFSET if self.args.combined else HS_CONTROL_OFFSET)
            lines += [
                f"ControlPort 127.0.0.1:{control}",
                "CookieAuthentication 1",
                f"HiddenServiceDir {self.dir(name) / 'onion'}",
                f"HiddenServicePort {self.args.virtual_port} {host}:{port}",
                # Network off until the launcher has subscribed to HS_DESC events, so no
                # upload can happen before it listens.
                "DisableNetwork 1",
            ]
            lines.append(f"SocksPort 127.0.0.1:{b + SOCKS_OFFSET} ExtendedErrors"
                         if self.args.combined else "SocksPort 0")
        elif name == "client":
            lines += [
                f"SocksPort 127.0.0.1:{b + SOCKS_OFFSET} ExtendedErrors",
                f"ControlPort 127.0.0.1:{b + CLIENT_CONTROL_OFFSET}",
                "CookieAuthentication 1",
            ]
        return "\n".join(lines) + "\n"

    def start(self, name: str) -> None:
        d = self.dir(name)
        d.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)
        torrc = d / "torrc"
        torrc.write_text(self.torrc(name))
        logf = d / "tor.log"
        for f in (logf, d / "debug.log"):  # keep the previous run's logs as *.1
            if f.exists():
                os.replace(f, f.with_suffix(".log.1"))
        (d / "control_auth_cookie").unlink(missing_ok=True)
        # glibc: one malloc arena, and a fixed mmap threshold. Relays compress every new
        # consensus (one per 10 s); with glibc's dynamic threshold those big buffers end up
        # on the heap and are never given back: 26-54 MiB per relay instead of ~14.
        env = dict(os.environ, MALLOC_ARENA_MAX="1", MALLOC_MMAP_THRESHOLD_="262144")
        if self.shim:
            env["LD_PRELOAD"] = " ".join(filter(None, [str(self.shim), env.get("LD_PRELOAD")]))
        with open(logf, "wb") as out:
            self.procs[name] = spawn(["tor", "--defaults-torrc", "/dev/null", "-f", str(torrc)],
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, env=env, cwd=d)
        self.write_pids()

    def write_pids(self) -> None:
        text = "".join(f"{p.pid} {self.dir(n) / 'torrc'}\n" for n, p in self.procs.items())
        (self.root / "pids").write_text(text)

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise Failure(f"tor {name} exited (status {p.returncode})", [name])

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 2
        for p in self.procs.values():
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        (self.root / "pids").unlink(missing_ok=True)

    def log_tail(self, name: str, n: int = 15) -> str:
        """The last lines of a tor's log, without the warnings every test tor prints."""
        try:
            lines = self.dir(name).joinpath("tor.log").read_text(errors="replace").splitlines()
        except OSError:
            return "    (no log)"
        lines = [l for l in lines if l.strip() and not any(b in l for b in LOG_BOILERPLATE)]
        return "\n".join("    " + l for l in lines[-n:]) or "    (nothing unusual)"


def kill_leftovers(root: Path) -> None:
    """Tors of an earlier launcher on this directory that was SIGKILLed moments ago."""
    pids = root / "pids"
    if not pids.exists():
        return
    victims = []
    for line in pids.read_text().splitlines():
        try:
            pid_s, torrc = line.split(" ", 1)
            cmd = Path(f"/proc/{pid_s}/cmdline").read_bytes().split(b"\0")
        except (ValueError, OSError):
            continue
        if torrc.encode() in cmd:
            victims.append(int(pid_s))
    for pid in victims:
        log(f"stopping leftover tor {pid} of an earlier launcher")
        with_ignored(os.kill, pid, signal.SIGTERM)
    deadline = time.monotonic() + 2
    while victims and time.monotonic() < deadline:
        victims = [p for p in victims if Path(f"/proc/{p}").exists()]
        time.sleep(0.05)
    for pid in victims:
        with_ignored(os.kill, pid, signal.SIGKILL)
    pids.unlink(missing_ok=True)


def with_ignored(fn, *a) -> None:
    try:
        fn(*a)
    except OSError:
        pass


# --- readiness gates ---------------------------------------------------------------------

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore http_proxy


def http_get(port: int, path: str) -> str | None:
    try:
        with NO_PROXY.open(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None


MD_CONSENSUS = "/tor/status-vote/current/consensus-microdesc"
FLAGS = {"Running", "Valid", "Guard", "HSDir", "Fast", "Stable"}  # every relay needs all
# A consensus is valid 30 s (3 voting intervals). Ready needs one valid at least this much
# longer, so that the next one (every 10 s) is out before the client's expires.
MIN_CONSENSUS_LEFT = 10


def consensus_valid_until(path: Path) -> dt.datetime | None:
    try:
        with path.open() as f:
            for line in f:
                if line.startswith("valid-until "):
                    return dt.datetime.strptime(line.split(" ", 1)[1].strip(), "%Y-%m-%d %H:%M:%S")
    except (OSError, ValueError):
        pass
    return None


def drop_expiring_consensus(net: "Net") -> None:
    """A cached consensus that expires before the gate could pass it is of no use; worse, an
    authority that loads it (from its own files, from a relay, or from its DirPort, which
    serves the ones kept in diff-cache/) and sees it expire switches schedules. So every copy
    goes, and the authority votes at once (see Net)."""
    until = consensus_valid_until(net.dir("auth0") / "cached-microdesc-consensus")
    soon = dt.datetime.utcnow() + dt.timedelta(seconds=MIN_CONSENSUS_LEFT + 2)
    if until is None or until > soon:
        return
    for name in RELAYS:
        for f in net.dir(name).glob("*"):
            if f.name == "diff-cache":
                shutil.rmtree(f)
            elif f.name.startswith(("cached-consensus", "cached-microdesc-consensus",
                                    "unverified-")):
                f.unlink()


def consensus_missing(text: str, want: dict[str, tuple[str, int]]) -> list[str]:
    """Relays of `want` (name -> (fingerprint, ORPort)) not listed as usable; [] when all are."""
    now = dt.datetime.utcnow()
    valid_until = None
    entries: dict[str, tuple[str, int, set[str]]] = {}
    current = None
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "valid-until" and len(f) >= 3:
            valid_until = dt.datetime.strptime(f"{f[1]} {f[2]}", "%Y-%m-%d %H:%M:%S")
        elif f[0] == "r" and len(f) >= 8:  # ... IP ORPort DirPort (both flavours end so)
            ident = base64.b64decode(f[2] + "=" * (-len(f[2]) % 4)).hex().upper()
            current = f[1]
            entries[current] = (ident, int(f[-2]), set())
        elif f[0] == "s" and current in entries:
            entries[current][2].update(f[1:])
    if valid_until is None or valid_until <= now + dt.timedelta(seconds=MIN_CONSENSUS_LEFT):
        return ["(consensus expired or about to)"]
    missing = []
    for name, (fp, port) in want.items():
        e = entries.get(name)
        if not e or e[0] != fp or e[1] != port or not FLAGS <= e[2]:
            missing.append(name)
    return missing


def gate_relays(net: Net, deadline: float) -> str:
    """Gate 2: every ORPort accepts TCP and the microdesc consensus (what clients use) lists
    every relay, with its current ORPort and all of FLAGS. Returns that consensus.
    The ORPort check matters on a cached restart: the authority serves its old consensus at
    once, before the relays listen."""
    dirport = net.base + DIR_OFFSET
    last = None
    while True:
        net.check_alive()
        want = {}
        for name in RELAYS:
            fp = read_fingerprint(net.dir(name))
            if fp:
                want[name] = (fp, net.base + or_offset(name))
        silent = [n for n in RELAYS if n not in want or not can_connect(want[n][1])]
        if silent:
            status, culprits = "waiting for the ORPorts to listen: " + ", ".join(silent), silent
        elif (text := http_get(dirport, MD_CONSENSUS)) is None:
            status, culprits = "waiting for the first consensus", ["auth0"]
        elif missing := consensus_missing(text, want):
            status = "waiting for the consensus to list " + ", ".join(missing)
            culprits = ["auth0"] + [n for n in missing if n in RELAYS]
        else:
            return text
        if status != last:
            log(status)
            last = status
        if time.monotonic() > deadline:
            raise Failure(f"timed out: {status}", list(dict.fromkeys(culprits)))
        pause(0.2)


def seed_directory(net: Net, consensus: str, names: list[str]) -> None:
    """Give the onion service and the client the current microdesc consensus, its
    microdescriptors and the authority certificate before they start. Otherwise they ask a
    relay for microdescriptors that the relay has not fetched itself yet, get 404, and tor
    retries only 10 s later."""
    digests = [line.split()[1] for line in consensus.splitlines() if line.startswith("m ")]
    mds = http_get(net.base + DIR_OFFSET, "/tor/micro/d/" + "-".join(digests))
    bodies = [b for b in re.split(r"(?m)^(?=onion-key$)", mds or "") if b.startswith("onion-key")]
    if len(bodies) < len(digests):
        log("could not fetch the microdescriptors from the authority: the onion service and "
            "the client fetch them themselves")
        return
    # Without an "@last-listed" annotation tor drops cached microdescriptors as old at start.
    valid_after = next(line[len("valid-after "):] for line in consensus.splitlines()
                       if line.startswith("valid-after "))
    cache = "".join(f"@last-listed {valid_after}\n{body}" for body in bodies)
    cert = (net.dir("auth0") / "keys" / "authority_certificate").read_text()
    for name in names:
        d = net.dir(name)
        d.mkdir(parents=True, mode=0o700, exist_ok=True)
        (d / "cached-microdesc-consensus").write_text(consensus)
        (d / "cached-microdescs").write_text(cache)
        (d / "cached-microdescs.new").unlink(missing_ok=True)
        (d / "cached-certs").write_text(cert)


def gate_client_and_uploads(net: Net, client: Control, hs: Control, deadline: float) -> None:
    """Gates 3 and 4: client bootstrap 100 %, then all descriptor uploads (or the grace time)."""
    booted = False
    requested = uploaded = 0  # UPLOADED events name the HSDir but not the descriptor: count
    first_upload = None
    phase = ""
    while True:
        net.check_alive()
        if not booted:
            progress, phase = client.bootstrap()
            if progress >= 100:
                booted = True
                log("client bootstrapped (100 %)")
        for when, ev in client.drain_events(0) + hs.drain_events(0.1 if booted else 0.2):
            f = ev.split()
            if os.environ.get("TOR_NET_DEBUG_LOG"):
                log("event: " + ev)
            if len(f) >= 3 and f[1] == "HS_DESC" and f[2] == "UPLOAD":
                requested += 1
            elif len(f) >= 3 and f[1] == "HS_DESC" and f[2] == "UPLOADED":
                uploaded += 1
                first_upload = first_upload or when
            elif len(f) >= 3 and f[1] == "HS_DESC" and f[2] == "FAILED":
                log("HS_DESC FAILED: " + ev[len("650 HS_DESC FAILED "):])
        # 2 descriptors (current and next time period), each to up to 8 HSDirs (2 replicas x
        # spread 4): with 4 relays every relay gets both.
        expected = 2 * min(len(RELAYS), 8)
        if booted and uploaded and (uploaded >= max(expected, requested)
                                    or time.monotonic() - first_upload >= UPLOADS_GRACE):
            log(f"onion service descriptors uploaded ({uploaded} of {requested} uploads)")
            return
        if time.monotonic() > deadline:
            what = (f"client bootstrap ({phase})" if not booted
                    else f"descriptor uploads ({uploaded} of {expected})")
            raise Failure(f"timed out waiting for {what}", ["client" if not booted else "hs"])


def gate_probe(net: Net, client: Control, onion: str, vport: int, deadline: float) -> None:
    """Gate 5: a real SOCKS5 CONNECT to the onion service; NEWNYM and retry on failure."""
    attempt = 0
    while True:
        attempt += 1
        net.check_alive()
        t = time.monotonic()
        try:
            socks_connect(net.base + SOCKS_OFFSET, onion, vport,
                          min(PROBE_ATTEMPT_TIMEOUT, max(1.0, deadline - t))).close()
            log(f"SOCKS connect to {onion}:{vport} succeeded in {time.monotonic() - t:.2f} s")
            return
        except OSError as e:
            log(f"SOCKS connect attempt {attempt} failed after {time.monotonic() - t:.1f} s: {e}; "
                "SIGNAL NEWNYM and retry")
            if time.monotonic() > deadline:
                raise Failure(f"timed out: SOCKS connect to the onion service failed ({e})",
                              ["client", "hs"])
            client.command("SIGNAL NEWNYM")
            pause(0.5)


# --- echo target and self-test -----------------------------------------------------------

def echo_server() -> None:
    """Internal mode for --self-test: a TCP echo server; prints its port, exits on stdin EOF."""
    import threading

    srv = socket.create_server(("127.0.0.1", 0))
    print(srv.getsockname()[1], flush=True)

    def serve(c: socket.socket) -> None:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with c:
            while data := c.recv(65536):
                c.sendall(data)

    def accept() -> None:
        while True:
            c, _ = srv.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.buffer.read()


def round_trips(socks_port: int, onion: str, vport: int, n: int) -> dict:
    t = time.monotonic()
    s = socks_connect(socks_port, onion, vport, 30)
    connect_ms = (time.monotonic() - t) * 1000
    rtts = []
    with s:
        s.settimeout(10)
        for i in range(n):
            msg = f"{i:06d}".encode().ljust(32, b".")
            t = time.perf_counter()
            s.sendall(msg)
            if recv_exact(s, 32) != msg:
                raise Failure(f"echo round trip {i}: wrong data", ["client", "hs"])
            rtts.append((time.perf_counter() - t) * 1000)
    rtts.sort()
    return {"connect_ms": connect_ms, "p50_ms": statistics.median(rtts),
            "p99_ms": rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))], "max_ms": rtts[-1]}


# --- main --------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    cache_root = os.environ.get("HEARTH_CACHE") or Path.home() / ".cache" / "hearth"
    cache_default = Path(cache_root) / "tor-net"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Output lines and caching: docs/tor.md.")
    p.add_argument("--target", metavar="HOST:PORT",
                   help="where the onion service forwards (required unless --self-test)")
    p.add_argument("--virtual-port", type=int, default=3333, metavar="N",
                   help="the onion service's port (default 3333)")
    p.add_argument("--base-port", type=int, metavar="N",
                   help="use ports N..N+4+relays-1 (default: a free block, kept in the cache)")
    p.add_argument("--cache-dir", type=Path, default=cache_default, metavar="DIR",
                   help=f"keys, identities and the onion key (default {cache_default})")
    p.add_argument("--relays", type=int, default=DEFAULT_RELAYS, metavar="N",
                   help=f"relays, the authority included (default {DEFAULT_RELAYS}, minimum 4)")
    p.add_argument("--timeout", type=float, default=90, metavar="S",
                   help="give up if not ready after S seconds (default 90)")
    p.add_argument("--combined", action="store_true",
                   help="one tor is both the onion service and the client (one tor fewer)")
    p.add_argument("--no-probe", action="store_true",
                   help="skip the final SOCKS connect to the onion service")
    p.add_argument("--fresh", action="store_true",
                   help="discard the cached keys and state first (new onion address)")
    p.add_argument("--wait-lock", action="store_true",
                   help="if another launcher uses the cache dir, wait for it "
                        "(default: run in a fresh temporary dir)")
    p.add_argument("--exit-on-stdin-eof", action="store_true",
                   help="stop when stdin reaches EOF (tie the network to a parent's pipe)")
    p.add_argument("--stop-after-ready", action="store_true",
                   help="self-check: start, print the figures, stop, exit 0")
    p.add_argument("--self-test", action="store_true",
                   help="start an echo target, do 200 round trips through the onion, report, exit")
    p.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if not a.self_test and not a.echo_server and not a.target:
        p.error("--target HOST:PORT is required (or use --self-test)")
    if a.relays < 4:
        p.error("--relays: onion-service circuits need at least 4 distinct relays")
    set_relays(a.relays)
    if a.base_port is not None and not 1024 <= a.base_port <= 65535 - NPORTS:
        p.error("--base-port out of range")
    return a


def parse_target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise Failure(f"--target {text}: expected HOST:PORT")
    try:
        ipaddress.ip_address(host)
    except ValueError:  # tor wants an address, not a name
        host = socket.getaddrinfo(host, None, socket.AF_INET)[0][4][0]
    return host, int(port)


def acquire(cache: Path, wait: bool) -> tuple[Path, object, bool]:
    """The cache dir if its lock is free (or once it is, with --wait-lock), else a temp dir."""
    cache.mkdir(parents=True, exist_ok=True)
    lock = open(cache / "lock", "a+")
    logged = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return cache, lock, False
        except BlockingIOError:
            if not wait:
                lock.close()
                tmp = Path(tempfile.mkdtemp(prefix="hearth-tor-net-"))
                log(f"{cache} is in use by another launcher: using the temporary dir {tmp} "
                    "(fresh keys, removed at exit)")
                return tmp, None, True
            if not logged:
                log(f"{cache} is in use by another launcher: waiting for it (--wait-lock)")
                logged = True
            pause(0.2)


def emit(line: str) -> None:
    try:
        print(line, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        raise Stop("stdout closed", 1) from None


def main() -> int:
    global STDIN_FD
    args = parse_args()
    if args.echo_server:
        echo_server()
        return 0
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    if args.exit_on_stdin_eof:
        STDIN_FD = sys.stdin.fileno()

    net: Net | None = None
    echo: subprocess.Popen | None = None
    root: Path | None = None
    temporary = False
    ready = False
    try:
        if args.self_test:
            echo = spawn([sys.executable, __file__, "--echo-server"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
            port = int(echo.stdout.readline())
            args.target = f"127.0.0.1:{port}"
            log(f"self-test: echo target on {args.target}")
        args.target_addr = parse_target(args.target)

        root, _lock, temporary = acquire(args.cache_dir, args.wait_lock)
        deadline = time.monotonic() + args.timeout  # waiting for the lock is not counted
        kill_leftovers(root)
        try:
            cached_base = json.loads((root / "state.json").read_text()).get("base_port")
        except (OSError, ValueError, AttributeError):
            cached_base = None
        base = choose_base(args.base_port, None if args.fresh else cached_base)
        state = prepare_state(root, base, args.fresh)
        shim = build_shim(args.cache_dir)
        net = Net(root, state, base, args, shim)
        mode = "combined service+client" if args.combined else "separate service and client"
        log(f"ports {base}-{base + NPORTS - 1}, state in {root}, {mode}")

        # Stage 1: the authority and the relays.
        drop_expiring_consensus(net)
        for name in RELAYS:
            net.start(name)
        log("started " + ", ".join(RELAYS))
        consensus = gate_relays(net, deadline)
        t_consensus = time.monotonic() - T0
        log(f"consensus lists all {len(RELAYS)} relays as " + ", ".join(sorted(FLAGS))
            + "; ORPorts listening")

        # Stage 2: the onion service and the client.
        seed_directory(net, consensus, ["hs"] if args.combined else ["hs", "client"])
        net.start("hs")
        if not args.combined:
            net.start("client")
        hs_ctl_port = base + (CLIENT_CONTROL_OFFSET if args.combined else HS_CONTROL_OFFSET)
        hs = Control(net, "hs", hs_ctl_port, deadline)
        hs.command("SETEVENTS HS_DESC")
        hs.command("SETCONF DisableNetwork=0")
        client = hs if args.combined else Control(net, "client", base + CLIENT_CONTROL_OFFSET,
                                                  deadline)
        log("started the onion service" + (" (also the client)" if args.combined else
                                          " and the client"))
        hostname = net.dir("hs") / "onion" / "hostname"
        while not hostname.exists():
            net.check_alive()
            if time.monotonic() > deadline:
                raise Failure("the onion service wrote no hostname", ["hs"])
            pause(0.05)
        onion = hostname.read_text().strip()
        gate_client_and_uploads(net, client, hs, deadline)
        t_uploaded = time.monotonic() - T0

        # Gate 5: a real connection through the onion service.
        if args.no_probe:
            log("--no-probe: skipping the SOCKS connect to the onion service")
        elif not can_connect_target(args.target_addr):
            log(f"target {args.target} is not listening: SKIPPING the SOCKS connect probe "
                "(the network is up, but no connection through the onion was tried)")
        else:
            gate_probe(net, client, onion, args.virtual_port, deadline)
        t_ready = time.monotonic() - T0

        emit(f"onion={onion}:{args.virtual_port}")
        emit(f"socks=127.0.0.1:{base + SOCKS_OFFSET}")
        emit("ready")
        ready = True
        pids = [p.pid for p in net.procs.values()]
        log(f"ready in {t_ready:.1f} s (consensus {t_consensus:.1f} s, descriptors uploaded "
            f"{t_uploaded:.1f} s); {len(pids)} tors, RSS {rss_mib(pids):.0f} MiB")

        if args.stop_after_ready or args.self_test:
            figures = {"ready_s": round(t_ready, 2), "consensus_s": round(t_consensus, 2),
                       "uploaded_s": round(t_uploaded, 2), "tors": len(pids),
                       "rss_mib": round(rss_mib(pids), 1)}
            if args.self_test:
                r = round_trips(base + SOCKS_OFFSET, onion, args.virtual_port, 200)
                figures.update({k: round(v, 3) for k, v in r.items()})
                log(f"200 echo round trips: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                    f"max {r['max_ms']:.2f} ms; SOCKS connect {r['connect_ms']:.1f} ms")
            emit("figures " + " ".join(f"{k}={v}" for k, v in figures.items()))
            return 0
        while True:
            pause(1.0)
            net.check_alive()
    except Failure as e:
        log(f"FAILED: {e}")
        if net is not None:
            for name in dict.fromkeys(n if n in net.procs else "hs" for n in e.nodes):
                if name in net.procs:
                    log(f"last lines of {net.dir(name) / 'tor.log'}:\n{net.log_tail(name)}")
        return 1
    except Stop as e:
        log(f"stopping ({e})")
        return 0 if ready else e.code
    finally:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if net is not None:
            n = len(net.procs)
            net.stop()
            log(f"stopped {n} tors")
        if echo is not None:
            echo.kill()
            echo.wait()
        if temporary and root is not None:
            shutil.rmtree(root, ignore_errors=True)


def can_connect_target(addr: tuple[str, int]) -> bool:
    try:
        socket.create_connection(addr, timeout=1).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
