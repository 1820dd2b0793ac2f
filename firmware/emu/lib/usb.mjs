// USB for embassy-usb firmware in rp2040js 1.4.1: a device-controller patch and a CDC-ACM host.
//
// Why the patch: on an OUT buffer-control write with AVAILABLE set, stock RPUSBController clears
// AVAILABLE at once, before the host has sent anything. embassy-rp decides "a packet arrived" by
// polling AVAILABLE == 0, so it re-reads the stale buffer forever (the same 64 bytes reach the
// application thousands of times and the executor starves). Patched, AVAILABLE stays set until
// the host really delivers the packet (finishRead).
//
// Why our own host instead of rp2040js's USBCDC:
//  * USBCDC answers every armed OUT endpoint at once, with a zero-length packet when it has no
//    data; embassy-usb hands those up as empty reads in a busy loop. A real host NAKs: here the
//    armed OUT endpoint stays pending until there is data.
//  * USBCDC sends SET_CONTROL_LINE_STATE with recipient "device"; embassy-usb's CDC class only
//    accepts it addressed to the interface, so DTR is never seen as set.
//  * USBCDC never reads the device or string descriptors (no serial number), never answers the
//    status stage of control-IN transfers, cannot do control-OUT data stages (SET_LINE_CODING)
//    and picks only the last CDC function of a composite device.

import { createSetupPacket } from 'rp2040js';

const AVAILABLE = 1 << 10;
const STALL = 1 << 11;
const EP0_IN_BUF_CTRL = 0x80;
const EP0_OUT_BUF_CTRL = 0x84;
const EP15_OUT_BUF_CTRL = 0xfc;

const DIR_OUT = 0; // host to device
const DIR_IN = 1; // device to host
const TYPE_STANDARD = 0;
const TYPE_CLASS = 1;
const RCPT_DEVICE = 0;
const RCPT_INTERFACE = 1;

const REQ_SET_ADDRESS = 5;
const REQ_GET_DESCRIPTOR = 6;
const REQ_SET_CONFIGURATION = 9;
const CDC_SET_LINE_CODING = 0x20;
const CDC_SET_CONTROL_LINE_STATE = 0x22;

const DESC_DEVICE = 1;
const DESC_CONFIGURATION = 2;
const DESC_STRING = 3;
const DESC_INTERFACE = 4;
const DESC_ENDPOINT = 5;

const CLASS_CDC_COMM = 0x02;
const CLASS_CDC_DATA = 0x0a;
const EP_BULK = 2;
const EP_INTERRUPT = 3;
const EP0_SIZE = 64;
const DEVICE_ADDRESS = 1;
const LANG_EN_US = 0x0409;

/** Host turnaround between two control transfers, in simulated nanoseconds. */
const HOST_GAP_NANOS = 20_000;

/**
 * Patches the device side of rp2040js's USB controller in place. Also reports EP0 STALLs (the
 * stock model ignores them) through `usb.onEndpointStall(endpoint)`.
 */
export function patchUsbDevice(usb) {
  const view = usb.rp2040.usbDPRAMView;
  const stockUpdated = usb.DPRAMUpdated.bind(usb);
  const stockFinishRead = usb.finishRead.bind(usb);
  usb.DPRAMUpdated = (offset, value) => {
    stockUpdated(offset, value);
    if (usb.hostMode) return;
    const isOut = offset >= EP0_OUT_BUF_CTRL && offset <= EP15_OUT_BUF_CTRL && (offset & 4) !== 0;
    if (isOut && value & AVAILABLE) {
      view.setUint32(offset, view.getUint32(offset, true) | AVAILABLE, true);
    }
    if ((offset === EP0_IN_BUF_CTRL || offset === EP0_OUT_BUF_CTRL) && value & STALL) {
      usb.onEndpointStall?.(0);
    }
  };
  usb.finishRead = (endpoint, buffer) => {
    stockFinishRead(endpoint, buffer);
    const reg = EP0_OUT_BUF_CTRL + endpoint * 8;
    view.setUint32(reg, view.getUint32(reg, true) & ~AVAILABLE, true);
  };
  return usb;
}

function setup(dir, type, recipient, bRequest, wValue, wIndex, wLength) {
  return createSetupPacket({ dataDirection: dir, type, recipient, bRequest, wValue, wIndex, wLength });
}

function getDescriptor(type, index, wIndex, length) {
  return setup(DIR_IN, TYPE_STANDARD, RCPT_DEVICE, REQ_GET_DESCRIPTOR, (type << 8) | index, wIndex, length);
}

/** 115200 baud, 1 stop bit, no parity, 8 data bits (what a tty open typically sends). */
function lineCoding(baud = 115200) {
  const b = new Uint8Array(7);
  new DataView(b.buffer).setUint32(0, baud, true);
  b[6] = 8;
  return b;
}

function decodeString(desc) {
  let s = '';
  for (let i = 2; i + 1 < desc.length; i += 2) s += String.fromCharCode(desc[i] | (desc[i + 1] << 8));
  return s;
}

function parseDevice(d) {
  const u16 = (i) => d[i] | (d[i + 1] << 8);
  return {
    usbVersion: u16(2),
    deviceClass: d[4],
    maxPacketSize0: d[7],
    vendorId: u16(8),
    productId: u16(10),
    deviceVersion: u16(12),
    iManufacturer: d[14],
    iProduct: d[15],
    iSerialNumber: d[16],
    numConfigurations: d[17],
  };
}

/** Walks a configuration descriptor and pairs each CDC data interface with its comm interface. */
export function findCdcFunctions(config) {
  const functions = [];
  let comm = null;
  let current = null;
  for (let i = 0; i + 1 < config.length && config[i] >= 2; i += config[i]) {
    const type = config[i + 1];
    if (type === DESC_INTERFACE) {
      const number = config[i + 2];
      const cls = config[i + 5];
      current = null;
      if (cls === CLASS_CDC_COMM) comm = { commInterface: number, notifyEndpoint: -1 };
      if (cls === CLASS_CDC_DATA && comm) {
        current = { ...comm, dataInterface: number, inEndpoint: -1, outEndpoint: -1 };
        functions.push(current);
      }
    } else if (type === DESC_ENDPOINT) {
      const address = config[i + 2];
      const kind = config[i + 3] & 0x3;
      if (kind === EP_INTERRUPT && comm && !current) comm.notifyEndpoint = address & 0xf;
      if (kind === EP_BULK && current) {
        if (address & 0x80) current.inEndpoint = address & 0xf;
        else current.outEndpoint = address & 0xf;
      }
    }
  }
  return functions.filter((f) => f.inEndpoint >= 0 && f.outEndpoint >= 0);
}

/** One CDC-ACM function as seen from the host: a serial port. */
export class CdcPort {
  constructor(host, index) {
    this.host = host;
    this.index = index;
    this.fn = null; // interface/endpoint numbers, once enumerated
    this.dtr = false;
    this.rts = false;
    this.txQueue = [];
    this.outArmed = 0; // size of the OUT buffer the device has armed, 0 = none (host NAKs)
    this.listeners = new Set();
    this.stats = { txBytes: 0, rxBytes: 0 };
  }

  /** Enumerated and the port "opened" (DTR asserted by the host). */
  get connected() {
    return this.fn !== null && this.dtr;
  }

  /** Receives every non-empty IN packet as a Uint8Array; returns an unsubscribe function. */
  onData(callback) {
    this.listeners.add(callback);
    return () => this.listeners.delete(callback);
  }

  /** Queues bytes for the device; they leave as 64-byte packets whenever the device is ready. */
  write(bytes) {
    for (const b of bytes) this.txQueue.push(b & 0xff);
    this.pump();
  }

  /** Bytes written by the host and not yet accepted by the device. */
  get pendingTx() {
    return this.txQueue.length;
  }

  /** Sends SET_CONTROL_LINE_STATE (DTR bit 0, RTS bit 1), as opening/closing the tty does. */
  setLineState(dtr, rts = dtr) {
    this.dtr = dtr;
    this.rts = rts;
    if (!this.fn) return; // applied when enumeration reaches this port
    const value = (dtr ? 1 : 0) | (rts ? 2 : 0);
    this.host.control(
      setup(DIR_OUT, TYPE_CLASS, RCPT_INTERFACE, CDC_SET_CONTROL_LINE_STATE, value, this.fn.commInterface, 0),
    );
  }

  setDtr(on) {
    this.setLineState(on, on);
  }

  // --- driven by the host -----------------------------------------------------------------

  bind(fn) {
    this.fn = fn;
    this.outArmed = 0;
  }

  unbind() {
    this.fn = null;
    this.outArmed = 0;
  }

  deviceArmedOut(size) {
    this.outArmed = size;
    this.pump();
  }

  deviceSent(buffer) {
    if (buffer.length === 0) return;
    this.stats.rxBytes += buffer.length;
    for (const listener of this.listeners) listener(buffer);
  }

  pump() {
    if (!this.fn || this.outArmed === 0 || this.txQueue.length === 0) return;
    const n = Math.min(this.outArmed, EP0_SIZE, this.txQueue.length);
    const packet = Uint8Array.from(this.txQueue.splice(0, n));
    this.outArmed = 0;
    this.stats.txBytes += n;
    this.host.usb.endpointReadDone(this.fn.outEndpoint, packet);
  }
}

/**
 * A minimal USB host for a CDC-ACM device (single or composite): enumerates after the device
 * enables its controller, reads the device, configuration and string descriptors, configures,
 * sends SET_LINE_CODING and (with `autoOpen`) asserts DTR/RTS on every CDC function.
 */
export class CdcHost {
  /**
   * @param usb the patched rp2040js RPUSBController
   * @param {{ autoOpen?: boolean, baud?: number }} [options]
   */
  constructor(usb, { autoOpen = true, baud = 115200 } = {}) {
    this.usb = usb;
    this.clock = usb.rp2040.clock;
    this.autoOpen = autoOpen;
    this.baud = baud;
    this.ports = [];
    this.device = null;
    this.strings = {};
    this.configuration = null;
    this.enumerated = false;
    this.enumeratedAtNanos = null;
    this.stalls = 0;
    this.enumerationListeners = new Set();
    this.queue = [];
    this.current = null;
    this.ep0OutArmed = false;
    // ClockAlarm.scheduled stays true after an alarm fires, so track "gap pending" ourselves.
    this.gapPending = false;
    this.gapAlarm = this.clock.createAlarm(() => {
      this.gapPending = false;
      this.startNext();
    });
    usb.onUSBEnabled = () => usb.resetDevice();
    usb.onResetReceived = () => this.enumerate();
    usb.onEndpointWrite = (ep, buffer) => this.deviceSent(ep, buffer);
    usb.onEndpointRead = (ep, size) => this.deviceArmedOut(ep, size);
    usb.onEndpointStall = () => this.stalled();
  }

  /** The CDC function with this index (0 = first); usable before enumeration. */
  port(index = 0) {
    while (this.ports.length <= index) this.ports.push(new CdcPort(this, this.ports.length));
    return this.ports[index];
  }

  /** Calls `callback` once enumeration completes (at once if it already has). */
  onEnumerated(callback) {
    if (this.enumerated) callback(this);
    else this.enumerationListeners.add(callback);
  }

  /** Issues a USB bus reset: the device is enumerated again from scratch. */
  busReset() {
    this.enumerated = false;
    for (const p of this.ports) p.unbind();
    this.queue.length = 0;
    this.current = null;
    this.gapAlarm.cancel();
    this.gapPending = false;
    this.usb.resetDevice();
  }

  /**
   * Queues a control transfer. `done(error, data)` runs in simulated time when it completes;
   * `error` is 'stall' when the device rejected it.
   */
  control(setupPacket, dataOut = null, done = () => {}) {
    this.queue.push({ setupPacket, dataOut, done });
    if (!this.current) this.scheduleNext();
  }

  // --- enumeration ------------------------------------------------------------------------

  enumerate() {
    this.enumerated = false;
    this.queue.length = 0;
    this.current = null;
    this.control(setup(DIR_OUT, TYPE_STANDARD, RCPT_DEVICE, REQ_SET_ADDRESS, DEVICE_ADDRESS, 0, 0));
    this.control(getDescriptor(DESC_DEVICE, 0, 0, 18), null, (err, d) => {
      if (err) return;
      this.device = parseDevice(d);
      this.control(getDescriptor(DESC_CONFIGURATION, 0, 0, 9), null, (err2, head) => {
        if (err2) return;
        const total = head[2] | (head[3] << 8);
        this.control(getDescriptor(DESC_CONFIGURATION, 0, 0, total), null, (err3, config) => {
          if (!err3) this.configured(config);
        });
      });
    });
  }

  configured(config) {
    this.configuration = config;
    const functions = findCdcFunctions(config);
    this.readStrings();
    this.control(setup(DIR_OUT, TYPE_STANDARD, RCPT_DEVICE, REQ_SET_CONFIGURATION, config[5], 0, 0));
    functions.forEach((fn, i) => {
      const port = this.port(i);
      port.bind(fn);
      this.control(
        setup(DIR_OUT, TYPE_CLASS, RCPT_INTERFACE, CDC_SET_LINE_CODING, 0, fn.commInterface, 7),
        lineCoding(this.baud),
      );
      if (this.autoOpen) port.dtr = port.rts = true;
      if (port.dtr || port.rts) port.setLineState(port.dtr, port.rts);
    });
    // Runs after everything queued above: enumeration is complete.
    this.control(setup(DIR_IN, TYPE_STANDARD, RCPT_DEVICE, 8 /* GET_CONFIGURATION */, 0, 0, 1), null, () => {
      this.enumerated = true;
      this.enumeratedAtNanos = this.clock.nanos;
      for (const listener of this.enumerationListeners) listener(this);
      this.enumerationListeners.clear();
    });
  }

  readStrings() {
    const { iManufacturer, iProduct, iSerialNumber } = this.device;
    const wanted = { manufacturer: iManufacturer, product: iProduct, serialNumber: iSerialNumber };
    this.control(getDescriptor(DESC_STRING, 0, 0, 255), null, (err, langs) => {
      const lang = !err && langs.length >= 4 ? langs[2] | (langs[3] << 8) : LANG_EN_US;
      for (const [name, index] of Object.entries(wanted)) {
        if (!index) continue;
        this.control(getDescriptor(DESC_STRING, index, lang, 255), null, (e, s) => {
          if (!e) this.strings[name] = decodeString(s);
        });
      }
    });
  }

  // --- control transfer engine ------------------------------------------------------------

  scheduleNext() {
    if (this.gapPending) return;
    this.gapPending = true;
    this.gapAlarm.schedule(HOST_GAP_NANOS);
  }

  startNext() {
    if (this.current || this.queue.length === 0) return;
    const t = this.queue.shift();
    const wLength = t.setupPacket[6] | (t.setupPacket[7] << 8);
    const dirIn = (t.setupPacket[0] & 0x80) !== 0;
    this.current = { ...t, dirIn, wLength, received: [], stage: wLength > 0 ? 'data' : 'status' };
    this.ep0OutArmed = false;
    this.usb.sendSetupPacket(t.setupPacket);
  }

  finish(error) {
    const t = this.current;
    this.current = null;
    this.ep0OutArmed = false;
    t.done(error, Uint8Array.from(t.received));
    if (this.queue.length) this.scheduleNext();
  }

  stalled() {
    this.stalls++;
    if (this.current) this.finish('stall');
  }

  deviceSent(ep, buffer) {
    if (ep !== 0) {
      for (const p of this.ports) if (p.fn?.inEndpoint === ep) p.deviceSent(buffer);
      return;
    }
    const t = this.current;
    if (!t) return;
    if (!t.dirIn) {
      if (t.stage === 'status') this.finish(null); // the IN zero-length status packet
      return;
    }
    t.received.push(...buffer);
    if (buffer.length < EP0_SIZE || t.received.length >= t.wLength) {
      t.stage = 'status';
      if (this.ep0OutArmed) this.sendStatusOut();
    }
  }

  deviceArmedOut(ep, size) {
    if (ep !== 0) {
      for (const p of this.ports) if (p.fn?.outEndpoint === ep) p.deviceArmedOut(size);
      return;
    }
    const t = this.current;
    if (!t) return;
    if (t.dirIn) {
      this.ep0OutArmed = true; // the OUT status stage; answer it once all data is in
      if (t.stage === 'status') this.sendStatusOut();
    } else if (t.stage === 'data') {
      t.stage = 'status';
      this.usb.endpointReadDone(0, t.dataOut.subarray(0, Math.min(size, t.dataOut.length)));
    }
  }

  sendStatusOut() {
    this.ep0OutArmed = false;
    this.usb.endpointReadDone(0, new Uint8Array(0));
    this.finish(null);
  }
}
