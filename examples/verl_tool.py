"""verl recipe: envfleet's tools as verl tools, and the episode's reward through an interaction.

Matched against verl's own code (volcengine/verl main, 0.8.0.dev, January 2026):
`verl/tools/base_tool.py` (BaseTool), `verl/interactions/base.py` (BaseInteraction) and
`verl/experimental/agent_loop/tool_agent_loop.py` (ToolAgentLoop). What that loop does, and what this file
does about it:

- One BaseTool object per tool *name* (from the tool config), shared by every trajectory. For each tool call
  the loop runs `create(create_kwargs=row.extra_info.tools_kwargs[name].create_kwargs)`, then
  `execute(instance_id, arguments, agent_data=…)`, then `release(instance_id)`: an instance lives for one
  call, not for a trajectory. So the envfleet session (one per trajectory) is keyed by the trajectory's
  `agent_data.request_id` and shared by all the tools of that trajectory (module-level `SESSIONS`); the first
  call opens it with `create_kwargs.scenario_id` (rl-verl.json puts `run_id`, `scenario_id`,
  `environment_id` there for every tool).
- When the model answers without a tool call, the loop asks the interaction named by
  `extra_info.interaction_kwargs.name` ("envfleet" in rl-verl.json) for the next user turn, with the same
  `request_id`. `EnvfleetInteraction.generate_response` verifies the session (the scenario's checks on the
  final state) and ends the trajectory; its score goes to `turn_scores`, which verl's reward loop hands to the
  reward function inside `extra_info` (examples/verl_reward.py reads it).
- `calc_reward` verifies the trajectory's session too, for code that calls it (ToolAgentLoop does not).

Run with the real verl (after `envfleet serve --run NAME` and `envfleet export --run NAME --format verl`):

    # one tool-config entry per tool of the environment you train on (same-name tools must share a schema):
    python examples/verl_tool.py --write-config DIR/rl-verl.json --url http://127.0.0.1:8090 > tools.yaml
    # or edit examples/verl_tool_config.yaml (the demo's library environment)
    PYTHONPATH=examples python3 -m verl.trainer.main_ppo \
        data.train_files=DIR/rl-verl.json data.val_files=DIR/rl-verl.json data.return_raw_chat=True \
        actor_rollout_ref.rollout.mode=async actor_rollout_ref.rollout.multi_turn.enable=True \
        actor_rollout_ref.rollout.multi_turn.format=hermes \
        actor_rollout_ref.rollout.agent.default_agent_loop=tool_agent \
        actor_rollout_ref.rollout.multi_turn.tool_config_path=tools.yaml \
        actor_rollout_ref.rollout.multi_turn.interaction_config_path=examples/verl_interaction_config.yaml \
        custom_reward_function.path=examples/verl_reward.py custom_reward_function.name=compute_score \
        ...   # reward_model.use_reward_loop stays True (the default): that reward loop passes turn_scores to compute_score

(docs/formats.md "rl-verl.json — verl" has the other data settings.) The server's address comes from the
tool's / interaction's `config.url` (default: ENVFLEET_URL, else http://127.0.0.1:8090); a token from
`config.token` or ENVFLEET_SERVE_TOKEN.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any, Optional
from uuid import uuid4

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from envfleet_client import EnvfleetError, EnvfleetSession  # noqa: E402

try:
    from verl.interactions.base import BaseInteraction
    from verl.tools.base_tool import BaseTool
    from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse
except ImportError as e:  # pragma: no cover - only without verl
    if __name__ != "__main__":
        raise ImportError("examples/verl_tool.py needs verl (pip install verl): " + str(e)) from e
    # --write-config only reads the export, so it runs before verl is installed: the classes below are not used then.
    BaseInteraction = BaseTool = object  # type: ignore[assignment,misc]
    OpenAIFunctionToolSchema = ToolResponse = None  # type: ignore[assignment,misc]

DEFAULT_URL = "http://127.0.0.1:8090"


class _Trajectory:
    """The envfleet session of one trajectory, and a lock so parallel tool calls of a turn (ToolAgentLoop
    gathers them) open it once and reach it one at a time, in the order the model wrote them."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.session: Optional[EnvfleetSession] = None
        self.created = time.monotonic()


# request_id → the trajectory's session. Tools and the interaction of one trajectory run in the same agent
# loop worker process, so a module-level table is where they meet.
SESSIONS: dict[str, _Trajectory] = {}
# A trajectory cut short (response length, turn limit) never reaches the interaction: its entry is dropped
# after this long, as the server's --idle-timeout ends its session.
FORGET_AFTER_S = float(os.environ.get("ENVFLEET_TRAJECTORY_TTL_S", "3600"))


def _trajectory(key: str) -> _Trajectory:
    now = time.monotonic()
    for old in [k for k, v in SESSIONS.items() if now - v.created > FORGET_AFTER_S]:
        SESSIONS.pop(old, None)
    t = SESSIONS.get(key)
    if t is None:
        t = SESSIONS[key] = _Trajectory()
    return t


def _settings(config: Optional[dict[str, Any]]) -> tuple[str, Optional[str]]:
    config = config or {}
    return str(config.get("url") or os.environ.get("ENVFLEET_URL") or DEFAULT_URL), config.get("token") or None


async def _open(t: _Trajectory, url: str, token: Optional[str], scenario_id: Optional[str]) -> EnvfleetSession:
    if t.session is None:
        if not scenario_id:
            raise ValueError("no scenario_id: the row's extra_info.tools_kwargs[TOOL].create_kwargs must carry it (rl-verl.json does)")
        s = EnvfleetSession(url, token=token)
        await asyncio.to_thread(s.seed, scenario_id)
        t.session = s
    return t.session


async def finish_trajectory(key: str, url: str, token: Optional[str], scenario_id: Optional[str]) -> dict[str, Any]:
    """Verifies the trajectory's session (opening it first if the model called no tool: the checks then run
    on the initial state) and forgets it. Returns what POST /verify answered."""
    t = _trajectory(key)
    async with t.lock:
        s = await _open(t, url, token, scenario_id)
        result = s.result or await asyncio.to_thread(s.verify)
    SESSIONS.pop(key, None)
    return result


def trajectory_key(instance_id: str, kwargs: dict[str, Any]) -> str:
    """ToolAgentLoop passes `agent_data` (with the trajectory's `request_id`) to execute; rollouts that
    create one instance per trajectory (verl's older SGLang rollout) pass its id as instance_id."""
    agent_data = kwargs.get("agent_data")
    request_id = getattr(agent_data, "request_id", None)
    return str(request_id) if request_id else instance_id


class EnvfleetTool(BaseTool):
    """One envfleet tool (its name and schema come from the tool config). Calls go to the trajectory's
    session on `envfleet serve`; the result text is exactly what an envfleet episode gives the model."""

    def __init__(self, config: dict, tool_schema: OpenAIFunctionToolSchema):
        super().__init__(config, tool_schema)
        self.url, self.token = _settings(config)
        self._instances: dict[str, dict[str, Any]] = {}  # instance_id → create_kwargs (one tool call)

    async def create(self, instance_id: Optional[str] = None, **kwargs) -> tuple[str, ToolResponse]:
        instance_id = instance_id or str(uuid4())
        create_kwargs = kwargs.get("create_kwargs")
        self._instances[instance_id] = dict(create_kwargs if isinstance(create_kwargs, dict) else kwargs)
        return instance_id, ToolResponse()

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs) -> tuple[ToolResponse, float, dict]:
        key = trajectory_key(instance_id, kwargs)
        scenario_id = self._instances.get(instance_id, {}).get("scenario_id")
        t = _trajectory(key)
        async with t.lock:
            try:
                s = await _open(t, self.url, self.token, scenario_id)
                text = await asyncio.to_thread(s.call, self.name, parameters)
            except EnvfleetError as e:  # the session cannot take calls (ended, over capacity, …): tell the model
                text = json.dumps({"success": False, "error": str(e), "code": e.code})
        # The step reward is 0: the reward is the checks on the final state, once, at the end.
        return ToolResponse(text=text), 0.0, {}

    async def calc_reward(self, instance_id: str, **kwargs) -> float:
        """Ends the trajectory's session and returns the fraction of the scenario's checks true."""
        scenario_id = self._instances.get(instance_id, {}).get("scenario_id") or kwargs.get("scenario_id")
        result = await finish_trajectory(trajectory_key(instance_id, kwargs), self.url, self.token, scenario_id)
        return float(result["reward"])

    async def release(self, instance_id: str, **kwargs) -> None:
        # Only the call's instance: the session outlives it (the interaction or calc_reward ends it).
        self._instances.pop(instance_id, None)


class EnvfleetInteraction(BaseInteraction):
    """Runs when the model answers without a tool call: verifies the trajectory's session, returns the
    reward as the turn score (verl appends it to `turn_scores`) and ends the trajectory."""

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.url, self.token = _settings(config)
        self._kwargs: dict[str, dict[str, Any]] = {}

    async def start_interaction(self, instance_id: Optional[str] = None, **kwargs) -> str:
        instance_id = instance_id or str(uuid4())
        self._kwargs[instance_id] = dict(kwargs)  # interaction_kwargs: run_id, scenario_id, environment_id, mode
        return instance_id

    async def generate_response(self, instance_id: str, messages: list[dict[str, Any]], **kwargs) -> tuple[bool, str, float, dict[str, Any]]:
        scenario_id = kwargs.get("scenario_id") or self._kwargs.get(instance_id, {}).get("scenario_id")
        result = await finish_trajectory(instance_id, self.url, self.token, scenario_id)
        env = result.get("envfleet", {})
        return True, "The episode has ended.", float(result["reward"]), {"solved": bool(env.get("solved")), "calls": env.get("calls")}

    async def calculate_score(self, instance_id: Optional[str] = None, **kwargs) -> float:
        return 0.0  # the score is the one generate_response returned

    async def finalize_interaction(self, instance_id: Optional[str] = None, **kwargs) -> None:
        if instance_id is not None:
            self._kwargs.pop(instance_id, None)


def _verl_property(tool: str, name: str, schema: Any, notes: list[str]) -> dict[str, Any]:
    """A parameter's JSON Schema as verl's OpenAIFunctionPropertySchema takes it (`type: str`, `description:
    str | None`, `enum: list[str] | None`; pydantic v2, which converts nothing): a list of types or an anyOf
    becomes its first type other than null, an enum of other values than strings is said in the description
    instead; what changed is said in `notes`. verl shows the policy only those three keys (its loop renders
    `model_dump()` of the schema), so the description keeps what the other keys said."""
    prop = dict(schema) if isinstance(schema, dict) else {}
    declared = prop.get("type")
    types = [t for t in (declared if isinstance(declared, list) else [declared]) if isinstance(t, str)]
    member_values: list[Any] = []
    typed = bool(types)
    for key in ("anyOf", "oneOf"):
        if isinstance(prop.get(key), list):
            for member in prop[key]:
                if not isinstance(member, dict):
                    continue
                t = member.get("type")
                if not typed:
                    types.extend(x for x in (t if isinstance(t, list) else [t]) if isinstance(x, str))
                if isinstance(member.get("enum"), list):
                    member_values.extend(member["enum"])
                elif "const" in member:
                    member_values.append(member["const"])
    named = [t for t in dict.fromkeys(types) if t != "null"]
    said: list[str] = []
    if len(named) > 1:
        said.append("of type " + " or ".join(named))
    if "null" in types and named:
        said.append("may be null")
    enum = prop.get("enum")
    if isinstance(enum, list) and not all(isinstance(v, str) for v in enum):
        said.append("one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in enum))
        del prop["enum"]
    elif enum is None and member_values:
        # values an anyOf/oneOf member allows: verl shows the policy no anyOf, so they are said
        shown = list(dict.fromkeys(json.dumps(v, ensure_ascii=False) for v in member_values))
        said.append("values allowed include " + ", ".join(shown))
    if not isinstance(declared, str):
        prop["type"] = named[0] if named else ("null" if types else "string")
    if said:
        notes.append(f"{tool}.{name}: {'; '.join(said)} (written as type {prop['type']!r}{', without enum' if 'enum' not in prop and enum is not None else ''})")
    description = prop.get("description")
    text = description if isinstance(description, str) else ""
    if said:
        text = (text.rstrip() + " " if text.strip() else "") + "(" + "; ".join(said) + ")"
    if text or description is not None:
        prop["description"] = text
    return prop


def _verl_tool(tool: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """A tool as verl's OpenAIFunctionToolSchema validates it: a description (required there), parameters with
    `type`, `properties` and `required` (required there too), each property as _verl_property writes it."""
    function = dict(tool["function"])
    params = dict(function.get("parameters") or {})
    properties = params.get("properties") if isinstance(params.get("properties"), dict) else {}
    params["type"] = params.get("type") if isinstance(params.get("type"), str) else "object"
    params["properties"] = {k: _verl_property(function["name"], k, v, notes) for k, v in properties.items()}
    params["required"] = [r for r in params.get("required") or [] if isinstance(r, str)]
    function["description"] = function.get("description") if isinstance(function.get("description"), str) else ""
    function["parameters"] = params
    return {**tool, "type": "function", "function": function}


def tool_config(rows: list[dict[str, Any]], url: str, environment_id: Optional[str] = None, notes: Optional[list[str]] = None) -> dict[str, Any]:
    """A verl tool config (`tools: [{class_name, config, tool_schema}]`) with each tool of the rows'
    environments (or of one), from their `extra_info.tools`, in the shape verl's schema validates
    (_verl_tool; each change said in `notes`). Tools of different environments that share a name must share
    a schema (verl's tool names are global)."""
    by_name: dict[str, dict[str, Any]] = {}
    for row in rows:
        info = row["extra_info"]
        if environment_id and info["environment_id"] != environment_id:
            continue
        for tool in json.loads(info["tools"]):
            name = tool["function"]["name"]
            if name in by_name and by_name[name] != tool:
                raise ValueError(f"tool {name!r} has different schemas in different environments: pass --environment")
            by_name[name] = tool
    said = notes if notes is not None else []
    entries = [{"class_name": "verl_tool.EnvfleetTool", "config": {"type": "native", "url": url}, "tool_schema": _verl_tool(t, said)} for t in by_name.values()]
    return {"tools": entries}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Writes a verl tool config for an rl-verl.json export (JSON, which is YAML).")
    parser.add_argument("--write-config", required=True, metavar="RL_VERL_JSON")
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--environment", default=None, help="only this environment_id's tools")
    a = parser.parse_args()
    with open(a.write_config, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    changed: list[str] = []
    print(json.dumps(tool_config(lines, a.url, a.environment, changed), indent=2, ensure_ascii=False))
    if changed:
        print(f"verl_tool.py: verl takes one type per parameter and enums of strings only; {len(changed)} parameter(s) written otherwise, said in their descriptions:", file=sys.stderr)
        for line in changed:
            print("  " + line, file=sys.stderr)
