// The JS link codec against frames written by the Rust crate (firmware/link/tests/fixtures).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { encodeFrame, FrameDecoder } from '../lib/link.mjs';

const fixtures = JSON.parse(readFileSync(new URL('../../link/tests/fixtures/frames.json', import.meta.url)));
const hex = (bytes) => Buffer.from(bytes).toString('hex');

test('host messages encode exactly as the Rust crate encodes them', () => {
  for (const { message, frame } of fixtures.host) {
    assert.equal(hex(encodeFrame(message)), frame, JSON.stringify(message));
  }
});

test('board frames decode to the Rust crate\'s messages, in any chunking, after garbage', () => {
  const stream = [0x13, 0x37, 0x00];
  for (const { frame } of fixtures.board) stream.push(...Buffer.from(frame, 'hex'));
  for (const chunk of [1, 7, 64, 1000]) {
    const got = [];
    const errors = [];
    const decoder = new FrameDecoder((m) => got.push(m), (e) => errors.push(e));
    for (let i = 0; i < stream.length; i += chunk) decoder.feed(stream.slice(i, i + chunk));
    assert.deepEqual(got, fixtures.board.map((f) => f.message));
    assert.equal(errors.length, 1, 'the garbage costs one frame');
  }
});
