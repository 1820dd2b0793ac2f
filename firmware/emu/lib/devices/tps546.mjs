// TI TPS546D24A PMBus buck regulator (docs/bm13xx-protocol.md §9.3), the ASIC core rail.
// PMBus words are little endian. VOUT values are ULINEAR16 with the VOUT_MODE exponent (-9);
// telemetry (READ_VIN, READ_IOUT, READ_TEMPERATURE_1) is SLINEAR11.

import { RegisterDevice } from './i2c-bus.mjs';

export const TPS546_ADDRESS = 0x24;

export const CMD = Object.freeze({
  OPERATION: 0x01,
  ON_OFF_CONFIG: 0x02,
  CLEAR_FAULTS: 0x03,
  VOUT_MODE: 0x20,
  VOUT_COMMAND: 0x21,
  STATUS_BYTE: 0x78,
  STATUS_WORD: 0x79,
  STATUS_VOUT: 0x7a,
  STATUS_IOUT: 0x7b,
  STATUS_INPUT: 0x7c,
  STATUS_TEMPERATURE: 0x7d,
  STATUS_CML: 0x7e,
  READ_VIN: 0x88,
  READ_VOUT: 0x8b,
  READ_IOUT: 0x8c,
  READ_TEMPERATURE_1: 0x8d,
  IC_DEVICE_ID: 0xad,
});

const VOUT_MODE = 0x97; // relative off, ULINEAR16, exponent -9
const VOUT_EXPONENT = -9;
const OPERATION_ON = 0x80;
// ON_OFF_CONFIG (TPS546D24S datasheet SLUSF26 §7.6.3): PU (bit 4), CMD (3), CP (2), POLARITY (1).
const ON_OFF_PU = 1 << 4; // clear: convert whenever input power is present
const ON_OFF_CMD = 1 << 3; // obey OPERATION's on bit
const ON_OFF_CP = 1 << 2; // obey the CONTROL pin
const ON_OFF_POLARITY = 1 << 1; // CONTROL active high
// What ESP-Miner-style firmware writes (PU | CMD | POLARITY | DELAY): OPERATION alone switches
// the output and the pin is ignored. The model starts there, as a board that ran such firmware.
const ON_OFF_CMD_ONLY = 0x1b;
const STATUS_OFF = 1 << 6;
const DEVICE_ID = [0x54, 0x49, 0x54, 0x6d, 0x24, 0x41]; // "TIT" 'm' 0x24 'A' = TPS546D24A
const STATUS_BYTE_COMMANDS = [CMD.STATUS_VOUT, CMD.STATUS_IOUT, CMD.STATUS_INPUT, CMD.STATUS_TEMPERATURE, CMD.STATUS_CML];

/** Encodes a value as PMBus SLINEAR11 (5-bit exponent, 11-bit mantissa), most precise first. */
export function slinear11(value) {
  for (let exp = -16; exp <= 15; exp++) {
    const mantissa = Math.round(value / 2 ** exp);
    if (mantissa >= -1024 && mantissa <= 1023) return ((exp & 0x1f) << 11) | (mantissa & 0x7ff);
  }
  throw new Error(`${value} does not fit SLINEAR11`);
}

/** Decodes PMBus SLINEAR11. */
export function fromSlinear11(word) {
  const exp = ((word >> 11) & 0x1f) << 27 >> 27;
  const mantissa = ((word & 0x7ff) << 21) >> 21;
  return mantissa * 2 ** exp;
}

const le16 = (w) => [w & 0xff, (w >> 8) & 0xff];

export class Tps546 extends RegisterDevice {
  constructor(address = TPS546_ADDRESS) {
    super(address);
    this.operation = 0x00;
    this.onOffConfig = ON_OFF_CMD_ONLY;
    this.voutCommand = 0x0266; // 1.2 V
    this.statusWord = 0x0000;
    this.statusBytes = new Map(STATUS_BYTE_COMMANDS.map((c) => [c, 0]));
    this.vinMv = 5000;
    this.ioutMa = 0;
    this.temperatureC = 35;
    /** Level of the CONTROL (enable) pin; the board ties it to its power-enable GPIO. */
    this.controlPin = true;
    /** When true (default), STATUS_WORD reports OFF (bit 6) while the output is off. */
    this.reportOff = true;
    /** Last data written to each other command, as raw bytes: readable back. */
    this.other = new Map();
  }

  // --- test API ---------------------------------------------------------------------------

  /**
   * Whether the output is enabled, as ON_OFF_CONFIG says: with PU clear, whenever input is
   * present; otherwise OPERATION's on bit if CMD is set and the CONTROL pin at its active level
   * if CP is set, both when both are set (and never when neither is).
   */
  isOn() {
    const config = this.onOffConfig;
    if (!(config & ON_OFF_PU)) return true;
    const obeysCommand = (config & ON_OFF_CMD) !== 0;
    const obeysPin = (config & ON_OFF_CP) !== 0;
    if (!obeysCommand && !obeysPin) return false;
    const commandOn = (this.operation & OPERATION_ON) !== 0;
    const pinActive = this.controlPin === ((config & ON_OFF_POLARITY) !== 0);
    return (!obeysCommand || commandOn) && (!obeysPin || pinActive);
  }

  /** Commanded output voltage in mV while on, else 0. */
  voutMv() {
    return this.isOn() ? this.voutCommand * 2 ** VOUT_EXPONENT * 1000 : 0;
  }

  setTemperature(celsius) {
    this.temperatureC = celsius;
  }

  setStatusWord(word) {
    this.statusWord = word & 0xffff;
  }

  /** Sets one of the STATUS_VOUT/IOUT/INPUT/TEMPERATURE/CML bytes (by command code). */
  setStatusByte(command, value) {
    if (!this.statusBytes.has(command)) throw new Error(`0x${command.toString(16)} is not a status byte`);
    this.statusBytes.set(command, value & 0xff);
  }

  setVin(mv) {
    this.vinMv = mv;
  }

  setIout(ma) {
    this.ioutMa = ma;
  }

  setControlPin(level) {
    this.controlPin = !!level;
  }

  // --- PMBus ------------------------------------------------------------------------------

  currentStatusWord() {
    return this.statusWord | (this.reportOff && !this.isOn() ? STATUS_OFF : 0);
  }

  readBytes(cmd) {
    switch (cmd) {
      case CMD.OPERATION:
        return [this.operation];
      case CMD.ON_OFF_CONFIG:
        return [this.onOffConfig];
      case CMD.VOUT_MODE:
        return [VOUT_MODE];
      case CMD.VOUT_COMMAND:
        return le16(this.voutCommand);
      case CMD.STATUS_BYTE:
        return [this.currentStatusWord() & 0xff];
      case CMD.STATUS_WORD:
        return le16(this.currentStatusWord());
      case CMD.READ_VIN:
        return le16(slinear11(this.vinMv / 1000));
      case CMD.READ_VOUT:
        return le16(this.isOn() ? this.voutCommand : 0);
      case CMD.READ_IOUT:
        return le16(slinear11(this.ioutMa / 1000));
      case CMD.READ_TEMPERATURE_1:
        return le16(slinear11(this.temperatureC));
      case CMD.IC_DEVICE_ID:
        return [DEVICE_ID.length, ...DEVICE_ID]; // SMBus block read: count, then the bytes
      default:
        if (this.statusBytes.has(cmd)) return [this.statusBytes.get(cmd)];
        return this.other.get(cmd) ?? [0x00, 0x00];
    }
  }

  writeBytes(cmd, bytes) {
    const word = bytes[0] | ((bytes[1] ?? 0) << 8);
    switch (cmd) {
      case CMD.OPERATION:
        this.operation = bytes[0];
        return;
      case CMD.ON_OFF_CONFIG:
        this.onOffConfig = bytes[0];
        return;
      case CMD.VOUT_COMMAND:
        this.voutCommand = word;
        return;
      case CMD.STATUS_WORD:
        return; // read-only
      default:
        this.other.set(cmd, [...bytes]);
    }
  }

  command(cmd) {
    if (cmd === CMD.CLEAR_FAULTS) {
      this.statusWord = 0;
      for (const c of this.statusBytes.keys()) this.statusBytes.set(c, 0);
    }
  }
}
