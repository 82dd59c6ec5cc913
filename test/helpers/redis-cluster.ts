import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RedisServerProcess } from '../../cli/private-redis.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

/** A local Redis Cluster of masters only, in a temporary directory, for a test. */
export interface LocalCluster {
  /** `127.0.0.1:PORT` of every master. */
  readonly nodes: readonly string[];
  readonly ports: readonly number[];
  /** Kills the servers and removes their directory. */
  stop(): Promise<void>;
}

/** A port free now, whose cluster bus port (port + 10000) is free too. */
async function freeClusterPort(taken: Set<number>): Promise<number> {
  const listen = (port: number) =>
    new Promise<number | null>(resolve => {
      const server = createServer();
      server.once('error', () => resolve(null));
      server.listen(port, '127.0.0.1', () => {
        const got = (server.address() as { port: number }).port;
        server.close(() => resolve(got));
      });
    });
  for (;;) {
    const port = await listen(0);
    if (port === null || port > 55_000 || taken.has(port)) continue;
    if ((await listen(port + 10_000)) === null) continue;
    taken.add(port);
    return port;
  }
}

async function cli(port: number, ...args: string[]): Promise<string> {
  return (await run('redis-cli', ['-p', String(port), ...args])).stdout;
}

/**
 * Starts `masters` redis-servers with --cluster-enabled yes on free ports (no persistence), joins
 * them with `redis-cli --cluster create … --cluster-replicas 0`, and waits until every node says
 * cluster_state:ok. Throws with what to install when redis-server or redis-cli is missing.
 */
export async function startLocalCluster(masters = 3): Promise<LocalCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'envfleet-cluster-'));
  const servers: RedisServerProcess[] = [];
  const taken = new Set<number>();
  const ports: number[] = [];
  const stop = async () => {
    await Promise.all(servers.map(s => s.kill()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters; i += 1) {
      const port = await freeClusterPort(taken);
      ports.push(port);
      servers.push(await RedisServerProcess.start({ port, dir, args: ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--appendonly', 'no', '--maxmemory-policy', 'noeviction'] }));
    }
    await run('redis-cli', ['--cluster', 'create', ...ports.map(p => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
    for (let tries = 0; ; tries += 1) {
      const states = await Promise.all(ports.map(p => cli(p, 'cluster', 'info').catch(() => '')));
      if (states.every(s => /cluster_state:ok/.test(s))) break;
      if (tries > 300) throw new Error(`the cluster on ports ${ports.join(', ')} never reached cluster_state:ok`);
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes: ports.map(p => `127.0.0.1:${p}`), ports, stop };
}
