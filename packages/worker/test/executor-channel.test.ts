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
});
