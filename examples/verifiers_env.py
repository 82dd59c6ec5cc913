"""verifiers recipe: a StatefulToolEnv whose tools are an envfleet session's, and whose reward is verify's.

Matched against PrimeIntellect-ai/verifiers v0.3.0 (`verifiers/envs/stateful_tool_env.py`, `tool_env.py`,
`multiturn_env.py`, `environment.py`, `rubrics/rubric.py`, `decorators.py`); on main these moved to
`verifiers/legacy/envs/` unchanged in these respects. What it relies on:

- `Environment.init_state` gives the model the row's own tools when `info["tool_defs"]` is set, which
  rl-prompts.jsonl does (each row lists its environment's tools), so one env serves every environment of a run.
- `setup_state(state)` runs once per rollout: it opens the rollout's envfleet session (`info.scenario_id`).
- `StatefulToolEnv.env_response` calls `update_tool_args(tool_name, tool_args, messages, state)` for every
  tool call, then `call_tool(tool_name, tool_args, tool_call_id)`. update_tool_args adds the rollout's session
  to the arguments (the StatefulToolEnv way of binding a call to per-rollout state); call_tool takes it out
  and sends the call to the server, so any tool name of the row works without a Python function per tool.
- A `@vf.cleanup` method runs when the rollout ends (in `rollout`'s finally, before scoring): it verifies the
  session, i.e. the scenario's checks run on the final state. The rubric's one reward function returns that
  reward (weight 1); `solved` is a metric (weight 0).

Run with the real verifiers (after `envfleet serve --run NAME` and `envfleet export --run NAME --format prompts`):

    PYTHONPATH=examples python - <<'PY'
    from verifiers_env import load_environment
    env = load_environment(url="http://127.0.0.1:8090", dataset_path="DIR/rl-prompts.jsonl")
    # e.g. env.evaluate(client=AsyncOpenAI(...), model="...", num_examples=4), or hand `env` to prime-rl
    PY

Token: `token=` or ENVFLEET_SERVE_TOKEN.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any, Optional

import verifiers as vf
from verifiers.types import ToolMessage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from envfleet_client import EnvfleetError, EnvfleetSession  # noqa: E402

SESSION_ARG = "__envfleet_session__"  # injected by update_tool_args, never shown to the model


def _info(state: dict[str, Any]) -> dict[str, Any]:
    info = state.get("info") or {}
    return json.loads(info) if isinstance(info, str) else dict(info)


class EnvfleetToolEnv(vf.StatefulToolEnv):
    def __init__(self, url: str, token: Optional[str] = None, max_turns: int = 20, **kwargs: Any) -> None:
        self.envfleet_url = url
        self.envfleet_token = token
        rubric = vf.Rubric(funcs=[self.envfleet_reward, self.envfleet_solved], weights=[1.0, 0.0])
        super().__init__(tools=[], max_turns=max_turns, rubric=rubric, **kwargs)

    async def setup_state(self, state: vf.State, **kwargs: Any) -> vf.State:
        info = _info(state)
        scenario_id = info.get("scenario_id") or state.get("answer")
        session = EnvfleetSession(self.envfleet_url, token=self.envfleet_token)
        await asyncio.to_thread(session.seed, scenario_id)
        state["envfleet_session"] = session
        return await super().setup_state(state, **kwargs) or state

    def update_tool_args(self, tool_name: str, tool_args: dict, messages: vf.Messages, state: vf.State, **kwargs: Any) -> dict:
        return {**tool_args, SESSION_ARG: state["envfleet_session"]}

    async def call_tool(self, tool_name: str, tool_args: dict, tool_call_id: str, **kwargs: Any) -> ToolMessage:
        args = dict(tool_args)
        session: EnvfleetSession = args.pop(SESSION_ARG)
        try:
            content = await asyncio.to_thread(session.call, tool_name, args)
        except EnvfleetError as e:  # the session cannot take calls (it ended, …): the model reads why
            content = json.dumps({"success": False, "error": str(e), "code": e.code})
        return ToolMessage(role="tool", content=content, tool_call_id=tool_call_id)

    @vf.cleanup
    async def envfleet_verify(self, state: vf.State) -> None:
        """Ends the rollout's session: the scenario's checks on its final state."""
        session: Optional[EnvfleetSession] = state.get("envfleet_session")
        if session is not None and session.result is None:
            result = await asyncio.to_thread(session.verify)
            state["envfleet"] = result["envfleet"]
            state["envfleet_reward"] = float(result["reward"])

    async def envfleet_reward(self, state: vf.State, **kwargs: Any) -> float:
        """The fraction of the scenario's checks true on the final state (POST /verify's reward)."""
        if "envfleet_reward" not in state:
            await self.envfleet_verify(state)
        return float(state.get("envfleet_reward", 0.0))

    async def envfleet_solved(self, state: vf.State, **kwargs: Any) -> float:
        return 1.0 if (state.get("envfleet") or {}).get("solved") else 0.0


def load_environment(url: str = "http://127.0.0.1:8090", dataset_path: Optional[str] = None, token: Optional[str] = None, **kwargs: Any) -> vf.Environment:
    """verifiers' entry point: the env over an rl-prompts.jsonl export (Hugging Face `datasets`)."""
    dataset = None
    if dataset_path:
        from datasets import load_dataset

        dataset = load_dataset("json", data_files=dataset_path, split="train")
    return EnvfleetToolEnv(url=url, token=token, dataset=dataset, **kwargs)
