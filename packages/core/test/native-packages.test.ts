import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDplError, packageName, requireNative } from '@dpl/core';

describe('native packages of a pipeline module, where it runs', () => {
  let dir = '';
  const saved = { deps: process.env.DPL_MODULE_DEPS, path: process.env.PATH };
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dpl-native-'));
    await mkdir(join(dir, 'node_modules', 'fake-addon'), { recursive: true });
    await writeFile(join(dir, 'node_modules', 'fake-addon', 'package.json'), JSON.stringify({ name: 'fake-addon', version: '1.2.3', main: 'index.js' }));
    await writeFile(join(dir, 'node_modules', 'fake-addon', 'index.js'), 'module.exports = { where: __dirname };');
  });
  afterEach(async () => {
    process.env.PATH = saved.path;
    if (saved.deps === undefined) delete process.env.DPL_MODULE_DEPS;
    else process.env.DPL_MODULE_DEPS = saved.deps;
    await rm(dir, { recursive: true, force: true });
  });

  it('names the package of a specifier', () => {
    expect(packageName('@duckdb/node-bindings/duckdb.js')).toBe('@duckdb/node-bindings');
    expect(packageName('sharp/lib/index.js')).toBe('sharp');
    expect(packageName('bindings')).toBe('bindings');
  });

  it('loads the package from the folder it was imported from when it is there at the same version', () => {
    const got = requireNative('fake-addon', '1.2.3', dir) as { where: string };
    expect(got.where).toBe(join(dir, 'node_modules', 'fake-addon'));
  });

  it('says which package and version it could not install, and what to do, when it must install one', () => {
    // Another version than the folder's: the cache, installed with npm, which is not on PATH here.
    process.env.PATH = '/nonexistent';
    let err: unknown;
    try {
      requireNative('fake-addon', '9.9.9', dir);
    } catch (e) {
      err = e;
    }
    expect(isDplError(err, 'MODULE')).toBe(true);
    expect((err as Error).message).toMatch(/needs the native package fake-addon@9\.9\.9, which this machine could not install \(npm install fake-addon@9\.9\.9: .*\); install it into .*deps\/fake-addon@9\.9\.9 yourself, or run the worker where the module's folder is/);
  });

  it('skips the folder with DPL_MODULE_DEPS=install', () => {
    process.env.DPL_MODULE_DEPS = 'install';
    process.env.PATH = '/nonexistent';
    expect(() => requireNative('fake-addon', '1.2.3', dir)).toThrow(/could not install/);
  });

  it('refuses a name or version that is not npm\'s, before npm sees it', () => {
    expect(() => requireNative('--registry=http://x', '1.0.0', dir)).toThrow(/not an npm package name and version/);
    expect(() => requireNative('fake-addon', '--force', dir)).toThrow(/not an npm package name and version/);
  });
});
