import { RequestError } from '../errors.js';
import { hashOf } from '../util/canonical.js';

/**
 * The ids of a run's items. Each is a hash of what identifies the item, so the same input gives the
 * same id on every machine and a re-submitted or retried job finds the item it made before.
 */

/**
 * A run's name: ASCII letters and digits, _ . - (at most 100), not "." or "..". It goes into Redis keys, BullMQ job ids, file
 * names and URLs as it is; other scripts (démo, 演示) are refused rather than checked in each of them.
 */
export const RUN_NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,100}$/;

/** Why `name` is not a run name (what is allowed, with a suggestion), or null when it is one. */
export function runNameProblem(name: string): string | null {
  if (RUN_NAME.test(name)) return null;
  // "." and ".." name a folder's own place and its parent's in every path they go into (the demo's output folder
  // demo-output/RUN, a sink's): never a run's.
  if (name === '.' || name === '..') return `run name ${JSON.stringify(name)} names a folder itself or its parent in the file paths a run's name goes into; pick a name with a letter or a digit, for example "run-1"`;
  const ascii = name.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 90);
  // A name mostly in another script (运行🚀é) keeps too little in ASCII to be told apart: a short digest of it is added.
  const kept = ascii.replace(/-/g, '').length;
  const suggestion = !name.trim() ? 'run-1' : kept * 2 >= [...name].length ? ascii : `${ascii ? `${ascii}-` : 'run-'}${hashOf(name, 6)}`;
  return `run name ${JSON.stringify(name)} may only contain ASCII letters (A-Z, a-z), digits and _ . - (1 to 100 characters); for example "${suggestion}"`;
}

/** Throws INVALID_REQUEST when `name` is not a run name. */
export function checkRunName(name: string): void {
  const problem = runNameProblem(name);
  if (problem) throw new RequestError(problem);
}

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
