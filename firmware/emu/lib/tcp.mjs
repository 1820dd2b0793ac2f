// Bridging a UART port to a TCP peer (e.g. `hearth sim-chain --listen`), for the in-process
// board and for bin/serve.mjs.

import net from 'node:net';

/**
 * Connects `port` (a UartPort) to host:port. Bytes the firmware transmits are collected and
 * written in batches by `flush()` (the board calls it between time slices) rather than one
 * socket write per byte; bytes from the peer are queued to the firmware's RX line.
 * @returns {Promise<{ socket, flush(): void, close(): void, stats }>}
 */
export function bridgeUartToTcp(port, { host = '127.0.0.1', port: tcpPort }) {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host, port: tcpPort });
    const stats = { toPeer: 0, fromPeer: 0 };
    let out = [];
    const unsubscribe = port.onByte((b) => out.push(b));
    const flush = () => {
      if (out.length === 0 || socket.destroyed) return;
      stats.toPeer += out.length;
      socket.write(Uint8Array.from(out));
      out = [];
    };
    const close = () => {
      unsubscribe();
      socket.destroy();
    };
    socket.setNoDelay(true);
    socket.on('data', (data) => {
      stats.fromPeer += data.length;
      port.send(data);
    });
    socket.once('connect', () => {
      socket.off('error', reject);
      socket.on('error', () => {}); // reported through 'close'; the board keeps running
      resolve({ socket, flush, close, stats });
    });
    socket.once('error', reject);
  });
}
