// TI INA260 current/voltage/power monitor (docs/bm13xx-protocol.md §9.4): 16-bit big-endian
// registers; current 1.25 mA/LSB (signed), bus voltage 1.25 mV/LSB, power 10 mW/LSB.

import { RegisterDevice } from './i2c-bus.mjs';

export const INA260_ADDRESS = 0x40;

export const REG = Object.freeze({
  CONFIG: 0x00,
  CURRENT: 0x01,
  VOLTAGE: 0x02,
  POWER: 0x03,
  MASK_ENABLE: 0x06,
  ALERT_LIMIT: 0x07,
  MANUFACTURER_ID: 0xfe,
  DIE_ID: 0xff,
});

const WRITABLE = new Set([REG.CONFIG, REG.MASK_ENABLE, REG.ALERT_LIMIT]);

export class Ina260 extends RegisterDevice {
  constructor(address = INA260_ADDRESS) {
    super(address);
    this.volts = 5.0;
    this.amps = 2.0;
    this.regs = new Map([
      [REG.CONFIG, 0x6127],
      [REG.MASK_ENABLE, 0x0000],
      [REG.ALERT_LIMIT, 0x0000],
    ]);
  }

  setVolts(volts) {
    this.volts = volts;
  }

  setAmps(amps) {
    this.amps = amps;
  }

  readRegister(reg) {
    switch (reg) {
      case REG.CURRENT:
        return Math.max(-32768, Math.min(32767, Math.round((this.amps * 1000) / 1.25))) & 0xffff;
      case REG.VOLTAGE:
        return Math.max(0, Math.min(0x7fff, Math.round((this.volts * 1000) / 1.25)));
      case REG.POWER:
        return Math.max(0, Math.min(0xffff, Math.round((Math.abs(this.volts * this.amps) * 1000) / 10)));
      case REG.MANUFACTURER_ID:
        return 0x5449;
      case REG.DIE_ID:
        return 0x2270;
      default:
        return this.regs.get(reg) ?? 0x0000;
    }
  }

  /** The register pointer does not auto-increment: every read returns the selected register. */
  readBytes(reg) {
    const v = this.readRegister(reg);
    return [v >> 8, v & 0xff];
  }

  writeBytes(reg, bytes) {
    if (bytes.length < 2 || !WRITABLE.has(reg)) return;
    this.regs.set(reg, (bytes[0] << 8) | bytes[1]);
  }
}
