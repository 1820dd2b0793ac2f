// The I2C device models and the address-dispatching bus, driven through rp2040js's I2C
// controller registers (no firmware): this is the same callback path firmware transfers take.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RP2040 } from 'rp2040js';
import { I2cBus } from '../lib/devices/i2c-bus.mjs';
import { Emc2101 } from '../lib/devices/emc2101.mjs';
import { Tps546, slinear11, fromSlinear11 } from '../lib/devices/tps546.mjs';
import { Ina260 } from '../lib/devices/ina260.mjs';

const I2C1 = 0x40048000;
const IC_TAR = 0x04;
const IC_DATA_CMD = 0x10;
const IC_RAW_INTR_STAT = 0x34;
const IC_CLR_INTR = 0x40;
const IC_ENABLE = 0x6c;
const CMD_READ = 1 << 8;
const CMD_STOP = 1 << 9;
const CMD_RESTART = 1 << 10;
const R_STOP_DET = 1 << 9;
const R_TX_ABRT = 1 << 6;

function setup() {
  const mcu = new RP2040();
  mcu.logger = { debug() {}, info() {}, warn() {}, error() {} };
  const bus = new I2cBus(mcu.i2c[1]);
  const emc = bus.attach(new Emc2101());
  const tps = bus.attach(new Tps546());
  const ina = bus.attach(new Ina260());
  return { mcu, bus, emc, tps, ina };
}

/** One transaction like embassy's write_read / write / read: returns { ack, data }. */
function transfer(mcu, addr, write = [], readCount = 0) {
  const reg = (off, v) => (v === undefined ? mcu.readUint32(I2C1 + off) : mcu.writeUint32(I2C1 + off, v));
  reg(IC_ENABLE, 0);
  reg(IC_TAR, addr);
  reg(IC_ENABLE, 1);
  reg(IC_CLR_INTR);
  const cmds = [];
  write.forEach((b, i) => cmds.push(b | (readCount === 0 && i === write.length - 1 ? CMD_STOP : 0)));
  for (let i = 0; i < readCount; i++) {
    cmds.push(CMD_READ | (i === 0 && write.length ? CMD_RESTART : 0) | (i === readCount - 1 ? CMD_STOP : 0));
  }
  cmds.forEach((c) => reg(IC_DATA_CMD, c));
  const { clock } = mcu;
  for (let guard = 0; !(reg(IC_RAW_INTR_STAT) & R_STOP_DET) && guard < 1000; guard++) {
    clock.tick(Math.max(clock.nanosToNextAlarm, 1));
  }
  const ack = !(reg(IC_RAW_INTR_STAT) & R_TX_ABRT);
  const data = [];
  for (let i = 0; ack && i < readCount; i++) data.push(reg(IC_DATA_CMD) & 0xff);
  return { ack, data };
}

const readReg = (mcu, addr, r, n = 1) => transfer(mcu, addr, [r], n).data;

test('bus: absent address and a vanished device NACK; present devices ACK', () => {
  const { mcu, bus, emc } = setup();
  assert.equal(transfer(mcu, 0x50, [0], 1).ack, false);
  assert.deepEqual(readReg(mcu, 0x4c, 0xfd), [0x16]);
  emc.present = false;
  assert.equal(transfer(mcu, 0x4c, [0xfd], 1).ack, false);
  emc.present = true;
  assert.deepEqual(readReg(mcu, 0x4c, 0xfd), [0x16]);
  assert.equal(bus.stats.nacks, 2);
});

test('bus: transfers take bus time at the programmed SCL rate', () => {
  const { mcu, bus } = setup();
  const t0 = mcu.clock.nanos;
  transfer(mcu, 0x4c, [0xfd], 1);
  // START, addr+W, register, repeated START, addr+R, data, STOP: 4 bytes x 9 + 3 SCL periods
  const periods = (mcu.clock.nanos - t0) / bus.sclNanos;
  assert.ok(periods >= 39 && periods < 41, `took ${periods} SCL periods`);
});

test('EMC2101: ids, temperatures, diode faults, fan setting and tach', () => {
  const { mcu, emc } = setup();
  assert.deepEqual(readReg(mcu, 0x4c, 0xfd), [0x16]);
  assert.deepEqual(readReg(mcu, 0x4c, 0xfe), [0x5d]);
  emc.setInternalTemp(31.4);
  assert.deepEqual(readReg(mcu, 0x4c, 0x00), [31]);
  emc.setExternalTemp(65.375);
  assert.deepEqual([readReg(mcu, 0x4c, 0x01)[0], readReg(mcu, 0x4c, 0x10)[0]], [65, 0x60]);
  emc.setExternalTemp(-2.5);
  assert.deepEqual([readReg(mcu, 0x4c, 0x01)[0], readReg(mcu, 0x4c, 0x10)[0]], [0xfd, 0x80]);
  emc.failExternalDiode('open');
  const code = (readReg(mcu, 0x4c, 0x01)[0] << 3) | (readReg(mcu, 0x4c, 0x10)[0] >> 5);
  assert.equal(code, 0x3f8);
  emc.failExternalDiode('short');
  assert.equal((readReg(mcu, 0x4c, 0x01)[0] << 3) | (readReg(mcu, 0x4c, 0x10)[0] >> 5), 0x3ff);
  emc.failExternalDiode(null);
  assert.deepEqual(readReg(mcu, 0x4c, 0x46, 2), [0xff, 0xff], 'fan off: tach 0xFFFF');
  assert.equal(transfer(mcu, 0x4c, [0x4c, 63]).ack, true);
  assert.equal(emc.fanPercent(), 100);
  const count = readReg(mcu, 0x4c, 0x46)[0] | (readReg(mcu, 0x4c, 0x47)[0] << 8);
  assert.equal(count, 900, '6000 rpm -> 5_400_000 / 6000');
  transfer(mcu, 0x4c, [0x4c, 21]);
  assert.ok(Math.abs(emc.fanPercent() - 33.33) < 0.01);
  assert.deepEqual(emc.writesTo(0x4c), [63, 21]);
});

test('TPS546D24A: identify, VOUT_MODE, on/off, READ_VOUT, telemetry, faults', () => {
  const { mcu, tps } = setup();
  assert.deepEqual(readReg(mcu, 0x24, 0xad, 7), [6, 0x54, 0x49, 0x54, 0x6d, 0x24, 0x41]);
  assert.deepEqual(readReg(mcu, 0x24, 0x20), [0x97]);
  transfer(mcu, 0x24, [0x21, 0x4c, 0x02]); // 588 * 2^-9 V
  assert.deepEqual(readReg(mcu, 0x24, 0x8b, 2), [0, 0], 'off: READ_VOUT 0');
  assert.equal(tps.isOn(), false);
  transfer(mcu, 0x24, [0x01, 0x80]);
  assert.equal(tps.isOn(), true);
  assert.deepEqual(readReg(mcu, 0x24, 0x01), [0x80]);
  assert.deepEqual(readReg(mcu, 0x24, 0x8b, 2), [0x4c, 0x02]);
  assert.ok(Math.abs(tps.voutMv() - 1148.4375) < 1e-9);
  tps.setTemperature(92.5);
  tps.setVin(5120);
  tps.setIout(12_250);
  const word = (bytes) => bytes[0] | (bytes[1] << 8);
  assert.equal(fromSlinear11(word(readReg(mcu, 0x24, 0x8d, 2))), 92.5);
  assert.ok(Math.abs(fromSlinear11(word(readReg(mcu, 0x24, 0x88, 2))) - 5.12) < 0.004); // 11-bit mantissa
  assert.equal(fromSlinear11(word(readReg(mcu, 0x24, 0x8c, 2))), 12.25);
  tps.setStatusWord(0x0004); // TEMPERATURE
  tps.setStatusByte(0x7d, 0x80); // OT fault
  assert.equal(word(readReg(mcu, 0x24, 0x79, 2)), 0x0004);
  assert.deepEqual(readReg(mcu, 0x24, 0x7d), [0x80]);
  transfer(mcu, 0x24, [0x03]); // CLEAR_FAULTS (send byte)
  assert.equal(word(readReg(mcu, 0x24, 0x79, 2)), 0);
  assert.deepEqual(readReg(mcu, 0x24, 0x7d), [0]);
  transfer(mcu, 0x24, [0x35, 0x33, 0xf2]); // VIN_ON: any other command is accepted and logged
  assert.deepEqual(tps.writesTo(0x35), [[0x33, 0xf2]]);
  assert.deepEqual(readReg(mcu, 0x24, 0x35, 2), [0x33, 0xf2]);
  transfer(mcu, 0x24, [0x01, 0x00]);
  assert.equal(word(readReg(mcu, 0x24, 0x79, 2)), 0x40, 'off: STATUS_WORD.OFF');
});

test('TPS546D24A: ON_OFF_CONFIG requiring the CONTROL pin', () => {
  const { mcu, tps } = setup();
  transfer(mcu, 0x24, [0x02, 0x1f]);
  transfer(mcu, 0x24, [0x01, 0x80]);
  tps.setControlPin(false);
  assert.equal(tps.isOn(), false);
  tps.setControlPin(true);
  assert.equal(tps.isOn(), true);
  transfer(mcu, 0x24, [0x01, 0x00]);
  assert.equal(tps.isOn(), false, 'CMD set: OPERATION off wins even with the pin high');
});

test('TPS546D24A: ON_OFF_CONFIG PU, CMD, CP and POLARITY (SLUSF26 7.6.3)', () => {
  const { mcu, tps } = setup();
  const state = (config, operation, pin) => {
    transfer(mcu, 0x24, [0x02, config]);
    transfer(mcu, 0x24, [0x01, operation]);
    tps.setControlPin(pin);
    return tps.isOn();
  };
  assert.equal(state(0x1b, 0x80, false), true, 'CP clear: the pin is ignored');
  assert.equal(state(0x0b, 0x00, false), true, 'PU clear: on whenever input is present');
  assert.equal(state(0x16, 0x00, true), true, 'CP only: the pin alone switches');
  assert.equal(state(0x16, 0x00, false), false);
  assert.equal(state(0x1d, 0x80, false), true, 'POLARITY clear: active low');
  assert.equal(state(0x1d, 0x80, true), false);
  assert.equal(state(0x11, 0x80, true), false, 'PU set, neither CMD nor CP: never on');
});

test('SLINEAR11 round trips', () => {
  for (const v of [0, 1, -1, 5.0, 4.8, 35, 145, 0.25, 30, -40]) {
    assert.ok(Math.abs(fromSlinear11(slinear11(v)) - v) <= Math.abs(v) / 1000 + 1e-3, String(v));
  }
});

test('INA260: ids and big-endian scaled readings', () => {
  const { mcu, ina } = setup();
  assert.deepEqual(readReg(mcu, 0x40, 0xfe, 2), [0x54, 0x49]);
  assert.deepEqual(readReg(mcu, 0x40, 0xff, 2), [0x22, 0x70]);
  ina.setVolts(5.1);
  ina.setAmps(3.2);
  const be = (b) => (b[0] << 8) | b[1];
  assert.equal(be(readReg(mcu, 0x40, 0x02, 2)), 4080); // 5.1 V / 1.25 mV
  assert.equal(be(readReg(mcu, 0x40, 0x01, 2)), 2560); // 3.2 A / 1.25 mA
  assert.equal(be(readReg(mcu, 0x40, 0x03, 2)), 1632); // 16.32 W / 10 mW
  transfer(mcu, 0x40, [0x00, 0x61, 0x2f]);
  assert.equal(be(readReg(mcu, 0x40, 0x00, 2)), 0x612f);
});
