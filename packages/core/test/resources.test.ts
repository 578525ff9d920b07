import { CPU, GPU, ResourceSet, describe as describeValue, resourceProblems } from '@dpl/core';
import { expectThrows } from '../../../test/helpers/errors';

const rs = (map: Record<string, number>): ResourceSet => ResourceSet.from(map);


describe('ResourceSet arithmetic in fixed point', () => {
  it('adds ten 0.1 GPU requests to exactly 1 GPU, which fits a set of {GPU:1}', () => {
    let total = ResourceSet.EMPTY;
    for (let i = 0; i < 10; i++) total = total.add(rs({ GPU: 0.1 }));
    expect(total.get(GPU)).toBe(1);
    expect(total.toJSON()).toEqual({ GPU: 1 });
    expect(rs({ GPU: 1 }).fits(total)).toBe(true);
    // The floating-point sum is not 1, which is why fixed point matters.
    expect(Array.from({ length: 10 }, () => 0.1).reduce((a, b) => a + b)).not.toBe(1);
  });

  it('takes ten 0.1 GPU allocations out of one GPU and ends with nothing left', () => {
    let free = rs({ GPU: 1 });
    for (let i = 0; i < 10; i++) {
      expect(free.fits(rs({ GPU: 0.1 }))).toBe(true);
      free = free.subtract(rs({ GPU: 0.1 }));
    }
    expect(free.isEmpty()).toBe(true);
    expect(free.get(GPU)).toBe(0);
    expect(free.fits(rs({ GPU: 0.1 }))).toBe(false);
  });

  it('adds 0.1 and 0.2 to exactly 0.3', () => {
    expect(
      rs({ x: 0.1 })
        .add(rs({ x: 0.2 }))
        .get('x'),
    ).toBe(0.3);
  });

  it('adds sets with different names, keeping both', () => {
    expect(
      rs({ CPU: 1 })
        .add(rs({ bigdb: 1, CPU: 2 }))
        .toJSON(),
    ).toEqual({ CPU: 3, bigdb: 1 });
  });

  it('returns new sets and never changes the operands', () => {
    const a = rs({ CPU: 4 });
    const b = rs({ CPU: 1 });
    a.add(b);
    a.subtract(b);
    expect(a.toJSON()).toEqual({ CPU: 4 });
    expect(b.toJSON()).toEqual({ CPU: 1 });
  });
});

describe('ResourceSet.fits and shortfall', () => {
  it('fits a request whose every quantity is available, including an equal one', () => {
    const free = rs({ CPU: 2, GPU: 1, bigdb: 1 });
    expect(free.fits(rs({ CPU: 2 }))).toBe(true);
    expect(free.fits(rs({ CPU: 1, GPU: 1, bigdb: 1 }))).toBe(true);
    expect(free.fits(ResourceSet.EMPTY)).toBe(true);
    expect(ResourceSet.EMPTY.fits(ResourceSet.EMPTY)).toBe(true);
  });

  it('does not fit a request that needs more of one resource or a resource it lacks', () => {
    const free = rs({ CPU: 2, GPU: 1 });
    expect(free.fits(rs({ CPU: 2.5 }))).toBe(false);
    expect(free.fits(rs({ CPU: 1, bigdb: 1 }))).toBe(false);
    expect(ResourceSet.EMPTY.fits(rs({ CPU: 0.0001 }))).toBe(false);
  });

  it('reports the shortfall of each missing resource with requested and available amounts', () => {
    const free = rs({ CPU: 2, GPU: 0.5 });
    expect(free.shortfall(rs({ CPU: 1, GPU: 1, bigdb: 2 }))).toEqual([
      { name: 'GPU', requested: 1, available: 0.5 },
      { name: 'bigdb', requested: 2, available: 0 },
    ]);
    expect(free.shortfall(rs({ CPU: 2 }))).toEqual([]);
  });
});

describe('ResourceSet.subtract', () => {
  it('subtracts and drops resources that reach zero', () => {
    const left = rs({ CPU: 4, GPU: 1 }).subtract(rs({ CPU: 1.5, GPU: 1 }));
    expect(left.toJSON()).toEqual({ CPU: 2.5 });
  });

  it('throws a RangeError naming the resource when the result would go negative', () => {
    expectThrows(
      () => rs({ GPU: 0.5 }).subtract(rs({ GPU: 1 })),
      RangeError,
      'resource GPU would go negative (-0.5); released more than taken',
    );
    expectThrows(
      () => ResourceSet.EMPTY.subtract(rs({ bigdb: 1 })),
      RangeError,
      'resource bigdb would go negative (-1); released more than taken',
    );
  });
});

describe('ResourceSet.from', () => {
  it('drops zero entries', () => {
    const s = rs({ CPU: 1, GPU: 0, bigdb: 0 });
    expect(s.toJSON()).toEqual({ CPU: 1 });
    expect(rs({ GPU: 0 }).isEmpty()).toBe(true);
    expect(rs({}).isEmpty()).toBe(true);
    expect(rs({ GPU: 0 }).toString()).toBe('{}');
  });

  it('treats a missing name as zero', () => {
    expect(rs({ CPU: 1 }).get('GPU')).toBe(0);
    expect(rs({ CPU: 1 }).get('nope')).toBe(0);
  });

  it('rejects a negative quantity with a TypeError naming the key', () => {
    expectThrows(
      () => rs({ CPU: 1, bigdb: -1 }),
      TypeError,
      'resources.bigdb must be a number >= 0, got -1',
    );
  });

  it('bounds every amount, name and map, so no sum or bound derived from them overflows', () => {
    expectThrows(() => rs({ CPU: 1e308 }), TypeError, 'resources.CPU must be at most 1000000, got 1e+308');
    expect(rs({ CPU: 1_000_000 }).get(CPU)).toBe(1_000_000);
    expect(resourceProblems('r', { ['x'.repeat(129)]: 1 })).toEqual([
      expect.stringMatching(/^r has a resource name of 129 characters .*; at most 128 are allowed$/),
    ]);
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`r${i}`, 1]));
    expect(resourceProblems('r', many)).toEqual(['r has 65 resource names; at most 64 are allowed']);
  });

  it('rejects NaN and Infinity with a TypeError naming the key', () => {
    expectThrows(() => rs({ GPU: NaN }), TypeError, 'resources.GPU must be a number >= 0, got NaN');
    expectThrows(
      () => rs({ GPU: Infinity }),
      TypeError,
      'resources.GPU must be a number >= 0, got Infinity',
    );
  });

  it('rejects a string quantity, quoting it, and lists every bad key in one message', () => {
    const bad = { bigdb: '1', CPU: -2 } as unknown as Record<string, number>;
    expectThrows(
      () => rs(bad),
      TypeError,
      'resources.bigdb must be a number >= 0, got "1"; resources.CPU must be a number >= 0, got -2',
    );
  });

  it('rejects a map that is not an object', () => {
    expectThrows(
      () => ResourceSet.from(null as unknown as Record<string, number>),
      TypeError,
      'resources must be an object of resource name to number, got null',
    );
    expect(() => ResourceSet.from([1] as unknown as Record<string, number>)).toThrow(TypeError);
  });
});

describe('ResourceSet.toJSON and toString', () => {
  it('sorts names in toJSON', () => {
    const s = rs({ zeta: 1, GPU: 2, alpha: 3, CPU: 4 });
    expect(Object.keys(s.toJSON())).toEqual(['CPU', 'GPU', 'alpha', 'zeta']);
    expect(JSON.stringify(s)).toBe('{"CPU":4,"GPU":2,"alpha":3,"zeta":1}');
  });

  it('prints {NAME:n, ...} with sorted names, and {} when empty', () => {
    expect(rs({ [GPU]: 0.5, [CPU]: 1 }).toString()).toBe('{CPU:1, GPU:0.5}');
    expect(ResourceSet.EMPTY.toString()).toBe('{}');
  });

  it('keeps the 4 decimal places of precision it promises', () => {
    expect(rs({ x: 0.0001 }).get('x')).toBe(0.0001);
    expect(rs({ x: 1.2345 }).toJSON()).toEqual({ x: 1.2345 });
  });
});

describe('resourceProblems and describe', () => {
  it('returns every problem, naming what and the key; none for a valid map', () => {
    expect(resourceProblems('task "t": resources', { a: 1, b: 0.5 })).toEqual([]);
    expect(resourceProblems('task "t": resources', { a: -1, ' ': 1 })).toEqual([
      'task "t": resources.a must be a number >= 0, got -1',
      'task "t": resources has an empty resource name',
    ]);
  });

  it('describes values briefly: strings quoted, functions named, long JSON cut at 80 chars', () => {
    expect(describeValue('x')).toBe('"x"');
    expect(describeValue(undefined)).toBe('undefined');
    expect(describeValue(3n)).toBe('3n');
    expect(describeValue(() => 1)).toBe('a function');
    expect(describeValue({ a: 1 })).toBe('{"a":1}');
    const long = describeValue({ s: 'x'.repeat(200) });
    expect(long).toHaveLength(80);
    expect(long.endsWith('...')).toBe(true);
  });
});
