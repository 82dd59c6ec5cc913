import { hashOf } from '../util/canonical.js';

/**
 * The ids of a run's items. Each is a hash of what identifies the item, so the same input gives the
 * same id on every machine and a re-submitted or retried job finds the item it made before.
 */

export const envIdOf = (runId: string, desc: { readonly summary: string; readonly introduction: string }) =>
  `env-${hashOf({ runId, summary: desc.summary.trim(), introduction: desc.introduction.trim() }, 16)}`;

export const scenarioIdOf = (runId: string, envId: string, index: number) => `scn-${hashOf({ runId, envId, index }, 16)}`;

export const trajectoryIdOf = (runId: string, scenarioId: string, mode: string, sample: number) => `trj-${hashOf({ runId, scenarioId, mode, sample }, 20)}`;

/** A scenario's group of samples in one mode. */
export const groupIdOf = (scenarioId: string, mode: string) => `${scenarioId}.${mode}`;
