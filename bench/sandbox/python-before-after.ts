/**
 * The Python runtime of an earlier commit beside the working tree's, for benchmarks that compare the two in one run
 * (bench/python-state-cap.ts --e2e, bench/python-large-state.ts): BEFORE's src/, config/ and package.json from
 * `git archive` in a temporary folder (node_modules linked), each side a runner made with the same options.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as PythonRunnerModule from '../../src/sandbox/python/python-runner.js';

type Runner = typeof PythonRunnerModule;
export type PythonRunner = ReturnType<Runner['createPythonSandboxRunner']>;

/** Both runners, started; `close` closes them and removes the folder. */
export async function pythonRunnersBeforeAndAfter(
  before: string,
  options: Parameters<Runner['createPythonSandboxRunner']>[0],
): Promise<{ runners: Record<'before' | 'after', PythonRunner>; close: () => Promise<void> }> {
  const old = mkdtempSync(join(os.tmpdir(), 'envfleet-python-before-'));
  const made: PythonRunner[] = [];
  const close = async () => {
    for (const r of made) await r.close();
    rmSync(old, { recursive: true, force: true });
  };
  try {
    execFileSync('sh', ['-c', `git archive ${before} src config package.json | tar -x -C ${old}`]);
    symlinkSync(new URL('../../node_modules', import.meta.url).pathname, join(old, 'node_modules'));
    const mods: Record<'before' | 'after', Runner> = {
      before: (await import(pathToFileURL(join(old, 'src/sandbox/python/python-runner.ts')).href)) as Runner,
      after: await import('../../src/sandbox/python/python-runner.js'),
    };
    const runners = { before: mods.before.createPythonSandboxRunner(options), after: mods.after.createPythonSandboxRunner(options) };
    made.push(runners.before, runners.after);
    await runners.before.started();
    await runners.after.started();
    return { runners, close };
  } catch (err) {
    await close();
    throw err;
  }
}
