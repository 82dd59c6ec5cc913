#!/usr/bin/env python3
"""Per-tool medians for the CPython baseline, with the baseline's own create() and call()
(imported from the baseline kit's cpython-baseline.py, unchanged), plus a no-op tool call
through the same call() path (the cost of the dispatch and JSON boundary alone). The kit is
$ENVFLEET_BASELINES, or shared/baselines/ next to the checkout (as in bench/sandbox/common.ts).

Usage: cpython-per-tool.py ENV.py CLASS STATE.json CALLS.jsonl
Prints one JSON object: {"perTool": {tool: {"n", "medianUs"}}, "noopMedianUs", "python"}."""
import importlib.util, json, os, platform, sys, time

BASELINES = os.environ.get("ENVFLEET_BASELINES", "").strip() or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "baselines")
BASELINE = os.path.join(BASELINES, "cpython-baseline.py")
if not os.path.isfile(BASELINE):
    sys.exit(f"cpython-per-tool.py: {BASELINE} does not exist; put the baseline kit in shared/baselines/ "
             "next to the checkout, or set ENVFLEET_BASELINES to its directory")
spec = importlib.util.spec_from_file_location("cpython_baseline", BASELINE)
base = importlib.util.module_from_spec(spec)
spec.loader.exec_module(base)


class Noop:
    def __init__(self, cfg):
        pass

    def ping(self, **kwargs):
        return {"success": True}


def main(argv):
    code = open(argv[1]).read()
    env = base.create(code, argv[2], json.load(open(argv[3])))
    calls = [json.loads(l) for l in open(argv[4]) if l.strip()]
    per = {}
    for c in calls:
        a = json.dumps(c["arguments"])
        s = time.perf_counter()
        base.call(env, c["tool"], a)
        per.setdefault(c["tool"], []).append(time.perf_counter() - s)
    noop = Noop({})
    lat = []
    for i in range(20000):
        a = json.dumps({"a": i})
        s = time.perf_counter()
        base.call(noop, "ping", a)
        lat.append(time.perf_counter() - s)
    med = lambda xs: sorted(xs)[len(xs) // 2] * 1e6
    print(json.dumps({
        "perTool": {k: {"n": len(v), "medianUs": round(med(v), 2)} for k, v in per.items()},
        "noopMedianUs": round(med(lat[2000:]), 2),
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main(sys.argv)
