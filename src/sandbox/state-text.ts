import type { CheckSpec } from './bundle.js';
import { SandboxError } from './errors.js';
import type { CheckOutcome } from './quickjs-host.js';

/**
 * Both states of a check batch as JSON text, or, when JSON cannot write one of them, the outcome every check gets
 * (STATE_INVALID with the reason). Also used where the states are sent to a sandbox thread: two strings cross
 * as one copy each, and a state too deep for V8's structured clone fails here, with its reason, not in postMessage.
 */
export function checkStateTexts(checks: readonly CheckSpec[], finalState: unknown, initialState: unknown): { finalJson: string; initialJson: string } | { failed: CheckOutcome[] } {
  try {
    return { finalJson: stateText(finalState, 'final'), initialJson: stateText(initialState, 'initial') };
  } catch (err) {
    const e = err as SandboxError;
    return { failed: checks.map(c => ({ item: c.item, passed: false, error: e.message, errorCode: e.code })) };
  }
}

/** A state's JSON text for the checks; SandboxError STATE_INVALID when JSON cannot write it. */
function stateText(state: unknown, which: 'final' | 'initial'): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(state);
  } catch (err) {
    const why = err instanceof RangeError ? 'it is nested too deeply' : err instanceof Error ? err.message : String(err);
    throw new SandboxError('STATE_INVALID', `the ${which} state cannot be written as JSON: ${why}`);
  }
  if (text === undefined) throw new SandboxError('STATE_INVALID', `the ${which} state is not JSON`);
  return text;
}
