import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { READER_PY, READER_TOOLS } from '../../src/importers/tau-bench-python.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import type { SandboxRunner } from '../../src/sandbox/runner.js';

/** The gold actions of every task of a τ-bench task file (index → actions), read by the importer's reader in the sandbox. */
export async function readGoldActions(sandbox: SandboxRunner, path: string): Promise<Record<number, { name: string; kwargs: Record<string, unknown> }[]>> {
  const limits = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 120_000, createDeadlineMs: 120_000, maxResultBytes: 32 << 20 };
  const tools = READER_TOOLS.map(name => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } }));
  const session = await sandbox.openSession({ name: 'reader', className: 'TauBenchReader', source: READER_PY, tools, language: 'python' }, {}, limits);
  try {
    const file = basename(path);
    const head = (await session.call('parse_tasks', { file, source: await readFile(path, 'utf8') })).result as { count: number };
    const batch = (await session.call('task_batch', { file, start: 0, count: head.count })).result as { index: number; task: { actions: { name: string; kwargs: Record<string, unknown> }[] } | null }[];
    return Object.fromEntries(batch.map(b => [b.index, b.task?.actions ?? []]));
  } finally {
    await session.close();
  }
}
