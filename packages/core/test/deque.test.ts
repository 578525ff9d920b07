import { Deque } from '../src/internal/deque';

describe('Deque', () => {
  it('gives items by place from the front, after shifts and compaction, as iteration does', () => {
    const d = new Deque<number>();
    for (let i = 0; i < 100; i++) d.push(i);
    for (let i = 0; i < 70; i++) expect(d.shift()).toBe(i); // past the compaction point
    d.push(100);
    expect(d.length).toBe(31);
    expect(Array.from({ length: d.length }, (_, i) => d.at(i))).toEqual([...d]);
    expect(d.at(0)).toBe(70);
    expect(d.at(30)).toBe(100);
    expect(d.at(31)).toBeUndefined();
    expect(d.at(-1)).toBeUndefined();
  });
});
