/**
 * The dashboard in a real browser (Debian's headless Chromium, driven by playwright-core): it
 * shows both workers and a running job whose counts change as it runs, behind the token. A
 * screenshot goes to test-artifacts/dashboard.png. Skipped, saying why, without Chromium.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { connect } from '@dpl/client';
import { FIXTURES, REPO_ROOT, killDplProcesses, waitFor } from '../helpers/cli';
import { startHeadProcess, startWorkerProcess, waitForWorkers } from '../helpers/cluster';
import { dashboardAddress } from '../helpers/metrics';

afterEach(killDplProcesses);

const CHROMIUM = '/usr/bin/chromium';
const maybe = existsSync(CHROMIUM) ? it : it.skip;
if (!existsSync(CHROMIUM)) console.warn(`dashboard browser test skipped: no ${CHROMIUM} (apt-get install chromium)`);

describe('the dashboard', () => {
  let browser: Browser | undefined;
  afterAll(async () => browser?.close());

  maybe('shows the workers and a running job whose counts change, behind the token', async () => {
    const token = 'dash-token';
    const head = await startHeadProcess([], { DPL_TOKEN: token });
    const dashboard = dashboardAddress(head.process.stdout);
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"maker":2}'], { DPL_TOKEN: token });
    startWorkerProcess(head.address, ['--num-cpus', '2', '--resources', '{"taker":1}'], { DPL_TOKEN: token });
    const status = await waitForWorkers(head.address, 2, token);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    // Without the token: the way in, not the data.
    const refused = await page.goto(`http://${dashboard}/`);
    expect(refused!.status()).toBe(401);
    expect(await page.textContent('body')).toContain('/?token=');
    // With it once: a cookie, then the page.
    await page.goto(`http://${dashboard}/?token=${token}`);
    expect(page.url()).toBe(`http://${dashboard}/`);
    await page.waitForSelector('tr[data-worker]');
    const rows = await page.$$eval('tr[data-worker]', (trs) => trs.map((tr) => tr.getAttribute('data-worker')));
    expect(rows.sort()).toEqual(status.workers.map((w) => w.id).sort());
    expect(await page.textContent('#workers')).toContain('maker 2/2');

    const cluster = await connect(head.address, { token });
    try {
      const run = await cluster.submit(join(FIXTURES, 'relay.ts'), { maxBatches: 40 });
      const drained = (async () => {
        for await (const _ of run) {
          // consume
        }
      })();
      const job = `tr[data-job="${run.jobId}"]`;
      await page.waitForSelector(`${job} td.state-running`);
      const first = Number(await page.textContent(`${job} td.batches`));
      await waitFor(async () => Number(await page.textContent(`${job} td.batches`)) > first, {
        timeoutMs: 15_000,
        what: 'the batch count to grow on the page',
      });
      const artifacts = join(REPO_ROOT, 'test-artifacts');
      mkdirSync(artifacts, { recursive: true });
      await page.screenshot({ path: join(artifacts, 'dashboard.png'), fullPage: true });
      await drained;
      await page.waitForSelector(`${job} td.state-finished`, { timeout: 10_000 });
      expect(await page.textContent(`${job} td.batches`)).toBe('40');
      expect(await page.textContent('#rate')).toMatch(/batches\/s now/);
    } finally {
      await cluster.close();
    }
  });
});
