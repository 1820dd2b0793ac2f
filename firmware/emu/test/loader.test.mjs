// ELF and UF2 loading with synthetic images.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RP2040 } from 'rp2040js';
import { bootWithoutRom, loadElf, loadImage, loadUf2 } from '../lib/loader.mjs';

/** A minimal ELF32 LE with the given segments: [{ type, paddr, data }]. */
function makeElf(segments) {
  const phoff = 52;
  const dataStart = phoff + 32 * segments.length;
  const size = dataStart + segments.reduce((n, s) => n + s.data.length, 0);
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]);
  dv.setUint32(24, 0x10000101, true);
  dv.setUint32(28, phoff, true);
  dv.setUint16(42, 32, true);
  dv.setUint16(44, segments.length, true);
  let off = dataStart;
  segments.forEach((s, i) => {
    const ph = phoff + 32 * i;
    dv.setUint32(ph, s.type ?? 1, true);
    dv.setUint32(ph + 4, off, true);
    dv.setUint32(ph + 8, s.paddr, true);
    dv.setUint32(ph + 12, s.paddr, true);
    dv.setUint32(ph + 16, s.data.length, true);
    dv.setUint32(ph + 20, s.data.length, true);
    b.set(s.data, off);
    off += s.data.length;
  });
  return b;
}

function makeUf2(blocks) {
  const b = new Uint8Array(512 * blocks.length);
  const dv = new DataView(b.buffer);
  blocks.forEach(({ addr, data, flags = 0x2000 }, i) => {
    const o = 512 * i;
    dv.setUint32(o, 0x0a324655, true);
    dv.setUint32(o + 4, 0x9e5d5157, true);
    dv.setUint32(o + 8, flags, true);
    dv.setUint32(o + 12, addr, true);
    dv.setUint32(o + 16, data.length, true);
    dv.setUint32(o + 20, i, true);
    dv.setUint32(o + 24, blocks.length, true);
    dv.setUint32(o + 28, 0xe48bff56, true); // RP2040 family id
    b.set(data, o + 32);
    dv.setUint32(o + 508, 0x0ab16f30, true);
  });
  return b;
}

test('ELF: PT_LOAD segments in flash are loaded, RAM and non-LOAD ones skipped', () => {
  const mcu = new RP2040();
  const elf = makeElf([
    { paddr: 0x10000000, data: [1, 2, 3, 4] },
    { paddr: 0x10000100, data: [5, 6] },
    { paddr: 0x20000000, data: [9, 9] },
    { type: 4, paddr: 0x10000200, data: [7] },
  ]);
  assert.deepEqual(loadElf(elf, mcu), { segments: 2, bytes: 6, entry: 0x10000101 });
  assert.deepEqual([...mcu.flash.subarray(0, 4)], [1, 2, 3, 4]);
  assert.deepEqual([...mcu.flash.subarray(0x100, 0x103)], [5, 6, 0xff]);
  assert.equal(mcu.flash[0x200], 0xff);
  assert.equal(loadImage(elf, new RP2040()).format, 'elf');
});

test('UF2: main-flash blocks are placed at their target address', () => {
  const mcu = new RP2040();
  const uf2 = makeUf2([
    { addr: 0x10000000, data: new Uint8Array(256).fill(0xaa) },
    { addr: 0x10000100, data: new Uint8Array(256).fill(0xbb) },
    { addr: 0x10000200, data: [1], flags: 0x1 }, // "not main flash": skipped
  ]);
  assert.deepEqual(loadUf2(uf2, mcu), { blocks: 2, bytes: 512 });
  assert.equal(mcu.flash[0xff], 0xaa);
  assert.equal(mcu.flash[0x100], 0xbb);
  assert.equal(mcu.flash[0x200], 0xff);
  assert.equal(loadImage(uf2, new RP2040()).format, 'uf2');
});

test('bad images are rejected', () => {
  assert.throws(() => loadImage(new Uint8Array(512), new RP2040()), /UF2 magic/);
  assert.throws(() => loadElf(makeElf([{ paddr: 0x20000000, data: [1] }]), new RP2040()), /no PT_LOAD/);
});

test('boot without ROM starts boot2 with the bootrom stack pointer', () => {
  const mcu = new RP2040();
  bootWithoutRom(mcu);
  assert.equal(mcu.core.PC, 0x10000000);
  assert.equal(mcu.core.SP, 0x20041f00);
  assert.equal(mcu.core.LR, 0);
});
