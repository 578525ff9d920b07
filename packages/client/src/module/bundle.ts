/**
 * Bundles a pipeline module (`.ts` or `.js`) with esbuild into one ESM text, content-addressed
 * by its sha256, and loads it. Shared packages (`@dpl/*`, `apache-arrow`, `parquet-wasm`) stay
 * outside the bundle: see BUNDLE_BANNER in @dpl/core.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Message, type Plugin } from 'esbuild';
import {
  BUNDLE_BANNER,
  DplError,
  DplErrorCode,
  NATIVE_REQUIRE_GLOBAL,
  checkPipelineModule,
  enclosingPackage,
  findInstalledPackage,
  packageName,
  type PackageJson,
  importBundleFile,
  privateDir,
  readPrivateFile,
  writeBundle,
  type PipelineModule,
} from '@dpl/core';

/** A bundled module: its source path, code and content hash. */
export interface ModuleBundle {
  file: string;
  code: string;
  hash: string;
}

/** A loaded module with the bundle it came from. */
export interface LoadedModule extends PipelineModule {
  bundle: ModuleBundle;
}

const MODULE_EXTENSIONS = new Set(['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs']);
const SHARED = /^(@dpl\/[^/]+|apache-arrow|parquet-wasm)(\/.*)?$/;
const SHARED_NAMESPACE = 'dpl-shared';

/** Resolves shared packages through `require` at run time instead of bundling them. */
const sharedPackages: Plugin = {
  name: 'dpl-shared-packages',
  setup(b) {
    b.onResolve({ filter: SHARED }, (args) =>
      args.namespace === SHARED_NAMESPACE
        ? { path: args.path, external: true }
        : { path: args.path, namespace: SHARED_NAMESPACE },
    );
    b.onLoad({ filter: /.*/, namespace: SHARED_NAMESPACE }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
  },
};

const NATIVE_NAMESPACE = 'dpl-native';
/** Packages through which a package loads a compiled addon. */
const NATIVE_LOADERS = ['node-gyp-build', 'node-gyp-build-optional-packages', 'prebuild-install', 'bindings', '@mapbox/node-pre-gyp', 'node-pre-gyp'];
/** An optional dependency per platform, as napi-rs and others ship prebuilt addons. */
const PLATFORM_PACKAGE = /(linux|darwin|win32|freebsd|android)-(x64|arm64|ia32|arm)/;

/** Whether a package carries a compiled addon (it cannot be bundled). */
function isNativePackage(dir: string, json: PackageJson): boolean {
  if (json.gypfile === true || existsSync(join(dir, 'binding.gyp'))) return true;
  const deps = { ...json.dependencies, ...json.optionalDependencies };
  if (NATIVE_LOADERS.some((l) => l in deps)) return true;
  if (Object.keys(json.optionalDependencies ?? {}).some((d) => PLATFORM_PACKAGE.test(d))) return true;
  try {
    return readdirSync(dir).some((f) => f.endsWith('.node'));
  } catch {
    return false;
  }
}

/**
 * Packages with a compiled addon stay outside the bundle: each import of one becomes a call that
 * loads it where the module runs (see native-packages in @dpl/core), with its version and the
 * folder it was imported from here. A `.node` file required by path is handled the same way,
 * as a subpath of the package that holds it.
 */
const nativePackages: Plugin = {
  name: 'dpl-native-packages',
  setup(b) {
    const native = new Map<string, boolean>();
    const external = (spec: string, version: string, fromDir: string) => ({ path: spec, namespace: NATIVE_NAMESPACE, pluginData: { version, fromDir } });
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.namespace !== 'file' || isBuiltin(args.path)) return undefined;
      const name = packageName(args.path);
      const pkg = findInstalledPackage(name, args.resolveDir);
      if (pkg === undefined || pkg.json.version === undefined) return undefined;
      let isNative = native.get(pkg.dir);
      if (isNative === undefined) native.set(pkg.dir, (isNative = isNativePackage(pkg.dir, pkg.json)));
      return isNative ? external(args.path, pkg.json.version, args.resolveDir) : undefined;
    });
    b.onResolve({ filter: /\.node$/ }, (args) => {
      if (args.namespace !== 'file' || !/^[./]/.test(args.path)) return undefined;
      const file = resolve(args.resolveDir, args.path);
      const pkg = enclosingPackage(dirname(file));
      if (pkg?.json.version === undefined) return undefined;
      return external(`${pkg.json.name!}/${relative(pkg.dir, file).split(sep).join('/')}`, pkg.json.version, dirname(pkg.dir));
    });
    b.onLoad({ filter: /.*/, namespace: NATIVE_NAMESPACE }, (args) => {
      const { version, fromDir } = args.pluginData as { version: string; fromDir: string };
      const call = `globalThis.${NATIVE_REQUIRE_GLOBAL}(${JSON.stringify(args.path)}, ${JSON.stringify(version)}, ${JSON.stringify(fromDir)})`;
      return { contents: `module.exports = ${call};`, loader: 'js' };
    });
  },
};

function formatMessage(m: Message): string {
  const where = m.location ? ` (${m.location.file}:${m.location.line}:${m.location.column + 1})` : '';
  return `${m.text}${where}`;
}

/**
 * Bundles a pipeline module into one ESM text.
 * @throws DplError(MODULE) when the file is missing, has an unknown extension or fails to bundle.
 */
export async function bundleModule(path: string): Promise<ModuleBundle> {
  const file = resolve(path);
  if (!existsSync(file) || !statSync(file).isFile()) {
    throw new DplError(
      DplErrorCode.MODULE,
      `pipeline module ${path} not found (looked at ${file}); pass the path of a .ts or .js file whose default export is a PipelineGraph`,
    );
  }
  if (!MODULE_EXTENSIONS.has(extname(file))) {
    throw new DplError(
      DplErrorCode.MODULE,
      `pipeline module ${path} has extension ${JSON.stringify(extname(file))}; use a .ts or .js file (also .mts, .cts, .mjs, .cjs)`,
    );
  }
  let code: string;
  try {
    const result = await build({
      entryPoints: [file],
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      write: false,
      sourcemap: 'inline',
      // Source paths are relative to the working directory; make stack traces point there, not
      // next to the cached bundle.
      sourceRoot: `${pathToFileURL(process.cwd()).href}/`,
      logLevel: 'silent',
      plugins: [sharedPackages, nativePackages],
      banner: { js: BUNDLE_BANNER },
    });
    code = result.outputFiles[0]!.text;
  } catch (e) {
    const errors = (e as { errors?: Message[] }).errors;
    const detail = errors && errors.length > 0 ? errors.map(formatMessage).join('; ') : (e as Error).message;
    throw new DplError(DplErrorCode.MODULE, `cannot bundle pipeline module ${path}: ${detail}`, { cause: e });
  }
  return { file, code, hash: createHash('sha256').update(code).digest('hex') };
}

/** Where bundles are cached: a private folder of this user (`~/.dpl/bundles`), created and checked. */
export function moduleCacheDir(): string {
  return privateDir('bundles');
}

/**
 * Bundles, imports and checks a pipeline module: its default export must be a PipelineGraph; it
 * may export `generator` and `maxBatches`.
 * @throws DplError(MODULE) naming the module and what is wrong with it.
 */
export async function loadPipelineModule(path: string): Promise<LoadedModule> {
  const bundle = await bundleModule(path);
  const file = writeBundle(moduleCacheDir(), bundle.hash, bundle.code);
  try {
    return { ...(await importBundleFile(file, path)), bundle };
  } catch (e) {
    if (!isDynamicImportUnavailable(e)) throw e;
    // Inside a host without dynamic import (jest's VM sandbox, where users test their own
    // pipelines), evaluate a CommonJS build with this package's own require instead.
    return { ...(await evaluateCommonJs(bundle.file, path)), bundle };
  }
}

function isDynamicImportUnavailable(e: unknown): boolean {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code === 'ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING' || /experimental-vm-modules/.test(cause?.message ?? '');
}

async function evaluateCommonJs(file: string, label: string): Promise<PipelineModule> {
  const result = await build({
    entryPoints: [file],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    write: false,
    logLevel: 'silent',
    plugins: [sharedPackages, nativePackages],
  });
  const module = { exports: {} as Record<string, unknown> };
  try {
    // eslint-disable-next-line @typescript-eslint/no-implied-eval -- evaluating the user's bundle is the point
    const run = new Function('require', 'module', 'exports', '__filename', '__dirname', result.outputFiles[0]!.text) as (
      ...args: unknown[]
    ) => void;
    run(require, module, module.exports, file, dirname(file));
  } catch (e) {
    throw new DplError(DplErrorCode.MODULE, `pipeline module ${label} failed while loading: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return checkPipelineModule(module.exports, label);
}

/**
 * Loads the module a graph was built in. A file that is itself a bundle in the cache (a graph
 * from a module loaded by dpl, seen without source maps) is used as the bundle it is.
 */
export async function loadModuleFile(file: string): Promise<LoadedModule> {
  const cached = /^([0-9a-f]{64})\.mjs$/.exec(basename(file));
  if (cached !== null && dirname(file) === moduleCacheDir()) {
    const code = readPrivateFile(file).toString('utf8');
    // Used as the bundle it is only when it still has the content its name says.
    if (createHash('sha256').update(code).digest('hex') === cached[1]) {
      const bundle: ModuleBundle = { file, code, hash: cached[1] };
      return { ...(await importBundleFile(file, file)), bundle };
    }
  }
  return loadPipelineModule(file);
}
