import { readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { AppError } from '../errors.js';
import { stripBom } from '../util/bom.js';
import { jsonMemberTexts } from '../util/json-member.js';
import { writeWholeFile } from '../util/make-dir.js';
import type { ExportStage } from './jsonl-writer.js';

/**
 * LLaMA-Factory's `dataset_info.json` for the LLaMA-Factory files of an export: with `dataset_dir` set to the
 * export's directory, `dataset: envfleet_sharegpt` (or `envfleet_alpaca`) loads the file with the right
 * columns and tags. Keys are those LLaMA-Factory's DatasetAttr reads (`file_name`, `formatting`, `columns`,
 * `tags`); docs/formats.md gives the training settings that go with them (`mask_history: true`).
 *
 * The folder may already hold a dataset_info.json with other entries (LLaMA-Factory's own data/dataset_info.json, a
 * user's datasets): envfleet's entries are added to it, or replaced in it, and every other entry is kept as written
 * and in its place.
 */
export const LLAMAFACTORY_INFO_FILE = 'dataset_info.json';

export const LLAMAFACTORY_DATASETS = {
  sharegpt: {
    name: 'envfleet_sharegpt',
    entry: (fileName: string) => ({
      file_name: fileName,
      formatting: 'sharegpt',
      columns: { messages: 'conversations', system: 'system', tools: 'tools' },
      tags: { role_tag: 'from', content_tag: 'value', user_tag: 'human', assistant_tag: 'gpt', observation_tag: 'observation', function_tag: 'function_call' },
    }),
  },
  llamafactory: {
    name: 'envfleet_alpaca',
    entry: (fileName: string) => ({
      file_name: fileName,
      formatting: 'alpaca',
      columns: { prompt: 'instruction', query: 'input', response: 'output', system: 'system', history: 'history' },
    }),
  },
} as const;

const ENVFLEET_NAMES: ReadonlySet<string> = new Set(Object.values(LLAMAFACTORY_DATASETS).map(d => d.name));

/** A dataset_info.json the export would add its entries to, which is not a JSON object: it is left as it is. */
export class DatasetInfoUnreadableError extends AppError {
  constructor(path: string, problem: string) {
    super(
      'INPUT_FILE_INVALID',
      `${resolve(path)} is not a JSON object (${problem}), so envfleet cannot add its LLaMA-Factory datasets to it without losing what it holds; nothing was written. ` +
        'Fix the file (LLaMA-Factory cannot read it either), move it away, or export into another folder (--out), or without the LLaMA-Factory files (--format without sharegpt and llamafactory).',
      { details: { path } },
    );
  }
}

/** A dataset_info.json as it is in the folder: its entries, each as written, in their order (a repeated name: its first place, its last value, as Python's json reads it). */
export type LlamaFactoryInfo = ReadonlyMap<string, string>;

/**
 * The dataset_info.json in `dir`: null when there is none; a DatasetInfoUnreadableError when it is not a JSON object.
 * Read before the export writes anything, so a file it cannot merge into stops it with nothing written.
 */
export async function readLlamaFactoryInfo(dir: string): Promise<LlamaFactoryInfo | null> {
  const path = join(dir, LLAMAFACTORY_INFO_FILE);
  let text: string;
  try {
    text = stripBom(await readFile(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new DatasetInfoUnreadableError(path, `it cannot be read: ${(err as Error).message}`);
  }
  try {
    JSON.parse(text);
  } catch (err) {
    throw new DatasetInfoUnreadableError(path, `it is not JSON: ${(err as Error).message}`);
  }
  const members = jsonMemberTexts(text);
  if (!members) throw new DatasetInfoUnreadableError(path, `it holds ${describe(JSON.parse(text))}`);
  return new Map(members);
}

const describe = (v: unknown) => (Array.isArray(v) ? 'an array' : v === null ? 'null' : `a ${typeof v}`);

/** What the export did to dataset_info.json: its own entries written (or taken out), and the names of the other entries it kept. */
export interface LlamaFactoryInfoWrite {
  /** envfleet's entries in the file now. */
  readonly entries: number;
  /** The file's other entries (not envfleet's), kept as they were, in their order. */
  readonly kept: readonly string[];
  /** The file was removed: it held envfleet's entries only, and the export writes none. */
  readonly removed: boolean;
}

/**
 * Writes `dir/dataset_info.json` with one entry per LLaMA-Factory file written (`files`: format → file name) and every
 * other entry of `existing` (the file as it was, readLlamaFactoryInfo), those as written and in their place; envfleet's
 * entries replace their earlier versions in place, or come after the others. An envfleet entry for a file not written
 * this time is taken out. With no entry left the file is removed (when there was one) or not written. Written whole
 * or not at all (writeWholeFile, or into the export's stage). The same export into the same folder gives the same file, byte for byte.
 */
export async function writeLlamaFactoryInfo(
  dir: string,
  files: Partial<Record<keyof typeof LLAMAFACTORY_DATASETS, string>>,
  existing: LlamaFactoryInfo | null,
  stage?: ExportStage,
): Promise<LlamaFactoryInfoWrite> {
  const ours = new Map<string, string>();
  for (const [format, fileName] of Object.entries(files)) {
    const d = LLAMAFACTORY_DATASETS[format as keyof typeof LLAMAFACTORY_DATASETS];
    // Indented as a member of the file's top level (JSON.stringify of the whole object with indent 2 writes the same).
    if (d && fileName) ours.set(d.name, JSON.stringify(d.entry(fileName), null, 2).replace(/\n/g, '\n  '));
  }
  const members: [string, string][] = [];
  const kept: string[] = [];
  for (const [name, text] of existing ?? []) {
    if (!ENVFLEET_NAMES.has(name)) {
      members.push([name, text]);
      kept.push(name);
    } else if (ours.has(name)) {
      members.push([name, ours.get(name)!]);
      ours.delete(name);
    }
  }
  members.push(...ours);
  const path = join(dir, LLAMAFACTORY_INFO_FILE);
  const entries = members.length - kept.length;
  if (!members.length) {
    if (existing) await rm(path, { force: true });
    return { entries, kept, removed: existing !== null };
  }
  const text = `{\n${members.map(([name, text]) => `  ${JSON.stringify(name)}: ${text}`).join(',\n')}\n}\n`;
  await (stage ? stage.addText(path, text) : writeWholeFile(path, text));
  return { entries, kept, removed: false };
}
