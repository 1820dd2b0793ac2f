// The rp2040js 1.4.1 bugs our patches work around, checked at register level on the stock
// model. If one of these starts failing after an rp2040js upgrade, upstream fixed the bug:
// re-check (and probably drop) the matching patch.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RP2040 } from 'rp2040js';
import { UartPort } from '../lib/uart.mjs';
import { patchUsbDevice } from '../lib/usb.mjs';
import { patchI2cController } from '../lib/devices/i2c-bus.mjs';
import { patchSev } from '../lib/core.mjs';

const UART1 = 0x40038000;
const I2C1 = 0x40048000;
const DPRAM = 0x50100000;
const UARTIMSC = 0x38;
const UARTMIS = 0x40;
const UARTICR = 0x44;
const UARTDMACR = 0x48;
const TX = 1 << 5;
const IC_INTR_MASK = 0x30;
const EP1_OUT_CONTROL = 0x0c;
const EP1_OUT_BUF_CTRL = 0x8c;
const AVAILABLE = 1 << 10;

function quietMcu() {
  const mcu = new RP2040();
  mcu.logger = { debug() {}, info() {}, warn() {}, error() {} };
  return mcu;
}

function txInterruptAfterClear(mcu) {
  mcu.writeUint32(UART1 + UARTIMSC, TX);
  mcu.writeUint32(UART1 + UARTICR, TX); // clear it; nothing is being transmitted
  return (mcu.readUint32(UART1 + UARTMIS) & TX) !== 0;
}

test('stock UART: TX interrupt cannot be cleared (IRQ storm with BufferedUart)', () => {
  assert.equal(txInterruptAfterClear(quietMcu()), true);
});

test('patched UART: TX interrupt clears', () => {
  const mcu = quietMcu();
  new UartPort(mcu.uart[1]);
  assert.equal(txInterruptAfterClear(mcu), false);
});

test('stock UART: UARTDMACR is unimplemented and reads as all ones (RXDMAE set)', () => {
  assert.equal(quietMcu().readUint32(UART1 + UARTDMACR) >>> 0, 0xffffffff);
  const mcu = quietMcu();
  new UartPort(mcu.uart[1]);
  assert.equal(mcu.readUint32(UART1 + UARTDMACR), 0);
});

test('stock I2C: IC_INTR_MASK writes are dropped (async I2C never gets its interrupt)', () => {
  const stock = quietMcu();
  stock.writeUint32(I2C1 + IC_INTR_MASK, 0x244);
  assert.equal(stock.readUint32(I2C1 + IC_INTR_MASK), 0);
  const mcu = quietMcu();
  patchI2cController(mcu.i2c[1]);
  mcu.writeUint32(I2C1 + IC_INTR_MASK, 0x244);
  assert.equal(mcu.readUint32(I2C1 + IC_INTR_MASK), 0x244);
});

function availableAfterArmingOut(mcu) {
  mcu.writeUint32(DPRAM + EP1_OUT_CONTROL, (1 << 31) | 0x180); // enabled, buffer at 0x180
  mcu.writeUint32(DPRAM + EP1_OUT_BUF_CTRL, AVAILABLE | 64);
  return (mcu.readUint32(DPRAM + EP1_OUT_BUF_CTRL) & AVAILABLE) !== 0;
}

test('stock USB: arming an OUT buffer clears AVAILABLE at once (stale reads in embassy-rp)', () => {
  assert.equal(availableAfterArmingOut(quietMcu()), false);
  const mcu = quietMcu();
  patchUsbDevice(mcu.usbCtrl);
  assert.equal(availableAfterArmingOut(mcu), true);
});

/** Runs SEV then WFE from RAM; returns whether the core went to sleep. */
function sleepsAfterSevWfe(mcu) {
  const code = [0xbf40, 0xbf20, 0xe7fe]; // sev; wfe; b .
  code.forEach((op, i) => mcu.writeUint16(0x20000000 + 2 * i, op));
  mcu.core.PC = 0x20000000;
  mcu.core.executeInstruction();
  mcu.core.executeInstruction();
  return mcu.core.waiting;
}

test('stock core: SEV does not set the event register (embassy thread-mode wakes stall)', () => {
  assert.equal(sleepsAfterSevWfe(quietMcu()), true);
  const mcu = quietMcu();
  patchSev(mcu);
  assert.equal(sleepsAfterSevWfe(mcu), false);
});
