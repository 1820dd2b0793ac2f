// Run-time patch for rp2040js 1.4.1's PL011 UART model (RPUART), and a byte-level port API.
//
// Why: stock rp2040js 1.4.1 is written for polling drivers. With an interrupt-driven driver
// (embassy-rp BufferedUart) it fails in three ways:
//  1. checkInterrupts() sets TXINTR on every call, so the TX interrupt can never be cleared and
//     the core sits in UARTx_IRQ forever (an interrupt storm; no byte moves).
//  2. UARTDMACR, UARTRSR and UARTIFLS are unimplemented and read as 0xffffffff; embassy's handler
//     reads DMACR.RXDMAE first and returns at once when it is set.
//  3. TX is instantaneous (FR.BUSY/TXFF never set) and bytes fed to RX are pushed into a 32-entry
//     FIFO that silently drops on overflow.
// The patch models a TX FIFO drained at the programmed baud rate (frame length from LCR_H), the
// TX interrupt on the FIFO-level crossing as the PL011 does, the missing registers, and an RX
// injector that delivers host bytes at the line rate and holds them while the RX FIFO is full
// (as if the far end honoured flow control) rather than losing them.

const DR = 0x00;
const RSR = 0x04;
const FR = 0x18;
const ILPR = 0x20;
const LCR_H = 0x2c;
const IFLS = 0x34;
const DMACR = 0x48;

const FR_TXFE = 1 << 7;
const FR_TXFF = 1 << 5;
const FR_BUSY = 1 << 3;
const LCR_FEN = 1 << 4;
const CR_UARTEN = 1 << 0;
const CR_RXE = 1 << 9;
const INT_TX = 1 << 5;

const FIFO_DEPTH = 32;
/** TXIFLSEL -> FIFO level at or below which TXINTR asserts (1/8, 1/4, 1/2, 3/4, 7/8 of 32). */
const TX_TRIGGER_LEVELS = [4, 8, 16, 24, 28];
/** Byte spacing used before the firmware has programmed a baud rate. */
const UNPROGRAMMED_BYTE_NANOS = 1000;

/** Bits per character on the wire: start + data + parity + stop bits, from UARTLCR_H. */
export function frameBits(lcrH) {
  const dataBits = 5 + ((lcrH >>> 5) & 0x3);
  const parity = lcrH & (1 << 1) ? 1 : 0;
  const stop = lcrH & (1 << 3) ? 2 : 1;
  return 1 + dataBits + parity + stop;
}

/**
 * A patched UART: `onByte(cb)` sees every byte the firmware transmits (when its stop bit ends),
 * `send(bytes)` delivers bytes to the firmware's RX pin at the line rate.
 */
export class UartPort {
  /**
   * @param {import('rp2040js').RP2040['uart'][number]} uart the rp2040js RPUART to patch
   * @param {{ paced?: boolean }} [options] paced (default true): TX takes one frame time per byte
   */
  constructor(uart, { paced = true } = {}) {
    this.uart = uart;
    this.clock = uart.rp2040.clock;
    this.paced = paced;
    this.listeners = new Set();
    this.stats = { txBytes: 0, rxBytes: 0, rxDropped: 0 };
    this.txFifo = [];
    this.shifting = false;
    this.rxQueue = [];
    this.dmacr = 0;
    this.ifls = 0x12; // reset value: both trigger levels at 1/2
    this.ilpr = 0;
    this.txAlarm = this.clock.createAlarm(() => this.shiftDone());
    this.rxAlarm = this.clock.createAlarm(() => this.deliverNext());
    this.install();
  }

  /** Baud rate programmed by the firmware (0 until the divisor is written). */
  get baudRate() {
    return this.uart.baudDivider > 0 ? this.uart.baudRate : 0;
  }

  /** Duration of one character on the wire, in nanoseconds. */
  get frameNanos() {
    const baud = this.baudRate;
    return baud > 0 ? (frameBits(this.uart.lineCtrlRegister) * 1e9) / baud : UNPROGRAMMED_BYTE_NANOS;
  }

  /** Subscribes to bytes transmitted by the firmware; returns an unsubscribe function. */
  onByte(callback) {
    this.listeners.add(callback);
    return () => this.listeners.delete(callback);
  }

  /** Queues bytes for the firmware's RX line; they arrive one frame time apart. */
  send(bytes) {
    const idle = this.rxQueue.length === 0;
    for (const b of bytes) this.rxQueue.push(b & 0xff);
    if (idle && this.rxQueue.length) this.rxAlarm.schedule(this.frameNanos);
  }

  /** Bytes queued towards the firmware and not yet delivered. */
  get pendingRx() {
    return this.rxQueue.length;
  }

  // --- model internals -------------------------------------------------------------------

  get fifoDepth() {
    return this.uart.lineCtrlRegister & LCR_FEN ? FIFO_DEPTH : 1;
  }

  get txTrigger() {
    if (!(this.uart.lineCtrlRegister & LCR_FEN)) return 0;
    return TX_TRIGGER_LEVELS[this.ifls & 0x7] ?? 4;
  }

  get rxEnabled() {
    const cr = this.uart.ctrlRegister;
    return (cr & CR_UARTEN) !== 0 && (cr & CR_RXE) !== 0;
  }

  install() {
    const { uart } = this;
    const stockRead = uart.readUint32.bind(uart);
    const stockWrite = uart.writeUint32.bind(uart);
    // Stock checkInterrupts() forces TXINTR on: replace it with a plain level update.
    uart.checkInterrupts = () => this.updateIrq();
    uart.readUint32 = (offset) => this.read(offset, stockRead);
    uart.writeUint32 = (offset, value) => this.write(offset, value, stockWrite);
  }

  updateIrq() {
    const { uart } = this;
    uart.rp2040.setInterrupt(uart.irq, (uart.interruptStatus & uart.interruptMask) !== 0);
  }

  setTxInterrupt(on) {
    const { uart } = this;
    const before = uart.interruptStatus;
    uart.interruptStatus = on ? before | INT_TX : before & ~INT_TX;
    if (uart.interruptStatus !== before) this.updateIrq();
  }

  read(offset, stockRead) {
    switch (offset) {
      case FR: {
        // Keep the stock RX flags; compute the TX ones from our FIFO.
        let flags = stockRead(FR) & ~(FR_TXFE | FR_TXFF | FR_BUSY);
        if (this.txFifo.length === 0) flags |= FR_TXFE;
        if (this.txFifo.length >= this.fifoDepth) flags |= FR_TXFF;
        if (this.shifting || this.txFifo.length) flags |= FR_BUSY;
        return flags;
      }
      case RSR:
        return 0; // no framing/parity/break/overrun errors are modelled
      case ILPR:
        return this.ilpr;
      case IFLS:
        return this.ifls;
      case DMACR:
        return this.dmacr;
      default:
        return stockRead(offset);
    }
  }

  write(offset, value, stockWrite) {
    switch (offset) {
      case DR:
        this.transmit(value & 0xff);
        return;
      case RSR:
        return; // write clears the (never set) error flags
      case ILPR:
        this.ilpr = value & 0xff;
        return;
      case IFLS:
        this.ifls = value & 0x3f;
        return;
      case DMACR:
        this.dmacr = value & 0x7;
        return;
      default:
        stockWrite(offset, value);
    }
  }

  transmit(byte) {
    if (!this.paced) {
      this.emit(byte);
      this.setTxInterrupt(true); // nothing is ever queued, so the FIFO is always "below trigger"
      return;
    }
    if (this.txFifo.length >= this.fifoDepth) return; // overflow: the PL011 drops the write
    this.txFifo.push(byte);
    if (this.txFifo.length > this.txTrigger) this.setTxInterrupt(false);
    if (!this.shifting) this.startShift();
  }

  startShift() {
    const before = this.txFifo.length;
    this.shiftByte = this.txFifo.shift();
    this.shifting = true;
    // TXINTR asserts when the FIFO level falls to the trigger level (a crossing, not a level).
    if (before > this.txTrigger && this.txFifo.length <= this.txTrigger) this.setTxInterrupt(true);
    this.txAlarm.schedule(this.frameNanos);
  }

  shiftDone() {
    this.shifting = false;
    this.emit(this.shiftByte);
    if (this.txFifo.length) this.startShift();
    else if (this.fifoDepth === 1) this.setTxInterrupt(true); // FIFO off: holding register empty
  }

  emit(byte) {
    this.stats.txBytes++;
    for (const listener of this.listeners) listener(byte);
  }

  deliverNext() {
    const { uart } = this;
    if (!this.rxEnabled) {
      // A disabled receiver loses what arrives, like the hardware.
      this.stats.rxDropped += this.rxQueue.length;
      this.rxQueue.length = 0;
      return;
    }
    if (uart.rxFIFO.full) {
      this.rxAlarm.schedule(this.frameNanos); // hold the line until the firmware drains the FIFO
      return;
    }
    uart.feedByte(this.rxQueue.shift());
    this.stats.rxBytes++;
    if (this.rxQueue.length) this.rxAlarm.schedule(this.frameNanos);
  }
}

/** Patches `uart` in place and returns its port API. */
export function patchUart(uart, options) {
  return new UartPort(uart, options);
}
