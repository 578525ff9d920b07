// A separate process that serves one payload of N MiB two ways, for bench/cluster.ts: a dpl
// data server (the worker's data-plane server) and a raw TCP socket that writes the same bytes
// to every connection. The data server has it twice: as bytes in memory ('big') and, where
// /dev/shm exists, as a file in shared memory as executors leave large task outputs ('big-shm').
// Listens on HOST (default 127.0.0.1: `node bench/peer/data-peer.js MIB [HOST]`).
// Prints "ready <dataPort> <tcpPort> <bytes> <shm 1|0>" on stdout.
'use strict';
const { existsSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const net = require('node:net');
const { ObjectStore, startDataServer } = require('@dpl/worker');
const { encodeIpc } = require('@dpl/core');
const { Table, makeVector } = require('apache-arrow');

const mib = Number(process.argv[2] ?? 64);
const host = process.argv[3] ?? '127.0.0.1';
const table = new Table({ x: makeVector(new Float64Array((mib * 1024 * 1024) / 8).fill(1.5)) });
const bytes = encodeIpc(table);
const shm = existsSync('/dev/shm');
const store = new ObjectStore(shm ? { sharedDir: '/dev/shm' } : {});
store.put('big', bytes);
if (shm) {
  const file = join(store.sharedDir, 'big.arrow');
  writeFileSync(file, bytes);
  store.adopt('big-shm', file, bytes.byteLength);
}

(async () => {
  const data = await startDataServer(store, host, undefined);
  const tcp = net.createServer((socket) => {
    const header = Buffer.alloc(8);
    header.writeBigUInt64LE(BigInt(bytes.byteLength));
    socket.write(header);
    socket.end(bytes);
  });
  tcp.listen(0, host, () => {
    process.stdout.write(`ready ${data.port} ${tcp.address().port} ${bytes.byteLength} ${shm ? 1 : 0}\n`);
  });
  const quit = () => {
    store.close();
    process.exit(0);
  };
  process.on('disconnect', quit);
  process.stdin.on('end', quit);
  process.stdin.resume();
})();
