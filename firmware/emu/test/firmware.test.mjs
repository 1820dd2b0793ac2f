// The real Hearth firmware image in rp2040js, with its chip chain wired over TCP to the real
// `hearth sim-chain` and models of its I2C peripherals: USB, chain bring-up on the UART, mining
// with every nonce checked here, and the safety paths in emulated time.
//
// Needs the image (scripts/firmware.sh) and the hearth binary (cargo build -p hearth); both are
// built by scripts/test.sh. Paths: HEARTH_FIRMWARE_IMAGE, HEARTH_BIN.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { EmulatedBoard } from '../lib/board.mjs';
import { LinkHost, workItem, nonceZeroBits } from '../lib/host.mjs';

const root = new URL('../../../', import.meta.url).pathname;
const image = process.env.HEARTH_FIRMWARE_IMAGE ?? `${root}target/firmware/hearth-bm1370-r1.elf`;
const hearthBin = process.env.HEARTH_BIN ?? [`${root}target/debug/hearth`, `${root}target/release/hearth`].find(existsSync);

const FAN_PIN = 16;
const POWER_PIN = 10;
const RESET_PIN = 11;
const FLOOR_BITS = 12;

let chain;
let chainPort;

before(async () => {
  assert.ok(existsSync(image), `firmware image ${image} missing: run scripts/firmware.sh (or set HEARTH_FIRMWARE_IMAGE)`);
  assert.ok(hearthBin, 'hearth binary missing: run cargo build -p hearth (or set HEARTH_BIN)');
  chain = spawn(hearthBin, ['sim-chain', '--listen', '127.0.0.1:0', '--model', 'BM1370', '--chips', '1', '--floor-bits', String(FLOOR_BITS)], { stdio: ['ignore', 'pipe', 'ignore'] });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: chain.stdout }).once('line', resolve);
    chain.once('exit', (code) => reject(new Error(`hearth sim-chain exited (${code})`)));
  });
  chainPort = Number(line.trim().split(':').pop());
});

after(() => chain?.kill());

const open = new Set();
after(async () => { for (const b of open) await b.close(); });

/** A board with its chain connected and a host attached (closed after the tests, even on failure). */
async function boot() {
  const board = new EmulatedBoard(image, { chain: { host: '127.0.0.1', port: chainPort } });
  open.add(board);
  await board.ready();
  const host = new LinkHost(board);
  const txFrames = [];
  let current = [];
  // When each byte of `current` reached the chips: a frame's time is its last byte's.
  let times = [];
  board.chain.onByte((b) => {
    current.push(b);
    times.push(board.ms);
    // Frames start 55 AA; keep a rolling record of them.
    if (current.length >= 2 && current[current.length - 2] === 0x55 && b === 0xaa && current.length > 2) {
      txFrames.push({ ms: times[times.length - 3], bytes: current.slice(0, -2) });
      current = [0x55, 0xaa];
      times = times.slice(-2);
    }
  });
  return { board, host, txFrames: () => [...txFrames, { ms: times.at(-1) ?? board.ms, bytes: current }] };
}

/** Boot, wait for the chain to come up and hand the board work (share floor of the emulated chips). */
async function hashing(makeItem = workItem) {
  const b = await boot();
  await b.host.runUntil(() => b.board.usb.connected, { what: 'USB connection' });
  b.host.send('Hello');
  b.host.send({ SetShareFloor: { bits: FLOOR_BITS } });
  await b.host.runUntil(() => b.host.of('Log').some((l) => l.body.text.includes('chain up')), { timeoutMs: 30_000, what: 'chain up' });
  b.items = new Map();
  for (let id = 1; id <= 16; id++) {
    const item = makeItem(id);
    b.items.set(id, item);
    b.host.send({ Work: item });
  }
  return b;
}

const hex = (bytes) => Buffer.from(bytes).toString('hex');

test('USB enumerates with the board identity from boards/hearth-bm1370-r1.toml', async () => {
  const { board, host } = await boot();
  await host.runUntil(() => board.usb.connected && board.usbHost.strings?.serialNumber, { what: 'USB connection' });
  assert.equal(board.usbHost.device.vendorId, 0x1209);
  assert.equal(board.usbHost.device.productId, 0x0001);
  assert.equal(board.usbHost.strings.manufacturer, 'Hearth');
  assert.equal(board.usbHost.strings.product, 'Hearth BM1370 board r1');
  assert.ok(board.usbHost.strings.serialNumber.length > 0);
  host.send('Hello');
  await host.runUntil(() => host.of('Hello').length > 0, { what: 'Hello' });
  const caps = host.of('Hello')[0].body;
  assert.equal(caps.chip_id, 0x1370);
  assert.equal(caps.board, 'hearth-bm1370-r1');
  assert.equal(caps.protocol, 1);
  await board.close();
});

test('power-on sequence, then chain enumeration and init on the UART', async () => {
  const { board, host, txFrames } = await hashing();
  assert.equal(board.pin(POWER_PIN), 1, 'regulator enabled');
  assert.equal(board.pin(RESET_PIN), 1, 'chips out of reset');
  assert.ok(board.tps546.isOn(), 'regulator output on');
  assert.ok(Math.abs(board.tps546.voutMv() - 1150) <= 5, `core at ${board.tps546.voutMv()} mV`);
  const frames = txFrames().map((f) => hex(f.bytes));
  const expect = (frame, what) => assert.ok(frames.includes(frame), `${what} (${frame}) not seen on the UART`);
  expect('55aa510900a49000ffff1c', 'version rolling enable');
  expect('55aa52050000' + '0a', 'chip-id read');
  expect('55aa5305000003', 'chain inactive');
  expect('55aa400500001c', 'set address 0');
  expect('55aa5109002811300200' + '03', 'baud switch to 1 Mbaud');
  expect('55aa51090008' + '40a80230' + '03', 'PLL at 525 MHz (fb 168, ref 2, post 4/1)');
  assert.equal(board.chain.baudRate > 1_000_000 && board.chain.baudRate < 1_100_000, true, `UART at ${board.chain.baudRate}`);
  await board.close();
});

test('mining: every reported nonce hashes to its work item and the share threshold', async () => {
  const { board, host, items } = await hashing();
  await host.runUntil(() => host.of('Nonce').length >= 20, { timeoutMs: 60_000, what: '20 nonces' });
  const shareBits = FLOOR_BITS + 8; // + ticket mask for difficulty 256
  const seen = new Set();
  for (const { body } of host.of('Nonce')) {
    const item = items.get(body.work_id);
    assert.ok(item, `nonce for unknown work ${body.work_id}`);
    assert.equal((body.version & ~0x1fffe000) >>> 0, 0x20000000, 'only mask bits rolled');
    const bits = nonceZeroBits(item, body);
    assert.equal(bits, body.zero_bits, 'the board computed the same hash');
    assert.ok(bits >= shareBits, `${bits} zero bits < ${shareBits}`);
    const key = `${body.work_id}/${body.version}/${body.nonce}`;
    assert.ok(!seen.has(key), 'duplicate nonce');
    seen.add(key);
  }
  // Telemetry (once a second) catches up with the counters.
  const counted = () => host.of('Telemetry').at(-1)?.body.chips[0].nonces ?? 0;
  await host.runUntil(() => counted() >= 20, { timeoutMs: 3000, what: 'telemetry counting the nonces' });
  const telemetry = host.of('Telemetry').at(-1).body;
  assert.equal(telemetry.state, 'Hashing', JSON.stringify(host.of('Telemetry').slice(-4)));
  assert.equal(telemetry.frequency_khz, 525_000);
  assert.ok(telemetry.chips[0].nonces >= 20);
  assert.equal(telemetry.chips[0].errors, 0);
  assert.ok(telemetry.chips[0].hash_counter > 0, 'the chip\'s hash counter is polled');
  assert.equal(telemetry.chips[0].error_counter, 0);
  assert.equal(board.watchdogResets, 0);
  assert.ok(board.mcu.peripherals[0x40058].enable, 'the firmware runs the watchdog');
  await board.close();
});

test('a frequency change ramps the PLL 6.25 MHz a step while jobs keep flowing', async () => {
  const { board, host, txFrames } = await hashing();
  await host.runUntil(() => host.of('Nonce').length >= 3, { timeoutMs: 60_000, what: '3 nonces' });
  const from = txFrames().length;
  host.send({ SetFrequency: { khz: 450_000 } });
  await host.runFor(2500);
  const frames = txFrames().slice(from).map((f) => f.bytes);
  // Broadcast write (0x51) of PLL0 (register 0x08).
  const pll = frames.map((f, i) => [f, i]).filter(([f]) => f[2] === 0x51 && f[5] === 0x08);
  assert.equal(pll.length, (525_000 - 450_000) / 6_250, 'one write per step');
  assert.equal(new Set(pll.map(([f]) => hex(f.slice(6, 10)))).size, pll.length, 'every step a new setting');
  const [first, last] = [pll[0][1], pll.at(-1)[1]];
  const jobsDuringRamp = frames.slice(first, last).filter((f) => f[2] === 0x21).length;
  assert.ok(jobsDuringRamp >= 1, 'jobs went out while the clock ramped');
  await host.runUntil(() => host.of('Telemetry').at(-1)?.body.frequency_khz === 450_000, { timeoutMs: 2000, what: 'telemetry at 450 MHz' });
  await board.close();
});

/** Broadcast register writes (0x51) to `register` among the chain frames. */
const writes = (frames, register) => frames.filter((f) => f.bytes[2] === 0x51 && f.bytes[5] === register);
const isJob = (f) => f.bytes[2] === 0x21;

test('a template signalling a BIP320 bit: the chips stop rolling it and every nonce verifies', async () => {
  // Regtest above height 143 sets testdummy's bit 28; the daemon leaves it out of the mask.
  const signalling = (id) => ({ ...workItem(id), version: 0x30000000, version_mask: 0x0fffe000 });
  const { board, host, items, txFrames } = await hashing(signalling);
  await host.runUntil(() => host.of('Nonce').length >= 10, { timeoutMs: 60_000, what: '10 nonces' });
  // 0xA4 = 0x9000_0000 | mask >> 13, to every chip, before the first job of that mask.
  const frames = txFrames();
  const maskWrite = writes(frames, 0xa4).findIndex((f) => hex(f.bytes.slice(6, 10)) === '90007fff');
  assert.ok(maskWrite >= 0, 'no 0xA4 write of the mask 0x0FFFE000');
  const maskAt = frames.indexOf(writes(frames, 0xa4)[maskWrite]);
  const firstJob = frames.findIndex(isJob);
  assert.ok(maskAt < firstJob, `mask write at frame ${maskAt}, first job at ${firstJob}`);
  for (const { body } of host.of('Nonce')) {
    assert.equal((body.version & 0x10000000) >>> 0, 0x10000000, 'the template\'s bit 28 kept');
    assert.equal(nonceZeroBits(items.get(body.work_id), body), body.zero_bits);
  }
  await host.runUntil(() => (host.of('Telemetry').at(-1)?.body.chips[0].nonces ?? 0) >= 10, { timeoutMs: 3000, what: 'telemetry' });
  assert.equal(host.of('Telemetry').at(-1).body.chips[0].errors, 0, 'no nonce failed verification');
  await board.close();
});

test('pause switches the hash clock off: no nonces while paused, Idle only after, and resume ramps it back', async () => {
  const { board, host, txFrames } = await hashing();
  await host.runUntil(() => host.of('Nonce').length >= 3, { timeoutMs: 60_000, what: '3 nonces' });
  const from = txFrames().length;
  const pausedAt = board.ms;
  host.send('Pause');
  await host.runUntil(() => host.of('Telemetry', pausedAt).some((t) => t.body.state === 'Idle'), { timeoutMs: 3000, what: 'Idle' });
  const idleAt = host.of('Telemetry', pausedAt).find((t) => t.body.state === 'Idle').ms;
  // PLL0 (0x08) written to every chip with its enable bit (30) clear, before Idle was reported.
  const off = writes(txFrames().slice(from), 0x08).filter((f) => (f.bytes[6] & 0x40) === 0);
  assert.equal(off.length, 1, 'one clock-off write');
  assert.ok(off[0].ms <= idleAt, `clock off at ${off[0].ms} ms, Idle reported at ${idleAt} ms`);
  // Nonces already on the wire may still land; after that, none for 5 s.
  const quietFrom = idleAt + 200;
  await host.runFor(5000);
  const whilePaused = host.of('Nonce', quietFrom).length;
  const last = host.of('Telemetry').at(-1).body;
  assert.equal(last.frequency_khz, 0, JSON.stringify(last));
  assert.equal(last.state, 'Idle');
  assert.equal(txFrames().slice(from).filter((f) => f.ms > off[0].ms && isJob(f)).length, 0, 'no job while paused');
  assert.equal(whilePaused, 0, `${whilePaused} nonces while paused`);
  // Resume: the clock ramps up from 50 MHz as at bring-up, then jobs and nonces come back.
  const resumeFrom = txFrames().length;
  const resumedAt = board.ms;
  host.send('Resume');
  const jobAfterResume = () => txFrames().slice(resumeFrom).find(isJob);
  await host.runUntil(() => jobAfterResume(), { timeoutMs: 20_000, what: 'a job after Resume' });
  const jobAt = jobAfterResume().ms;
  await host.runUntil(() => host.of('Nonce', jobAt).length >= 3, { timeoutMs: 60_000, what: '3 nonces after Resume' });
  const after = txFrames().slice(resumeFrom);
  const ramp = writes(after, 0x08);
  assert.equal(ramp.length, Math.ceil((525_000 - 50_000) / 6_250), 'a ramp step per 6.25 MHz');
  assert.ok(ramp.every((f) => (f.bytes[6] & 0x40) !== 0), 'every step with the clock enabled');
  assert.equal(hex(ramp.at(-1).bytes.slice(6, 10)), '40a80230', 'ends at 525 MHz');
  const firstJob = after.findIndex(isJob);
  assert.ok(firstJob > after.indexOf(ramp.at(-1)), 'the next job only once the clock is back');
  await host.runUntil(() => host.of('Telemetry', resumedAt).some((t) => t.body.state === 'Hashing' && t.body.frequency_khz === 525_000), { timeoutMs: 3000, what: 'Hashing at 525 MHz' });
  process.stderr.write(`pause: clock off ${(off[0].ms - pausedAt).toFixed(1)} ms after Pause, Idle at ${(idleAt - pausedAt).toFixed(1)} ms, 0 nonces in 5 s; resume: ${ramp.length} ramp steps, first job ${(jobAt - resumedAt).toFixed(0)} ms after Resume\n`);
  await board.close();
});

test('over-temperature: hashing stops and the fan goes to 100 % within 1 s of emulated time', async () => {
  const { board, host, txFrames } = await hashing();
  await host.runFor(1500);
  board.emc2101.setExternalTemp(95);
  const hot = board.ms;
  await host.runUntil(() => host.of('Fault', hot).some((f) => f.body.OverTemperature), { timeoutMs: 5000, what: 'OverTemperature fault' });
  const reported = host.of('Fault', hot).find((f) => f.body.OverTemperature).ms;
  assert.ok(reported - hot <= 1000, `fault after ${reported - hot} ms`);
  assert.ok(board.pwm(FAN_PIN).duty >= 0.99, `fan duty ${board.pwm(FAN_PIN).duty}`);
  assert.ok(!board.tps546.isOn(), 'core voltage off');
  assert.equal(board.pin(RESET_PIN), 0, 'chips held in reset');
  const jobsBefore = txFrames().filter((f) => f.bytes[2] === 0x21).length;
  await host.runFor(2000);
  assert.equal(txFrames().filter((f) => f.bytes[2] === 0x21).length, jobsBefore, 'no job sent while too hot');
  // Cool down below the limit minus the hysteresis: the board clears the fault and comes back.
  board.emc2101.setExternalTemp(60);
  await host.runUntil(() => host.of('Fault', hot).some((f) => f.body === 'Cleared'), { what: 'Cleared' });
  await host.runUntil(() => board.tps546.isOn(), { timeoutMs: 30_000, what: 'power back on' });
  await board.close();
});

test('a failed temperature sensor: fan to 100 %, then hashing stops', async () => {
  const { board, host } = await hashing();
  await host.runFor(1000);
  board.emc2101.failExternalDiode('open');
  const failed = board.ms;
  await host.runUntil(() => host.of('Fault', failed).some((f) => f.body.SensorFailure), { timeoutMs: 3000, what: 'SensorFailure' });
  assert.equal(host.of('Fault', failed).find((f) => f.body.SensorFailure).body.SensorFailure.sensor, 'AsicTemperature');
  await host.runUntil(() => board.pwm(FAN_PIN).duty >= 0.99, { timeoutMs: 1000, what: 'fan at 100 %' });
  await host.runUntil(() => !board.tps546.isOn(), { timeoutMs: 3000, what: 'core off after repeated failures' });
  await board.close();
});

test('a silent host: the board enters its safe state, and leaves it when the host returns', async () => {
  const { board, host } = await hashing();
  await host.runFor(1000);
  host.silent = true;
  const quiet = board.ms;
  await host.runUntil(() => host.of('Fault', quiet).some((f) => f.body.HostSilent), { timeoutMs: 15_000, what: 'HostSilent' });
  const at = host.of('Fault', quiet).find((f) => f.body.HostSilent).ms;
  assert.ok(at - quiet >= 9_000 && at - quiet <= 11_000, `safe state after ${at - quiet} ms`);
  assert.ok(!board.tps546.isOn(), 'core off');
  assert.equal(board.pin(RESET_PIN), 0);
  assert.ok(board.pwm(FAN_PIN).duty >= 0.45, `fan stays on (duty ${board.pwm(FAN_PIN).duty})`);
  host.silent = false;
  await host.runUntil(() => host.of('Fault', at).some((f) => f.body === 'Cleared'), { what: 'Cleared' });
  await host.runUntil(() => board.tps546.isOn(), { timeoutMs: 30_000, what: 'power back on' });
  await board.close();
});

test('a stalled fan: a fault and full duty within 3.5 s, hashing stops within 10.5 s', async () => {
  const { board, host } = await hashing();
  await host.runFor(1000);
  board.emc2101.setTachRpm(0);
  const stalled = board.ms;
  await host.runUntil(() => host.of('Fault', stalled).some((f) => f.body.SensorFailure?.sensor === 'Fan'), { timeoutMs: 5000, what: 'SensorFailure { Fan }' });
  const faultMs = host.of('Fault', stalled).find((f) => f.body.SensorFailure?.sensor === 'Fan').ms - stalled;
  assert.ok(faultMs <= 3500, `fault after ${faultMs} ms`);
  await host.runUntil(() => board.pwm(FAN_PIN).duty >= 0.99, { timeoutMs: 500, what: 'fan at 100 %' });
  assert.ok(board.tps546.isOn(), 'still hashing while the stall is young');
  await host.runUntil(() => !board.tps546.isOn(), { timeoutMs: 8000, what: 'core off' });
  assert.ok(board.ms - stalled <= 10_500, `core off after ${board.ms - stalled} ms`);
  // The fan turns again: the board clears the fault and comes back.
  board.emc2101.setTachRpm(null);
  await host.runUntil(() => board.tps546.isOn(), { timeoutMs: 30_000, what: 'power back on' });
  await board.close();
});

test('a regulator warning throttles, it does not stop the board', async () => {
  const { board, host } = await hashing();
  await host.runFor(1000);
  board.tps546.setStatusWord(0x0004); // TEMPERATURE
  board.tps546.setStatusByte(0x7d, 0x40); // STATUS_TEMPERATURE: OT warning
  const warned = board.ms;
  await host.runUntil(() => host.of('Fault', warned).some((f) => f.body.Throttling), { timeoutMs: 2000, what: 'Throttling' });
  await host.runFor(2000);
  assert.ok(board.tps546.isOn(), 'the core stays on');
  assert.ok(!host.of('Fault', warned).some((f) => f.body.RegulatorFault), 'no RegulatorFault for a warning');
  // The status bits latch until CLEAR_FAULTS: the firmware clears them, so a warning that has
  // passed does not keep the board throttled.
  assert.equal(board.tps546.statusWord, 0, 'latched warning cleared');
  // A fault does stop it (it latches STATUS_WORD's summary bit and STATUS_TEMPERATURE).
  board.tps546.setStatusWord(0x0004);
  board.tps546.setStatusByte(0x7d, 0x80); // OT fault
  await host.runUntil(() => !board.tps546.isOn(), { timeoutMs: 2000, what: 'core off on a fault' });
  // Power off goes first; the report follows on the link.
  await host.runUntil(() => host.of('Fault', warned).some((f) => f.body.RegulatorFault?.status_word === 0x0004), { timeoutMs: 500, what: 'RegulatorFault' });
  await board.close();
});

test('a device holding the I2C bus: the rail goes off within 350 ms and the firmware keeps running', async () => {
  const { board, host } = await hashing();
  await host.runFor(1000);
  assert.ok(board.tps546.isOn());
  board.i2c.hold();
  const held = board.ms;
  // Every transaction now times out (35 ms); the next sensor round (every 250 ms) reads the
  // regulator first, as failed, and the board drops the enable pin, which cuts the rail with
  // the bus still hung. Bound: one sensor period (250 ms) plus the regulator's timeout (35 ms)
  // and the action it triggers, with margin: 350 ms. (The round in progress when the bus hangs
  // gives up on each device at its first timeout, and the next round starts on time.)
  const offMs = await host.runUntil(() => !board.tps546.isOn(), { timeoutMs: 1000, what: 'core off' });
  assert.ok(offMs <= 350, `rail off after ${offMs} ms`);
  await host.runUntil(() => host.of('Fault', held).some((f) => f.body.SensorFailure?.sensor === 'Regulator'), { timeoutMs: 500, what: 'SensorFailure { Regulator }' });
  assert.ok(board.pwm(FAN_PIN).duty >= 0.99, 'fan at 100 %');
  // The main loop keeps turning (no watchdog reset) and answers the host.
  await host.runFor(3000);
  const at = board.ms;
  host.send({ Ping: { seq: 4242 } });
  await host.runUntil(() => host.of('Pong', at).some((p) => p.body.seq === 4242), { timeoutMs: 1000, what: 'Pong' });
  assert.equal(board.watchdogResets, 0);
  assert.ok(!board.tps546.isOn(), 'rail still off');
  process.stderr.write(`hung I2C bus: rail off after ${offMs.toFixed(1)} ms\n`);
  await board.close();
});

test('MCU reset with the rail on: the rail is off within 1 ms and the fan is back at 100 % within 50 ms', async () => {
  const { board, host } = await hashing();
  await host.runUntil(() => host.of('Nonce').length >= 1, { timeoutMs: 60_000, what: 'a nonce' });
  const { emc2101, tps546, ina260 } = board;
  assert.ok(tps546.isOn(), 'the rail is on before the reset');
  const fanBefore = emc2101.fanPercent();
  // The MCU resets (a watchdog reset, a panic, the reset button): its pins let go, and the
  // regulator, fan controller and input monitor around it keep their state. The MCU after the
  // reset is a new emulated RP2040 wired to the same parts, starting from the reset vector.
  await board.haltForReset();
  // Fine slices (0.1 ms) so the times below are measured to 0.1 ms.
  const after = new EmulatedBoard(image, { devices: { emc2101, tps546, ina260 }, sliceMs: 0.1 });
  open.add(after);
  // The bound: off at the reset itself (0 ms; checked at the first sample, within 1 ms of
  // emulated time). The board's pull-down holds the enable pin low, and the firmware made the
  // CONTROL pin authoritative, so nothing the firmware does or fails to do can keep it on.
  const off = [];
  let onSeen = null;
  const sample = () => {
    if (tps546.isOn() && onSeen === null) onSeen = after.ms;
    off.push(!tps546.isOn());
  };
  sample();
  assert.ok(!tps546.isOn(), `rail still on ${after.ms.toFixed(3)} ms after the reset`);
  const fanFull = () => {
    const pwm = after.pwm(FAN_PIN);
    return pwm.routed && pwm.enabled && pwm.duty >= 0.99;
  };
  assert.ok(!fanFull(), 'the new MCU starts with its PWM unprogrammed');
  // The fan controller kept its setting through the reset; the new firmware's PWM is at full
  // duty as soon as it runs.
  assert.ok(emc2101.fanPercent() >= Math.min(fanBefore, 1), 'the fan keeps turning through the reset');
  const fanMs = await after.runUntil(fanFull, { timeoutMs: 50, what: 'fan PWM at 100 %' });
  // The firmware drives the pin low itself and turns OPERATION off on the bus before it does
  // anything else there; the rail stays off until its own power-up decision (after the first
  // chip temperature, 250 ms in).
  const pinMs = fanMs + (await after.runUntil(() => after.pinState(POWER_PIN) === 'low', { timeoutMs: 50, what: 'enable pin driven low' }));
  sample();
  const until = after.ms + 150;
  while (after.ms < until) {
    await after.runFor(0.5);
    sample();
  }
  assert.equal(onSeen, null, `rail back on at ${onSeen} ms, before the firmware decided`);
  assert.ok(off.every(Boolean));
  assert.equal(tps546.operation, 0x00, 'OPERATION off on the bus');
  assert.equal(tps546.onOffConfig, 0x1f, 'ON_OFF_CONFIG: the CONTROL pin is authoritative');
  process.stderr.write(`MCU reset: rail off at 0 ms (bound 1 ms); fan PWM at 100 % after ${fanMs.toFixed(1)} ms, enable pin driven low after ${pinMs.toFixed(1)} ms\n`);
  await after.close();
});

test('garbage on the link: the board resynchronises at the next frame', async () => {
  const { board, host } = await boot();
  await host.runUntil(() => board.usb.connected, { what: 'USB connection' });
  // 300 bytes of noise, longer than any frame: the board drops them up to the next delimiter
  // (the end of the first real frame after them), then answers every frame again.
  const junk = Uint8Array.from({ length: 300 }, (_, i) => (i * 97 + 13) & 0xff);
  const at = board.ms;
  board.usb.write(junk);
  host.send({ Ping: { seq: 424242 } });
  host.send({ Ping: { seq: 424243 } });
  await host.runUntil(() => host.of('Pong', at).some((p) => p.body.seq === 424243), { what: 'Pong after garbage' });
  assert.ok(host.errors.length === 0, 'the host side saw no bad frame');
  await board.close();
});
