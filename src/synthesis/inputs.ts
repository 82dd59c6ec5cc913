import { z } from 'zod';
import { InputFileError } from '../sandbox/files.js';
import { hashOf } from '../util/canonical.js';
import { utf8Lines } from '../util/utf8.js';
import type { EnvDescription, SourceTask } from './types.js';

const TaskLine = z.strictObject({
  task: z.string().trim().min(1, 'task must not be empty'),
  id: z.union([z.string().min(1), z.number()]).optional(),
  source: z.string().optional(),
});
const DescriptionLine = z.strictObject({
  summary: z.string().trim().min(1, 'summary must not be empty'),
  introduction: z.string().trim().min(1, 'introduction must not be empty'),
  task: z.string().optional(),
  id: z.union([z.string(), z.number()]).optional(),
});

export interface LineProblem {
  readonly line: number;
  readonly problem: string;
}

export interface ParsedLines<T> {
  readonly items: T[];
  readonly problems: LineProblem[];
}

export async function parseLines<S extends z.ZodType>(path: string, schema: S): Promise<ParsedLines<{ line: number; value: z.infer<S> }>> {
  const items: { line: number; value: z.infer<S> }[] = [];
  const problems: LineProblem[] = [];
  try {
    // Line by line on the bytes: a line that is not UTF-8 is a bad line (decoded, its bytes would become U+FFFD unnoticed).
    for await (const l of utf8Lines(path)) {
      if ('problem' in l) {
        if (l.wholeFile) throw new InputFileError(`${path}: ${l.problem} (one JSON object per line) and run the command again`);
        problems.push({ line: l.line, problem: l.problem });
        continue;
      }
      if (!l.text.trim()) continue;
      let json: unknown;
      try {
        json = JSON.parse(l.text);
      } catch (err) {
        problems.push({ line: l.line, problem: `not valid JSON: ${(err as Error).message}` });
        continue;
      }
      const r = schema.safeParse(json);
      if (!r.success) {
        problems.push({ line: l.line, problem: r.error.issues.map(x => `${x.path.join('.') || '(line)'}: ${x.message}`).join('; ') });
        continue;
      }
      items.push({ line: l.line, value: r.data });
    }
  } catch (err) {
    if (err instanceof InputFileError) throw err;
    throw InputFileError.unreadable(path, (err as NodeJS.ErrnoException).code ?? (err as Error).message);
  }
  return { items, problems };
}

const UNSAFE_ID_CHARS = /[^A-Za-z0-9_.-]/g;

/**
 * `{"task": TEXT, "id"?, "source"?}` per line; bad lines are reported by number and skipped; duplicate ids are bad lines.
 * An id is kept when it has only `A-Z a-z 0-9 _ . -`; other characters become `_`. Two different ids that would
 * become the same that way (`日本` and `中国`, `a/b` and `a b`) are not duplicates: each changed one gets a hash of
 * the id as written after it (`__-1a2b3c4d`), so that no task of the file is lost.
 */
export async function readTasksFile(path: string): Promise<ParsedLines<SourceTask>> {
  const { items, problems } = await parseLines(path, TaskLine);
  const written = new Map<string, Set<string>>();
  for (const { value } of items) {
    if (value.id === undefined) continue;
    const original = String(value.id);
    const safe = original.replace(UNSAFE_ID_CHARS, '_');
    written.set(safe, (written.get(safe) ?? new Set<string>()).add(original));
  }
  const idOf = (original: string) => {
    const safe = original.replace(UNSAFE_ID_CHARS, '_');
    return safe === original || written.get(safe)!.size === 1 ? safe : `${safe}-${hashOf(original, 8)}`;
  };
  const seen = new Set<string>();
  const tasks: SourceTask[] = [];
  for (const { line, value } of items) {
    const id = value.id === undefined ? `task-${hashOf(value.task.trim(), 12)}` : idOf(String(value.id));
    if (seen.has(id)) {
      problems.push({ line, problem: value.id === undefined ? 'the same task appears on an earlier line' : `id ${JSON.stringify(String(value.id))} appears on an earlier line` });
      continue;
    }
    seen.add(id);
    tasks.push({ id, task: value.task.trim(), source: value.source, index: line });
  }
  problems.sort((a, b) => a.line - b.line);
  return { items: tasks, problems };
}

/** `{"summary": TEXT, "introduction": TEXT}` per line (mining skipped). */
export async function readDescriptionsFile(path: string): Promise<ParsedLines<EnvDescription>> {
  const { items, problems } = await parseLines(path, DescriptionLine);
  return {
    items: items.map(({ value }) => ({ summary: value.summary, introduction: value.introduction, ...(value.task ? { task: value.task } : {}) })),
    problems,
  };
}
