#!/usr/bin/env node
// Runs a firmware image on the emulated Hearth board, paced to wall time, for out-of-process
// tests: the USB CDC port is a TCP server, UART1 (the chip chain) a TCP client, and stdin takes
// JSON control commands.
//
//   node bin/serve.mjs IMAGE [--chain HOST:PORT] [--usb-listen PORT] [--time-scale 1]
//                            [--i2c-absent DEVICE]... [--i2c-address DEVICE=ADDR]... [--i2c-extra ADDR]...
//
// stdout: first line "usb listening on 127.0.0.1:PORT", then one JSON answer per command.
// stderr: diagnostics. Exits on {"cmd":"quit"}, SIGINT/SIGTERM, or an emulation error (code 1).

import net from 'node:net';
import readline from 'node:readline';
import { parseArgs } from 'node:util';
import { EmulatedBoard } from '../lib/board.mjs';
import { runCommand } from '../lib/control.mjs';
import { I2cDevice } from '../lib/devices/i2c-bus.mjs';
import { Emc2101 } from '../lib/devices/emc2101.mjs';
import { Tps546 } from '../lib/devices/tps546.mjs';
import { Ina260 } from '../lib/devices/ina260.mjs';

const USAGE =
  'usage: node bin/serve.mjs IMAGE [--chain HOST:PORT] [--usb-listen PORT] [--time-scale N] ' +
  '[--i2c-absent DEVICE]... [--i2c-address DEVICE=ADDR]... [--i2c-extra ADDR]...';

// The board's I2C parts, for the assembly faults a bring-up check must catch.
const PARTS = { emc2101: Emc2101, tps546: Tps546, ina260: Ina260 };

function i2cAddress(text, what) {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 0x7f) throw new Error(`${what}: ${JSON.stringify(text)} is not a 7-bit address (e.g. 0x41)`);
  return n;
}

function part(name, what) {
  if (!PARTS[name]) throw new Error(`${what}: unknown device ${JSON.stringify(name)}; known: ${Object.keys(PARTS).join(', ')}`);
  return name;
}

function parseCli(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      chain: { type: 'string' },
      'usb-listen': { type: 'string', default: '0' },
      'time-scale': { type: 'string', default: '1' },
      'i2c-absent': { type: 'string', multiple: true, default: [] },
      'i2c-address': { type: 'string', multiple: true, default: [] },
      'i2c-extra': { type: 'string', multiple: true, default: [] },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length !== 1) throw new Error(USAGE);
  const timeScale = Number(values['time-scale']);
  if (!(timeScale > 0)) throw new Error('--time-scale must be a positive number');
  let chain = null;
  if (values.chain) {
    const m = /^(.+):(\d+)$/.exec(values.chain);
    if (!m) throw new Error('--chain must be HOST:PORT');
    chain = { host: m[1], port: Number(m[2]) };
  }
  const absent = values['i2c-absent'].map((d) => part(d, '--i2c-absent'));
  const addresses = {};
  for (const spec of values['i2c-address']) {
    const m = /^([a-z0-9]+)=(.+)$/.exec(spec);
    if (!m) throw new Error('--i2c-address must be DEVICE=ADDR, e.g. ina260=0x41');
    addresses[part(m[1], '--i2c-address')] = i2cAddress(m[2], '--i2c-address');
  }
  const extra = values['i2c-extra'].map((a) => i2cAddress(a, '--i2c-extra'));
  return { image: positionals[0], chain, usbPort: Number(values['usb-listen']), timeScale, absent, addresses, extra };
}

const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const log = (msg) => process.stderr.write(`serve: ${msg}\n`);

/** The CDC port as a TCP server: one client at a time; a connected client holds DTR up. */
function serveUsb(board, port) {
  let client = null;
  board.usb.onData((data) => client?.write(data));
  const server = net.createServer((socket) => {
    if (client) {
      log('refusing a second USB client');
      socket.destroy();
      return;
    }
    client = socket;
    socket.setNoDelay(true);
    board.usb.setDtr(true);
    socket.on('data', (data) => board.usb.write(data));
    socket.on('error', () => {});
    socket.on('close', () => {
      client = null;
      board.usb.setDtr(false);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

function serveControl(board, shutdown) {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      say({ ok: false, error: 'not JSON' });
      return;
    }
    if (msg?.cmd === 'quit') {
      say({ ok: true, cmd: 'quit' });
      shutdown(0);
      return;
    }
    try {
      say(runCommand(board, msg));
    } catch (err) {
      say({ ok: false, cmd: msg?.cmd, error: err.message });
    }
  });
  // stdin closing (e.g. no stdin in CI) does not stop the board: signals or "quit" do.
}

async function main() {
  const opts = parseCli(process.argv.slice(2));
  // A part strapped to another address is the same model elsewhere on the bus.
  const devices = Object.fromEntries(Object.entries(opts.addresses).map(([name, addr]) => [name, new PARTS[name](addr)]));
  const board = new EmulatedBoard(opts.image, {
    usbAutoOpen: false, // DTR follows the TCP client
    chain: opts.chain ?? undefined,
    timeScale: opts.timeScale,
    devices,
  });
  // Absent from boot: not soldered, or dead. It still exists for the control commands.
  for (const name of opts.absent) board[name].present = false;
  // Something else that answers: a stray part, or a bridge making a part answer twice.
  for (const addr of opts.extra) board.i2c.attach(new I2cDevice(addr));
  await board.ready();
  board.on('chain-closed', () => log('chain connection closed'));
  const server = await serveUsb(board, opts.usbPort);
  let stopping = false;
  const shutdown = async (code) => {
    if (stopping) return;
    stopping = true;
    server.close();
    await board.close();
    process.exit(code);
  };
  board.on('error', (err) => {
    log(`emulation error: ${err.message}`);
    shutdown(1);
  });
  process.on('SIGINT', () => shutdown(0));
  process.on('SIGTERM', () => shutdown(0));
  process.stdout.write(`usb listening on 127.0.0.1:${server.address().port}\n`);
  serveControl(board, shutdown);
  board.start({ timeScale: opts.timeScale });
}

main().catch((err) => {
  log(err.message);
  process.exit(2);
});
