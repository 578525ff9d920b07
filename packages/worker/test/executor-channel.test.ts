import net from 'node:net';
import { FrameChannel } from '../src/executor/channel';

/** Two connected sockets on loopback. */
async function socketPair(): Promise<[net.Socket, net.Socket, () => void]> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const a = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const b = await accepted;
  return [a, b, () => (a.destroy(), b.destroy(), server.close())];
}

/** Counts the frames in what arrives on `socket` (each starts with its u32 length after the field). */
function frameCounter(socket: net.Socket): () => number {
  const parts: Buffer[] = [];
  socket.on('data', (d: Buffer) => parts.push(d));
  return () => {
    const all = Buffer.concat(parts);
    let n = 0;
    for (let at = 0; at + 4 <= all.byteLength; at += 4 + all.readUInt32LE(at)) n++;
    return n;
  };
}

interface Msg {
  kind: string;
  ipc?: Uint8Array;
  inputs?: { ipc: Uint8Array; rows: number }[];
}

describe('the executor channel', () => {
  it('carries messages with byte arrays at any depth, Buffers included, 8-byte aligned and in order', async () => {
    const [a, b, close] = await socketPair();
    const got: Msg[] = [];
    const done = new Promise<void>((resolve) => {
      new FrameChannel<Msg, Msg>(b, (m) => {
        got.push(m);
        if (got.length === 50) resolve();
      });
    });
    const sender = new FrameChannel<Msg, Msg>(a, () => undefined);
    const big = new Uint8Array(3_000_001).fill(7);
    for (let i = 0; i < 50; i++) {
      sender.send({
        kind: `m${i}`,
        // A Buffer that views a larger pool: only its own bytes travel.
        ipc: Buffer.from(`payload ${i}`),
        inputs: [{ ipc: i === 10 ? big : Uint8Array.of(i, i + 1, i + 2), rows: i }],
      });
    }
    await done;
    close();
    got.forEach((m, i) => {
      expect(m.kind).toBe(`m${i}`);
      expect(Buffer.from(m.ipc!).toString()).toBe(`payload ${i}`);
      expect(m.inputs![0]!.rows).toBe(i);
      for (const bytes of [m.ipc!, m.inputs![0]!.ipc]) expect(bytes.byteOffset % 8).toBe(0);
    });
    expect(got[10]!.inputs![0]!.ipc.byteLength).toBe(big.byteLength);
    expect(got[11]!.inputs![0]!.ipc).toEqual(Uint8Array.of(11, 12, 13));
  });

  it('sends the messages of one turn as one frame and the next turn\'s after them; a message is serialized when sent', async () => {
    const [a, b, close] = await socketPair();
    const got: Msg[] = [];
    const frames = frameCounter(b);
    const done = new Promise<void>((resolve) => {
      new FrameChannel<Msg, Msg>(b, (m) => {
        got.push(m);
        if (got.length === 40) resolve();
      });
    });
    const sender = new FrameChannel<Msg, Msg>(a, () => undefined);
    for (let i = 0; i < 20; i++) {
      const m: Msg = { kind: `first ${i}`, ipc: Uint8Array.of(i) };
      sender.send(m);
      m.kind = 'changed after send';
    }
    await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 20; i++) sender.send({ kind: `second ${i}`, inputs: [{ ipc: Uint8Array.of(100 + i, 7), rows: i }] });
    await done;
    close();
    expect(got.map((m) => m.kind)).toEqual([...Array.from({ length: 20 }, (_, i) => `first ${i}`), ...Array.from({ length: 20 }, (_, i) => `second ${i}`)]);
    got.slice(0, 20).forEach((m, i) => expect(m.ipc).toEqual(Uint8Array.of(i)));
    got.slice(20).forEach((m, i) => {
      expect(m.inputs![0]!.ipc).toEqual(Uint8Array.of(100 + i, 7));
      expect(m.inputs![0]!.ipc.byteOffset % 8).toBe(0);
    });
    expect(frames()).toBe(2);
  });

  it('starts a new frame where a turn\'s attachments would pass 64 MiB, and writes what is pending before it closes', async () => {
    const [a, b, close] = await socketPair();
    const got: Msg[] = [];
    const ended = new Promise<void>((resolve) => b.on('end', resolve));
    new FrameChannel<Msg, Msg>(b, (m) => got.push(m));
    const frames = frameCounter(b);
    const sender = new FrameChannel<Msg, Msg>(a, () => undefined);
    const sizes = [30, 30, 30].map((mb) => mb * 1024 * 1024 + 3);
    sizes.forEach((n, i) => sender.send({ kind: `big ${i}`, ipc: new Uint8Array(n).fill(i + 1), inputs: [{ ipc: Uint8Array.of(i), rows: i }] }));
    sender.send({ kind: 'last' });
    sender.close();
    await ended;
    close();
    expect(got.map((m) => m.kind)).toEqual(['big 0', 'big 1', 'big 2', 'last']);
    // 30 + 30 MiB in the first frame; the third would pass 64 MiB and starts the second.
    expect(frames()).toBe(2);
    sizes.forEach((n, i) => {
      const ipc = got[i]!.ipc!;
      expect(ipc.byteLength).toBe(n);
      expect(ipc.byteOffset % 8).toBe(0);
      expect(ipc[0]).toBe(i + 1);
      expect(ipc[n - 1]).toBe(i + 1);
      expect(got[i]!.inputs![0]!.ipc).toEqual(Uint8Array.of(i));
    });
  });
});
