/**
 * The `require` a pipeline bundle gets for the shared packages: in a process built as one file
 * (which lists what it holds in globalThis.__dplShared), that process's copies; else the files
 * resolved from the anchor.
 */
import { createRequire } from 'node:module';
import { SHARED_MODULES_GLOBAL, sharedRequire } from '../src';

const g = globalThis as Record<string, unknown>;
const anchored = createRequire(__filename);

afterEach(() => {
  delete g[SHARED_MODULES_GLOBAL];
});

describe('sharedRequire', () => {
  it('is the anchored require in a process that lists no packages', () => {
    expect(sharedRequire(anchored)).toBe(anchored);
  });

  it("gives a listed package's own copy, loading it on first use, and anything else from the anchor", () => {
    const own = { copy: 'the process\'s' };
    let loads = 0;
    const shared = {};
    Object.defineProperty(shared, 'apache-arrow', { enumerable: true, get: () => (loads++, own) });
    g[SHARED_MODULES_GLOBAL] = shared;
    const req = sharedRequire(anchored);
    expect(loads).toBe(0);
    expect(req('apache-arrow')).toBe(own);
    expect(loads).toBe(1);
    // A subpath or another package is not listed: it loads from disk, as before.
    expect(req('node:path')).toBe(anchored('node:path'));
    expect(req('apache-arrow/table')).toBe(anchored('apache-arrow/table'));
    expect(() => req('no-such-package-here')).toThrow(/Cannot find module 'no-such-package-here'/);
    // The rest of require's surface is the anchored one's.
    expect(req.resolve('apache-arrow')).toBe(anchored.resolve('apache-arrow'));
    expect(req.cache).toBe(anchored.cache);
  });

  it('does not take a name from the prototype chain for a listed package', () => {
    g[SHARED_MODULES_GLOBAL] = {};
    const req = sharedRequire(anchored);
    expect(() => req('constructor')).toThrow(/Cannot find module 'constructor'/);
  });
});
