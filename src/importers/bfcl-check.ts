import type { CheckSpec } from '../sandbox/bundle.js';
import { stringifyJson } from '../util/raw-json.js';

/**
 * BFCL's per-turn judgement (BFCL's multi_turn_checker.py; docs/formats.md, "Imported data: envfleet import bfcl")
 * as an episode check: a Python `check_func` that reads the global `episode` (the transcript and the
 * state recorded at the end of each scripted user turn) and compares it, turn by turn, with the gold
 * states and results computed at import by replaying the gold calls in the sandbox. A failure raises
 * CheckFailed with BFCL's error code first in its message, so the trajectory's check result says
 * which rule failed, at which turn.
 */

/**
 * One turn of the gold replay: how many gold calls, the environment's state after them, and their results (as the
 * router returns them); the state and each result a RawJson of the session's own text where it has one.
 */
export interface BfclGoldTurn {
  readonly calls: number;
  readonly state: unknown;
  readonly results: readonly unknown[];
}

export const BFCL_CHECK_ITEM = 'BFCL multi-turn: every turn reaches the gold state and returns the gold results (multi_turn_checker)';

/** BFCL's error codes, as the check writes them. */
export const BFCL_ERROR_CODES = [
  'multi_turn:force_terminated',
  'multi_turn:empty_turn_model_response',
  'multi_turn:instance_state_mismatch',
  'multi_turn:execution_response_mismatch',
  'multi_turn:irrelevance_error:decoder_success',
] as const;

const CHECK_BODY = String.raw`
import json

class CheckFailed(Exception):
    pass

def _norm(value):
    """JSON value with integral floats as ints (the transcript's numbers crossed JavaScript), so 2.0 and 2 compare equal."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value

def _key(value):
    return json.dumps(_norm(value), sort_keys=True, ensure_ascii=False)

def _tool_result(content):
    """A tool message's content: the JSON the rollout wrote (JSON.stringify of the result), else the text itself."""
    if not isinstance(content, str):
        return content
    try:
        return json.loads(content)
    except ValueError:
        return content

def _turns(messages):
    """The transcript split into user turns: a turn starts at a user message that follows a non-user one."""
    turns = []
    current = None
    previous_user = False
    for m in messages:
        role = m.get('role')
        if role == 'user':
            if not previous_user:
                current = {'calls': 0, 'results': []}
                turns.append(current)
            previous_user = True
            continue
        previous_user = False
        if current is None:
            continue
        if role == 'assistant':
            current['calls'] += len(m.get('tool_calls') or [])
        elif role == 'tool':
            current['results'].append(_tool_result(m.get('content')))
    return turns

def _short(value, limit=300):
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + '...'

def check_func(final_state):
    messages = episode.get('messages') or []
    states = episode.get('turn_states')
    turns = _turns(messages)
    if len(turns) != len(GOLD):
        raise CheckFailed('multi_turn:force_terminated: the episode has %d user turns, the entry %d (it ended before the last turn was answered)' % (len(turns), len(GOLD)))
    if states is None or len(states) < len(GOLD):
        raise CheckFailed('multi_turn:force_terminated: %s turn states were recorded for %d turns (not a scripted multi-turn episode, or it ended early)' % ('no' if states is None else len(states), len(GOLD)))
    so_far = []
    for i, (turn, gold) in enumerate(zip(turns, GOLD)):
        so_far.extend(_key(r) for r in turn['results'])
        if gold['calls'] == 0:
            continue
        if turn['calls'] == 0:
            raise CheckFailed('multi_turn:empty_turn_model_response: turn %d: the agent made no call; the gold answer makes %d' % (i, gold['calls']))
        got = states[i] if isinstance(states[i], dict) else {}
        want = gold['state']
        for name in sorted(want):
            if _key(got.get(name)) != _key(want[name]):
                attrs = sorted(k for k in set(want[name] or {}) | set(got.get(name) or {}) if _key((got.get(name) or {}).get(k)) != _key((want[name] or {}).get(k)))
                raise CheckFailed('multi_turn:instance_state_mismatch: turn %d: %s differs from the gold state in %s' % (i, name, ', '.join(attrs) or 'its attributes'))
        pool = list(so_far)
        missing = []
        for r in gold['results']:
            k = _key(r)
            if k in pool:
                pool.remove(k)
            else:
                missing.append(r)
        if missing:
            raise CheckFailed('multi_turn:execution_response_mismatch: turn %d: %d gold result(s) not among the agent\'s results so far, e.g. %s' % (i, len(missing), _short(missing[0])))
    for i, (turn, gold) in enumerate(zip(turns, GOLD)):
        if gold['calls'] == 0 and turn['calls'] > 0:
            raise CheckFailed('multi_turn:irrelevance_error:decoder_success: turn %d: the agent made %d call(s) where the gold answer makes none' % (i, turn['calls']))
    return True
`;

/**
 * The check of one entry: the judgement above with the gold turns embedded as JSON text (a JSON
 * string literal is a Python string literal too).
 */
export function bfclCheck(entryId: string, gold: readonly BfclGoldTurn[]): CheckSpec {
  // stringifyJson: a state or result held as the session's text (RawJson) is written as that text.
  const json = stringifyJson(gold)!;
  const check = `# BFCL multi-turn judgement of ${entryId}, generated by envfleet import bfcl.\n${CHECK_BODY}\nGOLD = json.loads(${JSON.stringify(json)})\n`;
  return { item: BFCL_CHECK_ITEM, check, language: 'python', episode: true };
}
