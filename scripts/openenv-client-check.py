#!/usr/bin/env python3
"""Runs OpenEnv's own Python clients, unmodified, against an envfleet environment server.

OpenEnv (meta-pytorch/OpenEnv) is not part of envfleet: point --openenv-src (or ENVFLEET_OPENENV_SRC) at a
checkout, or at its `src` folder. This script only imports and uses it:

  1. GenericEnvClient(url).sync(): reset(scenario_id) -> step(call_tool) for each --call -> state -> step(finish),
     then state again;
  2. MCPToolClient(url).sync(): reset(scenario_id) -> list_tools -> the first --call as OpenEnv's
     {"type": "mcp"} message (tools/list, tools/call; no public client method sends it, so it goes through the
     client's own _send_and_receive) -> the other calls with call_tool -> an unknown tool (must raise) ->
     state -> step(finish);
  3. what `openenv validate --url URL` runs (openenv.cli._validation.validate_running_environment; the
     CLI itself needs typer, which is not imported here).

With --stop-check instead: two GenericEnvClient episodes (reset, the first --call) wait, printing
"WAITING FOR THE STOP"; once a line comes on stdin (the server has been stopped meanwhile), the step of a client
idle at the stop must raise (the socket is closed), and a step sent just before the stop (which the stopping
server no longer answers: the client reads the message the stop sent as its reply) must raise RuntimeError with
SESSION_ERROR. Neither may return a StepResult: that would be a reward for an episode the server cut.

With --too-large-check instead: a GenericEnvClient episode (reset) sends a step over the server's 16 MiB message
cap. The step must raise, saying the limit (16 MiB), whether the client reads the server's error message as its
reply (RuntimeError "Server error: ... (code: VALIDATION_ERROR)") or meets the close (1009 and its reason); the
next step must raise too (the server closed the connection).

It prints what the clients got and exits 1 on a mismatch, 2 on a usage error, 3 when OpenEnv cannot be
imported (--probe only checks that, and prints why).

Needs Python >= 3.10 with pydantic 2, requests and websockets. OpenEnv's package __init__ files import its
server side (fastapi); when that import fails, the client modules are loaded without running those
__init__ files (they do not need them). websockets older than 13 has no websockets.asyncio.client (which
OpenEnv's EnvClient imports); its legacy asyncio client has the same calls (connect(url, open_timeout,
max_size), send, recv, close) and is used under that name, with a note.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import types
from pathlib import Path
from typing import Any, Callable

FINISH_TOOL = "__envfleet_finish__"
NOTES: list[str] = []


def _openenv_src(given: str | None) -> Path:
    if not given:
        raise ImportError("no OpenEnv checkout: pass --openenv-src DIR or set ENVFLEET_OPENENV_SRC")
    root = Path(given).expanduser().resolve()
    for candidate in (root / "src", root):
        if (candidate / "openenv" / "core" / "env_client.py").is_file():
            return candidate
    raise ImportError(f"{root} is not an OpenEnv checkout (no src/openenv/core/env_client.py)")


def _websockets_compat() -> None:
    try:
        importlib.import_module("websockets.asyncio.client")
        return
    except ImportError:
        pass
    legacy = importlib.import_module("websockets.legacy.client")  # websockets 10-12
    ws = importlib.import_module("websockets")
    pkg = types.ModuleType("websockets.asyncio")
    pkg.__path__ = []
    client = types.ModuleType("websockets.asyncio.client")
    client.connect = legacy.connect  # type: ignore[attr-defined]
    client.ClientConnection = legacy.WebSocketClientProtocol  # type: ignore[attr-defined]
    pkg.client = client  # type: ignore[attr-defined]
    sys.modules["websockets.asyncio"] = pkg
    sys.modules["websockets.asyncio.client"] = client
    NOTES.append(f"websockets {getattr(ws, '__version__', '?')} has no websockets.asyncio.client: its legacy asyncio client stands in under that name")


def load_openenv(src: Path, extra_paths: list[str]) -> dict[str, Any]:
    """Imports OpenEnv's clients and its validator; returns them with how they were imported."""
    sys.path.insert(0, str(src))
    for p in extra_paths:
        sys.path.append(p)  # after the interpreter's own packages: they win
    pydantic = importlib.import_module("pydantic")
    if not str(getattr(pydantic, "VERSION", "0")).startswith("2"):
        raise ImportError(f"OpenEnv needs pydantic 2; this interpreter has pydantic {pydantic.VERSION} ({pydantic.__file__})")
    importlib.import_module("requests")
    _websockets_compat()
    how = "package imports"
    try:
        generic = importlib.import_module("openenv.core.generic_client")
    except ImportError as err:
        # The package __init__ files pull in the server (fastapi): load the client modules without them.
        how = f"client modules only (the openenv.core package __init__ failed: {err})"
        for name in [m for m in sys.modules if m == "openenv" or m.startswith("openenv.")]:
            del sys.modules[name]
        for name, rel in (("openenv", "openenv"), ("openenv.core", "openenv/core"), ("openenv.core.env_server", "openenv/core/env_server")):
            module = types.ModuleType(name)
            module.__path__ = [str(src / rel)]
            module.__package__ = name
            sys.modules[name] = module
        generic = importlib.import_module("openenv.core.generic_client")
    mcp = importlib.import_module("openenv.core.mcp_client")
    mcp_types = importlib.import_module("openenv.core.env_server.mcp_types")
    validation = importlib.import_module("openenv.cli._validation")
    return {
        "GenericEnvClient": generic.GenericEnvClient,
        "MCPToolClient": mcp.MCPToolClient,
        "CallToolAction": mcp_types.CallToolAction,
        "validate_running_environment": validation.validate_running_environment,
        "how": how,
        "versions": {"python": sys.version.split()[0], "pydantic": pydantic.VERSION, "websockets": getattr(importlib.import_module("websockets"), "__version__", "?")},
    }


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def check(self, ok: bool, what: str, got: Any = None) -> bool:
        shown = "" if got is None else f": {_short(got)}"
        print(f"  {'ok      ' if ok else 'MISMATCH'} {what}{shown}", flush=True)
        if not ok:
            self.failed.append(what)
        return ok


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def _parse_call(text: str) -> tuple[str, dict[str, Any]]:
    name, sep, args = text.partition("=")
    parsed = json.loads(args) if sep else {}
    if not name or not isinstance(parsed, dict):
        raise SystemExit(f"--call {text!r}: write NAME or NAME=JSON_OBJECT")
    return name, parsed


def run_generic(oe: dict[str, Any], url: str, scenario: str, calls: list[tuple[str, dict[str, Any]]], expect_reward: float | None, c: Checks) -> None:
    print("GenericEnvClient(base_url).sync():", flush=True)
    with oe["GenericEnvClient"](base_url=url).sync() as env:
        r = env.reset(scenario_id=scenario)
        obs = r.observation
        c.check(isinstance(obs, dict) and r.reward is None and r.done is False, "reset: an observation dict, reward None, done False", {"reward": r.reward, "done": r.done, "keys": sorted(obs) if isinstance(obs, dict) else type(obs).__name__})
        tools = [t.get("name") for t in obs.get("tools", [])] if isinstance(obs, dict) else []
        c.check(bool(tools) and isinstance(obs.get("task"), str), "reset: a task and the tools", {"task": obs.get("task"), "tools": tools})
        if not calls:
            calls = [(tools[0], {})] if tools else []
        for name, args in calls:
            r = env.step({"type": "call_tool", "tool_name": name, "arguments": args})
            o = r.observation
            shaped = o.get("tool_name") == name and ((isinstance(o.get("result"), dict) and "content" in o["result"] and o.get("error") is None) or (o.get("result") is None and isinstance(o.get("error"), dict)))
            c.check(shaped and r.reward is None and r.done is False, f"step call_tool {name}: tool_name, result or error; reward None, done False", {"reward": r.reward, "done": r.done, "result": (o.get("result") or {}).get("data") if isinstance(o.get("result"), dict) else None, "error": o.get("error")})
        st = env.state()
        c.check(isinstance(st, dict) and st.get("step_count") == len(calls) and st.get("done") is False and bool(st.get("episode_id")), f"state: step_count {len(calls)}, done False, an episode_id", st)
        r = env.step({"type": "call_tool", "tool_name": FINISH_TOOL, "arguments": {}})
        reward_ok = isinstance(r.reward, (int, float)) and 0 <= r.reward <= 1 and (expect_reward is None or abs(r.reward - expect_reward) < 1e-9)
        c.check(r.done is True and reward_ok, f"step {FINISH_TOOL}: done True, reward in [0, 1]{'' if expect_reward is None else f' = {expect_reward}'}", {"reward": r.reward, "done": r.done, "metadata": r.observation.get("metadata")})
        st = env.state()
        c.check(st.get("done") is True and st.get("reward") == r.reward, "state after the end: done True, the same reward", st)


def run_mcp(oe: dict[str, Any], url: str, scenario: str, calls: list[tuple[str, dict[str, Any]]], expect_reward: float | None, c: Checks) -> None:
    print("MCPToolClient(base_url).sync():", flush=True)
    with oe["MCPToolClient"](base_url=url).sync() as env:
        r = env.reset(scenario_id=scenario)
        meta = getattr(r.observation, "metadata", {}) or {}
        c.check(r.done is False and isinstance(meta.get("session_id"), str), "reset: done False, observation.metadata has session_id", {"done": r.done, "metadata_keys": sorted(meta)})
        tools = env.list_tools()
        names = [t.name for t in tools]
        c.check(bool(names) and all(isinstance(t.input_schema, dict) for t in tools), "list_tools: Tool(name, description, input_schema)", names)
        if meta.get("tools"):
            c.check(sorted(names) == sorted(meta["tools"]), "list_tools: the tools of reset's metadata", meta["tools"])
        if not calls:
            calls = [(names[0], {})] if names else []

        # OpenEnv's {"type": "mcp"} message: JSON-RPC beside step, on this connection's episode.
        send: Callable[[dict[str, Any]], dict[str, Any]] = env._send_and_receive
        reply = send({"type": "mcp", "data": {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}})
        listed = [t.get("name") for t in ((reply.get("data") or {}).get("result") or {}).get("tools", [])]
        c.check(reply.get("type") == "mcp" and sorted(listed) == sorted(names), '{"type": "mcp"} tools/list: the same tools', reply.get("data"))
        mcp_calls = calls[:1]
        for name, args in mcp_calls:
            reply = send({"type": "mcp", "data": {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": args}}})
            result = (reply.get("data") or {}).get("result") or {}
            c.check(reply.get("type") == "mcp" and isinstance(result.get("content"), list) and "isError" in result, f'{{"type": "mcp"}} tools/call {name}: content, structuredContent, isError', result)
        for name, args in calls[len(mcp_calls):]:
            try:
                value = env.call_tool(name, **args)
                c.check(True, f"call_tool {name}", value)
            except RuntimeError as err:
                c.check(False, f"call_tool {name} raised", str(err))
        try:
            value = env.call_tool("__no_such_tool__")
            c.check(False, "call_tool of an unknown tool raises RuntimeError", value)
        except RuntimeError as err:
            c.check("tool_not_found" in str(err), "call_tool of an unknown tool raises RuntimeError (tool_not_found)", str(err))
        st = env.state()
        steps = len(calls) - len(mcp_calls) + 1  # the unknown tool is a step; mcp calls are not
        c.check(getattr(st, "step_count", None) == steps and bool(getattr(st, "episode_id", None)), f"state: State(episode_id, step_count {steps})", {"episode_id": getattr(st, "episode_id", None), "step_count": getattr(st, "step_count", None)})
        r = env.step(oe["CallToolAction"](tool_name=FINISH_TOOL, arguments={}))
        reward_ok = isinstance(r.reward, (int, float)) and 0 <= r.reward <= 1 and (expect_reward is None or abs(r.reward - expect_reward) < 1e-9)
        c.check(r.done is True and reward_ok, f"step(CallToolAction({FINISH_TOOL})): done True, reward in [0, 1]{'' if expect_reward is None else f' = {expect_reward}'}", {"reward": r.reward, "done": r.done, "observation": type(r.observation).__name__})


def run_stop_check(oe: dict[str, Any], url: str, scenario: str, calls: list[tuple[str, dict[str, Any]]], c: Checks) -> None:
    print("GenericEnvClient(base_url).sync() at the server's stop:", flush=True)
    name, args = calls[0] if calls else (None, {})
    clients = {}
    for role in ("idle", "in flight"):
        env = oe["GenericEnvClient"](base_url=url).sync()
        env.connect()
        obs = env.reset(scenario_id=scenario).observation
        tool = name or [t.get("name") for t in obs.get("tools", [])][0]
        r = env.step({"type": "call_tool", "tool_name": tool, "arguments": args})
        c.check(r.done is False and r.reward is None, f"{role}: a step before the stop, done False", {"done": r.done, "reward": r.reward})
        clients[role] = env
    print("WAITING FOR THE STOP", flush=True)
    sys.stdin.readline()
    action = {"type": "call_tool", "tool_name": tool, "arguments": args}

    def outcome(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
        try:
            return fn(), None
        except Exception as err:  # what the client raises is what is checked
            return None, err

    r, err = outcome(lambda: clients["idle"].step(action))
    c.check(err is not None, "idle at the stop: its next step raises, no StepResult", {"raised": f"{type(err).__module__}.{type(err).__name__}: {err}"} if err else {"done": r.done, "reward": r.reward})

    async def already_sent(_message: dict[str, Any]) -> None:
        return None

    # The send had gone out just before the stop: the client's _send_and_receive reads the next message on the socket.
    clients["in flight"]._async._send = already_sent
    r, err = outcome(lambda: clients["in flight"].step(action))
    c.check(isinstance(err, RuntimeError) and "SESSION_ERROR" in str(err), "in flight at the stop: the step raises RuntimeError (SESSION_ERROR), no StepResult", {"raised": f"{type(err).__name__}: {err}"} if err else {"done": r.done, "reward": r.reward})
    for env in clients.values():
        try:
            env.close()
        except Exception:
            pass


MAX_WS_MESSAGE_BYTES = 16 * 1024 * 1024


def run_too_large_check(oe: dict[str, Any], url: str, scenario: str, c: Checks) -> None:
    print("GenericEnvClient(base_url).sync(), a step over the server's 16 MiB message cap:", flush=True)
    env = oe["GenericEnvClient"](base_url=url).sync()
    env.connect()

    def outcome(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
        try:
            return fn(), None
        except Exception as err:  # what the client raises is what is checked
            return None, err

    try:
        obs = env.reset(scenario_id=scenario).observation
        tool = [t.get("name") for t in obs.get("tools", [])][0]
        big = {"type": "call_tool", "tool_name": tool, "arguments": {"blob": "x" * (MAX_WS_MESSAGE_BYTES + 1)}}
        r, err = outcome(lambda: env.step(big))
        raised = f"{type(err).__module__}.{type(err).__name__}: {err}" if err else None
        c.check(err is not None, "a step over the cap raises, no StepResult", {"raised": raised} if err else {"done": r.done, "reward": r.reward})
        print(f"  raised: {raised}", flush=True)
        c.check(err is not None and "16 MiB" in str(err), "what it raises says the limit (16 MiB)", raised)
        r, err = outcome(lambda: env.step({"type": "call_tool", "tool_name": tool, "arguments": {}}))
        c.check(err is not None, "the next step raises: the server closed the connection", {"raised": f"{type(err).__module__}.{type(err).__name__}: {err}"} if err else {"done": r.done, "reward": r.reward})
    finally:
        try:
            env.close()
        except Exception:
            pass


def run_validate(oe: dict[str, Any], url: str, c: Checks) -> None:
    print("openenv validate --url (validate_running_environment):", flush=True)
    report = oe["validate_running_environment"](url)
    for criterion in report.get("criteria", []):
        c.check(bool(criterion.get("passed")) or not criterion.get("required", True), f"validate {criterion.get('id', criterion.get('name', '?'))}", {k: criterion.get(k) for k in ("actual", "details") if criterion.get(k) is not None} or None)
    c.check(report.get("passed") is True, "validate: passed", {k: report.get(k) for k in ("mode", "standard_version", "standard_profile", "summary")})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="the envfleet server, e.g. http://127.0.0.1:8000")
    ap.add_argument("--scenario", help="a scenario id of the served run")
    ap.add_argument("--call", action="append", default=[], metavar="NAME=JSON", help="a tool call of the episode (repeatable); default: the first tool with {}")
    ap.add_argument("--expect-reward", type=float, help="the reward the finish action must give after the calls")
    ap.add_argument("--openenv-src", default=os.environ.get("ENVFLEET_OPENENV_SRC"), help="an OpenEnv checkout (default: $ENVFLEET_OPENENV_SRC)")
    ap.add_argument("--extra-path", action="append", default=[], metavar="DIR", help="appended to sys.path, after the interpreter's own packages (e.g. a websockets from the system)")
    ap.add_argument("--skip", action="append", default=[], choices=["generic", "mcp", "validate"])
    ap.add_argument("--probe", action="store_true", help="only check that OpenEnv's clients import here")
    ap.add_argument("--stop-check", action="store_true", help="check what the clients get when the server stops during their episodes (see above)")
    ap.add_argument("--too-large-check", action="store_true", help="check what a client gets for a step over the server's 16 MiB message cap (see above)")
    a = ap.parse_args()
    try:
        oe = load_openenv(_openenv_src(a.openenv_src), a.extra_path)
    except (ImportError, AttributeError) as err:
        print(json.dumps({"importable": False, "python": sys.executable, "reason": f"{type(err).__name__}: {err}"}))
        return 3
    print(json.dumps({"importable": True, "python": sys.executable, **oe["versions"], "openenv_import": oe["how"], "notes": NOTES}), flush=True)
    if a.probe:
        return 0
    if not a.url or not a.scenario:
        ap.error("--url and --scenario are needed (or --probe)")
    calls = [_parse_call(t) for t in a.call]
    c = Checks()
    if a.stop_check or a.too_large_check:
        try:
            if a.stop_check:
                run_stop_check(oe, a.url, a.scenario, calls, c)
            else:
                run_too_large_check(oe, a.url, a.scenario, c)
        except Exception as err:
            c.check(False, f"{'stop-check' if a.stop_check else 'too-large-check'}: the client raised {type(err).__name__}", str(err))
        print(f"{'FAILED' if c.failed else 'PASSED'}: {len(c.failed)} mismatch(es){': ' + '; '.join(c.failed) if c.failed else ''}", flush=True)
        return 1 if c.failed else 0
    runs = [("generic", lambda: run_generic(oe, a.url, a.scenario, calls, a.expect_reward, c)), ("mcp", lambda: run_mcp(oe, a.url, a.scenario, calls, a.expect_reward, c)), ("validate", lambda: run_validate(oe, a.url, c))]
    for name, run in runs:
        if name in a.skip:
            continue
        try:
            run()
        except Exception as err:  # a client raising is a mismatch too: say what and go on
            c.check(False, f"{name}: the client raised {type(err).__name__}", str(err))
    print(f"{'FAILED' if c.failed else 'PASSED'}: {len(c.failed)} mismatch(es){': ' + '; '.join(c.failed) if c.failed else ''}", flush=True)
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
