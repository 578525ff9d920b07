import { randomBytes } from 'node:crypto';
import { RecordBatchStreamWriter, tableFromArrays, tableToIPC as toIPC } from 'apache-arrow';
import { EncodedOutputBatch, checkIpcStream, concatTables, encodeIpc, ipcOfOutput, ipcStreamProblem } from '../src';

describe('ipcStreamProblem', () => {
  const table = tableFromArrays({ x: Int32Array.of(1, 2, 3), s: ['a', 'b', 'c'] });

  it('passes streams written by dpl and by arrow, with dictionaries and many batches', () => {
    expect(ipcStreamProblem(encodeIpc(table))).toBeUndefined();
    expect(ipcStreamProblem(toIPC(table, 'stream'))).toBeUndefined();
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

describe('checkIpcStream', () => {
  it('counts the rows of every record batch without decoding them', () => {
    const t = tableFromArrays({ x: Int32Array.of(1, 2, 3), s: ['a', 'b', 'c'] });
    expect(checkIpcStream(encodeIpc(t))).toEqual({ rows: 3 });
    expect(checkIpcStream(encodeIpc(t.slice(0, 0)))).toEqual({ rows: 0 });
    const several = concatTables([t, t.slice(1), tableFromArrays({ x: Int32Array.of(9), s: ['z'] })]);
    expect(several.batches.length).toBe(3);
    expect(checkIpcStream(toIPC(several, 'stream'))).toEqual({ rows: 6 });
    const big = tableFromArrays({ x: Float64Array.from({ length: 100_000 }, (_, i) => i) });
    expect(checkIpcStream(encodeIpc(big))).toEqual({ rows: 100_000 });
    // Without the end-of-stream marker (a writer that stopped after its last batch).
    const writer = new RecordBatchStreamWriter({ autoDestroy: false });
    writer.write(t);
    const open = writer.toUint8Array(true);
    expect(checkIpcStream(open)).toEqual({ rows: 3 });
  });

  it('says what is wrong instead, as ipcStreamProblem does', () => {
    const good = encodeIpc(tableFromArrays({ x: Int32Array.of(1, 2, 3) }));
    expect(checkIpcStream(good.subarray(0, good.byteLength - 20))).toBe(ipcStreamProblem(good.subarray(0, good.byteLength - 20)));
    expect(checkIpcStream(new Uint8Array(0))).toBe('it is empty');
  });
});

describe('EncodedOutputBatch', () => {
  it('decodes its bytes once, on first read of data, and keeps them for writers', () => {
    const t = tableFromArrays({ x: Int32Array.of(1, 2, 3) });
    const ipc = encodeIpc(t);
    const b = new EncodedOutputBatch(ipc, 'sink', 'sink#4', 3);
    expect(b.rows).toBe(3);
    const data = b.data;
    expect([...data.getChild('x')!]).toEqual([1, 2, 3]);
    expect(b.data).toBe(data);
    expect(ipcOfOutput(b)).toBe(ipc);
    expect(ipcOfOutput({ data: t })).toBeUndefined();
    expect(JSON.stringify(b)).toBe('{"task":"sink","id":"sink#4","rows":3}');
    // Spread and keys as a batch made in this process: data (decoded), task, id, rows.
    expect(Object.keys(b).sort()).toEqual(['data', 'id', 'rows', 'task']);
    const copy = { ...b };
    expect(copy.data).toBe(data);
    expect(copy.rows).toBe(3);
  });

  it('names the batch when its bytes do not decode', () => {
    const b = new EncodedOutputBatch(Buffer.from('not arrow at all'), 'sink', 'sink#1', 0);
    expect(() => b.data).toThrow(/^output batch sink#1 of task "sink" arrived as bytes that are not Arrow IPC \(/);
  });
});
