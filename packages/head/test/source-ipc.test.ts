import { decodeIpc, defaultSource, encodeIpc } from '@dpl/core';
import { defaultSourceIpc } from '../src/jobs/source-ipc';

describe('defaultSourceIpc', () => {
  it('gives, byte for byte, what encoding each default-source batch gives', () => {
    const runId = 'c4fc8b66-8256-4e05-9ff7-de9a4132d56f';
    const fast = defaultSourceIpc(runId);
    const slow = defaultSource(runId);
    for (let n = 0n; n < 300n; n++) {
      const expected = encodeIpc(slow.next().value);
      expect(Buffer.from(fast(n)).equals(Buffer.from(expected))).toBe(true);
    }
    const big = decodeIpc(fast(2n ** 40n + 7n));
    expect(big.getChild('id')!.get(0)).toBe(2n ** 40n + 7n);
    expect(big.getChild('run_id')!.get(0)).toBe(runId);
  });

  it('gives each batch bytes of its own', () => {
    const fast = defaultSourceIpc('r');
    const a = fast(1n);
    const b = fast(2n);
    expect(decodeIpc(a).getChild('id')!.get(0)).toBe(1n);
    expect(decodeIpc(b).getChild('id')!.get(0)).toBe(2n);
  });

  it('cuts them 8-byte aligned from small shared slabs, none overlapping another', () => {
    const fast = defaultSourceIpc('c4fc8b66-8256-4e05-9ff7-de9a4132d56f');
    const batches = Array.from({ length: 200 }, (_, i) => fast(BigInt(i)));
    const slabs = new Set(batches.map((b) => b.buffer));
    expect(slabs.size).toBeGreaterThan(1);
    expect(slabs.size).toBeLessThan(batches.length / 10);
    for (const b of batches) {
      expect(b.byteOffset % 8).toBe(0);
      expect(b.buffer.byteLength).toBeLessThanOrEqual(64 * 1024);
    }
    // Written in turn: each keeps its own id after the later ones were cut.
    batches.forEach((b, i) => expect(decodeIpc(b).getChild('id')!.get(0)).toBe(BigInt(i)));
  });
});
