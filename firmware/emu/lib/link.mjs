// The hearth-link wire protocol in JavaScript, for the emulator tests: COBS framing, CRC-32C and
// the postcard encoding of the messages, producing and accepting the same JSON shapes as
// serde_json does for the Rust types (externally tagged enums: "Hello", {"Nonce": {...}}).
// Pinned to the Rust implementation by test/link-codec.test.mjs against frames the Rust crate
// wrote (firmware/link/tests/fixtures/frames.json).

export const PROTOCOL_VERSION = 1;

// ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) ----
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// ---- COBS ----
export function cobsEncode(data) {
  const out = [0];
  let codeAt = 0;
  let code = 1;
  for (const b of data) {
    if (b === 0) {
      out[codeAt] = code;
      codeAt = out.length;
      out.push(0);
      code = 1;
    } else {
      out.push(b);
      code++;
      if (code === 0xff) {
        out[codeAt] = code;
        codeAt = out.length;
        out.push(0);
        code = 1;
      }
    }
  }
  out[codeAt] = code;
  return out;
}

export function cobsDecode(data) {
  const out = [];
  let i = 0;
  while (i < data.length) {
    const code = data[i++];
    if (code === 0) throw new Error('zero inside a COBS frame');
    for (let k = 1; k < code; k++) {
      if (i >= data.length) throw new Error('truncated COBS frame');
      out.push(data[i++]);
    }
    if (code !== 0xff && i < data.length) out.push(0);
  }
  return out;
}

// ---- postcard primitives ----
class Writer {
  constructor() { this.bytes = []; }
  u8(v) { this.bytes.push(v & 0xff); }
  varint(v) {
    let n = BigInt(v);
    do {
      let byte = Number(n & 0x7fn);
      n >>= 7n;
      if (n) byte |= 0x80;
      this.bytes.push(byte);
    } while (n);
  }
  zigzag(v) { const n = BigInt(v); this.varint(n >= 0n ? n << 1n : ((-n) << 1n) - 1n); }
  raw(arr) { for (const b of arr) this.u8(b); }
  str(s) { const b = Buffer.from(s, 'utf8'); this.varint(b.length); this.raw(b); }
  option(v, f) { if (v === null || v === undefined) this.u8(0); else { this.u8(1); f(v); } }
}

class Reader {
  constructor(bytes) { this.b = bytes; this.i = 0; }
  u8() { if (this.i >= this.b.length) throw new Error('message truncated'); return this.b[this.i++]; }
  varint() {
    let n = 0n; let shift = 0n;
    for (;;) {
      const byte = this.u8();
      n |= BigInt(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return Number(n);
      shift += 7n;
      if (shift > 63n) throw new Error('varint too long');
    }
  }
  zigzag() { const n = BigInt(this.varint()); return Number(n & 1n ? -((n + 1n) >> 1n) : n >> 1n); }
  raw(len) { const out = []; for (let k = 0; k < len; k++) out.push(this.u8()); return out; }
  str() { const len = this.varint(); return Buffer.from(this.raw(len)).toString('utf8'); }
  option(f) { const tag = this.u8(); if (tag === 0) return null; if (tag === 1) return f(); throw new Error('bad option tag'); }
}

// ---- messages ----
const HOST_VARIANTS = ['Hello', 'Work', 'ClearWork', 'SetFrequency', 'SetVoltage', 'SetFan', 'Pause', 'Resume', 'Reset', 'Ping', 'SetShareFloor', 'ScanI2c', 'GetEnumeration'];
const BOARD_VARIANTS = ['Hello', 'Nonce', 'Telemetry', 'Fault', 'WorkLow', 'Log', 'Pong', 'I2cScan', 'Enumeration'];
const STATES = ['Starting', 'Hashing', 'Throttled', 'Idle', 'Safe'];
const SENSORS = ['AsicTemperature', 'BoardTemperature', 'Regulator', 'PowerMonitor', 'Fan'];
const LEVELS = ['Warn', 'Info', 'Debug'];
const FAULTS = ['OverTemperature', 'Throttling', 'RegulatorOverTemperature', 'SensorFailure', 'RegulatorFault', 'InputPower', 'HostSilent', 'ChainInit', 'Cleared'];

function variant(msg) {
  return typeof msg === 'string' ? [msg, null] : Object.entries(msg)[0];
}

/** Encode a HostToBoard message (serde_json shape) as postcard bytes. */
export function encodeHostMessage(msg) {
  const w = new Writer();
  const [name, body] = variant(msg);
  const tag = HOST_VARIANTS.indexOf(name);
  if (tag < 0) throw new Error(`unknown host message ${name}`);
  w.varint(tag);
  switch (name) {
    case 'Work':
      w.varint(body.id); w.varint(body.version); w.varint(body.version_mask);
      w.raw(body.prev_block_hash); w.raw(body.merkle_root); w.varint(body.ntime); w.varint(body.nbits);
      break;
    case 'SetFrequency': w.varint(body.khz); break;
    case 'SetVoltage': w.varint(body.mv); break;
    case 'SetFan': w.option(body.percent, (p) => w.u8(p)); break;
    case 'Ping': w.varint(body.seq); break;
    case 'SetShareFloor': w.u8(body.bits); break;
    default: break;
  }
  return w.bytes;
}

function decodeFault(r) {
  const name = FAULTS[r.varint()];
  switch (name) {
    case 'OverTemperature': return { OverTemperature: { temp_mc: r.zigzag(), limit_mc: r.zigzag() } };
    case 'Throttling': return { Throttling: { temp_mc: r.zigzag(), frequency_khz: r.varint() } };
    case 'RegulatorOverTemperature': return { RegulatorOverTemperature: { temp_mc: r.zigzag() } };
    case 'SensorFailure': return { SensorFailure: { sensor: SENSORS[r.varint()] } };
    case 'RegulatorFault': return { RegulatorFault: { status_word: r.varint() } };
    case 'InputPower': return { InputPower: { input_mv: r.varint(), input_mw: r.varint() } };
    case 'HostSilent': return { HostSilent: { silent_ms: r.varint() } };
    case 'ChainInit': return { ChainInit: { reason: r.str() } };
    case 'Cleared': return 'Cleared';
    default: throw new Error('unknown fault');
  }
}

/** Decode postcard bytes of a BoardToHost message into the serde_json shape. */
export function decodeBoardMessage(bytes) {
  const r = new Reader(bytes);
  const name = BOARD_VARIANTS[r.varint()];
  let msg;
  switch (name) {
    case 'Hello':
      msg = { Hello: { protocol: r.u8(), firmware: r.raw(3), board: r.str(), serial: r.str(), chip_id: r.varint(), chip_count: r.varint(), queue_depth: r.u8(), share_bits: r.u8() } };
      break;
    case 'Nonce':
      msg = { Nonce: { work_id: r.varint(), version: r.varint(), nonce: r.varint(), chip: r.u8(), zero_bits: r.u8() } };
      break;
    case 'Telemetry': {
      const t = {
        uptime_ms: r.varint(),
        state: STATES[r.varint()],
        asic_temp_mc: r.option(() => r.zigzag()),
        board_temp_mc: r.option(() => r.zigzag()),
        vr_temp_mc: r.option(() => r.zigzag()),
        fan_percent: r.u8(),
        fan_rpm: r.option(() => r.varint()),
        vcore_mv: r.option(() => r.varint()),
        vcore_ma: r.option(() => r.varint()),
        input_mv: r.option(() => r.varint()),
        input_ma: r.option(() => r.varint()),
        input_mw: r.option(() => r.varint()),
        frequency_khz: r.varint(),
        queued: r.u8(),
        chips: [],
      };
      const n = r.varint();
      for (let k = 0; k < n; k++) t.chips.push({ nonces: r.varint(), errors: r.varint(), hash_counter: r.varint(), error_counter: r.varint() });
      msg = { Telemetry: t };
      break;
    }
    case 'Fault': msg = { Fault: decodeFault(r) }; break;
    case 'WorkLow': msg = { WorkLow: { queued: r.u8(), wanted: r.u8() } }; break;
    case 'Log': msg = { Log: { level: LEVELS[r.varint()], text: r.str() } }; break;
    case 'Pong': msg = { Pong: { seq: r.varint() } }; break;
    case 'I2cScan': msg = { I2cScan: { acked: r.raw(r.varint()), stopped_at: r.option(() => r.u8()) } }; break;
    case 'Enumeration':
      msg = { Enumeration: { attempts: r.varint(), chips_found: r.varint(), chip_id: r.option(() => r.varint()), up: r.u8() === 1, error: r.str() } };
      break;
    default: throw new Error('unknown board message');
  }
  if (r.i !== bytes.length) throw new Error('trailing bytes in message');
  return msg;
}

/** One frame on the wire for a host message. */
export function encodeFrame(hostMessage) {
  const payload = [PROTOCOL_VERSION, ...encodeHostMessage(hostMessage)];
  const crc = crc32c(payload);
  payload.push(crc & 0xff, (crc >>> 8) & 0xff, (crc >>> 16) & 0xff, crc >>> 24);
  return Uint8Array.from([...cobsEncode(payload), 0]);
}

/** Accumulates link bytes and calls back with each decoded board message (or error). */
export class FrameDecoder {
  constructor(onMessage, onError = () => {}) {
    this.buf = [];
    this.onMessage = onMessage;
    this.onError = onError;
  }

  feed(bytes) {
    for (const b of bytes) {
      if (b !== 0) { this.buf.push(b); continue; }
      if (this.buf.length === 0) continue;
      const frame = this.buf;
      this.buf = [];
      try {
        const payload = cobsDecode(frame);
        if (payload.length < 5) throw new Error('frame too short');
        const data = payload.slice(0, -4);
        const c = payload.slice(-4);
        const crc = (c[0] | (c[1] << 8) | (c[2] << 16) | (c[3] << 24)) >>> 0;
        if (crc32c(data) !== crc) throw new Error('CRC mismatch');
        if (data[0] !== PROTOCOL_VERSION) throw new Error(`protocol version ${data[0]}`);
        this.onMessage(decodeBoardMessage(data.slice(1)));
      } catch (e) {
        this.onError(e);
      }
    }
  }
}
