/**
 * The newcomer's path, as a user outside this repository takes it: the packages packed as
 * tarballs (`npm run pack` does the same), installed into a new project in a temp folder with a
 * package of its own, then `dpl` from that project's PATH, a CommonJS and an ES-module SDK
 * script, and a head with a worker started from the project, all with the installed code.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
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

const CLUSTER_SCRIPT = `
import { connect } from '@dpl/client';
const cluster = await connect(process.argv[2]);
const run = await cluster.submit('./pipeline.ts', { maxBatches: 4 });
const labels = [];
for await (const b of run) labels.push(String(b.data.getChild('label').get(0)));
await cluster.close();
console.log(JSON.stringify(labels.sort()));
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
  await writeFile(join(project, 'sdk.cjs'), `const { LocalExecutor, PipelineGraph, PipelineTask } = require('@dpl/core');\nconst { tableFromArrays } = require('apache-arrow');\n${sdkBody('cjs')}`);
  await writeFile(join(project, 'sdk.mjs'), `import { LocalExecutor, PipelineGraph, PipelineTask } from '@dpl/core';\nimport { tableFromArrays } from 'apache-arrow';\n${sdkBody('esm')}`);
  await writeFile(join(project, 'cluster.mjs'), CLUSTER_SCRIPT);
  await exec('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs, 'apache-arrow@^21.2.0', './vendor/shout'], {
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
    startDpl(['worker', 'start', '--address', address, '--num-cpus', '2'], { command: ['dpl'], cwd: project, env, timeoutMs: 120_000 });
    const { stdout } = await exec(process.execPath, ['cluster.mjs', address], { cwd: project, env: { ...process.env, ...env }, timeout: 60_000 });
    expect(JSON.parse(stdout.trim())).toEqual(['BATCH 0!', 'BATCH 1!', 'BATCH 2!', 'BATCH 3!']);
  }, 90_000);
});
