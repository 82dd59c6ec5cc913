import { join } from 'node:path';
import { writeWholeFile } from '../util/make-dir.js';

/**
 * LLaMA-Factory's `dataset_info.json` for the LLaMA-Factory files of an export: with `dataset_dir` set to the
 * export's directory, `dataset: envfleet_sharegpt` (or `envfleet_alpaca`) loads the file with the right
 * columns and tags. Keys are those LLaMA-Factory's DatasetAttr reads (`file_name`, `formatting`, `columns`,
 * `tags`); docs/formats.md gives the training settings that go with them (`mask_history: true`).
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

/**
 * Writes `dir/dataset_info.json` with one entry per LLaMA-Factory file written (`files`: format → file name),
 * complete or not at all (written beside, then renamed). Returns the number of entries; writes nothing for none.
 */
export async function writeLlamaFactoryInfo(dir: string, files: Partial<Record<keyof typeof LLAMAFACTORY_DATASETS, string>>): Promise<number> {
  const entries = Object.entries(files).flatMap(([format, fileName]) => {
    const d = LLAMAFACTORY_DATASETS[format as keyof typeof LLAMAFACTORY_DATASETS];
    return d && fileName ? [[d.name, d.entry(fileName)] as const] : [];
  });
  if (!entries.length) return 0;
  const path = join(dir, LLAMAFACTORY_INFO_FILE);
  await writeWholeFile(path, `${JSON.stringify(Object.fromEntries(entries), null, 2)}\n`);
  return entries.length;
}
