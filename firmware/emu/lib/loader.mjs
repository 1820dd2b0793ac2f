// Loading firmware images into an rp2040js RP2040 and booting them without the bootrom.
//
// rp2040js maps the 16 MB XIP flash window at 0x10000000 onto `mcu.flash`. An image is placed
// there byte for byte; nothing else (RAM, .data) needs loading: the firmware's own reset handler
// copies .data out of flash, exactly as on hardware.

import { readFileSync } from 'node:fs';

export const FLASH_BASE = 0x10000000;

const ELF_MAGIC = 0x464c457f; // "\x7fELF", little endian
const PT_LOAD = 1;
const UF2_MAGIC_START0 = 0x0a324655;
const UF2_MAGIC_START1 = 0x9e5d5157;
const UF2_MAGIC_END = 0x0ab16f30;
const UF2_FLAG_NOT_MAIN_FLASH = 0x1;
const UF2_BLOCK = 512;

/** The initial stack pointer used by the RP2040 bootrom before it enters boot2. */
const BOOT_SP = 0x20041f00;

function view(bytes) {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function toBytes(image) {
  return typeof image === 'string' ? new Uint8Array(readFileSync(image)) : image;
}

/** Copies `data` into flash at the absolute address `addr`; returns false when it is not flash. */
function placeInFlash(mcu, addr, data) {
  const offset = addr - FLASH_BASE;
  if (offset < 0 || offset + data.length > mcu.flash.length) return false;
  mcu.flash.set(data, offset);
  return true;
}

/**
 * Loads the PT_LOAD segments of a 32-bit little-endian ARM ELF whose physical (load) address
 * lies in XIP flash. Segments for RAM (.bss, or a .data VMA) are skipped: their load image is
 * in flash already (LMA) and the reset handler copies it.
 * @returns {{ segments: number, bytes: number, entry: number }}
 */
export function loadElf(image, mcu) {
  const bytes = toBytes(image);
  const dv = view(bytes);
  if (bytes.length < 52 || dv.getUint32(0, true) !== ELF_MAGIC) throw new Error('not an ELF file');
  if (bytes[4] !== 1 || bytes[5] !== 1) throw new Error('not a 32-bit little-endian ELF');
  const entry = dv.getUint32(24, true);
  const phoff = dv.getUint32(28, true);
  const phentsize = dv.getUint16(42, true);
  const phnum = dv.getUint16(44, true);
  let segments = 0;
  let total = 0;
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    const type = dv.getUint32(ph, true);
    const offset = dv.getUint32(ph + 4, true);
    const paddr = dv.getUint32(ph + 12, true);
    const filesz = dv.getUint32(ph + 16, true);
    if (type !== PT_LOAD || filesz === 0) continue;
    if (placeInFlash(mcu, paddr, bytes.subarray(offset, offset + filesz))) {
      segments++;
      total += filesz;
    }
  }
  if (segments === 0) throw new Error('ELF has no PT_LOAD segment in flash');
  return { segments, bytes: total, entry };
}

/**
 * Loads a UF2 image: 512-byte blocks, each carrying up to 476 payload bytes for a target address.
 * Blocks flagged "not main flash" are skipped.
 * @returns {{ blocks: number, bytes: number }}
 */
export function loadUf2(image, mcu) {
  const bytes = toBytes(image);
  const dv = view(bytes);
  if (bytes.length % UF2_BLOCK !== 0) throw new Error('UF2 size is not a multiple of 512');
  let blocks = 0;
  let total = 0;
  for (let b = 0; b < bytes.length; b += UF2_BLOCK) {
    const ok =
      dv.getUint32(b, true) === UF2_MAGIC_START0 &&
      dv.getUint32(b + 4, true) === UF2_MAGIC_START1 &&
      dv.getUint32(b + UF2_BLOCK - 4, true) === UF2_MAGIC_END;
    if (!ok) throw new Error(`bad UF2 magic in block at offset ${b}`);
    const flags = dv.getUint32(b + 8, true);
    if (flags & UF2_FLAG_NOT_MAIN_FLASH) continue;
    const addr = dv.getUint32(b + 12, true);
    const size = dv.getUint32(b + 16, true);
    if (size > 476) throw new Error(`UF2 block at offset ${b} has payload size ${size}`);
    if (!placeInFlash(mcu, addr, bytes.subarray(b + 32, b + 32 + size))) {
      throw new Error(`UF2 block targets 0x${addr.toString(16)}, outside flash`);
    }
    blocks++;
    total += size;
  }
  if (blocks === 0) throw new Error('UF2 has no main-flash block');
  return { blocks, bytes: total };
}

/** Loads an ELF or UF2 image (told apart by content, not by file name). */
export function loadImage(image, mcu) {
  const bytes = toBytes(image);
  if (bytes.length >= 4 && view(bytes).getUint32(0, true) === ELF_MAGIC) {
    return { format: 'elf', ...loadElf(bytes, mcu) };
  }
  return { format: 'uf2', ...loadUf2(bytes, mcu) };
}

/**
 * Starts the core at boot2 as the bootrom would, without needing a bootrom image: boot2 runs from
 * 0x10000000, configures the (emulated, accepting) SSI, and with LR = 0 it vectors into the
 * application's vector table at 0x10000100. Firmware that calls ROM functions (rp2040-hal
 * intrinsics, flash programming, flash ID reads) needs `mcu.loadBootrom()` instead.
 */
export function bootWithoutRom(mcu) {
  const { core } = mcu;
  core.SP = BOOT_SP;
  core.LR = 0;
  core.PC = FLASH_BASE;
}
