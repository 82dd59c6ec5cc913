import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ValidateFunction } from 'ajv';
import { readPythonPackages, type PythonPackageFile, type PythonPackageSpec } from '../../../config/index.js';
import type { Logger } from '../../logger.js';
import { compileJsonSchema, describeAjvErrors } from '../../util/json-schema.js';
import { RawJson, stringifyJson } from '../../util/raw-json.js';
import type { CheckSpec, EnvironmentCode } from '../bundle.js';
import { SandboxError, type SandboxErrorCode } from '../errors.js';
import { sessionCpuMsOf, type SandboxLimits } from '../limits.js';
import type { CallOutcome } from '../quickjs-host.js';
import { sessionStateJson, type EnvSession, type OpenOptions, type SandboxRunner } from '../runner.js';
import { probeThroughSession } from '../session-probe.js';
import type { ChecksInput, ChecksResult, SessionEnd } from '../tasks.js';
import { makeFolder } from '../../util/make-dir.js';

/**
 * The Python runtime: Pyodide interpreters in a child process (python-child.mjs) forked under Node's
 * permission model, behind the same SandboxRunner / EnvSession contract as QuickJS. See
 * docs/sandbox.md § "Python environments" for the layers and what each is measured to stop.
 */

export interface PythonRuntimeOptions {
  /** Folder of the memory snapshot cache; null: no cache (every start builds one in memory, or starts cold). */
  readonly snapshotDir: string | null;
  /** Interpreter threads in the child process; sessions are spread over them. */
  readonly interpreters: number;
  /** Cap on each interpreter's WebAssembly heap (MemoryError past it). */
  readonly heapMb: number;
  /** An interpreter whose heap grew past this is replaced once its sessions end (heaps never shrink). */
  readonly recycleHeapMb?: number;
  /** The child's V8 heap (--max-old-space-size). */
  readonly processHeapMb?: number;
  /** Time between the interrupt at a deadline and terminating the interpreter. */
  readonly graceMs?: number;
  /** Build and use a memory snapshot (default true); false starts every interpreter cold. */
  readonly useSnapshot?: boolean;
  /**
   * User-supplied pure-Python packages (config.python.packages, ENVFLEET_PYTHON_PACKAGES): read here, in
   * the parent, when the child starts, and handed to every interpreter; environments and checks may import
   * them, each session its own copy. The child's read permissions are not widened for them.
   */
  readonly packages?: readonly PythonPackageSpec[];
  readonly logger: Logger;
}

export interface PythonStartInfo {
  readonly fromSnapshot: boolean;
  /** Whether this start built the snapshot (and wrote it to the cache when there is one). */
  readonly builtSnapshot: boolean;
  readonly snapshotFile: string | null;
  /** Time for the interpreters to load (after the snapshot was built or read). */
  readonly startMs: number;
  /** Per interpreter, the time to compile the supplied packages (empty without packages). */
  readonly packagesMs: readonly number[];
  readonly pid: number;
}

export interface PythonRuntimeStats {
  /**
   * collections: runs of the cycle collector on it (at sessions' ends, or asked for by a creation that did not fit);
   * usedBytes: the bytes in use at its last reading (after a creation, an end or a collection; null under half its cap);
   * garbageBytes: what a collection may give back there, as that reading says (what is in use beyond what explains it).
   */
  readonly interpreters: readonly { readonly n: number; readonly sessions: number; readonly heapBytes: number; readonly fsBytes: number; readonly retiring: boolean; readonly collections: number; readonly usedBytes: number | null; readonly garbageBytes: number }[];
  readonly rssBytes: number;
  /** Environment starts waiting for room in a full interpreter (OpenOptions.roomWaitMs). */
  readonly waitingForRoom: number;
}

export interface PythonSandboxRunner extends SandboxRunner {
  /** Forks the child and loads its interpreters (done on first use otherwise). Rejects with SANDBOX_UNAVAILABLE. */
  started(): Promise<PythonStartInfo>;
  stats(): Promise<PythonRuntimeStats>;
}

const require = createRequire(import.meta.url);
const CHILD_FILE = new URL('./python-child.mjs', import.meta.url);
const HERE = dirname(fileURLToPath(CHILD_FILE));
const START_TIMEOUT_MS = 120_000;

/** Pyodide's package folder (what the child may read) and version. */
function pyodidePackage(): { dir: string; version: string } {
  let main: string;
  try {
    main = require.resolve('pyodide');
  } catch (err) {
    throw new SandboxError('SANDBOX_UNAVAILABLE', `the npm package "pyodide" is not installed (${(err as Error).message}); run npm ci`);
  }
  const dir = dirname(main);
  const version = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  return { dir, version };
}

/** The snapshot depends on Pyodide and on the code that builds it. */
function snapshotName(version: string): string {
  const h = createHash('sha256');
  for (const f of ['python-interpreter.mjs', 'python-harness.mjs']) h.update(readFileSync(join(HERE, f)));
  return `pyodide-${version}-${h.digest('hex').slice(0, 16)}.snapshot`;
}

/** The flag's name: --experimental-permission on Node 20, --permission from Node 22. */
const PERMISSION_FLAG = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';

/** Why a Python identifier is required: the name is looked up with getattr and passed as keyword arguments. */
export const PYTHON_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A name Python takes as an identifier (str.isidentifier: accented and CJK letters too), as a keyword argument's is. */
export const PYTHON_KEYWORD_NAME = /^[\p{XID_Start}_]\p{XID_Continue}*$/u;

/**
 * The model's own argument text, to be parsed by Python as the seed parses it: JSON.parse then JSON.stringify wrote
 * 12345678901234567891 as 12345678901234567000 and 2.0 as 2. Not a text that is not an object, nor one with a run of
 * more than 4,000 digits (Python refuses to read an integer past 4,300 digits; JSON.stringify's text is sent instead).
 */
export function pythonArgs(text: string | undefined): string | undefined {
  return text !== undefined && text.trimStart().startsWith('{') && longestDigitRun(text) <= 4_000 ? text : undefined;
}

/** The longest run of ASCII digits in text (one pass). */
function longestDigitRun(text: string): number {
  let longest = 0;
  let run = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    run = c >= 48 && c <= 57 ? run + 1 : 0;
    if (run > longest) longest = run;
  }
  return longest;
}

type Pending = { resolve(v: unknown): void; reject(e: Error): void };

export function createPythonSandboxRunner(options: PythonRuntimeOptions): PythonSandboxRunner {
  const logger = options.logger;
  let child: ChildProcess | null = null;
  let starting: Promise<PythonStartInfo> | null = null;
  let closed = false;
  let seq = 0;
  const pending = new Map<number, Pending>();
  let stderrTail = '';

  const failPending = (message: string) => {
    for (const p of pending.values()) p.reject(new SandboxError('SANDBOX_UNAVAILABLE', message));
    pending.clear();
  };

  const start = (): Promise<PythonStartInfo> => {
    if (closed) return Promise.reject(new SandboxError('SANDBOX_UNAVAILABLE', 'the Python runtime is closed'));
    if (starting) return starting;
    starting = new Promise<PythonStartInfo>((resolve, reject) => {
      const pkg = pyodidePackage();
      let packages: PythonPackageFile[];
      try {
        packages = readPythonPackages(options.packages ?? []);
      } catch (err) {
        reject(new SandboxError('SANDBOX_UNAVAILABLE', `the Python runtime cannot read its packages: ${(err as Error).message}`));
        return;
      }
      const useSnapshot = options.useSnapshot ?? true;
      const snapshotFile = useSnapshot && options.snapshotDir ? join(options.snapshotDir, snapshotName(pkg.version)) : null;
      // The child reads a cached snapshot itself (read access to that one file); a new one comes back over IPC.
      const cached = snapshotFile !== null && existsSync(snapshotFile);
      const execArgv = [
        PERMISSION_FLAG,
        `--allow-fs-read=${pkg.dir}`,
        `--allow-fs-read=${HERE}`,
        ...(cached ? [`--allow-fs-read=${snapshotFile}`] : []),
        '--allow-worker',
        '--disallow-code-generation-from-strings',
        `--max-old-space-size=${options.processHeapMb ?? 512}`,
        '--no-warnings',
      ];
      // JSON serialization: about twice as fast as 'advanced' for the small messages of every call.
      const proc = fork(fileURLToPath(CHILD_FILE), [], { env: {}, execArgv, serialization: 'json', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
      child = proc;
      proc.stderr?.setEncoding('utf8');
      proc.stderr?.on('data', (chunk: string) => {
        stderrTail = (stderrTail + chunk).slice(-4000);
      });
      let builtSnapshot = false;
      let writing: Promise<void> = Promise.resolve();
      const timer = setTimeout(() => {
        reject(new SandboxError('SANDBOX_UNAVAILABLE', `the Python runtime did not start within ${START_TIMEOUT_MS / 1000} s`));
        proc.kill('SIGKILL');
      }, START_TIMEOUT_MS);
      proc.on('message', (msg: ChildMessage) => {
        if ('id' in msg) {
          const p = pending.get(msg.id);
          if (!p) return;
          pending.delete(msg.id);
          if (msg.ok) p.resolve(msg.value);
          else p.reject(new SandboxError(msg.error.code as SandboxErrorCode, msg.error.message, msg.error.lostWith));
          return;
        }
        switch (msg.type) {
          case 'log':
            logger[msg.level === 'error' ? 'error' : msg.level === 'warn' ? 'warn' : 'info'](msg.data, msg.msg);
            return;
          case 'snapshotInvalid':
            // The cached file did not verify or did not start: removed, so that no later start uses it
            // (a snapshot built in this start replaces it).
            if (snapshotFile) {
              logger.warn({ snapshotFile }, 'the cached Python memory snapshot is unusable; it is removed');
              writing = writing.then(() => unlink(snapshotFile).catch(() => undefined));
            }
            return;
          case 'snapshot':
            builtSnapshot = true;
            {
              const bytes = Buffer.from(msg.base64, 'base64');
              logger.info({ ms: Math.round(msg.ms), bytes: bytes.byteLength, snapshotFile }, 'built the Python memory snapshot');
              if (snapshotFile) writing = writing.then(() => writeSnapshot(snapshotFile, bytes, logger));
            }
            return;
          case 'ready':
            clearTimeout(timer);
            logger.info({ fromSnapshot: msg.fromSnapshot, startMs: Math.round(msg.startMs), ...(packages.length ? { packageModules: packages.length, packagesMs: msg.packagesMs?.map(Math.round) } : {}), pid: proc.pid }, 'the Python runtime is up');
            // Once the snapshot is written (asynchronously: it is tens of MB), so that a start that
            // reports builtSnapshot has its file in the cache.
            void writing.then(() => resolve({ fromSnapshot: msg.fromSnapshot, builtSnapshot, snapshotFile, startMs: msg.startMs, packagesMs: packages.length ? (msg.packagesMs ?? []) : [], pid: proc.pid ?? 0 }));
            return;
          case 'failed':
            clearTimeout(timer);
            reject(new SandboxError('SANDBOX_UNAVAILABLE', `the Python runtime could not start its interpreters: ${msg.message}`));
            proc.kill('SIGKILL');
            return;
        }
      });
      proc.on('exit', (code, signal) => {
        clearTimeout(timer);
        const why = `the Python sandbox process ended (code ${code}, signal ${signal})${stderrTail ? `: ${stderrTail.trim().slice(-1000)}` : ''}`;
        if (!closed) logger.error({ code, signal }, 'the Python sandbox process ended');
        reject(new SandboxError('SANDBOX_UNAVAILABLE', why));
        failPending(why);
        if (child === proc) {
          child = null;
          starting = null;
          for (const s of liveSessions) s.lost = why;
          liveSessions.clear();
        }
      });
      proc.send({
        type: 'init',
        settings: {
          indexURL: `${pkg.dir}/`,
          heapMb: options.heapMb,
          interpreters: options.interpreters,
          graceMs: options.graceMs ?? 1_000,
          recycleHeapMb: options.recycleHeapMb ?? Math.floor(options.heapMb * 0.75),
          packages,
        },
        snapshotFile: cached ? snapshotFile : null,
        buildSnapshot: useSnapshot,
      });
    });
    return starting;
  };

  /** `abandonOn`: once it aborts, the child is told its caller gave up (an open waiting for room answers at once). */
  const request = async (msg: Record<string, unknown>, abandonOn?: AbortSignal): Promise<unknown> => {
    await start();
    const proc = child;
    if (!proc?.connected) throw new SandboxError('SANDBOX_UNAVAILABLE', 'the Python sandbox process is not running');
    const id = ++seq;
    const abandon = () => {
      if (proc.connected) proc.send({ op: 'abandon', of: id });
    };
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      proc.send({ ...msg, id });
      if (abandonOn?.aborted) abandon();
      else abandonOn?.addEventListener('abort', abandon, { once: true });
    }).finally(() => abandonOn?.removeEventListener('abort', abandon));
  };

  const liveSessions = new Set<{ lost: string | null }>();

  const openSession = async (code: EnvironmentCode, initialState: unknown, limits: SandboxLimits, initialStateJson?: string, options?: OpenOptions): Promise<EnvSession> => {
    const json = sessionStateJson(initialState, initialStateJson);
    const validators = validatorsFor(code);
    const tools = code.tools.map(t => t.function.name);
    const seed = createHash('sha256').update(code.className).update('\0').update(code.source).update('\0').update(json).digest('hex').slice(0, 16);
    const opened = (await request({
      op: 'open',
      className: code.className,
      source: code.source,
      stateJson: json,
      tools,
      seed,
      roomWaitMs: options?.roomWaitMs ?? 0,
      limits: {
        createDeadlineMs: limits.createDeadlineMs,
        callDeadlineMs: limits.callDeadlineMs,
        checkDeadlineMs: limits.checkDeadlineMs,
        sessionCpuMs: sessionCpuMsOf(limits),
        maxResultBytes: limits.maxResultBytes,
        maxStateBytes: limits.maxStateBytes,
      },
    }, options?.signal)) as { sid: string };
    const sid = opened.sid;
    const handle = { lost: null as string | null };
    liveSessions.add(handle);
    let ended = false;
    let initial: Promise<string> | null = null;
    const alive = () => {
      if (ended) throw new SandboxError('SANDBOX_UNAVAILABLE', 'the session is closed');
      if (handle.lost) throw new SandboxError('SANDBOX_UNAVAILABLE', handle.lost);
    };
    return {
      tools,
      async call(tool, args, argsText): Promise<CallOutcome> {
        alive();
        const started = performance.now();
        const stop = (code: SandboxErrorCode, message: string): CallOutcome => ({ result: { success: false, error: message }, runtimeError: code, us: (performance.now() - started) * 1000 });
        const validate = validators.get(tool);
        if (!validate) return stop('UNKNOWN_TOOL', `unknown tool "${tool}"; the tools are: ${tools.join(', ')}`);
        const input = args ?? {};
        if (typeof input !== 'object' || Array.isArray(input)) return stop('INVALID_ARGUMENTS', `invalid arguments for ${tool}: expected an object of named arguments`);
        if (!validate(input)) return stop('INVALID_ARGUMENTS', `invalid arguments for ${tool}:\n${describeAjvErrors(validate.errors)}`);
        const badKey = Object.keys(input).find(k => !PYTHON_KEYWORD_NAME.test(k));
        if (badKey !== undefined) return stop('INVALID_ARGUMENTS', `invalid arguments for ${tool}: "${badKey}" is not a Python identifier, so it cannot be a keyword argument`);
        const out = (await request({ op: 'call', sid, tool, argsJson: pythonArgs(argsText) ?? JSON.stringify(input) })) as CallOutcome & { resultJson?: string };
        return out.resultJson !== undefined ? { result: JSON.parse(out.resultJson) as unknown, resultJson: out.resultJson, us: out.us } : out;
      },
      async snapshot() {
        alive();
        return JSON.parse((await request({ op: 'state', sid })) as string) as unknown;
      },
      async snapshotJson() {
        alive();
        return (await request({ op: 'state', sid })) as string;
      },
      initialState() {
        // Asked once per session (an episode's checks and the other language's may both need it).
        initial ??= (async () => {
          alive();
          return (await request({ op: 'initial', sid })) as string;
        })();
        return initial;
      },
      async finish(checks: readonly CheckSpec[]): Promise<SessionEnd> {
        alive();
        ended = true;
        liveSessions.delete(handle);
        return (await request({ op: 'finish', sid, checks: checks.map(c => ({ item: c.item, check: c.check, episode: c.episode === true })) })) as SessionEnd;
      },
      async close() {
        if (ended) return;
        ended = true;
        liveSessions.delete(handle);
        if (handle.lost || !child) return;
        await request({ op: 'close', sid }).catch((err: unknown) => {
          if (!(err instanceof SandboxError && err.code === 'SANDBOX_UNAVAILABLE')) throw err;
        });
      },
    };
  };

  return {
    started: start,
    async stats() {
      return (await request({ op: 'stats' })) as PythonRuntimeStats;
    },
    openSession,
    // A runtime that could not start is an error of the runner, not of the environment.
    probe: input => probeThroughSession(openSession, input, err => err instanceof SandboxError && err.code === 'SANDBOX_UNAVAILABLE' && !child),
    async checks(input: ChecksInput): Promise<ChecksResult> {
      // Kept as text (RawJson: a session's final state as its runtime wrote it), it is passed on unparsed: 1.0 stays a float.
      const finalStateJson = input.finalState instanceof RawJson ? input.finalState.json : (JSON.stringify(input.finalState) ?? 'null');
      const initialStateJson = input.initialState instanceof RawJson ? input.initialState.json : (JSON.stringify(input.initialState) ?? 'null');
      return (await request({
        op: 'checks',
        finalStateJson,
        initialStateJson,
        // The turn states as their sessions wrote them where they are kept as text (RawJson), like the final state.
        episodeJson: input.episode ? (stringifyJson({ messages: input.episode.messages, turn_states: input.episode.turnStates }) ?? null) : null,
        checks: input.checks.map(c => ({ item: c.item, check: c.check, episode: c.episode === true })),
        limits: { checkDeadlineMs: input.limits.checkDeadlineMs },
      })) as ChecksResult;
    },
    async close() {
      closed = true;
      const proc = child;
      child = null;
      if (!proc || proc.exitCode !== null) return;
      await new Promise<void>(resolve => {
        const t = setTimeout(() => proc.kill('SIGKILL'), 2_000);
        proc.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        proc.kill('SIGTERM');
      });
      failPending('the Python runtime is closed');
    },
  };
}

type ChildMessage =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: { code: string; message: string; lostWith?: 'interpreter' } }
  | { type: 'log'; level: string; msg: string; data: Record<string, unknown> }
  | { type: 'snapshot'; base64: string; ms: number }
  | { type: 'snapshotInvalid' }
  | { type: 'ready'; fromSnapshot: boolean; startMs: number; packagesMs?: number[] }
  | { type: 'failed'; message: string };

/**
 * Written asynchronously beside its final name, then renamed: a reader never sees half a snapshot.
 * The file is the snapshot and a 48-byte trailer: "EFSNAP01", the snapshot's length (64-bit little
 * endian) and its SHA-256; the child checks both before it uses the file (python-child.mjs).
 */
async function writeSnapshot(file: string, bytes: Uint8Array, logger: Logger): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  const trailer = Buffer.alloc(48);
  trailer.write('EFSNAP01', 0, 'latin1');
  trailer.writeBigUInt64LE(BigInt(bytes.byteLength), 8);
  createHash('sha256').update(bytes).digest().copy(trailer, 16);
  try {
    await makeFolder(dirname(file), 'the snapshot folder (ENVFLEET_PYTHON_SNAPSHOT_DIR)');
    const fh = await open(tmp, 'w');
    try {
      await fh.writev([bytes, trailer]);
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    logger.warn({ err, snapshotFile: file }, 'cannot write the Python memory snapshot to its cache folder; the next start builds it again');
    await unlink(tmp).catch(() => undefined);
  }
}

const validatorCache = new Map<string, Map<string, ValidateFunction>>();
function validatorsFor(code: EnvironmentCode): Map<string, ValidateFunction> {
  const key = `${code.className}\u0000${JSON.stringify(code.tools)}`;
  let map = validatorCache.get(key);
  if (!map) {
    map = new Map();
    for (const tool of code.tools) {
      if (!PYTHON_IDENTIFIER.test(tool.function.name)) throw new SandboxError('TOOL_SCHEMA_INVALID', `tool ${tool.function.name}: a Python environment's tool name must be a Python identifier (ASCII letters, digits and _, not starting with a digit)`);
      try {
        map.set(tool.function.name, compileJsonSchema(tool.function.parameters ?? { type: 'object' }));
      } catch (err) {
        throw new SandboxError('TOOL_SCHEMA_INVALID', `tool ${tool.function.name}: ${(err as Error).message}`);
      }
    }
    if (validatorCache.size > 500) validatorCache.clear();
    validatorCache.set(key, map);
  }
  return map;
}
