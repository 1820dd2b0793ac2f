// Small helpers for node:test suites that drive an EmulatedBoard.

import net from 'node:net';

/** Path of the firmware image for the smoke tests, or null when HEARTH_EMU_SMOKE_IMAGE is unset. */
export function smokeImage() {
  return process.env.HEARTH_EMU_SMOKE_IMAGE || null;
}

/** Collects the bytes a source delivers: `onByte`-style (numbers) or `onData`-style (arrays). */
export function collect(subscribe) {
  const bytes = [];
  const stop = subscribe((x) => {
    if (typeof x === 'number') bytes.push(x);
    else bytes.push(...x);
  });
  return {
    bytes,
    stop,
    text: () => Buffer.from(bytes).toString('latin1'),
    clear: () => {
      bytes.length = 0;
    },
  };
}

/** A loopback TCP server that echoes every byte (a stand-in for a chip chain). */
export async function startTcpEcho() {
  const received = [];
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (d) => {
      received.push(...d);
      socket.write(d);
    });
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    received,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(resolve);
      }),
  };
}
