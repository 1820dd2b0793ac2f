// Smoke tests of the harness against a scratch firmware image (not kept in the repository: see
// README.md, "Smoke tests"). They need HEARTH_EMU_SMOKE_IMAGE=/path/to/elf-or-uf2 and are
// skipped without it. The scratch firmware bridges USB CDC <-> UART1, polls the three I2C
// devices every 50 ms and prints a report line on UART0, drives the fan PWM on GPIO16 from the
// EMC2101 external temperature, and toggles GPIO25 every 100 ms.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import readline from 'node:readline';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EmulatedBoard } from '../../lib/board.mjs';
import { collect, smokeImage, startTcpEcho } from '../../lib/testing.mjs';

const IMAGE = smokeImage();
const SKIP = IMAGE ? false : 'HEARTH_EMU_SMOKE_IMAGE is not set: firmware smoke tests skipped (see README.md)';
if (SKIP) process.stderr.write(`${SKIP}\n`);

const SERVE = fileURLToPath(new URL('../../bin/serve.mjs', import.meta.url));
/** The hearth binary for `hearth sim-chain`: $HEARTH_BIN, else a build in the repository. */
const HEARTH_BIN = [
  process.env.HEARTH_BIN,
  fileURLToPath(new URL('../../../target/release/hearth', import.meta.url)),
  fileURLToPath(new URL('../../../target/debug/hearth', import.meta.url)),
].find((p) => p && existsSync(p));
const enc = (s) => new TextEncoder().encode(s);

/** The last complete "n=..." report line the scratch firmware printed on UART0. */
function lastReport(uart0) {
  const lines = uart0.text().split('\n').slice(0, -1).filter((l) => l.startsWith('n='));
  return lines.at(-1) ?? '';
}

describe('firmware smoke (in-process, deterministic)', { skip: SKIP }, () => {
  let board;
  let uart0;

  before(async () => {
    board = new EmulatedBoard(IMAGE);
    uart0 = collect((cb) => board.uart(0).onByte(cb));
    board.chain.onByte((b) => board.chain.send([b])); // a one-line chain model: echo
    await board.runUntil(() => board.usbHost.enumerated, { timeoutMs: 500, what: 'USB enumeration' });
  });

  test('USB enumerates with the device strings', () => {
    const host = board.usbHost;
    assert.ok(host.enumeratedAtNanos / 1e6 < 50, `enumerated at ${host.enumeratedAtNanos / 1e6} ms`);
    assert.equal(host.device.vendorId, 0x1209);
    assert.equal(host.device.productId, 0x0001);
    assert.deepEqual(host.strings, { manufacturer: 'Hearth', product: 'emu scratch', serialNumber: 'EMU0001' });
    assert.equal(board.usb.connected, true);
    assert.equal(host.stalls, 0);
  });

  test('CDC -> UART1 -> chain echo -> UART1 -> CDC, at the programmed baud', async () => {
    const rx = collect((cb) => board.usb.onData(cb));
    const msg = 'hello chain \x00\xff'.repeat(20); // 280 bytes: several USB packets
    board.usb.write(Uint8Array.from(msg, (c) => c.charCodeAt(0)));
    const took = await board.runUntil(() => rx.bytes.length >= msg.length, { timeoutMs: 500, what: 'echo' });
    rx.stop();
    assert.equal(rx.text(), msg);
    assert.ok(Math.abs(board.chain.baudRate - 115200) / 115200 < 0.001, `baud ${board.chain.baudRate}`);
    // 280 bytes at 115200 8N1 take 24.3 ms on the wire: the run cannot be faster than that
    assert.ok(took >= 24, `round trip took ${took} ms`);
  });

  test('DTR low: the firmware stops sending to the host; DTR high again: it resumes', async () => {
    const rx = collect((cb) => board.usb.onData(cb));
    board.usb.setDtr(false);
    await board.runFor(5);
    board.usb.write(enc('dropped'));
    await board.runFor(20);
    assert.equal(rx.bytes.length, 0);
    board.usb.setDtr(true);
    await board.runFor(5);
    board.usb.write(enc('kept'));
    await board.runUntil(() => rx.bytes.length >= 4, { timeoutMs: 100, what: 'echo after DTR' });
    assert.equal(rx.text(), 'kept');
    rx.stop();
  });

  test('I2C: the firmware identifies and reads all three device models', async () => {
    board.ina260.setVolts(5.1);
    board.ina260.setAmps(2.5);
    await board.runFor(120);
    assert.ok(board.emc2101.readCount(0xfd) > 0);
    assert.equal(board.tps546.readCount(0xad), 1);
    assert.ok(board.ina260.readCount(0xfe) > 0);
    assert.match(uart0.text(), /tps id=true \[06, 54, 49, 54, 6d, 24, 41\] mode=Some\(151\)/);
    const r = lastReport(uart0);
    assert.match(r, /pid=Some\(22\) mfr=Some\(93\)/);
    assert.match(r, /ina=Some\(21577\)\/Some\(8816\) v=Some\(4080\) i=Some\(2000\)/);
    assert.match(r, /absent=nack/);
  });

  test('I2C writes: regulator bring-up and fan setting following the diode temperature', async () => {
    const tps = board.tps546;
    assert.deepEqual(
      tps.writes.map((w) => [w.reg, ...w.bytes]),
      [
        [0x01, 0x00],
        [0x21, 0x4c, 0x02],
        [0x01, 0x80],
      ],
    );
    assert.equal(tps.isOn(), true);
    assert.ok(Math.abs(tps.voutMv() - 1148.4) < 0.1);
    assert.equal(board.pin(10), 1, 'regulator enable pin');
    assert.equal(board.pin(11), 1, 'ASIC out of reset');
    board.emc2101.setExternalTemp(50.5);
    await board.runFor(120);
    assert.equal(board.emc2101.writesTo(0x4c).at(-1), 50);
    assert.ok(Math.abs(board.emc2101.fanPercent() - (50 / 63) * 100) < 1e-9);
    tps.setTemperature(97);
    await board.runFor(120);
    assert.match(lastReport(uart0), /vout=Some\(588\) vrt=Some\(\d+\)/);
  });

  test('faults: open diode -> full fan; vanished EMC2101 -> NACK seen by the firmware', async () => {
    board.emc2101.failExternalDiode('open');
    await board.runFor(120);
    assert.match(lastReport(uart0), /ext=Some\(127\)\/Some\(0\)/); // 0x3F8
    assert.equal(board.emc2101.fanSetting(), 63);
    board.emc2101.failExternalDiode(null);
    board.emc2101.setExternalTemp(30);
    const nacks = board.i2c.stats.nacks;
    board.emc2101.present = false;
    try {
      await board.runFor(120);
      // (wr= is not checked: see README, "embassy-rp async I2C after a NACK")
      assert.match(lastReport(uart0), /pid=None mfr=None ext=None\/None int=None set=63/);
      assert.ok(board.i2c.stats.nacks - nacks > 10);
    } finally {
      board.emc2101.present = true;
    }
    await board.runFor(120);
    assert.match(lastReport(uart0), /pid=Some\(22\).* set=30 wr=true/);
  });

  test('PWM: duty from the slice registers, cross-checked against GPIO16 edges', async () => {
    board.emc2101.setExternalTemp(21);
    await board.runFor(120);
    const pwm = board.pwm(16);
    assert.equal(pwm.routed, true);
    assert.equal(pwm.enabled, true);
    assert.equal(pwm.slice, 0);
    assert.equal(pwm.channel, 'A');
    assert.equal(pwm.frequencyHz, 25000);
    assert.equal(pwm.compare, Math.floor((21 * 5000) / 63));
    // rp2040js does drive the pin from the PWM counter: measure it over 40 periods
    let high = 0;
    let lastRise = null;
    const stop = board.onPinChange(16, (level, _prev, ms) => {
      if (level === 1) lastRise = ms;
      else if (lastRise !== null) high += ms - lastRise;
    });
    const t0 = board.ms;
    await board.runFor(1.6);
    stop();
    const measured = high / (board.ms - t0);
    assert.ok(Math.abs(measured - pwm.duty) < 0.02, `edges say ${measured}, registers ${pwm.duty}`);
  });

  test('timing: the 100 ms embassy Timer blink, in simulated time', async () => {
    const edges = [];
    const stop = board.onPinChange(25, (_l, _p, ms) => edges.push(ms));
    await board.runFor(1000);
    stop();
    assert.ok(edges.length >= 9, `${edges.length} edges`);
    const intervals = edges.slice(1).map((t, i) => t - edges[i]).sort((a, b) => a - b);
    const median = intervals[intervals.length >> 1];
    assert.ok(Math.abs(median - 100) < 0.05, `median interval ${median} ms`);
    // The executor is cooperative: when the alarm falls inside the main task's blocking UART0
    // report (about 3 ms at 1 Mbaud) the toggle comes late, never early.
    assert.ok(intervals[0] > 99.95 && intervals.at(-1) < 104, `intervals ${intervals}`);
  });

  test('rp2040js warnings are counted, not printed', () => {
    const { count, errors, messages } = board.warnings;
    assert.equal(errors, 0);
    assert.ok(count > 0 && count < 100, `${count} warnings`);
    assert.ok(messages.size > 0);
  });
});

describe('firmware smoke (TCP chain bridge)', { skip: SKIP }, () => {
  test('CDC round trip through a TCP echo server, paced to wall time', async () => {
    const echo = await startTcpEcho();
    const board = new EmulatedBoard(IMAGE, { chain: { port: echo.port }, maxLeadMs: 10 });
    try {
      await board.ready();
      await board.runUntil(() => board.usbHost.enumerated, { timeoutMs: 500, what: 'USB enumeration' });
      const rx = collect((cb) => board.usb.onData(cb));
      board.usb.write(enc('over tcp'));
      await board.runUntil(() => rx.bytes.length >= 8, { timeoutMs: 1000, what: 'TCP echo' });
      assert.equal(rx.text(), 'over tcp');
      assert.equal(Buffer.from(echo.received).toString(), 'over tcp');
      // paced: 300 simulated ms in short runs take at least 300 - maxLeadMs wall ms
      const wall0 = performance.now();
      const sim0 = board.ms;
      for (let i = 0; i < 30; i++) await board.runFor(10);
      const lead = board.ms - sim0 - (performance.now() - wall0);
      // the bound is maxLeadMs from the pacing anchor; the segment may start up to maxLeadMs
      // behind it, so over the segment the lead is at most 2 x maxLeadMs (+ one slice)
      assert.ok(lead <= 2 * 10 + 1, `simulated time ran ${lead} ms ahead of wall time`);
    } finally {
      await board.close();
      await echo.close();
    }
  });
});

describe('firmware smoke (hearth sim-chain)', { skip: SKIP || (!HEARTH_BIN && 'no hearth binary (build it or set HEARTH_BIN)') }, () => {
  test('a BM1370 chip-id read through USB, UART1 and `hearth sim-chain` with 4 chips', async () => {
    const sim = spawn(HEARTH_BIN, ['sim-chain', '--listen', '127.0.0.1:0', '--model', 'BM1370', '--chips', '4'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    try {
      const line = await new Promise((resolve) => readline.createInterface({ input: sim.stdout }).once('line', resolve));
      const port = Number(/listening on .*:(\d+)/.exec(line)[1]);
      const board = new EmulatedBoard(IMAGE, { chain: { port } });
      try {
        await board.ready();
        await board.runUntil(() => board.usbHost.enumerated, { timeoutMs: 500, what: 'USB enumeration' });
        const rx = collect((cb) => board.usb.onData(cb));
        board.usb.write([0x55, 0xaa, 0x52, 0x05, 0x00, 0x00, 0x0a]); // broadcast read of register 0
        const replies = () => rx.text().split('\xaa\x55\x13\x70').length - 1;
        await board.runUntil(() => replies() >= 4 && rx.bytes.length >= 36, { timeoutMs: 2000, what: '4 replies' });
        await board.runFor(20);
        assert.equal(replies(), 4);
      } finally {
        await board.close();
      }
    } finally {
      sim.kill();
    }
  });
});

describe('bin/serve.mjs', { skip: SKIP }, () => {
  let echo;
  let proc;
  let answers;
  let usbPort;

  before(async () => {
    echo = await startTcpEcho();
    proc = spawn(process.execPath, [SERVE, IMAGE, '--chain', `127.0.0.1:${echo.port}`, '--usb-listen', '0'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = readline.createInterface({ input: proc.stdout });
    const queue = [];
    let waiter = null;
    lines.on('line', (l) => (waiter ? (waiter(l), (waiter = null)) : queue.push(l)));
    const nextLine = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => (waiter = r)));
    const first = await nextLine();
    const m = /^usb listening on 127\.0\.0\.1:(\d+)$/.exec(first);
    assert.ok(m, `first line: ${first}`);
    usbPort = Number(m[1]);
    answers = async (cmd) => {
      proc.stdin.write(`${JSON.stringify(cmd)}\n`);
      return JSON.parse(await nextLine());
    };
  });

  after(async () => {
    if (proc.exitCode === null) {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    }
    await echo.close();
  });

  const until = async (check, ms = 3000) => {
    const t0 = Date.now();
    while (!(await check())) {
      if (Date.now() - t0 > ms) return false;
      await new Promise((r) => setTimeout(r, 25));
    }
    return true;
  };

  test('CDC over TCP (connecting raises DTR), chain over TCP, stdin control', async () => {
    const client = net.connect(usbPort, '127.0.0.1');
    let got = '';
    client.on('data', (d) => (got += d.toString('latin1')));
    await new Promise((r) => client.once('connect', r));
    assert.ok(await until(async () => (await answers({ cmd: 'status' })).result.usb.dtr), 'DTR up');
    client.write('via serve');
    assert.ok(await until(() => got === 'via serve'), `got ${JSON.stringify(got)}`);

    assert.deepEqual(await answers({ cmd: 'setExternalTemp', value: 33 }), { ok: true, cmd: 'setExternalTemp' });
    assert.ok(await until(async () => (await answers({ cmd: 'status' })).result.fanSetting === 33), 'fan follows');
    await answers({ cmd: 'failExternalDiode', value: 'open' });
    assert.ok(await until(async () => (await answers({ cmd: 'status' })).result.fanPercent === 100), 'full fan');
    const status = (await answers({ cmd: 'status' })).result;
    assert.equal(status.regulator.on, true);
    assert.equal(status.regulator.voutMv, 1148.4);
    assert.equal(status.pins.powerEnable, 1);
    assert.equal(status.fanPwmDuty, 1);
    assert.equal(status.usb.serialNumber, 'EMU0001');
    assert.equal((await answers({ cmd: 'nope' })).ok, false);

    client.destroy();
    assert.ok(await until(async () => !(await answers({ cmd: 'status' })).result.usb.dtr), 'DTR down');
    proc.stdin.write('{"cmd":"quit"}\n');
    const code = await new Promise((r) => proc.once('exit', r));
    assert.equal(code, 0);
  });
});
