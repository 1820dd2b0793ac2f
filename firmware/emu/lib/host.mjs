// A minimal host for the emulator tests: speaks hearth-link over the emulated USB CDC port,
// keeps the board fed with pings, and records every message with the simulated time it arrived.
import { createHash } from 'node:crypto';
import { encodeFrame, FrameDecoder } from './link.mjs';

export class LinkHost {
  constructor(board) {
    this.board = board;
    this.messages = [];
    this.errors = [];
    this.pingEveryMs = 1000;
    this.lastPing = -Infinity;
    this.seq = 0;
    this.silent = false;
    this.decoder = new FrameDecoder(
      (m) => this.messages.push({ ms: board.ms, message: m }),
      (e) => this.errors.push(e),
    );
    board.usb.onData((bytes) => this.decoder.feed(bytes));
  }

  send(message) {
    this.board.usb.write(encodeFrame(message));
  }

  /** Messages of one kind ("Nonce", "Fault", ...), optionally since a simulated time. */
  of(kind, sinceMs = -Infinity) {
    return this.messages
      .filter(({ ms, message }) => ms >= sinceMs && (message === kind || (typeof message === 'object' && kind in message)))
      .map(({ ms, message }) => ({ ms, ...(typeof message === 'object' ? { body: message[kind] } : {}) }));
  }

  /** Run the board, pinging it (unless silent), until `predicate()` or the timeout. */
  async runUntil(predicate, { timeoutMs = 20_000, what = 'condition' } = {}) {
    return this.board.runUntil(() => {
      if (!this.silent && this.board.ms - this.lastPing >= this.pingEveryMs) {
        this.lastPing = this.board.ms;
        this.send({ Ping: { seq: this.seq++ } });
      }
      return predicate();
    }, { timeoutMs, what });
  }

  async runFor(ms) {
    const until = this.board.ms + ms;
    await this.runUntil(() => this.board.ms >= until, { timeoutMs: ms + 1000, what: `${ms} ms` });
  }
}

/** A work item with recognisable contents. */
export function workItem(id) {
  const prev = Array.from({ length: 32 }, (_, i) => (i * 7 + 3) & 0xff);
  const merkle = Array.from({ length: 32 }, (_, i) => (i * 13 + id * 31 + 1) & 0xff);
  return { id, version: 0x20000000, version_mask: 0x1fffe000, prev_block_hash: prev, merkle_root: merkle, ntime: 0x685468d7 + id, nbits: 0x17023a04 };
}

/** Leading zero bits (display order) of sha256d of the header a nonce report names. */
export function nonceZeroBits(item, report) {
  const header = Buffer.alloc(80);
  header.writeUInt32LE(report.version >>> 0, 0);
  Buffer.from(item.prev_block_hash).copy(header, 4);
  Buffer.from(item.merkle_root).copy(header, 36);
  header.writeUInt32LE(item.ntime >>> 0, 68);
  header.writeUInt32LE(item.nbits >>> 0, 72);
  header.writeUInt32LE(report.nonce >>> 0, 76);
  const once = createHash('sha256').update(header).digest();
  const hash = createHash('sha256').update(once).digest().reverse();
  let bits = 0;
  for (const byte of hash) {
    if (byte === 0) { bits += 8; continue; }
    bits += Math.clz32(byte) - 24;
    break;
  }
  return bits;
}
