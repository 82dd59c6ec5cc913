import type { RunDocuments, RunStore } from '../runs/store.js';
import type { ImportSource } from '../synthesis/types.js';
import { canonicalJson } from '../util/canonical.js';

/** Whether two documents are the same apart from when they were made (lineage.createdAt). */
export function sameDocument(a: { lineage: { createdAt: string } }, b: { lineage: { createdAt: string } }): boolean {
  return canonicalJson({ ...a, lineage: { ...a.lineage, createdAt: '' } }) === canonicalJson({ ...b, lineage: { ...b.lineage, createdAt: '' } });
}

/**
 * What writing one imported document did: written (new or changed), already there, or refused: the run's document of
 * that id was not imported from this source (`foreign`), or it is a scenario whose earlier version has episodes rolled
 * out (`rolled-out`: its rewards were given by the earlier checks, and the export would pair them with the new text).
 */
export type ImportWrite<D> = { readonly outcome: 'imported' | 'updated' | 'unchanged' } | { readonly outcome: 'foreign'; readonly other: D };
export type ScenarioWrite<D> = ImportWrite<D> | { readonly outcome: 'rolled-out' };

/**
 * Whether a scenario of the run has episodes rolled out, for one import: the scenarios of the run's trajectories (each
 * keeps its scenario's id, also once the sink has written it), read once, the first time a changed scenario is met.
 * (Trajectory ids are hashes; a group's id starts with its scenario's, but a group is written only once all its
 * episodes are.)
 */
export function rolloutsLookup(store: RunStore, runId: string): (scenarioId: string) => Promise<boolean> {
  let scenarios: Promise<ReadonlySet<string>> | undefined;
  return async scenarioId => {
    scenarios ??= (async () => {
      const out = new Set<string>();
      for (const id of await store.listDocIds(runId, 'trajectory')) {
        const t = await store.getDoc(runId, 'trajectory', id);
        if (t) out.add(t.scenarioId);
      }
      return out;
    })();
    return (await scenarios).has(scenarioId);
  };
}

/** A scenario as what it asks of an episode: without its place among its environment's scenarios and where its record was read. */
function asPlayed(d: RunDocuments['scenario']): RunDocuments['scenario'] {
  const { original: _original, ...lineage } = d.lineage;
  return { ...d, index: 0, lineage };
}
/** A scenario without its place among its environment's scenarios. */
const unnumbered = (d: RunDocuments['scenario']): RunDocuments['scenario'] => ({ ...d, index: 0 });

/**
 * Writes one document an importer made (`source`: the project it came from), the way every importer
 * must, so that importing again is idempotent: a document equal to the run's (createdAt aside) is not
 * written again; a changed one is written with its first createdAt kept; one whose id the run holds for
 * a document not imported from `source` is left alone (`foreign`, with that document, for the caller to
 * report). The funnel counters `import` count environments, scenarios and their checks once each.
 * `known`: the run's document of that id when the caller already read it (undefined: read here); `rolledOut`: the
 * import's rolloutsLookup (one read of the run's rollouts for all its scenarios).
 */
export async function writeImported<K extends 'env' | 'scenario'>(
  store: RunStore,
  runId: string,
  kind: K,
  doc: RunDocuments[K],
  source: ImportSource,
  known?: RunDocuments[K] | null,
  rolledOut?: (scenarioId: string) => Promise<boolean>,
): Promise<K extends 'scenario' ? ScenarioWrite<RunDocuments[K]> : ImportWrite<RunDocuments[K]>> {
  type Out = K extends 'scenario' ? ScenarioWrite<RunDocuments[K]> : ImportWrite<RunDocuments[K]>;
  const before = known === undefined ? await store.getDoc(runId, kind, doc.id) : known;
  if (before && before.lineage.source !== source) return { outcome: 'foreign', other: before } as Out;
  if (before && sameDocument(before, doc)) return { outcome: 'unchanged' } as Out;
  if (before && kind === 'scenario') {
    // Its place among its environment's scenarios alone (BFCL's numbering over the entries selected, which another
    // --limit changes) is no change: the scenario stays as it was.
    if (sameDocument(unnumbered(before as RunDocuments['scenario']), unnumbered(doc as RunDocuments['scenario']))) return { outcome: 'unchanged' } as Out;
    // Changed in what it asks (its task, state, checks): refused once episodes of it are rolled out. Only moved in its
    // file: written, with no word.
    const changed = !sameDocument(asPlayed(before as RunDocuments['scenario']), asPlayed(doc as RunDocuments['scenario']));
    if (changed && (await (rolledOut ?? rolloutsLookup(store, runId))(doc.id))) return { outcome: 'rolled-out' } as Out;
  }
  const checks = kind === 'scenario' ? ((doc as RunDocuments['scenario']).checklist?.length ?? 0) : 0;
  const counts =
    kind === 'env'
      ? [{ stage: 'import', outcome: 'environments', n: 1, once: true }]
      : [{ stage: 'import', outcome: 'scenarios', n: 1, once: true }, ...(checks ? [{ stage: 'import', outcome: 'checks', n: checks, once: true }] : [])];
  await store.putDoc(runId, kind, doc.id, (before ? { ...doc, lineage: { ...doc.lineage, createdAt: before.lineage.createdAt } } : doc), counts);
  return { outcome: before ? 'updated' : 'imported' } as Out;
}
