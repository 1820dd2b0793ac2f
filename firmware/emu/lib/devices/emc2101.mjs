// SMSC/Microchip EMC2101 fan controller and temperature sensor (docs/bm13xx-protocol.md §9.2).
// On Hearth its external diode is the ASIC's temperature diode.

import { RegisterDevice } from './i2c-bus.mjs';

export const EMC2101_ADDRESS = 0x4c;

export const REG = Object.freeze({
  INTERNAL_TEMP: 0x00,
  EXTERNAL_TEMP_HIGH: 0x01,
  STATUS: 0x02,
  CONFIG: 0x03,
  CONVERSION_RATE: 0x04,
  CONFIG_WRITE: 0x09, // write alias of CONFIG
  CONVERSION_RATE_WRITE: 0x0a, // write alias of CONVERSION_RATE
  EXTERNAL_TEMP_LOW: 0x10,
  IDEALITY: 0x17,
  BETA: 0x18,
  TACH_LOW: 0x46,
  TACH_HIGH: 0x47,
  FAN_CONFIG: 0x4a,
  FAN_SETTING: 0x4c,
  PWM_FREQUENCY: 0x4d,
  PWM_DIVIDE: 0x4e,
  PRODUCT_ID: 0xfd,
  MANUFACTURER_ID: 0xfe,
  REVISION: 0xff,
});

const PRODUCT_EMC2101 = 0x16;
const MANUFACTURER_SMSC = 0x5d;
const FAN_SETTING_MAX = 63;
const FULL_SPEED_RPM = 6000;
const TACH_CONSTANT = 5_400_000;
/** 11-bit external readings (0.125 degC units) the chip reports for a faulty diode. */
const DIODE_FAULT_CODES = { open: 0x3f8, short: 0x3ff };
const STATUS_DIODE_FAULT = 1 << 2;

/** Converts degC to the 11-bit two's complement 0.125 degC code of registers 0x01/0x10. */
export function externalTempCode(celsius) {
  const code = Math.round(celsius * 8);
  return Math.max(-1024, Math.min(1023, code)) & 0x7ff;
}

export class Emc2101 extends RegisterDevice {
  constructor(address = EMC2101_ADDRESS) {
    super(address);
    this.internalC = 30;
    this.externalC = 40;
    this.diodeFault = null;
    this.tachOverrideRpm = null;
    // Writable registers with their power-on values.
    this.regs = new Map([
      [REG.CONFIG, 0x00],
      [REG.CONVERSION_RATE, 0x08],
      [REG.IDEALITY, 0x12],
      [REG.BETA, 0x08],
      [REG.FAN_CONFIG, 0x20],
      [REG.FAN_SETTING, 0x00],
      [REG.PWM_FREQUENCY, 0x17],
      [REG.PWM_DIVIDE, 0x01],
    ]);
  }

  // --- test API ---------------------------------------------------------------------------

  setExternalTemp(celsius) {
    this.externalC = celsius;
  }

  setInternalTemp(celsius) {
    this.internalC = celsius;
  }

  /** 'open' or 'short' makes the external reading a fault code; null heals the diode. */
  failExternalDiode(kind) {
    if (kind !== null && !(kind in DIODE_FAULT_CODES)) throw new Error(`unknown diode fault ${kind}`);
    this.diodeFault = kind;
  }

  /** Fan setting register 0x4C (0..63) as written by the firmware. */
  fanSetting() {
    return this.regs.get(REG.FAN_SETTING);
  }

  /** Fan drive in percent (0..100), from the fan setting register. */
  fanPercent() {
    return (Math.min(this.fanSetting(), FAN_SETTING_MAX) / FAN_SETTING_MAX) * 100;
  }

  /** The rpm the tachometer reports: setting/63 * 6000 unless overridden. */
  fanRpm() {
    if (this.tachOverrideRpm !== null) return this.tachOverrideRpm;
    return (Math.min(this.fanSetting(), FAN_SETTING_MAX) / FAN_SETTING_MAX) * FULL_SPEED_RPM;
  }

  /** Forces the tach reading (e.g. 0 for a stalled fan); null goes back to following 0x4C. */
  setTachRpm(rpm) {
    this.tachOverrideRpm = rpm;
  }

  // --- register file ----------------------------------------------------------------------

  externalCode() {
    return this.diodeFault ? DIODE_FAULT_CODES[this.diodeFault] : externalTempCode(this.externalC);
  }

  tachCount() {
    const rpm = this.fanRpm();
    return rpm > 0 ? Math.min(0xffff, Math.round(TACH_CONSTANT / rpm)) : 0xffff;
  }

  readRegister(reg) {
    switch (reg) {
      case REG.INTERNAL_TEMP:
        return Math.max(-128, Math.min(127, Math.round(this.internalC))) & 0xff;
      case REG.EXTERNAL_TEMP_HIGH:
        return this.externalCode() >> 3;
      case REG.EXTERNAL_TEMP_LOW:
        return (this.externalCode() & 0x7) << 5;
      case REG.STATUS:
        return this.diodeFault ? STATUS_DIODE_FAULT : 0;
      case REG.TACH_LOW:
        return this.tachCount() & 0xff;
      case REG.TACH_HIGH:
        return this.tachCount() >> 8;
      case REG.PRODUCT_ID:
        return PRODUCT_EMC2101;
      case REG.MANUFACTURER_ID:
        return MANUFACTURER_SMSC;
      case REG.REVISION:
        return 0x01;
      default:
        return this.regs.get(reg) ?? 0x00;
    }
  }

  writeRegister(reg, value) {
    if (reg === REG.CONFIG_WRITE) reg = REG.CONFIG;
    if (reg === REG.CONVERSION_RATE_WRITE) reg = REG.CONVERSION_RATE;
    if (reg === REG.FAN_SETTING) value = Math.min(value, FAN_SETTING_MAX);
    this.regs.set(reg, value);
  }

  /** Sequential reads auto-increment the register address. */
  readBytes(reg) {
    return [0, 1, 2, 3].map((i) => this.readRegister((reg + i) & 0xff));
  }

  writeBytes(reg, bytes) {
    bytes.forEach((b, i) => this.writeRegister((reg + i) & 0xff, b));
  }
}
