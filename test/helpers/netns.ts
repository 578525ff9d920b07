/**
 * Test hosts in network namespaces: each host is a namespace with its own address on a private
 * bridge this test creates (10.231.<k>.0/24), so head and workers talk over a real network path,
 * not loopback. Needs root and iproute2; `makeHosts` says why when it cannot.
 */
import { execFileSync } from 'node:child_process';

export interface TestNetwork {
  hosts: { name: string; ip: string }[];
  /** Cuts a host off the network (its link to the bridge goes down): a partition, no FIN or RST. */
  cut(name: string): void;
  /** Removes the namespaces and the bridge. Idempotent. */
  destroy(): void;
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Creates `n` hosts. Throws with the reason when namespaces cannot be made here.
 */
export function makeHosts(n: number): TestNetwork {
  const tag = (process.pid % 100_000).toString(36);
  const bridge = `dplbr${tag}`;
  const subnet = `10.231.${process.pid % 200}`;
  const hosts = Array.from({ length: n }, (_, i) => ({ name: `dpl${tag}h${i}`, ip: `${subnet}.${i + 1}` }));
  const made: string[] = [];
  let bridged = false;
  const destroy = (): void => {
    for (const h of made.splice(0)) {
      try {
        ip(['netns', 'del', h]);
      } catch {
        // already gone
      }
    }
    if (bridged) {
      bridged = false;
      try {
        ip(['link', 'del', bridge]);
      } catch {
        // already gone
      }
    }
  };
  try {
    ip(['link', 'add', bridge, 'type', 'bridge']);
    bridged = true;
    ip(['link', 'set', bridge, 'up']);
    hosts.forEach((h, i) => {
      ip(['netns', 'add', h.name]);
      made.push(h.name);
      const outside = `dv${tag}${i}`;
      ip(['link', 'add', outside, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.name]);
      ip(['link', 'set', outside, 'master', bridge]);
      ip(['link', 'set', outside, 'up']);
      ip(['-n', h.name, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0']);
      ip(['-n', h.name, 'link', 'set', 'eth0', 'up']);
      ip(['-n', h.name, 'link', 'set', 'lo', 'up']);
    });
  } catch (e) {
    destroy();
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`cannot make network namespaces here: ${err.stderr?.toString().trim() || err.message}`);
  }
  const cut = (name: string): void => {
    const i = hosts.findIndex((h) => h.name === name);
    if (i < 0) throw new Error(`no test host named ${name}`);
    ip(['link', 'set', `dv${tag}${i}`, 'down']);
  };
  return { hosts, cut, destroy };
}
