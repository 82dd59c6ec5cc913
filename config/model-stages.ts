/**
 * The model stages: every kind of model request, by the part of the pipeline that sends it (a pipeline
 * stage — a queue in queues/pipeline.ts — may send several kinds, e.g. check.probe sends
 * check.probe.tester and check.probe.checker). Every model request carries one of these names in the
 * `X-Envfleet-Stage` header; per-stage model profiles, the ledger and budgets are keyed by them.
 *
 * `cache: true` means identical requests within a run are answered from the response cache, so a
 * resumed run does not pay twice. Rollout stages sample a policy on purpose: they are cached only
 * per episode and turn (`'salted'`: the request names its sample and turn), so a resumed or
 * retried episode replays its own answers while different samples stay independent.
 */
export const MODEL_STAGES = {
  'mine.judge': { kind: 'chat', cache: true, temperature: 0, maxTokens: 1024 },
  'mine.topic': { kind: 'chat', cache: true, temperature: 0.7, maxTokens: 2048 },
  'mine.dedup': { kind: 'embedding', cache: true, temperature: 0, maxTokens: 0 },
  'skeleton.state': { kind: 'chat', cache: true, temperature: 0.3, maxTokens: 4096 },
  'skeleton.operations': { kind: 'chat', cache: true, temperature: 0.3, maxTokens: 4096 },
  'skeleton.method': { kind: 'chat', cache: true, temperature: 0.2, maxTokens: 4096 },
  'check.config': { kind: 'chat', cache: true, temperature: 0.3, maxTokens: 4096 },
  'check.probe.tester': { kind: 'chat', cache: true, temperature: 0.7, maxTokens: 2048 },
  'check.probe.checker': { kind: 'chat', cache: true, temperature: 0, maxTokens: 2048 },
  'check.repair': { kind: 'chat', cache: true, temperature: 0.2, maxTokens: 4096 },
  'scenario.state': { kind: 'chat', cache: true, temperature: 0.8, maxTokens: 4096 },
  'scenario.task': { kind: 'chat', cache: true, temperature: 0.7, maxTokens: 2048 },
  'scenario.checklist': { kind: 'chat', cache: true, temperature: 0.2, maxTokens: 2048 },
  'scenario.check': { kind: 'chat', cache: true, temperature: 0.2, maxTokens: 2048 },
  'rollout.policy': { kind: 'chat', cache: 'salted', temperature: 1, maxTokens: 4096 },
  'rollout.user': { kind: 'chat', cache: 'salted', temperature: 0.7, maxTokens: 1024 },
} as const satisfies Record<string, StageDefaults>;

export interface StageDefaults {
  readonly kind: 'chat' | 'embedding';
  /** Whether identical requests within a run are served from the response cache ('salted': only requests that name their sample). */
  readonly cache: boolean | 'salted';
  readonly temperature: number;
  readonly maxTokens: number;
}

export type ModelStage = keyof typeof MODEL_STAGES;
export const MODEL_STAGE_NAMES = Object.keys(MODEL_STAGES) as ModelStage[];

export function isModelStage(value: string): value is ModelStage {
  return Object.hasOwn(MODEL_STAGES, value);
}
