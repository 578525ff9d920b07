/**
 * The deployment files: docker-compose.yml checked by `docker-compose config` (no engine needed),
 * the Kubernetes manifests against the Kubernetes schemas (kubernetes-models) and against what
 * each worker advertises, and the Dockerfile's shape.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { REPO_ROOT } from '../helpers/cli';

const K8S = join(REPO_ROOT, 'deploy', 'k8s');

function hasCompose(): boolean {
  try {
    execFileSync('docker-compose', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

interface Container {
  name: string;
  args: string[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  readinessProbe?: unknown;
  livenessProbe?: unknown;
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface Deployment {
  kind: string;
  metadata: { name: string };
  spec: {
    replicas: number;
    template: { spec: { containers: Container[]; nodeSelector?: Record<string, string>; securityContext?: Record<string, unknown>; volumes?: unknown[]; terminationGracePeriodSeconds?: number } };
  };
}

const manifests = (): Deployment[] =>
  readdirSync(K8S)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .flatMap((f) => parseAllDocuments(readFileSync(join(K8S, f), 'utf8')).map((d) => d.toJS() as Deployment));

const argAfter = (args: string[], flag: string): string | undefined => {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
};

describe('docker-compose.yml', () => {
  (hasCompose() ? it : it.skip)('is valid for docker-compose config: a head, two workers and a bigdb worker with its database', async () => {
    const out = await new Promise<string>((resolve, reject) =>
      execFile('docker-compose', ['config'], { cwd: REPO_ROOT, env: { ...process.env, DPL_ENV_FILE: 'deploy/dpl.env.example' } }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const config = parse(out) as {
      services: Record<string, { command: string[]; environment: Record<string, string>; ports?: unknown[]; volumes?: string[] }>;
    };
    expect(Object.keys(config.services).sort()).toEqual(['bigdb-worker', 'head', 'worker-1', 'worker-2']);
    for (const s of Object.values(config.services)) expect(s.environment.DPL_TOKEN).toBe('replace-with-a-long-random-token'); // from the env file
    expect(config.services.head!.command.slice(0, 2)).toEqual(['head', 'start']);
    expect(JSON.stringify(config.services.head!.ports)).toContain('8265');
    const big = config.services['bigdb-worker']!;
    expect(argAfter(big.command, '--resources')).toBe('{"bigdb":1}');
    expect(big.volumes!.some((v) => v.endsWith(':/data:ro'))).toBe(true);
    for (const name of ['worker-1', 'worker-2']) expect(argAfter(config.services[name]!.command, '--address')).toBe('head:6380');
  });
});

describe('deploy/k8s', () => {
  it('passes the Kubernetes schemas', async () => {
    const files = readdirSync(K8S)
      .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
      .map((f) => join(K8S, f));
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [join(REPO_ROOT, 'test', 'helpers', 'k8s-validate.mjs'), ...files], (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const results = JSON.parse(out) as { file: string; kind: string; name: string; error: string | null }[];
    expect(results.map((r) => `${r.kind}/${r.name}`).sort()).toEqual([
      'Deployment/dpl-bigdb-worker',
      'Deployment/dpl-gpu-worker',
      'Deployment/dpl-head',
      'Deployment/dpl-worker',
      'Secret/dpl-token',
      'Service/dpl-head',
    ]);
    expect(results.filter((r) => r.error !== null)).toEqual([]);
    // The kustomization names every file.
    const kustomization = parse(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    expect(kustomization.resources.sort()).toEqual(files.map((f) => f.slice(K8S.length + 1)).sort());
  });

  it('has a KEDA autoscaler for the plain workers that passes the KEDA schemas and reads the head\'s demand with the token', async () => {
    const file = join(K8S, 'autoscaling', 'keda.yaml');
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [join(REPO_ROOT, 'test', 'helpers', 'k8s-validate.mjs'), file], (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const results = JSON.parse(out) as { kind: string; name: string; error: string | null }[];
    expect(results).toEqual([
      { file: 'keda.yaml', kind: 'TriggerAuthentication', name: 'dpl-head-token', error: null },
      { file: 'keda.yaml', kind: 'ScaledObject', name: 'dpl-worker', error: null },
    ]);
    type Keda = { kind: string; spec: Record<string, unknown> & { scaleTargetRef?: { name: string }; triggers?: { metadata: Record<string, string>; authenticationRef: { name: string } }[]; secretTargetRef?: { name: string; key: string }[] } };
    const [auth, scaled] = parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as Keda);
    // It scales the plain workers, by their CPUs, on the field /api/status serves.
    const workers = manifests().find((m) => m.metadata.name === scaled!.spec.scaleTargetRef!.name)!;
    expect(workers.kind).toBe('Deployment');
    const trigger = scaled!.spec.triggers![0]!;
    expect(trigger.metadata.targetValue).toBe(argAfter(workers.spec.template.spec.containers[0]!.args, '--num-cpus'));
    expect(trigger.metadata.url).toBe('http://dpl-head:8265/api/status');
    expect(trigger.metadata.valueLocation).toBe('demand.resources.CPU');
    expect(trigger.authenticationRef.name).toBe('dpl-head-token');
    expect(auth!.spec.secretTargetRef).toEqual([{ parameter: 'token', name: 'dpl-token', key: 'DPL_TOKEN' }]);
  });

  it('gives each worker exactly what it advertises, probes, the token as a file from the Secret, and a non-root user', () => {
    const deployments = manifests().filter((m) => m.kind === 'Deployment');
    for (const d of deployments) {
      const pod = d.spec.template.spec;
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true });
      for (const c of pod.containers) {
        expect({ name: d.metadata.name, readiness: c.readinessProbe !== undefined, liveness: c.livenessProbe !== undefined }).toEqual({
          name: d.metadata.name,
          readiness: true,
          liveness: true,
        });
        // The token as a file from the Secret, never in the environment.
        expect(c.env?.find((e) => e.name === 'DPL_TOKEN')).toBeUndefined();
        const file = c.env?.find((e) => e.name === 'DPL_TOKEN_FILE')?.value;
        expect(file).toBe('/var/run/secrets/dpl/token');
        expect(c.volumeMounts).toContainEqual({ name: 'token', mountPath: '/var/run/secrets/dpl', readOnly: true });
        expect(pod.volumes).toContainEqual({ name: 'token', secret: { secretName: 'dpl-token', defaultMode: 0o440, items: [{ key: 'DPL_TOKEN', path: 'token' }] } });
        expect(pod.securityContext).toMatchObject({ fsGroup: 10001 });
        if (c.args[0] !== 'worker') continue;
        const cpus = argAfter(c.args, '--num-cpus');
        expect({ name: d.metadata.name, request: c.resources.requests.cpu, limit: c.resources.limits.cpu }).toEqual({ name: d.metadata.name, request: cpus, limit: cpus });
        expect(c.resources.limits['nvidia.com/gpu']).toBe(argAfter(c.args, '--num-gpus'));
        expect(argAfter(c.args, '--address')).toBe('dpl-head:6380');
        // Kubernetes waits longer than the worker's own grace period before SIGKILL.
        expect({ name: d.metadata.name, kill: (pod.terminationGracePeriodSeconds ?? 30) > Number(argAfter(c.args, '--grace-period')) }).toEqual({ name: d.metadata.name, kill: true });
      }
    }
    const gpu = deployments.find((d) => d.metadata.name === 'dpl-gpu-worker')!.spec.template.spec.containers[0]!;
    expect(argAfter(gpu.args, '--num-gpus')).toBe('1');
    const bigdb = deployments.find((d) => d.metadata.name === 'dpl-bigdb-worker')!.spec.template.spec;
    expect(bigdb.nodeSelector).toEqual({ 'dpl.io/bigdb': 'true' });
    expect(argAfter(bigdb.containers[0]!.args, '--resources')).toBe('{"bigdb":1}');
    expect(bigdb.containers[0]!.volumeMounts).toContainEqual({ name: 'bigdb', mountPath: '/data', readOnly: true });
  });
});

describe('deploy/Dockerfile', () => {
  it('builds in two stages from files that exist, runs as a numeric non-root user, with a health check', () => {
    const text = readFileSync(join(REPO_ROOT, 'deploy', 'Dockerfile'), 'utf8');
    const lines = text.split('\n').filter((l) => !l.startsWith('#'));
    expect(lines.filter((l) => l.startsWith('FROM ')).length).toBe(2);
    for (const l of lines.filter((x) => x.startsWith('COPY ') && !x.includes('--from='))) {
      const sources = l.split(/\s+/).slice(1, -1);
      for (const s of sources) expect({ source: s, exists: existsSync(join(REPO_ROOT, s)) }).toEqual({ source: s, exists: true });
    }
    expect(text).toMatch(/^USER 10001:10001$/m);
    expect(text).toMatch(/^HEALTHCHECK .*CMD \["dpl", "status", "--json"\]$/m);
    expect(text).toMatch(/^ENTRYPOINT \["dpl"\]$/m);
    expect(text).toContain('npm prune --omit=dev');
  });

  // The image's build stage runs `npm run build` on what it copied: every file the build script
  // runs from the repository (scripts/bundle.js, …) must be under a COPY.
  it("copies every file that the repository's build script runs", () => {
    const text = readFileSync(join(REPO_ROOT, 'deploy', 'Dockerfile'), 'utf8');
    const copied = text
      .split('\n')
      .filter((l) => l.startsWith('COPY ') && !l.includes('--from='))
      .flatMap((l) => l.split(/\s+/).slice(1, -1));
    const { scripts } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const ran = [...scripts.build!.matchAll(/\bnode\s+(\S+)/g)].map((m) => m[1]!);
    expect(ran.length).toBeGreaterThan(0);
    for (const file of ran) {
      const covered = copied.some((c) => file === c || file.startsWith(`${c.replace(/\/$/, '')}/`));
      expect({ file, covered }).toEqual({ file, covered: true });
    }
  });
});
