import { hashOf } from '../util/canonical.js';

/**
 * The ids of a run's items. Each is a hash of what identifies the item, so the same input gives the
 * same id on every machine and a re-submitted or retried job finds the item it made before.
 */

export const envIdOf = (runId: string, desc: { readonly summary: string; readonly introduction: string }) =>
  `env-${hashOf({ runId, summary: desc.summary.trim(), introduction: desc.introduction.trim() }, 16)}`;

export const scenarioIdOf = (runId: string, envId: string, index: number) => `scn-${hashOf({ runId, envId, index }, 16)}`;

/**
 * An episode: its run, scenario, mode and sample, and its policy generation when it is not the run's
 * first (`policy`, see policyKeyOf): the same sample of another policy is another trajectory.
 */
export const trajectoryIdOf = (runId: string, scenarioId: string, mode: string, sample: number, policy?: string) =>
  `trj-${hashOf(policy === undefined ? { runId, scenarioId, mode, sample } : { runId, scenarioId, mode, sample, policy }, 20)}`;

/** A scenario's group of samples in one mode (of one policy generation when it is not the run's first). */
export const groupIdOf = (scenarioId: string, mode: string, policy?: string) => (policy === undefined ? `${scenarioId}.${mode}` : `${scenarioId}.${mode}.${policy}`);

/** The key of a policy generation of a run's rollouts: its model and version (the run's first generation has none). */
export const policyKeyOf = (policyModel: string | null, policyVersion: string | null) => `p-${hashOf({ policyModel, policyVersion }, 12)}`;
