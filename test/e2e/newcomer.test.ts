/**
 * The newcomer's path, as a user outside this repository takes it: the packages packed as
 * tarballs (`npm run pack` does the same), installed into a new project in a temp folder with a
 * package of its own and a native one (DuckDB's), then `dpl` from that project's PATH, a
 * CommonJS, an ES-module and (Node 22.18+) a TypeScript SDK script, and a head with a worker
 * started from the project, the worker installing the native package into its own cache.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, killDplProcesses, startDpl, waitFor } from '../helpers/cli';

const exec = promisify(execFile);

let project = '';
let packs = '';
/** The project's environment: its node_modules/.bin first on PATH, as npm scripts and npx give it. */
let env: Record<string, string> = {};

const PIPELINE = `
import { PipelineGraph, PipelineTask, column } from '@dpl/core';
import { tableFromArrays } from 'apache-arrow';
import shout from 'shout';

// 'shout' comes from this project's own node_modules, not from dpl's.
export default new PipelineGraph([
  new PipelineTask('label', (df) => {
    const id = Number(column(df, 'id').get(0));
    return tableFromArrays({ id: Int32Array.of(id), label: [shout(\`batch \${id}\`)] });
  }),
]);
`;

/** An inline graph whose second task merges two batches: tables from the script's own apache-arrow meet dpl's. */
const sdkBody = (exportStyle: 'cjs' | 'esm'): string => `
const graph = new PipelineGraph([
  new PipelineTask('make', (df) => tableFromArrays({ id: Int32Array.of(Number(df.getChild('id').get(0))), name: ['n' + df.getChild('id').get(0)] })),
  new PipelineTask('pair', (df) => tableFromArrays({ ids: [Array.from(df.getChild('id').toArray()).join('+')] }), { batchSize: 2 }),
]);
${exportStyle === 'esm' ? '' : '(async () => {'}
const out = [];
for await (const b of new LocalExecutor(graph, { maxBatches: 4 }).run()) out.push(String(b.data.getChild('ids').get(0)));
console.log(JSON.stringify(out.sort()));
${exportStyle === 'esm' ? '' : '})().catch((e) => { console.error(e); process.exit(1); });'}
`;

/** A module importing a native package (DuckDB's) from the project, as a user writes it. */
const DUCK_PIPELINE = `
import { PipelineGraph, PipelineTask, column } from '@dpl/core';
import { tableFromArrays } from 'apache-arrow';
import { DuckDBInstance } from '@duckdb/node-api';

const db = DuckDBInstance.create(':memory:');
export default new PipelineGraph([
  new PipelineTask('ask', async (df) => {
    const id = Number(column(df, 'id').get(0));
    const rows = (await (await (await db).connect()).runAndReadAll(\`select \${id} + 40 as answer\`)).getRows();
    return tableFromArrays({ answer: Int32Array.of(Number(rows[0]![0])) });
  }),
]);
`;

const CLUSTER_SCRIPT = `
import { connect } from '@dpl/client';
const cluster = await connect(process.argv[2]);
const [module, column] = [process.argv[3] ?? './pipeline.ts', process.argv[4] ?? 'label'];
const run = await cluster.submit(module, { maxBatches: 4 });
const values = [];
for await (const b of run) values.push(String(b.data.getChild(column).get(0)));
await cluster.close();
console.log(JSON.stringify(values.sort()));
`;

beforeAll(async () => {
  packs = await mkdtemp(join(tmpdir(), 'dpl-packs-'));
  await exec('npm', ['pack', '--workspaces', '--pack-destination', packs, '--loglevel=error'], { cwd: REPO_ROOT, maxBuffer: 64 << 20 });
  const tarballs = (await readdir(packs)).filter((f) => f.endsWith('.tgz')).map((f) => join(packs, f));
  project = await mkdtemp(join(tmpdir(), 'dpl-newcomer-'));
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'screen', version: '1.0.0', private: true }));
  await mkdir(join(project, 'vendor', 'shout'), { recursive: true });
  await writeFile(join(project, 'vendor', 'shout', 'package.json'), JSON.stringify({ name: 'shout', version: '1.0.0', main: 'index.js' }));
  await writeFile(join(project, 'vendor', 'shout', 'index.js'), "module.exports = (s) => s.toUpperCase() + '!';\n");
  await writeFile(join(project, 'pipeline.ts'), PIPELINE);
  await writeFile(join(project, 'duck.ts'), DUCK_PIPELINE);
  await writeFile(join(project, 'sdk.cjs'), `const { LocalExecutor, PipelineGraph, PipelineTask } = require('@dpl/core');\nconst { tableFromArrays } = require('apache-arrow');\n${sdkBody('cjs')}`);
  await writeFile(join(project, 'sdk.mjs'), `import { LocalExecutor, PipelineGraph, PipelineTask } from '@dpl/core';\nimport { tableFromArrays } from 'apache-arrow';\n${sdkBody('esm')}`);
  await writeFile(join(project, 'cluster.mjs'), CLUSTER_SCRIPT);
  await writeFile(
    join(project, 'sdk.mts'),
    `import { LocalExecutor, PipelineGraph, PipelineTask } from '@dpl/core';\nimport { tableFromArrays, type Table } from 'apache-arrow';\nconst typed: (t: Table) => number = (t) => t.numRows;\nvoid typed;\n${sdkBody('esm')}`,
  );
  await exec('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs, 'apache-arrow@^21.2.0', '@duckdb/node-api@1.5.6-r.1', './vendor/shout'], {
    cwd: project,
    maxBuffer: 64 << 20,
  });
  env = { PATH: `${join(project, 'node_modules', '.bin')}${delimiter}${process.env.PATH ?? ''}`, DPL_RUN_DIR: join(project, '.dpl-run') };
}, 300_000);

afterAll(async () => {
  await killDplProcesses();
  await Promise.all([project, packs].filter((d) => d !== '').map((d) => rm(d, { recursive: true, force: true })));
});

afterEach(killDplProcesses);

describe('a new project that installs the packed packages', () => {
  it('runs `dpl run` from its own PATH on a module that imports the project\'s own package', async () => {
    const r = await startDpl(['run', 'pipeline.ts', '-n', '3', '-q'], { command: ['dpl'], cwd: project, env, timeoutMs: 60_000 }).exited;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/finished in [\d.]+ s: 3 batches, 3 rows/);
    expect(r.stdout).toMatch(/BATCH [0-2]!/); // the first batch shown, made with 'shout'
  }, 90_000);

  it('runs a CommonJS and an ES-module SDK script, each with its own apache-arrow tables', async () => {
    for (const script of ['sdk.cjs', 'sdk.mjs']) {
      const { stdout } = await exec(process.execPath, [script], { cwd: project, env: { ...process.env, ...env } });
      expect(JSON.parse(stdout.trim())).toEqual(['0+1', '2+3']);
    }
  }, 60_000);

  // Node 22.18+ and 24 run a .ts script as it is (type stripping); Node 20 needs a loader.
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  const strips = major > 22 || (major === 22 && minor >= 18);
  (strips ? it : it.skip)('runs a TypeScript SDK script with node itself (type stripping)', async () => {
    const { stdout } = await exec(process.execPath, ['sdk.mts'], { cwd: project, env: { ...process.env, ...env } });
    expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual(['0+1', '2+3']);
  }, 60_000);

  it('submits its module to a head and a worker started from the project', async () => {
    const head = startDpl(['head', 'start', '--port', '0', '--dashboard-port', '0'], { command: ['dpl'], cwd: project, env, timeoutMs: 120_000 });
    let address = '';
    await waitFor(
      () => {
        address = /dpl head listening on (\S+)/.exec(head.stdout)?.[1] ?? '';
        return address !== '' || head.child.exitCode !== null;
      },
      { timeoutMs: 20_000, what: 'the head to listen' },
    );
    expect(address).not.toBe('');
    // The worker does not use the project's folder for native packages: it installs them into
    // its own cache (a fresh home here), as a worker on another machine does.
    const home = join(project, 'worker-home');
    await mkdir(home);
    const workerEnv = { ...env, HOME: home, DPL_MODULE_DEPS: 'install', npm_config_cache: join(homedir(), '.npm') };
    startDpl(['worker', 'start', '--address', address, '--num-cpus', '2'], { command: ['dpl'], cwd: project, env: workerEnv, timeoutMs: 180_000 });
    const run = (args: string[]) => exec(process.execPath, ['cluster.mjs', address, ...args], { cwd: project, env: { ...process.env, ...env }, timeout: 120_000 });
    expect(JSON.parse((await run([])).stdout.trim())).toEqual(['BATCH 0!', 'BATCH 1!', 'BATCH 2!', 'BATCH 3!']);
    expect(JSON.parse((await run(['./duck.ts', 'answer'])).stdout.trim())).toEqual(['40', '41', '42', '43']);
    expect(existsSync(join(home, '.dpl', 'deps', '@duckdb+node-bindings@1.5.6-r.1'))).toBe(true);
  }, 180_000);

  it('runs a module that imports a native package from the project with `dpl run`', async () => {
    const r = await startDpl(['run', 'duck.ts', '-n', '2', '-q'], { command: ['dpl'], cwd: project, env, timeoutMs: 60_000 }).exited;
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/finished in [\d.]+ s: 2 batches, 2 rows/);
  }, 90_000);
});
