import type { RunDocuments, RunStore } from '../runs/store.js';
import type { ImportSource } from '../synthesis/types.js';
import { canonicalJson } from '../util/canonical.js';

/** Whether two documents are the same apart from when they were made (lineage.createdAt). */
export function sameDocument(a: { lineage: { createdAt: string } }, b: { lineage: { createdAt: string } }): boolean {
  return canonicalJson({ ...a, lineage: { ...a.lineage, createdAt: '' } }) === canonicalJson({ ...b, lineage: { ...b.lineage, createdAt: '' } });
}

/**
 * What writing one imported document did: written (new or changed), already there, or refused: the run's document of
 * that id was not imported from this source (`foreign`), or it is a scenario or an environment whose earlier version
 * has episodes rolled out (`rolled-out`: their rewards were given by the earlier checks on the earlier environment, and
 * the export would pair them with the new text).
 */
export type ImportWrite<D> = { readonly outcome: 'imported' | 'updated' | 'unchanged' } | { readonly outcome: 'foreign'; readonly other: D } | { readonly outcome: 'rolled-out' };

/** Why a document was left as it was (ImportWrite `rolled-out`), for an import's skipped records. */
export function rolledOutProblem(runId: string, kind: 'env' | 'scenario', id: string): string {
  return kind === 'scenario'
    ? `run "${runId}" has episodes of scenario ${id} rolled out on its earlier version, scored by its earlier checks: it is left as it was (changed here, the export would pair those rewards with the new task and checks); import into another run to roll out the changed one`
    : `run "${runId}" has episodes rolled out on the earlier version of environment ${id}: it is left as it was, and its scenarios are not written (changed here, the export would pair those episodes with the new code and tools); import into another run to roll out the changed one`;
}

/** Whether the run has episodes rolled out of scenario `id`, or (`of: 'env'`) of environment `id`. */
export type RolloutsLookup = (id: string, of?: 'scenario' | 'env') => Promise<boolean>;

/**
 * Whether a scenario or an environment of the run has episodes rolled out, for one import: the scenarios and
 * environments of the run's trajectories (each keeps their ids, also once the sink has written it), read once, the
 * first time a changed document is met. (Trajectory ids are hashes; a group's id starts with its scenario's, but a
 * group is written only once all its episodes are.)
 */
export function rolloutsLookup(store: RunStore, runId: string): RolloutsLookup {
  let played: Promise<{ scenario: ReadonlySet<string>; env: ReadonlySet<string> }> | undefined;
  return async (id, of = 'scenario') => {
    played ??= (async () => {
      const scenario = new Set<string>();
      const env = new Set<string>();
      for (const tid of await store.listDocIds(runId, 'trajectory')) {
        const t = await store.getDoc(runId, 'trajectory', tid);
        if (!t) continue;
        scenario.add(t.scenarioId);
        env.add(t.environmentId);
      }
      return { scenario, env };
    })();
    return (await played)[of].has(id);
  };
}

/** A scenario as what it asks of an episode: without its place among its environment's scenarios and where its record was read. */
function asPlayed(d: RunDocuments['scenario']): RunDocuments['scenario'] {
  const { original: _original, ...lineage } = d.lineage;
  return { ...d, index: 0, lineage };
}
/** An environment as what its episodes ran: without where its record was read. */
function asRun(d: RunDocuments['env']): RunDocuments['env'] {
  const { original, ...lineage } = d.lineage;
  if (!original) return d;
  const { file: _file, record: _record, ...rest } = original;
  return { ...d, lineage: { ...lineage, original: rest } as typeof d.lineage };
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
 * import's rolloutsLookup (one read of the run's rollouts for all its documents).
 */
export async function writeImported<K extends 'env' | 'scenario'>(
  store: RunStore,
  runId: string,
  kind: K,
  doc: RunDocuments[K],
  source: ImportSource,
  known?: RunDocuments[K] | null,
  rolledOut?: RolloutsLookup,
): Promise<ImportWrite<RunDocuments[K]>> {
  const before = known === undefined ? await store.getDoc(runId, kind, doc.id) : known;
  if (before && before.lineage.source !== source) return { outcome: 'foreign', other: before };
  if (before && sameDocument(before, doc)) return { outcome: 'unchanged' };
  if (before && kind === 'scenario') {
    // Its place among its environment's scenarios alone (BFCL's numbering over the entries selected, which another
    // --limit changes) is no change: the scenario stays as it was.
    if (sameDocument(unnumbered(before as RunDocuments['scenario']), unnumbered(doc as RunDocuments['scenario']))) return { outcome: 'unchanged' };
    // Changed in what it asks (its task, state, checks): refused once episodes of it are rolled out. Only moved in its
    // file: written, with no word.
    const changed = !sameDocument(asPlayed(before as RunDocuments['scenario']), asPlayed(doc as RunDocuments['scenario']));
    if (changed && (await (rolledOut ?? rolloutsLookup(store, runId))(doc.id))) return { outcome: 'rolled-out' };
  }
  if (before && kind === 'env') {
    // Its code, tools or description changed (not only where its record was read): refused once episodes ran on it.
    const changed = !sameDocument(asRun(before as RunDocuments['env']), asRun(doc as RunDocuments['env']));
    if (changed && (await (rolledOut ?? rolloutsLookup(store, runId))(doc.id, 'env'))) return { outcome: 'rolled-out' };
  }
  const checks = kind === 'scenario' ? ((doc as RunDocuments['scenario']).checklist?.length ?? 0) : 0;
  const counts =
    kind === 'env'
      ? [{ stage: 'import', outcome: 'environments', n: 1, once: true }]
      : [{ stage: 'import', outcome: 'scenarios', n: 1, once: true }, ...(checks ? [{ stage: 'import', outcome: 'checks', n: checks, once: true }] : [])];
  await store.putDoc(runId, kind, doc.id, (before ? { ...doc, lineage: { ...doc.lineage, createdAt: before.lineage.createdAt } } : doc), counts);
  return { outcome: before ? 'updated' : 'imported' };
}
