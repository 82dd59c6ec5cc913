"""TRL recipe: GRPOTrainer with `environment_factory`, each environment an OpenEnv client on envfleet's /ws.

Matched against huggingface/trl main (1.10.0.dev0, July 2026: `trl/trainer/grpo_trainer.py`,
`docs/source/openenv.md`) and OpenEnv's client (huggingface/OpenEnv 0.3.2.dev0: `openenv.core.GenericEnvClient`,
`EnvClient.reset(**kwargs)` sends `{"type": "reset", "data": kwargs}`, `.sync()` for blocking calls).
TRL's contract for an environment class:

- the factory is called with no arguments; one instance per rollout, reused across batches (a pool);
- `reset(**row)` gets every dataset column; it returns None or a string appended to the last user message;
- every public method other than `reset` / `get_reward` is a tool: its schema comes from the type hints and
  the Google-style docstring (`Args:`), and what it returns (or `{"error": str(e)}` when it raises) is the tool
  message;
- `get_reward()` (optional) is called once per finished rollout and is a reward source of weight 1;
- with a dict `{name: factory}`, each row's `environment` column picks the environment, and only that
  environment's tools are shown in its prompt.

envfleet's environments have different tools, so this builds one class per environment (from the rows'
`tools` column of rl-prompts.jsonl) with one method per tool, and passes `{environment_id: class}`. An
episode is one OpenEnv WebSocket episode: `reset(scenario_id=…)`, a `call_tool` step per tool call, and the
finish action `__envfleet_finish__` in `get_reward()`, whose reply carries the reward (the scenario's checks on
the final state). Intermediate steps carry no reward.

Run with the real TRL and OpenEnv (after `envfleet serve --run NAME` and `envfleet export --run NAME --format prompts`):

    pip install trl "openenv[core]>=0.3.1"
    python examples/trl_openenv.py --url http://127.0.0.1:8090 --data DIR/rl-prompts.jsonl --model Qwen/Qwen3-0.6B

OpenEnv's client sends no headers: against a server that needs a token, put it in the path,
--url http://HOST:8090/t/TOKEN (the client appends /ws; docs/env-server.md).
Keep GRPOConfig's generation batch ≤ `envfleet serve --max-sessions` (one live session per rollout).
"""

from __future__ import annotations

import inspect
import json
import keyword
import os
import re
from typing import Any, Callable, Optional

FINISH_TOOL = "__envfleet_finish__"
# JSON Schema types → the Python annotations TRL (transformers' get_json_schema) turns back into them.
PY_TYPES: dict[str, type] = {"string": str, "number": float, "integer": int, "boolean": bool, "array": list, "object": dict}


class _Unset:
    """The default of an optional tool argument the model left out: not sent (an explicit None is sent as null)."""

    def __repr__(self) -> str:
        return "None"


UNSET: Any = _Unset()


def py_type(schema: dict[str, Any]) -> tuple[type, bool]:
    """The annotation of a JSON Schema property, and whether it may be null (`"type": ["string", "null"]`)."""
    t = schema.get("type")
    types = [x for x in t if isinstance(x, str)] if isinstance(t, list) else [t] if isinstance(t, str) else []
    nullable = "null" in types
    rest = [x for x in types if x != "null"]
    return (PY_TYPES.get(rest[0], str) if len(rest) == 1 else str), nullable


def py_names(props: list[str]) -> dict[str, str]:
    """A Python parameter name for each property name: itself when it can be one, else a close one (`from` → `from_`,
    `member-id` → `member_id`, `2nd` → `arg_2nd`), never another property's. TRL builds the tool schema the model sees
    from the signature, which only takes identifiers; the call sends the environment's own names."""
    out: dict[str, str] = {}
    taken = {p for p in props if p.isidentifier() and not keyword.iskeyword(p) and p != "self"}
    for p in props:
        if p in taken:
            out[p] = p
            continue
        name = re.sub(r"\W", "_", p) or "arg"
        if name[0].isdigit():
            name = f"arg_{name}"
        if keyword.iskeyword(name) or name == "self":
            name += "_"
        base, n = name, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        out[p] = name
    return out


def client_factory(url: str) -> Callable[[], Any]:
    """A new synchronous OpenEnv client for the server (imported lazily: only an episode needs it)."""

    def make() -> Any:
        from openenv.core import GenericEnvClient

        return GenericEnvClient(base_url=url).sync()

    return make


class EnvfleetEpisode:
    """The part every environment class shares: one OpenEnv episode on envfleet's /ws per rollout."""

    make_client: Callable[[], Any] = staticmethod(lambda: None)

    def __init__(self) -> None:
        self._client = type(self).make_client()
        self.reward = 0.0
        self.done = False
        self.metadata: dict[str, Any] = {}
        self.session_id: Optional[str] = None

    def reset(self, scenario_id: str, **row: Any) -> Optional[str]:
        # A reset on a live episode ends it first (the server scores and keeps it), so a pooled instance
        # can be reset without a close.
        self.reward, self.done, self.metadata = 0.0, False, {}
        reset = self._client.reset(scenario_id=scenario_id)
        self.session_id = reset.observation.get("session_id")  # the server's session, for logs
        return None  # the task is already the row's user message

    def _step(self, tool_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = self._client.step({"type": "call_tool", "tool_name": tool_name, "arguments": arguments})
        obs = result.observation
        if result.done:  # the finish action, the step limit, or a call that discarded the environment
            self.done = True
            self.reward = float(result.reward or 0.0)
            self.metadata = dict(obs.get("metadata") or {})
        return obs

    def _call(self, tool_name: str, arguments: dict[str, Any]) -> str:
        if self.done:
            raise ValueError("The episode has ended; no more tool calls.")  # TRL shows {"error": …} to the model
        obs = self._step(tool_name, arguments)
        if obs.get("error"):
            raise ValueError(obs["error"]["message"])
        return obs["result"]["content"][0]["text"]

    def get_reward(self) -> float:
        """Ends the episode (if the model did not end it) and returns the fraction of checks true."""
        if not self.done:
            self._step(FINISH_TOOL, {})
        return self.reward


def _tool_method(name: str, description: str, parameters: dict[str, Any]) -> Callable[..., str]:
    props: dict[str, Any] = parameters.get("properties") or {}
    required = set(parameters.get("required") or [])
    names = py_names(list(props))
    to_env = {py: arg for arg, py in names.items()}
    nullable_args = {names[arg] for arg, schema in props.items() if py_type(schema if isinstance(schema, dict) else {})[1]}

    def method(self: EnvfleetEpisode, **kwargs: Any) -> str:
        # The environment's own argument names. An optional argument the model left out is not sent, nor a null for one
        # whose schema takes none (the environment would refuse it); a null where the schema allows one is sent.
        return self._call(name, {to_env.get(k, k): v for k, v in kwargs.items() if v is not UNSET and (v is not None or k in nullable_args)})

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {"return": str}
    doc_args = []
    for arg, schema in props.items():
        schema = schema if isinstance(schema, dict) else {}
        py_arg = names[arg]
        py, takes_null = py_type(schema)
        # Optional[...] (nullable in the schema TRL shows the model) only where the environment's schema takes null.
        annotations[py_arg] = Optional[py] if takes_null else py
        default = inspect.Parameter.empty if arg in required else UNSET
        params.append(inspect.Parameter(py_arg, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotations[py_arg]))
        text = schema.get("description") or arg.replace("_", " ")
        if schema.get("enum"):
            text += f" (choices: {json.dumps(schema['enum'])})"
        if py_arg != arg:
            text += f" (the environment's argument {arg!r})"
        doc_args.append(f"    {py_arg}: {text}")
    method.__name__ = name
    method.__qualname__ = name
    method.__annotations__ = annotations
    method.__signature__ = inspect.Signature(params, return_annotation=str)  # type: ignore[attr-defined]
    method.__doc__ = f"{description or name}\n\nArgs:\n" + "\n".join(doc_args) + "\n\nReturns:\n    The tool's result as the environment gives it." if doc_args else f"{description or name}\n\nReturns:\n    The tool's result as the environment gives it."
    return method


def environment_class(environment_id: str, tools: list[dict[str, Any]], url: str) -> type:
    """An environment class for TRL whose public methods are the environment's tools."""
    methods: dict[str, Any] = {"make_client": staticmethod(client_factory(url))}
    for t in tools:
        fn = t["function"]
        if fn["name"] in ("reset", "get_reward") or fn["name"].startswith("_"):
            raise ValueError(f"tool {fn['name']!r} would not be exposed by TRL (reserved or private name)")
        methods[fn["name"]] = _tool_method(fn["name"], fn.get("description", ""), fn.get("parameters") or {})
    return type(f"Envfleet_{environment_id.replace('-', '_')}", (EnvfleetEpisode,), methods)


def environment_factories(rows: list[dict[str, Any]], url: str) -> dict[str, type]:
    """`{environment_id: class}` for GRPOTrainer(environment_factory=…), from rl-prompts.jsonl rows."""
    classes: dict[str, type] = {}
    for row in rows:
        env_id = row["environment_id"]
        if env_id not in classes:
            classes[env_id] = environment_class(env_id, json.loads(row["tools"]), url)
    return classes


def with_environment_column(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TRL's multi-environment selector is the `environment` column (rl-prompts.jsonl has none)."""
    return [{**row, "environment": row["environment_id"]} for row in rows]


def main() -> None:
    import argparse

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("ENVFLEET_URL", "http://127.0.0.1:8090"))
    parser.add_argument("--data", required=True, help="rl-prompts.jsonl from `envfleet export --format prompts`")
    parser.add_argument("--model", default="Qwen/Qwen3-0.6B")
    parser.add_argument("--output-dir", default="envfleet-grpo")
    a = parser.parse_args()
    with open(a.data, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    trainer = GRPOTrainer(
        model=a.model,
        train_dataset=Dataset.from_list(with_environment_column(rows)),
        environment_factory=environment_factories(rows, a.url),  # get_reward() is the reward (weight 1)
        args=GRPOConfig(output_dir=a.output_dir, max_completion_length=2048, chat_template_kwargs={"enable_thinking": False}, log_completions=True),
    )
    trainer.train()


if __name__ == "__main__":
    main()
