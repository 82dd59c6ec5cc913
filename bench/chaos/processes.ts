/**
 * The processes of bench/chaos.ts: a private redis-server with append-only persistence that can be
 * killed and started again on the same port and directory, and the envfleet processes (workers, the
 * sink) started as a user starts them (`node bin/envfleet.js …`), killed at will and restarted.
 * Every child is registered, so `killAll` leaves nothing behind, also on failure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RedisServerProcess } from '../../cli/private-redis.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const ENVFLEET_BIN = join(ROOT, 'bin', 'envfleet.js');
export const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms));

const children = new Set<ChildProcess>();

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** SIGKILLs every child still running (from a failure path or an exit handler: nothing is awaited). */
export function killAll(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

export const exited = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>(resolve => child.once('exit', () => resolve()));

/**
 * A redis-server of our own: `--appendonly yes --appendfsync always`, so every write Redis has
 * acknowledged is on disk before the reply leaves (a SIGKILL loses nothing acknowledged); no RDB
 * snapshots; `noeviction`, as envfleet requires. Killed and started again on the same port and
 * directory with `killAndRestart`.
 */
export async function startPrivateRedis(dir: string): Promise<RedisServerProcess> {
  mkdirSync(dir, { recursive: true });
  return RedisServerProcess.start({
    dir,
    args: ['--appendonly', 'yes', '--appendfsync', 'always', '--maxmemory-policy', 'noeviction', '--logfile', join(dir, 'redis.log')],
    onSpawn: track,
  });
}

/** How one incarnation of a managed process ended. */
export interface Ending {
  readonly name: string;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Killed by us (SIGKILL on purpose, or a stop). */
  readonly expected: boolean;
}

/**
 * An envfleet process that the chaos keeps alive: `node bin/envfleet.js ARGS` with its output
 * appended to a log file. A death we did not cause is recorded and the process started again
 * (a product crash must not hide behind the restarts); `done` ends the keeping, for a process that
 * finishes by itself (the sink exits 0 once the run is written).
 */
export class Managed {
  private child: ChildProcess | null = null;
  private killing = false;
  private wanted = false;
  private incarnation = 0;
  private finished: ((ending: Ending) => void) | null = null;
  readonly unexpected: Ending[] = [];
  kills = 0;
  private readonly log: WriteStream;

  constructor(
    readonly name: string,
    private readonly args: readonly string[],
    private readonly env: NodeJS.ProcessEnv,
    logDir: string,
    private readonly progress: (line: string) => void,
    /** A clean exit (code 0) ends the keeping (the sink); otherwise any exit we did not cause is unexpected. */
    private readonly mayFinish = false,
  ) {
    mkdirSync(logDir, { recursive: true });
    this.log = createWriteStream(join(logDir, `${name}.log`), { flags: 'a' });
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  get alive(): boolean {
    return this.wanted;
  }

  start(): void {
    this.wanted = true;
    this.incarnation += 1;
    this.log.write(`\n===== ${new Date().toISOString()} start #${this.incarnation}: envfleet ${this.args.join(' ')}\n`);
    const child = track(spawn(process.execPath, [ENVFLEET_BIN, ...this.args], { cwd: ROOT, env: this.env, stdio: ['ignore', 'pipe', 'pipe'] }));
    child.stdout?.pipe(this.log, { end: false });
    child.stderr?.pipe(this.log, { end: false });
    this.child = child;
    child.once('exit', (code, signal) => {
      const ending: Ending = { name: this.name, code, signal, expected: this.killing };
      this.log.write(`===== ${new Date().toISOString()} exit code ${code} signal ${signal}${this.killing ? ' (ours)' : ''}\n`);
      this.killing = false;
      if (this.child === child) this.child = null;
      if (ending.expected) return;
      if (this.mayFinish && code === 0) {
        this.wanted = false;
        this.finished?.(ending);
        return;
      }
      this.unexpected.push(ending);
      this.progress(`${this.name} exited by itself (code ${code}, signal ${signal}); starting it again`);
      if (this.wanted) setTimeout(() => this.wanted && !this.running && this.start(), 1_000).unref();
    });
  }

  /** SIGKILL now; started again after `restartAfterMs`. */
  async kill(restartAfterMs: number): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    this.killing = true;
    this.kills += 1;
    child.kill('SIGKILL');
    await exited(child);
    setTimeout(() => this.wanted && !this.running && this.start(), restartAfterMs).unref();
  }

  /** Resolves when the process exits 0 by itself (mayFinish), starting it if it is not running. */
  finishing(): Promise<Ending> {
    return new Promise(resolve => {
      this.finished = resolve;
      if (!this.running) this.start();
    });
  }

  /** SIGTERM (graceful) and wait; SIGKILL after `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    this.wanted = false;
    const child = this.child;
    if (!child || !this.running) return;
    this.killing = true;
    child.kill('SIGTERM');
    await Promise.race([exited(child), sleep(graceMs)]);
    if (this.running) child.kill('SIGKILL');
    await exited(child);
  }

  close(): void {
    this.log.end();
  }
}

/** Runs `envfleet ARGS` to its end; returns its exit code and output. */
export function envfleet(args: readonly string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise(resolve => {
    const child = track(spawn(process.execPath, [ENVFLEET_BIN, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', code => resolve({ code, stdout, stderr }));
  });
}
