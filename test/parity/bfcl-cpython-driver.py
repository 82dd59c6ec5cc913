"""Replays BFCL multi-turn gold calls through the benchmark's own code in CPython, for the parity test.

Run on purpose outside the sandbox, by test/integration/bfcl-parity.test.ts only (gated on
ENVFLEET_BFCL_SRC): argv[1] is the folder that holds bfcl_eval (berkeley-function-call-leaderboard in
a gorilla checkout). Reads JSON Lines on stdin, one entry each:
  {"id", "initial_config", "involved_classes", "long_context": bool, "gold": [[call, ...], ...]}
and writes one line per entry:
  {"id", "turns": [{"results": [str, ...], "state": {Class: public state}, "calls": [{"name", "arguments"}]}], "python": version}
where "calls" are the call strings as named arguments (positional ones named from the method's
signature), for the test to submit as an agent's tool calls.
Execution is upstream's execute_multi_turn_func_call (one instance per class per entry, loaded with
_load_scenario(deepcopy(config)), each call string rewritten and evaluated as BFCL does). The public
state is every attribute not starting with "_" of each instance, objects as their public vars
without "parent" links: the same reading envfleet's router makes.
"""
import ast
import inspect
import json
import sys
import types

sys.path.insert(0, sys.argv[1])
try:
    import mpmath  # noqa: F401
except ImportError:
    # Only MathAPI.logarithm uses it. The parity test puts the mpmath it gives the sandbox on PYTHONPATH;
    # without one, envfleet skips the entries whose gold calls logarithm.
    stub = types.ModuleType('mpmath')
    def _missing(*_a, **_k):
        raise ImportError('mpmath is not installed for this CPython')
    stub.log = _missing
    stub.mp = types.SimpleNamespace(dps=15)
    sys.modules['mpmath'] = stub

from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import execute_multi_turn_func_call  # noqa: E402


def public(value):
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else json.dumps(k) if isinstance(k, (int, float, bool)) or k is None else str(k)): public(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((public(v) for v in value), key=repr)
    if hasattr(value, '__dict__') and not isinstance(value, type):
        return {k: public(v) for k, v in vars(value).items() if not k.startswith('_') and k != 'parent'}
    if hasattr(value, 'isoformat'):
        return value.isoformat()
    return str(value)


def named(call, instances):
    """A call string as {name, arguments}: literal arguments, positional ones named from the signature."""
    node = ast.parse(call.strip(), mode='eval').body
    name = node.func.id
    method = next(getattr(i, name) for i in instances.values() if hasattr(i, name))
    params = [p for p in inspect.signature(method).parameters]
    arguments = {params[i]: ast.literal_eval(a) for i, a in enumerate(node.args)}
    arguments.update({k.arg: ast.literal_eval(k.value) for k in node.keywords})
    return {'name': name, 'arguments': arguments}


def main():
    version = '%d.%d.%d' % sys.version_info[:3]
    for line in sys.stdin:
        if not line.strip():
            continue
        entry = json.loads(line)
        turns = []
        for calls in entry['gold']:
            results, instances = execute_multi_turn_func_call(
                calls, entry['initial_config'], entry['involved_classes'], 'envfleet_parity', entry['id'],
                long_context=entry['long_context'], is_evaL_run=False)
            state = {name: {k: public(v) for k, v in vars(inst).items() if not k.startswith('_')} for name, inst in instances.items()}
            turns.append({'results': results, 'state': state, 'calls': [named(c, instances) for c in calls]})
        sys.stdout.write(json.dumps({'id': entry['id'], 'turns': turns, 'python': version}, allow_nan=True) + '\n')
        sys.stdout.flush()


main()
