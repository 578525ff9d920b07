import { OutputQueue } from '@dpl/core';

describe('OutputQueue', () => {
  it('hands out pushed values in order, to waiting and to later consumers', async () => {
    const taken: number[] = [];
    const q = new OutputQueue<number>(() => taken.push(q.length));
    const waiting = q.next();
    q.push(1);
    q.push(2);
    expect(await waiting).toEqual({ value: 1, done: false });
    expect(await q.next()).toEqual({ value: 2, done: false });
    expect(taken).toEqual([0, 0]); // onTake after each take, with what is still buffered
  });

  it('delivers buffered values before the error, the error once, then the end', async () => {
    const q = new OutputQueue<string>();
    q.push('a');
    q.fail(new Error('boom'));
    q.push('ignored');
    expect(await q.next()).toEqual({ value: 'a', done: false });
    await expect(q.next()).rejects.toThrow('boom');
    expect(await q.next()).toEqual({ value: undefined, done: true });
  });

  it('wakes a waiting consumer with the end or the error', async () => {
    const ended = new OutputQueue<number>();
    const a = ended.next();
    ended.end();
    expect(await a).toEqual({ value: undefined, done: true });
    const failed = new OutputQueue<number>();
    const b = failed.next();
    failed.fail(new Error('lost'));
    await expect(b).rejects.toThrow('lost');
    expect(failed.closed).toBe(true);
  });
});
