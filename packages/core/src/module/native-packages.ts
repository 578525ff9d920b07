/**
 * The packages a pipeline module imports that cannot be bundled — native addons (a `.node`
 * file, node-gyp, prebuilt binaries per platform) — and how a process that runs the module gets
 * them. The bundler leaves each such import as a call to {@link NATIVE_REQUIRE_GLOBAL} with the
 * package's version and the folder it was imported from on the submitting machine; where the
 * module runs, that call loads:
 *
 * 1. the package from that folder, when this machine has it there at the same version (the
 *    submitting machine itself, or a filesystem the machines share);
 * 2. else the copy in this user's cache, `~/.dpl/deps/<name>@<version>`, installed there with
 *    npm on first use (as Ray's `runtime_env` installs a job's packages on each node), once per
 *    machine and version.
 *
 * `DPL_MODULE_DEPS=install` skips the first (always the cache).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DplError, DplErrorCode } from '../errors';
import { privateDir } from '../security/private-files';

/** The global through which a bundle loads a native package: `(spec, version, fromDir) => exports`. */
export const NATIVE_REQUIRE_GLOBAL = '__dplRequireNative';

/** The package name of an import specifier: `@scope/name/sub` → `@scope/name`, `name/sub` → `name`. */
export function packageName(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** What dpl reads of a package.json. */
export interface PackageJson {
  name?: string;
  version?: string;
  gypfile?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

const readJson = (file: string): PackageJson => JSON.parse(readFileSync(file, 'utf8')) as PackageJson;

/**
 * The nearest package at or above `dir` (its folder and package.json); with `name`, the nearest
 * of that name. Undefined when there is none.
 */
export function enclosingPackage(dir: string, name?: string): { dir: string; json: PackageJson } | undefined {
  for (let d = dir; d !== dirname(d); d = dirname(d)) {
    const file = join(d, 'package.json');
    if (!existsSync(file)) continue;
    const json = readJson(file);
    if (json.name !== undefined && (name === undefined || json.name === name)) return { dir: d, json };
  }
  return undefined;
}

/**
 * The package `name` as `require` from `fromDir` finds it (its folder and package.json), also
 * when its exports hide package.json; undefined when it is not there.
 */
export function findInstalledPackage(name: string, fromDir: string): { dir: string; json: PackageJson } | undefined {
  const req = createRequire(join(fromDir, 'noop.js'));
  try {
    const file = req.resolve(`${name}/package.json`);
    return { dir: dirname(file), json: readJson(file) };
  } catch {
    try {
      return enclosingPackage(dirname(req.resolve(name)), name);
    } catch {
      return undefined;
    }
  }
}

/** Installs `name@version` into the cache (once: concurrent installers race to rename into place). */
function cached(name: string, version: string): string {
  const root = privateDir('deps');
  const dir = join(root, `${name.replace('/', '+')}@${version}`);
  if (existsSync(join(dir, 'node_modules', name, 'package.json'))) return dir;
  const tmp = mkdtempSync(join(root, '.installing-'));
  try {
    execFileSync('npm', ['install', '--prefix', tmp, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--loglevel=error', `${name}@${version}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 600_000,
    });
    try {
      renameSync(tmp, dir);
    } catch {
      // another process installed it first
    }
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new DplError(
      DplErrorCode.MODULE,
      `the pipeline module needs the native package ${name}@${version}, which this machine could not install ` +
        `(npm install ${name}@${version}: ${(err.stderr?.toString().trim() || err.message).split('\n').slice(-3).join(' ')}); ` +
        `install it into ${dir} yourself, or run the worker where the module's folder is (a shared filesystem)`,
      { cause: e },
    );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

const PACKAGE_NAME = /^(@[a-z0-9][\w.~-]*\/)?[a-z0-9][\w.~-]*$/i;
const VERSION = /^[0-9a-z][\w.+-]*$/i;

/** Loads a native package a bundle imports (see the file's comment for where from). */
export function requireNative(spec: string, version: string, fromDir: string): unknown {
  const name = packageName(spec);
  // What reaches npm's command line is a package name and a version, nothing else.
  if (!PACKAGE_NAME.test(name) || !VERSION.test(version)) {
    throw new DplError(DplErrorCode.MODULE, `the pipeline module asks for the native package ${JSON.stringify(name)} at version ${JSON.stringify(version)}, which is not an npm package name and version; bundle it again with dpl`);
  }
  if (process.env.DPL_MODULE_DEPS !== 'install' && findInstalledPackage(name, fromDir)?.json.version === version) {
    return createRequire(join(fromDir, 'noop.js'))(spec);
  }
  return createRequire(join(cached(name, version), 'noop.js'))(spec);
}

/** Makes {@link requireNative} reachable from bundles loaded in this process. */
export function installNativeRequire(): void {
  (globalThis as Record<string, unknown>)[NATIVE_REQUIRE_GLOBAL] ??= requireNative;
}
