import type { RunDocuments, RunStore } from '../runs/store.js';
import type { ImportSource } from '../synthesis/types.js';
import { canonicalJson } from '../util/canonical.js';

/** Whether two documents are the same apart from when they were made (lineage.createdAt). */
export function sameDocument(a: { lineage: { createdAt: string } }, b: { lineage: { createdAt: string } }): boolean {
  return canonicalJson({ ...a, lineage: { ...a.lineage, createdAt: '' } }) === canonicalJson({ ...b, lineage: { ...b.lineage, createdAt: '' } });
}

/** What writing one imported document did: written (new or changed), already there, or refused. */
export type ImportWrite<D> = { readonly outcome: 'imported' | 'updated' | 'unchanged' } | { readonly outcome: 'foreign'; readonly other: D };

/**
 * Writes one document an importer made (`source`: the project it came from), the way every importer
 * must, so that importing again is idempotent: a document equal to the run's (createdAt aside) is not
 * written again; a changed one is written with its first createdAt kept; one whose id the run holds for
 * a document not imported from `source` is left alone (`foreign`, with that document, for the caller to
 * report). The funnel counters `import` count environments, scenarios and their checks once each.
 * `known`: the run's document of that id when the caller already read it (undefined: read here).
 */
export async function writeImported<K extends 'env' | 'scenario'>(
  store: RunStore,
  runId: string,
  kind: K,
  doc: RunDocuments[K],
  source: ImportSource,
  known?: RunDocuments[K] | null,
): Promise<ImportWrite<RunDocuments[K]>> {
  const before = known === undefined ? await store.getDoc(runId, kind, doc.id) : known;
  if (before && before.lineage.source !== source) return { outcome: 'foreign', other: before };
  if (before && sameDocument(before, doc)) return { outcome: 'unchanged' };
  const checks = kind === 'scenario' ? ((doc as RunDocuments['scenario']).checklist?.length ?? 0) : 0;
  const counts =
    kind === 'env'
      ? [{ stage: 'import', outcome: 'environments', n: 1, once: true }]
      : [{ stage: 'import', outcome: 'scenarios', n: 1, once: true }, ...(checks ? [{ stage: 'import', outcome: 'checks', n: checks, once: true }] : [])];
  await store.putDoc(runId, kind, doc.id, (before ? { ...doc, lineage: { ...doc.lineage, createdAt: before.lineage.createdAt } } : doc), counts);
  return { outcome: before ? 'updated' : 'imported' };
}
