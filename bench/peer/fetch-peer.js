// The reading end of bench/cluster.ts's transfer lines, a process of its own (in a network
// namespace of its own for the across-hosts line): fetches bench/peer/data-peer.js's payload
// with dpl's ObjectFetcher (the worker-to-worker path: from memory, and from a shared-memory
// file where the peer has one) and reads its raw TCP copy two ways: Node 'data' events with a
// copy into the destination, and Node `onread` straight into the destination (Node's fastest).
//
//   node bench/peer/fetch-peer.js --data HOST:PORT --tcp HOST:PORT --bytes N [--shm 1] [--repeats 5]
//
// Prints one JSON line: {"dpl": [ms...], "dpl_shm": [ms...], "data": [ms...], "onread": [ms...]},
// each after one warm-up round.
'use strict';
const net = require('node:net');
const { ObjectFetcher } = require('@dpl/wire');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

function hostPort(s) {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

/** The payload (an 8-byte little-endian length, then the bytes) through 'data' events. */
function readWithData(to) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(to.port, to.host);
    let dest;
    let at = 0;
    let header = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      if (dest === undefined) {
        header = Buffer.concat([header, chunk]);
        if (header.length < 8) return;
        dest = new Uint8Array(Number(header.readBigUInt64LE(0)));
        chunk = header.subarray(8);
      }
      dest.set(chunk, at);
      at += chunk.length;
    });
    socket.on('end', () => resolve(at));
    socket.on('error', reject);
  });
}

/** The payload through `onread` with the destination's next slice: no chunk is copied. */
function readWithOnread(to) {
  return new Promise((resolve, reject) => {
    const scratch = Buffer.alloc(64 * 1024);
    let dest;
    let at = 0;
    let header = Buffer.alloc(0);
    const socket = net.connect({
      port: to.port,
      host: to.host,
      onread: {
        buffer: () => (dest === undefined || at >= dest.byteLength ? scratch : dest.subarray(at)),
        callback: (n, buf) => {
          if (dest === undefined) {
            header = Buffer.concat([header, buf.subarray(0, n)]);
            if (header.length < 8) return true;
            dest = Buffer.allocUnsafe(Number(header.readBigUInt64LE(0)));
            const rest = header.subarray(8);
            rest.copy(dest, 0);
            at = rest.length;
          } else at += n;
          return true;
        },
      },
    });
    socket.on('end', () => resolve(at));
    socket.on('error', reject);
  });
}

async function timed(f) {
  const t0 = performance.now();
  const n = await f();
  return { ms: performance.now() - t0, n: typeof n === 'number' ? n : n.byteLength };
}

(async () => {
  const data = arg('data');
  const tcp = hostPort(arg('tcp'));
  const bytes = Number(arg('bytes'));
  const shm = arg('shm', '0') === '1';
  const repeats = Number(arg('repeats', '5'));
  const fetcher = new ObjectFetcher(undefined);
  const out = { dpl: [], dpl_shm: [], data: [], onread: [] };
  try {
    for (let i = 0; i < repeats + 1; i++) {
      const round = [
        ['dpl', () => fetcher.fetch(data, 'big')],
        ['data', () => readWithData(tcp)],
        ['onread', () => readWithOnread(tcp)],
        ...(shm ? [['dpl_shm', () => fetcher.fetch(data, 'big-shm')]] : []),
      ];
      for (const [name, f] of round) {
        const { ms, n } = await timed(f);
        if (n !== bytes) throw new Error(`${name}: ${n} of ${bytes} bytes`);
        if (i > 0) out[name].push(ms);
      }
    }
  } finally {
    fetcher.close();
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
})().catch((e) => {
  process.stderr.write(`fetch-peer: ${e.stack ?? e}\n`);
  process.exit(1);
});
