import { Lineage } from '../src/jobs/lineage';
import type { ObjectRef } from '../src/jobs/job';

const at = (objectId: string, ownerId = 'w1'): ObjectRef => ({ objectId, ownerId, ownerAddress: `${ownerId}:1`, inline: undefined, bytes: 10 });
const inline = (): ObjectRef => ({ objectId: '', ownerId: '', ownerAddress: '', inline: new Uint8Array(8), bytes: 8 });

describe('Lineage', () => {
  it('keeps a chain only while something made from it is live, freeing bytes as they are consumed', () => {
    const freed: string[] = [];
    const l = new Lineage((ref) => freed.push(ref.objectId));
    const s0 = inline();
    l.addSource('s0', s0, 1, false);
    const a = at('j/a#0');
    l.addOutput('a#0', a, 5, 'a', [{ id: 's0', offset: 0, rows: 1 }]);
    expect(l.unneeded('s0', s0)).toBe(true); // consumed, but a#0 was made from it
    expect(l.get('s0')).toBeDefined();
    const b = at('j/b#0', 'w2');
    l.addOutput('b#0', b, 5, 'b', [{ id: 'a#0', offset: 0, rows: 5 }]);
    l.unneeded('a#0', a);
    expect(freed).toEqual(['j/a#0']); // bytes freed at once, record kept for b#0
    expect(l.get('a#0')!.state).toBe('released');
    l.unneeded('b#0', b); // delivered
    expect(freed).toEqual(['j/a#0', 'j/b#0']);
    expect(l.size).toBe(0); // the whole chain is gone
  });

  it('does not take a duplicate output for the tracked one', () => {
    const l = new Lineage(() => undefined);
    const a = at('j/a#0~1');
    l.addSource('a#0', a, 1, false);
    expect(l.unneeded('a#0', at('j/a#0~2'))).toBe(false);
    expect(l.get('a#0')!.live).toBe(true);
  });

  it('reports the live batches a dead worker held, and frees inputs read only for a recompute', () => {
    const freed: string[] = [];
    const l = new Lineage((ref) => freed.push(ref.objectId));
    l.addSource('s0', inline(), 1, false);
    const a = at('j/a#0', 'w1');
    l.addOutput('a#0', a, 5, 'a', [{ id: 's0', offset: 0, rows: 1 }]);
    const b = at('j/b#0', 'w1');
    l.addOutput('b#0', b, 5, 'b', [{ id: 'a#0', offset: 0, rows: 5 }]);
    l.unneeded('a#0', a); // a#0 freed, b#0 still queued somewhere
    const lost = l.lostWorker('w1');
    expect(lost.map((n) => n.id)).toEqual(['b#0']);
    expect(l.get('b#0')!.state).toBe('lost');
    expect(b.objectId).toBe(''); // the scheduler's ref sees the loss too
    // a#0 is made again on w2, then b#0 from it: a#0's bytes are freed again after.
    const na = l.get('a#0')!;
    na.state = 'recomputing';
    l.recomputed(na, { ...at('j/a#0~7', 'w2') });
    const nb = l.get('b#0')!;
    l.recomputed(nb, { ...at('j/b#0~8', 'w2') });
    expect(nb.state).toBe('ready');
    expect(b).toMatchObject({ objectId: 'j/b#0~8', ownerId: 'w2' });
    expect(freed).toEqual(['j/a#0', 'j/a#0~7']);
  });

  it("keeps a generator's batch bytes while anything made from it is retained", () => {
    const freed: string[] = [];
    const l = new Lineage((ref) => freed.push(ref.objectId));
    const s = at('j/s0', 'gen');
    l.addSource('s0', s, 3, true);
    const a = at('j/a#0');
    l.addOutput('a#0', a, 3, 'a', [{ id: 's0', offset: 0, rows: 3 }]);
    l.unneeded('s0', s);
    expect(freed).toEqual([]);
    l.unneeded('a#0', a);
    expect(freed).toEqual(['j/a#0', 'j/s0']);
    expect(l.size).toBe(0);
  });
});
