// Several I2C target models behind one rp2040js I2C controller (RPI2C), by 7-bit address.
//
// rp2040js drives targets through callbacks that must each be answered with a complete*() call:
//   onStart(repeated) -> completeStart()           START or repeated START
//   onConnect(addr, mode) -> completeConnect(ack)  address byte; mode 0 = write, 1 = read
//   onWriteByte(v) -> completeWrite(ack)           controller -> target
//   onReadByte() -> completeRead(value)            target -> controller
//   onStop() -> completeStop()                     STOP
// A register read is a write_read: START, addr+W, register, repeated START, addr+R, data, STOP.
// The stock controller completes every step instantly; here each step takes its bus time
// (9 SCL periods per byte at the rate the firmware programmed), so transaction rates and
// timeouts behave as on the board.

const IC_INTR_MASK = 0x30;
const INTR_MASK_BITS = 0x1fff;

/**
 * rp2040js 1.4.1's RPI2C has no write handler for IC_INTR_MASK (the write is logged as
 * unimplemented and dropped), so an interrupt-driven driver never gets its I2C interrupt.
 * embassy-rp's async I2C only worked on the stock model because every transfer completed
 * instantly, before the driver needed to wait. This adds the register write.
 */
export function patchI2cController(i2c) {
  const stockWrite = i2c.writeUint32.bind(i2c);
  i2c.writeUint32 = (offset, value) => {
    if (offset !== IC_INTR_MASK) return stockWrite(offset, value);
    i2c.intEnable = value & INTR_MASK_BITS;
    i2c.checkInterrupts();
  };
  return i2c;
}

/** Base class for a target: override the hooks. */
export class I2cDevice {
  constructor(address) {
    this.address = address;
    /** When false the device does not acknowledge its address (unplugged, dead, brown-out). */
    this.present = true;
  }

  /** A transaction addressed to this device starts; `read` tells the direction. */
  start(_read, _repeated) {}
  /** A byte written by the controller; return false to NACK it. */
  write(_byte) {
    return true;
  }
  /** The next byte the controller reads. */
  read() {
    return 0xff;
  }
  /** STOP on the bus (sent to the device that was last addressed). */
  stop() {}
}

/**
 * A command/register device (SMBus style): the first byte written after the address selects a
 * register (or PMBus command); the bytes after it are that register's data. A read returns the
 * bytes `readBytes(register)` yields for the last selected register. Writes take effect at STOP
 * or at a repeated START, like a device that latches a whole transaction.
 */
export class RegisterDevice extends I2cDevice {
  constructor(address) {
    super(address);
    this.pointer = 0;
    /** Completed write transactions, oldest first: { reg, bytes: number[], nanos }. */
    this.writes = [];
    /** Completed read transactions: { reg, count, nanos }. */
    this.reads = [];
    this.logLimit = 10_000;
    this.txn = null;
    this.nanos = () => 0; // set by I2cBus.attach: the simulated time, for the logs
  }

  start(read) {
    this.finishTxn();
    this.txn = read
      ? { read: true, reg: this.pointer, count: 0, data: this.readBytes(this.pointer) }
      : { read: false, reg: null, bytes: [] };
  }

  write(byte) {
    const t = this.txn;
    if (t.reg === null) {
      t.reg = this.pointer = byte;
      return true;
    }
    t.bytes.push(byte);
    return true;
  }

  read() {
    const t = this.txn;
    const value = t.count < t.data.length ? t.data[t.count] : 0xff;
    t.count++;
    return value & 0xff;
  }

  stop() {
    this.finishTxn();
  }

  finishTxn() {
    const t = this.txn;
    this.txn = null;
    if (!t || t.reg === null) return;
    const nanos = this.nanos();
    if (t.read) {
      this.push(this.reads, { reg: t.reg, count: t.count, nanos });
      return;
    }
    if (t.bytes.length) {
      this.push(this.writes, { reg: t.reg, bytes: t.bytes, nanos });
      this.writeBytes(t.reg, t.bytes);
    } else {
      this.command(t.reg); // a bare "send byte" (or the pointer half of a write_read)
    }
  }

  push(log, entry) {
    if (log.length >= this.logLimit) log.shift();
    log.push(entry);
  }

  /** Bytes returned by a read starting at `reg`. */
  readBytes(_reg) {
    return [];
  }

  /** A write transaction's data bytes for `reg`. */
  writeBytes(_reg, _bytes) {}

  /** A transaction that only selected `reg` (pointer set, or an SMBus send-byte command). */
  command(_reg) {}

  /** The data of each write to `reg`, oldest first: a number for 1-byte writes, else an array. */
  writesTo(reg) {
    return this.writes.filter((w) => w.reg === reg).map((w) => (w.bytes.length === 1 ? w.bytes[0] : w.bytes));
  }

  /** How many read transactions started at `reg`. */
  readCount(reg) {
    return this.reads.filter((r) => r.reg === reg).length;
  }
}

/** The address-dispatching bus: attach devices, it answers the controller's callbacks. */
export class I2cBus {
  /**
   * @param i2c an rp2040js RPI2C (mcu.i2c[0] or mcu.i2c[1])
   * @param {{ timed?: boolean }} [options] timed (default true): each byte takes its bus time
   */
  constructor(i2c, { timed = true } = {}) {
    this.i2c = patchI2cController(i2c);
    this.clock = i2c.rp2040.clock;
    this.timed = timed;
    this.devices = new Map();
    this.active = null;
    this.log = [];
    this.logLimit = 1000;
    this.stats = { transactions: 0, nacks: 0 };
    this.pending = null;
    /** While true a target holds SCL low: no bus step completes (see hold()). */
    this.held = false;
    this.alarm = this.clock.createAlarm(() => this.firePending());
    i2c.onStart = () => this.later(1, () => i2c.completeStart());
    i2c.onConnect = (addr, mode) => this.later(9, () => i2c.completeConnect(this.connect(addr, mode === 1)));
    i2c.onWriteByte = (v) => this.later(9, () => i2c.completeWrite(this.active?.write(v) ?? false));
    i2c.onReadByte = () => this.later(9, () => i2c.completeRead(this.active ? this.active.read() & 0xff : 0xff));
    i2c.onStop = () => this.later(1, () => this.stop());
  }

  attach(device) {
    if (this.devices.has(device.address)) throw new Error(`I2C address 0x${device.address.toString(16)} in use`);
    this.devices.set(device.address, device);
    device.nanos = () => this.clock.nanos;
    return device;
  }

  detach(address) {
    this.devices.delete(address);
  }

  /** Nanoseconds per SCL period as programmed (IC_xS_SCL_HCNT + LCNT at clk_sys). */
  get sclNanos() {
    const { i2c } = this;
    const cycles = i2c.sclHighPeriod + i2c.sclLowPeriod;
    return cycles > 0 ? (cycles * 1e9) / i2c.rp2040.clkSys : 10_000;
  }

  /**
   * A target holds SCL low (stuck mid-byte, or clock-stretching for ever): from now on no bus
   * step completes, for any device, and the controller waits on the step in progress. A driver
   * without a timeout waits with it.
   */
  hold() {
    this.held = true;
    this.pending = null;
  }

  later(sclPeriods, action) {
    if (this.held) return;
    if (!this.timed) return action();
    this.pending = action;
    this.alarm.schedule(sclPeriods * this.sclNanos);
  }

  firePending() {
    const action = this.pending;
    this.pending = null;
    action?.();
  }

  connect(addr, read) {
    const device = this.devices.get(addr & 0x7f);
    const ack = !!device && device.present;
    this.record(read ? 'R' : 'W', addr, ack);
    if (!ack) {
      this.stats.nacks++;
      this.active = null;
      return false;
    }
    if (this.active && this.active !== device) this.active.stop();
    const repeated = this.active === device;
    this.active = device;
    device.start(read, repeated);
    return true;
  }

  stop() {
    this.stats.transactions++;
    this.active?.stop();
    this.active = null;
    this.i2c.completeStop();
  }

  record(dir, addr, ack) {
    if (this.log.length >= this.logLimit) this.log.shift();
    this.log.push({ nanos: this.clock.nanos, dir, addr, ack });
  }
}
