import type { CheckSpec } from './bundle.js';
import type { SandboxLimits } from './limits.js';

/** A check's outcome as the sandbox reports it (see QuickJSHost.runChecksOnText). */
export interface MemoOutcome {
  readonly item: string;
  readonly passed: boolean;
  readonly error?: string;
  readonly errorCode?: string;
}

/**
 * Names through which a check could read something besides its two states: the clock, the random generator, or
 * the collector (weak references). A check list that names one of them is never remembered. `Date` is allowed in
 * the forms that read no clock: `Date.parse(…)`, `Date.UTC(…)` and `new Date(…)` with an argument (a date written
 * in the state, compared with another), which generated checks use often.
 */
const UNSTEADY = /\b(?:Date|random|WeakRef|FinalizationRegistry)\b/;
const STEADY_DATES = /\bDate\s*\.\s*(?:parse|UTC)\s*\(|\bnew\s+Date\s*\(\s*(?=[^\s)])/g;

/** Whether a check list's outcomes depend on nothing but the states and the limits, as far as its text shows. */
export function memoizable(checks: readonly CheckSpec[]): boolean {
  return checks.every(c => !c.episode && !UNSTEADY.test(c.check.replace(STEADY_DATES, '')));
}

interface Entry {
  readonly checksKey: string;
  readonly finalJson: string;
  readonly initialJson: string;
  readonly outcomes: readonly MemoOutcome[];
  readonly chars: number;
}

/** Entries a thread keeps (the scenarios whose episodes it scored last, several final states each). */
export const CHECK_MEMO_ENTRIES = 32;
/** The UTF-16 units of state text a thread's memo holds at most (two states an entry: ≈ 16 MB of memory). */
export const CHECK_MEMO_CHARS = 8 << 20;

/**
 * Outcomes of check batches a sandbox thread ran, by everything that decides them: the checks (item, source,
 * language), the limits, the initial state's text and the final state's. Every check runs from the same parsed
 * states in a sandbox of its own (QuickJSHost.runChecksOnText), and QuickJS has no other source of input a check
 * can reach but the clock, `Math.random` and the collector — which a check list that names them is kept from
 * (`memoizable`). So a batch run again on the same texts gives the same outcomes, and the episodes of a group that
 * end in the same state (a task the policy solves the same way, or leaves untouched) are scored once per thread.
 * Only batches without any error are kept: a deadline, the memory bound or a broken module depend on the machine
 * and on the other tenants, not on the texts. A check that reaches the clock by a name built at run time (rather
 * than written in its text) gets the outcome of its first run for as long as the entry lasts; it is its own
 * outcome, for its own texts.
 *
 * Bounded by entries and by the characters of state text held (the oldest go first); a batch whose states alone
 * are over a quarter of the bound is not kept.
 */
export class CheckMemo {
  private readonly entries: Entry[] = [];
  private chars = 0;
  hits = 0;
  misses = 0;

  constructor(
    private readonly maxEntries = CHECK_MEMO_ENTRIES,
    private readonly maxChars = CHECK_MEMO_CHARS,
  ) {}

  /** The key of everything but the states: undefined when the list may not be remembered. */
  keyOf(checks: readonly CheckSpec[], limits: SandboxLimits): string | undefined {
    if (!checks.length || !memoizable(checks)) return undefined;
    const limitsKey = Object.keys(limits)
      .sort()
      .map(k => `${k}=${String((limits as unknown as Record<string, unknown>)[k])}`)
      .join(',');
    return JSON.stringify([limitsKey, checks.map(c => [c.item, c.check, c.language ?? null])]);
  }

  /** The remembered outcomes (copies) of this batch, or undefined. */
  get(key: string, finalJson: string, initialJson: string): MemoOutcome[] | undefined {
    for (let i = this.entries.length - 1; i >= 0; i -= 1) {
      const e = this.entries[i]!;
      if (e.finalJson.length !== finalJson.length || e.checksKey !== key || e.finalJson !== finalJson || e.initialJson !== initialJson) continue;
      if (i !== this.entries.length - 1) this.entries.push(...this.entries.splice(i, 1));
      this.hits += 1;
      return e.outcomes.map(o => ({ ...o }));
    }
    this.misses += 1;
    return undefined;
  }

  /** Remembers a batch's outcomes, unless one of them is an error. */
  set(key: string, finalJson: string, initialJson: string, outcomes: readonly MemoOutcome[]): void {
    if (outcomes.some(o => o.error !== undefined || o.errorCode !== undefined)) return;
    const chars = finalJson.length + initialJson.length + key.length;
    if (chars > this.maxChars / 4) return;
    this.entries.push({ checksKey: key, finalJson, initialJson, outcomes: outcomes.map(o => Object.freeze({ ...o })), chars });
    this.chars += chars;
    while (this.entries.length > this.maxEntries || this.chars > this.maxChars) this.chars -= this.entries.shift()!.chars;
  }

  get size(): number {
    return this.entries.length;
  }
}
