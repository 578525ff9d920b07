import { randomBytes } from 'node:crypto';
import { tableFromArrays, tableToIPC } from 'apache-arrow';
import { encodeIpc, ipcStreamProblem } from '../src';

describe('ipcStreamProblem', () => {
  const table = tableFromArrays({ x: Int32Array.of(1, 2, 3), s: ['a', 'b', 'c'] });

  it('passes streams written by dpl and by arrow, with dictionaries and many batches', () => {
    expect(ipcStreamProblem(encodeIpc(table))).toBeUndefined();
    expect(ipcStreamProblem(tableToIPC(table, 'stream'))).toBeUndefined();
    const big = tableFromArrays({ x: Float64Array.from({ length: 100_000 }, (_, i) => i) });
    expect(ipcStreamProblem(encodeIpc(big))).toBeUndefined();
  });

  it('names what is wrong with bytes that are not a stream', () => {
    const good = encodeIpc(table);
    expect(ipcStreamProblem(good.subarray(0, good.byteLength - 20))).toMatch(/^message \d+ claims a body of \d+ bytes, past the end of the \d+ bytes$/);
    expect(ipcStreamProblem(Buffer.from('these bytes are not an Arrow IPC stream'))).toMatch(/^message 1 \(at byte 0\) claims \d+ bytes of metadata, past the end of the 39 bytes$/);
    expect(ipcStreamProblem(new Uint8Array(0))).toBe('it is empty');
    expect(ipcStreamProblem(new Uint8Array(8))).toBe('it ends before its schema');
    const scrambled = Buffer.from(good);
    scrambled.fill(0x07, 12, 40);
    expect(ipcStreamProblem(scrambled)).toBe('message 1 (at byte 0) has metadata that is not an Arrow message');
  });

  it('never throws on random bytes', () => {
    for (let i = 0; i < 2_000; i++) expect(typeof ipcStreamProblem(randomBytes(1 + (i % 300)))).toBe('string');
  });
});
