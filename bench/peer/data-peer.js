// A separate process that serves one payload of N MiB two ways, for bench/cluster.ts: a dpl
// data server (the worker's data-plane server) and a raw TCP socket that writes the same bytes
// to every connection. Prints "ready <dataPort> <tcpPort>" on stdout.
'use strict';
const net = require('node:net');
const { ObjectStore, startDataServer } = require('@dpl/worker');
const { encodeIpc } = require('@dpl/core');
const { Table, makeVector } = require('apache-arrow');

const mib = Number(process.argv[2] ?? 64);
const table = new Table({ x: makeVector(new Float64Array((mib * 1024 * 1024) / 8).fill(1.5)) });
const bytes = encodeIpc(table);
const store = new ObjectStore();
store.put('big', bytes);

(async () => {
  const data = await startDataServer(store, '127.0.0.1', undefined);
  const tcp = net.createServer((socket) => {
    const header = Buffer.alloc(8);
    header.writeBigUInt64LE(BigInt(bytes.byteLength));
    socket.write(header);
    socket.end(bytes);
  });
  tcp.listen(0, '127.0.0.1', () => {
    process.stdout.write(`ready ${data.port} ${tcp.address().port} ${bytes.byteLength}\n`);
  });
  process.on('disconnect', () => process.exit(0));
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
})();
