import { sleep } from '../util/sleep.js';

/**
 * Paces the starts of episodes in one worker process, so that a burst of them (a run's first wave, or the next wave
 * as a burst of episodes ends) spreads over half a model latency instead of going out together.
 *
 * Why: a model endpoint answers each request about one latency after it came, so the answers to a burst of requests
 * come back as a burst, turn after turn, and the worker's main thread works through each burst one answer after
 * another: every episode waits its turn at every model call. Measured with 1,000 episodes in flight against a 2 s
 * endpoint (docs/benchmarks.md, issue 14): starts spread over 2 s cut the episode's time outside the model from about
 * 0.9 s to 0.4 s.
 *
 * The rule: at most `concurrency` starts per half the observed latency (the moving mean of the process's uncached
 * policy calls), or per a quarter of the mean episode when that is shorter (episodes replayed from the response cache,
 * episodes that end early). A steady run starts `concurrency` ÷ the mean episode per second (Little's law), at most a
 * quarter of that rate when an episode takes two latencies or more, so only bursts wait, a start never waits longer
 * than half a latency, and the pacing never becomes a cap on the run. Until a call has been timed, nothing waits.
 * Half a latency, not a whole one: a burst is worked through well within it, and a wider spread cost the main thread
 * about 0.6–0.9 ms of CPU per episode (its work came a piece at a time instead of in batches) and the slots more idle
 * time in the second wave, for no gain in the episodes' own time (docs/benchmarks.md, 2026-12-06).
 */
export interface StartPacer {
  /**
   * Resolves when this start's slot comes (at once unless starts come faster than concurrency per latency), or at
   * once when `signal` aborts (a pause, a cancel, the worker's shutdown: the episode then meets the abort itself).
   */
  take(signal?: AbortSignal): Promise<void>;
  /** The latency of one uncached policy model call, in milliseconds. */
  observe(latencyMs: number): void;
  /** How long one episode took, start to end, in milliseconds. */
  observeEpisode(ms: number): void;
  /** The moving mean latency the pacing uses (0: none observed yet). */
  latencyMs(): number;
  /** The time over which `concurrency` starts are spread (0: none; starts go at once): half the latency, or a quarter of the mean episode when shorter. */
  spreadMs(): number;
}

export interface StartPacerOptions {
  /** The episodes the process runs at once (its rollout concurrency); 0 or less: no pacing. */
  readonly concurrency: number;
  readonly now?: () => number;
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** The shared sleep, ending early and without an error when the signal aborts. */
const sleepUnlessAborted = (ms: number, signal?: AbortSignal) => sleep(ms, signal).catch(() => undefined);

/** Weight of the newest latency in the moving mean. */
const WEIGHT = 0.05;

export function createStartPacer(options: StartPacerOptions): StartPacer {
  const now = options.now ?? (() => performance.now());
  const wait = options.sleep ?? sleepUnlessAborted;
  let mean = 0;
  let episode = 0;
  let nextAt = Number.NEGATIVE_INFINITY;
  const moved = (m: number, x: number) => (m === 0 ? x : m + WEIGHT * (x - m));
  const spread = () => (mean <= 0 ? 0 : (episode > 0 ? Math.min(mean, episode / 2) : mean) / 2);
  return {
    async take(signal) {
      const over = spread();
      if (over <= 0 || !(options.concurrency > 0) || signal?.aborted) return;
      const t = now();
      nextAt = Math.max(t, nextAt + over / options.concurrency);
      if (nextAt > t) await wait(nextAt - t, signal);
    },
    observe(latencyMs) {
      if (Number.isFinite(latencyMs) && latencyMs >= 0) mean = moved(mean, latencyMs);
    },
    observeEpisode(ms) {
      if (Number.isFinite(ms) && ms >= 0) episode = moved(episode, ms);
    },
    latencyMs: () => mean,
    spreadMs: spread,
  };
}
