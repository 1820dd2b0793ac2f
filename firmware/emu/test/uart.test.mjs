// The patched UART model at register level: paced TX with FIFO flags and the TX interrupt on
// the FIFO-level crossing, and host->RX injection that never overflows the RX FIFO.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RP2040 } from 'rp2040js';
import { UartPort, frameBits } from '../lib/uart.mjs';

const UART1 = 0x40038000;
const DR = 0x00;
const FR = 0x18;
const IBRD = 0x24;
const FBRD = 0x28;
const LCR_H = 0x2c;
const CR = 0x30;
const IFLS = 0x34;
const IMSC = 0x38;
const RIS = 0x3c;
const ICR = 0x44;
const FR_BUSY = 1 << 3;
const FR_RXFE = 1 << 4;
const FR_TXFF = 1 << 5;
const FR_TXFE = 1 << 7;
const INT_TX = 1 << 5;

function setup(lcrH = 0x70 /* 8N1, FIFOs on */) {
  const mcu = new RP2040();
  mcu.logger = { debug() {}, info() {}, warn() {}, error() {} };
  const port = new UartPort(mcu.uart[1]);
  const reg = (off, v) => (v === undefined ? mcu.readUint32(UART1 + off) : mcu.writeUint32(UART1 + off, v));
  reg(IBRD, 67); // 125 MHz / (16 * 67.8125) = 115207 baud
  reg(FBRD, 52);
  reg(LCR_H, lcrH);
  reg(CR, 0x301);
  return { mcu, port, reg, clock: mcu.clock };
}

function runAlarms(clock, untilNanos = Infinity) {
  while (clock.nextAlarm && clock.nextAlarm.nanos <= untilNanos) clock.tick(Math.max(clock.nanosToNextAlarm, 0));
}

test('frame length follows LCR_H', () => {
  assert.equal(frameBits(0x60), 10); // 8N1
  assert.equal(frameBits(0x60 | 0x02 | 0x08), 12); // 8E2
  assert.equal(frameBits(0x00), 7); // 5N1
});

test('TX is paced at the programmed baud with BUSY/TXFE/TXFF flags', () => {
  const { port, reg, clock } = setup();
  const times = [];
  port.onByte((b) => times.push([b, clock.nanos]));
  assert.equal(reg(FR) & (FR_BUSY | FR_TXFE), FR_TXFE);
  for (let i = 0; i < 33; i++) reg(DR, i);
  // one byte is in the shift register, 32 fill the FIFO: full
  assert.equal(reg(FR) & FR_TXFF, FR_TXFF);
  assert.equal(reg(FR) & FR_BUSY, FR_BUSY);
  reg(DR, 0xaa); // dropped: FIFO full
  runAlarms(clock);
  assert.equal(times.length, 33);
  const frame = (10 * 1e9) / port.baudRate;
  assert.ok(Math.abs(times[0][1] - frame) < 1);
  assert.ok(Math.abs(times[32][1] - 33 * frame) < 1);
  assert.deepEqual(times.map(([b]) => b), [...Array(33).keys()]);
  assert.equal(reg(FR) & (FR_BUSY | FR_TXFE), FR_TXFE);
});

test('TX interrupt fires when the FIFO drains to the trigger level, and clears', () => {
  const { reg, clock, mcu, port } = setup();
  reg(IFLS, 0); // TX trigger at 1/8 = 4 bytes
  reg(IMSC, INT_TX);
  reg(ICR, INT_TX);
  assert.equal(reg(RIS) & INT_TX, 0);
  for (let i = 0; i < 10; i++) reg(DR, i);
  let firedAtQueued = null;
  port.onByte(() => {
    if (firedAtQueued === null && reg(RIS) & INT_TX) firedAtQueued = port.txFifo.length;
  });
  runAlarms(clock);
  assert.equal(firedAtQueued, 4);
  assert.equal(mcu.core.pendingInterrupts & (1 << mcu.uart[1].irq) ? 1 : 0, 1);
  reg(ICR, INT_TX);
  assert.equal(reg(RIS) & INT_TX, 0);
});

test('host bytes arrive at the line rate and wait while the RX FIFO is full', () => {
  const { port, reg, clock } = setup();
  port.send(Array.from({ length: 40 }, (_, i) => i));
  runAlarms(clock, clock.nanos + 50 * port.frameNanos);
  assert.equal(port.pendingRx, 8, '32 in the FIFO, 8 held back');
  const got = [];
  while (!(reg(FR) & FR_RXFE)) got.push(reg(DR) & 0xff);
  runAlarms(clock);
  while (!(reg(FR) & FR_RXFE)) got.push(reg(DR) & 0xff);
  assert.deepEqual(got, [...Array(40).keys()]);
  assert.equal(port.stats.rxDropped, 0);
});

test('a disabled receiver loses incoming bytes, like the hardware', () => {
  const { port, reg, clock } = setup();
  reg(CR, 0); // UART disabled
  port.send([1, 2, 3]);
  runAlarms(clock);
  assert.equal(port.stats.rxDropped, 3);
});
