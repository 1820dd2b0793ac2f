// EmulatedBoard: a Hearth board (RP2040 + BM13xx chain on UART1 + I2C peripherals + USB host)
// around an rp2040js 1.4.1 core running a real firmware image.

import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { RP2040 } from 'rp2040js';
import { bootWithoutRom, loadImage } from './loader.mjs';
import { patchSev } from './core.mjs';
import { UartPort } from './uart.mjs';
import { CdcHost, patchUsbDevice } from './usb.mjs';
import { readPwm } from './pwm.mjs';
import { bridgeUartToTcp } from './tcp.mjs';
import { I2cBus } from './devices/i2c-bus.mjs';
import { Emc2101 } from './devices/emc2101.mjs';
import { Tps546 } from './devices/tps546.mjs';
import { Ina260 } from './devices/ina260.mjs';

const NS_PER_MS = 1e6;
const BOOTROM_END = 0x4000;
const OPCODE_BRANCH_TO_SELF = 0xe7fe; // `b .`: panic-halt, default fault handlers
const PIN_STATES = ['low', 'high', 'input', 'pullup', 'pulldown', 'buskeeper'];

/** Hearth BM1370 r1 wiring (boards/hearth-bm1370-r1.toml). */
export const HEARTH_R1 = Object.freeze({
  chainUart: 1,
  i2cBus: 1,
  powerEnablePin: 10,
  asicResetPin: 11,
  fanPwmPin: 16,
  ledPin: 25,
});

/** Thrown when the emulated firmware can make no further progress (fault, halt, ROM call). */
export class EmulationError extends Error {}

/** Peripheral page of the watchdog in rp2040js's table (WATCHDOG_BASE 0x40058000). */
const WATCHDOG_PAGE = 0x40058;

/** Counts rp2040js log messages instead of printing them (printing slows emulation ~15x). */
class CountingLogger {
  constructor({ throwOnError, distinctLimit = 200 }) {
    this.throwOnError = throwOnError;
    this.distinctLimit = distinctLimit;
    this.warnings = 0;
    this.errors = 0;
    this.messages = new Map(); // "[component] message" -> count, the first `distinctLimit` only
  }

  note(component, message) {
    const key = `[${component}] ${message}`;
    if (this.messages.has(key)) this.messages.set(key, this.messages.get(key) + 1);
    else if (this.messages.size < this.distinctLimit) this.messages.set(key, 1);
  }

  debug() {}
  info() {}

  warn(component, message) {
    this.warnings++;
    this.note(component, message);
  }

  error(component, message) {
    this.errors++;
    this.note(component, message);
    if (this.throwOnError) throw new EmulationError(`[${component}] ${message}`);
  }
}

export class EmulatedBoard extends EventEmitter {
  /**
   * @param {string | Uint8Array} image path to (or bytes of) an ELF or UF2 image
   * @param {object} [options]
   * @param {{ host?: string, port: number }} [options.chain] bridge UART1 to this TCP peer
   *   (call `await board.ready()` before running)
   * @param {boolean} [options.usbAutoOpen=true] assert DTR once enumerated (a host opening the tty)
   * @param {boolean | { emc2101, tps546, ina260 }} [options.devices=true] attach new EMC2101,
   *   TPS546D24A and INA260 models, or these (another board's, to model an MCU reset: the
   *   parts around the MCU keep their state, the MCU starts from reset)
   * @param {boolean} [options.pacedUart=true] UART TX takes its frame time at the programmed baud
   * @param {boolean} [options.timedI2c=true] I2C transfers take their bus time
   * @param {number} [options.sliceMs=1] simulated time between two yields to the event loop
   * @param {number} [options.maxLeadMs=20] with a TCP bridge, how far simulated time may run
   *   ahead of wall time (x timeScale) in runFor()
   * @param {number} [options.timeScale=1] simulated ms per wall ms when paced
   * @param {boolean} [options.pace] force wall-clock pacing in runFor() on/off (default: on
   *   exactly when a TCP bridge is attached)
   * @param {boolean} [options.throwOnError=true] rp2040js "error" log lines abort the run
   * @param {boolean} [options.detectHalt=true] a core spinning on `b .` aborts the run
   * @param {number} [options.maxWarningsPerMs=2000] more rp2040js warnings than this per
   *   simulated ms abort the run (firmware polling an unmodelled register forever)
   * @param {Uint32Array} [options.bootrom] a B1 bootrom image, for firmware that calls ROM code
   * @param {object} [options.wiring] board wiring, defaults to HEARTH_R1
   */
  constructor(image, options = {}) {
    super();
    this.options = {
      usbAutoOpen: true,
      devices: true,
      pacedUart: true,
      timedI2c: true,
      sliceMs: 1,
      maxLeadMs: 20,
      timeScale: 1,
      throwOnError: true,
      detectHalt: true,
      maxWarningsPerMs: 2000,
      ...options,
    };
    this.wiring = { ...HEARTH_R1, ...options.wiring };
    // RP2040's default clock is a SimulationClock (the class is not in the package's exports).
    this.mcu = new RP2040();
    this.clock = this.mcu.clock;
    this.logger = new CountingLogger({ throwOnError: this.options.throwOnError });
    this.mcu.logger = this.logger;
    patchSev(this.mcu);
    // The firmware feeds the watchdog from its main loop; a trigger means the loop stalled
    // (rp2040js only logs it). Count it and fail the run: no scenario expects a stall.
    this.watchdogResets = 0;
    const watchdog = this.mcu.peripherals[WATCHDOG_PAGE];
    if (watchdog) {
      watchdog.onWatchdogTrigger = () => {
        this.watchdogResets += 1;
        throw new EmulationError(`watchdog reset at ${this.ms.toFixed(0)} ms: the firmware's main loop stalled`);
      };
    }
    if (options.bootrom) this.mcu.loadBootrom(options.bootrom);
    this.image = loadImage(image, this.mcu);
    bootWithoutRom(this.mcu);
    this.uarts = this.mcu.uart.map((u) => new UartPort(u, { paced: this.options.pacedUart }));
    patchUsbDevice(this.mcu.usbCtrl);
    this.usbHost = new CdcHost(this.mcu.usbCtrl, { autoOpen: this.options.usbAutoOpen });
    this.i2c = new I2cBus(this.mcu.i2c[this.wiring.i2cBus], { timed: this.options.timedI2c });
    if (this.options.devices) this.attachHearthDevices(this.options.devices === true ? {} : this.options.devices);
    this.bridges = [];
    this.running = null;
    this.bridgeReady = options.chain ? this.connectChain(options.chain) : Promise.resolve();
    this.bridgeReady.catch(() => {}); // reported by ready(); not an unhandled rejection here
  }

  // --- peripherals ------------------------------------------------------------------------

  attachHearthDevices({ emc2101, tps546, ina260 } = {}) {
    this.emc2101 = this.i2c.attach(emc2101 ?? new Emc2101());
    this.tps546 = this.i2c.attach(tps546 ?? new Tps546());
    this.ina260 = this.i2c.attach(ina260 ?? new Ina260());
    // The regulator's CONTROL input is wired to the power-enable GPIO (high = on) with a
    // pull-down on the board: a pin the MCU does not drive (at reset) reads low. It matters
    // only if ON_OFF_CONFIG makes the regulator obey the pin.
    const en = this.wiring.powerEnablePin;
    this.tps546.setControlPin(this.pin(en) === 1);
    this.detachControlPin = this.onPinChange(en, (level) => this.tps546.setControlPin(level === 1));
  }

  /** The UART port `n` (0 or 1): onByte(cb), send(bytes), baudRate, stats. */
  uart(n) {
    return this.uarts[n];
  }

  /** The BM13xx chain side of the board: the chain UART's port. */
  get chain() {
    return this.uarts[this.wiring.chainUart];
  }

  /** The first CDC-ACM function: write(bytes), onData(cb), connected, setDtr(on). */
  get usb() {
    return this.usbHost.port(0);
  }

  /** Bridges the chain UART to a TCP peer; resolves once connected. */
  async connectChain({ host = '127.0.0.1', port }) {
    const bridge = await bridgeUartToTcp(this.chain, { host, port });
    this.bridges.push(bridge);
    bridge.socket.on('close', () => this.emit('chain-closed'));
    return bridge;
  }

  /** Resolves when the TCP bridges given in the options are connected. */
  ready() {
    return this.bridgeReady;
  }

  // --- GPIO and PWM -----------------------------------------------------------------------

  /**
   * The level on GPIO `n`: 1/0 when driven (as output by any function), else the pull level
   * (pull-up 1, pull-down 0) or null when floating.
   */
  pin(n) {
    const state = this.mcu.gpio[n].value;
    if (state === 1 || state === 3) return 1;
    if (state === 0 || state === 4) return 0;
    return null;
  }

  /** 'low' | 'high' | 'input' | 'pullup' | 'pulldown' | 'buskeeper' */
  pinState(n) {
    return PIN_STATES[this.mcu.gpio[n].value];
  }

  /** Calls cb(level, previousLevel, simulatedMs) on every change of pin(n); returns unsubscribe. */
  onPinChange(n, callback) {
    const gpio = this.mcu.gpio[n];
    let last = this.pin(n);
    return gpio.addListener(() => {
      const level = this.pin(n);
      if (level === last) return;
      const previous = last;
      last = level;
      callback(level, previous, this.ms);
    });
  }

  /** Drives GPIO `n` from outside (a button, a power-good line) for the firmware to read. */
  setPinInput(n, level) {
    this.mcu.gpio[n].setInputValue(!!level);
  }

  /** The PWM programming of a pin's slice and its duty cycle; see lib/pwm.mjs. */
  pwm(pin) {
    return readPwm(this.mcu, pin);
  }

  // --- time ---------------------------------------------------------------------------------

  get nanos() {
    return this.clock.nanos;
  }

  /** Simulated milliseconds since boot. */
  get ms() {
    return this.clock.nanos / NS_PER_MS;
  }

  /** rp2040js warning count (mostly "unimplemented register") and the distinct messages. */
  get warnings() {
    return { count: this.logger.warnings, errors: this.logger.errors, messages: this.logger.messages };
  }

  /** Executes instructions (or skips idle time) until the clock reaches `targetNanos`. */
  advanceTo(targetNanos) {
    const { clock } = this;
    const { core } = this.mcu;
    const cycleNanos = 1e9 / this.mcu.clkSys;
    while (clock.nanos < targetNanos) {
      if (core.waiting) {
        // Sleeping (WFE/WFI): jump to the next event, never past it, so an interrupt raised by
        // an alarm wakes the core at the right time.
        const next = clock.nextAlarm;
        const remaining = targetNanos - clock.nanos;
        clock.tick(next ? Math.min(Math.max(next.nanos - clock.nanos, 0), remaining) : remaining);
      } else {
        // Hot path: only go through tick() when an alarm falls due (SimulationClock internals).
        const dt = core.executeInstruction() * cycleNanos;
        const next = clock.nextAlarm;
        if (next && next.nanos <= clock.nanosCounter + dt) clock.tick(dt);
        else clock.nanosCounter += dt;
      }
    }
  }

  /** Between slices: push bridged bytes out and check that the firmware can still progress. */
  housekeeping() {
    for (const b of this.bridges) b.flush();
    this.checkProgress();
  }

  checkProgress() {
    const { core } = this.mcu;
    const warnings = this.logger.warnings;
    const sliceMs = (this.clock.nanos - (this.lastCheck?.nanos ?? 0)) / NS_PER_MS;
    const storm = warnings - (this.lastCheck?.warnings ?? 0) > this.options.maxWarningsPerMs * Math.max(sliceMs, 1);
    this.lastCheck = { nanos: this.clock.nanos, warnings };
    if (storm) {
      const [top] = [...this.logger.messages].sort((a, b) => b[1] - a[1]);
      throw new EmulationError(`warning storm (firmware stuck on an unmodelled register?): ${top[0]} x${top[1]}`);
    }
    const pc = core.PC >>> 0;
    if (pc < BOOTROM_END && this.mcu.bootrom[0] === 0) {
      throw new EmulationError(`PC 0x${pc.toString(16)} is in the (absent) bootrom: a ROM function call?`);
    }
    if (this.options.detectHalt && !core.waiting && this.mcu.readUint16(pc & ~1) === OPCODE_BRANCH_TO_SELF) {
      const where = core.IPSR ? `exception ${core.IPSR}` : 'thread mode';
      throw new EmulationError(`firmware halted on \`b .\` at 0x${pc.toString(16)} (${where}): panic or fault`);
    }
  }

  get paced() {
    return this.options.pace ?? this.bridges.length > 0;
  }

  /**
   * Runs `ms` of simulated time, yielding to the event loop every sliceMs of simulated time (so
   * sockets and timers in the test process get serviced). Without a TCP bridge the result does
   * not depend on the machine's speed. With one (or options.pace) simulated time is kept at most
   * maxLeadMs ahead of wall time.
   */
  async runFor(ms) {
    if (this.running) throw new Error('runFor() while start()ed');
    const end = this.clock.nanos + ms * NS_PER_MS;
    const slice = this.options.sliceMs * NS_PER_MS;
    while (this.clock.nanos < end) {
      this.advanceTo(Math.min(end, this.clock.nanos + slice));
      this.housekeeping();
      const wait = this.paced ? this.pacingDelay() : 0;
      if (wait > 0) await sleep(wait);
      else await yieldToEventLoop();
    }
  }

  /**
   * Wall-clock ms to wait so that simulated time stays at most maxLeadMs ahead of wall time.
   * The anchor persists across runFor() calls (runUntil() runs many short ones); when the
   * simulation has fallen behind (the test did something else for a while) it is re-anchored
   * rather than allowed to race ahead to catch up.
   */
  pacingDelay() {
    const { maxLeadMs, timeScale } = this.options;
    const now = performance.now();
    this.paceAnchor ??= { nanos: this.clock.nanos, wall: now };
    const simMs = (this.clock.nanos - this.paceAnchor.nanos) / NS_PER_MS / timeScale;
    const lead = simMs - (now - this.paceAnchor.wall);
    if (lead < -maxLeadMs) {
      this.paceAnchor = { nanos: this.clock.nanos, wall: now };
      return 0;
    }
    return Math.max(0, lead - maxLeadMs);
  }

  /**
   * Runs until `predicate()` is true (checked after every slice), at most `timeoutMs` of
   * simulated time; resolves with the simulated ms it took, rejects on timeout.
   */
  async runUntil(predicate, { timeoutMs = 5000, what = 'condition' } = {}) {
    const start = this.ms;
    while (!predicate()) {
      if (this.ms - start >= timeoutMs) throw new Error(`timed out after ${timeoutMs} simulated ms waiting for ${what}`);
      await this.runFor(this.options.sliceMs);
    }
    return this.ms - start;
  }

  /**
   * Runs in real time (simulated time follows wall time x timeScale) until stop(). If the
   * emulator falls more than maxLagMs behind, it drops the backlog instead of bursting.
   * Errors stop the run and are emitted as 'error'.
   */
  start({ timeScale = this.options.timeScale, maxLagMs = 250 } = {}) {
    if (this.running) return;
    const state = { stop: false };
    this.running = state;
    state.done = this.realTimeLoop(state, timeScale, maxLagMs)
      .catch((err) => this.emit('error', err))
      .finally(() => {
        this.running = null;
      });
  }

  async realTimeLoop(state, timeScale, maxLagMs) {
    const slice = this.options.sliceMs * NS_PER_MS;
    let simBase = this.clock.nanos;
    let wallBase = performance.now();
    while (!state.stop) {
      const target = simBase + (performance.now() - wallBase) * timeScale * NS_PER_MS;
      if (target - this.clock.nanos > maxLagMs * timeScale * NS_PER_MS) {
        simBase = this.clock.nanos;
        wallBase = performance.now();
        continue;
      }
      if (this.clock.nanos < target) {
        this.advanceTo(Math.min(target, this.clock.nanos + slice));
        this.housekeeping();
        await yieldToEventLoop();
      } else {
        this.housekeeping();
        await sleep(1);
      }
    }
  }

  /** Stops a start()ed run; resolves when the loop has exited. */
  async stop() {
    const state = this.running;
    if (!state) return;
    state.stop = true;
    await state.done;
  }

  /**
   * Models this MCU going through reset: it stops running and lets go of the parts around it
   * (a new board made with `{ devices: { emc2101, tps546, ina260 } }` from this one is the MCU
   * after the reset).
   */
  async haltForReset() {
    await this.close();
    this.detachControlPin?.();
  }

  /** Stops running and closes the TCP bridges. */
  async close() {
    await this.stop();
    for (const b of this.bridges) b.close();
    this.bridges = [];
  }
}

function yieldToEventLoop() {
  return new Promise((resolve) => setImmediate(resolve));
}
