"""verl recipe: the custom reward function for rl-verl.json rows (data_source "envfleet").

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info)` once per trajectory
(`custom_reward_function.path=examples/verl_reward.py custom_reward_function.name=compute_score`). Matched
against volcengine/verl main (January 2026): `verl/experimental/reward_loop/reward_manager/naive.py` merges
the agent loop's `tool_extra_fields` (`turn_scores`, `tool_rewards`) into `extra_info` before calling it.

The reward is not computed here: it is the fraction of the scenario's checks true on the episode's final
state, which only envfleet's server can run. EnvfleetInteraction (examples/verl_tool.py) got it from
POST /verify when the model finished, and verl put it in `turn_scores`; this function reads it. When the
trajectory was cut before the model finished (response length, turn limits), verl never asked the
interaction, so there is no turn score and nothing here identifies the trajectory's session: it scores 0
(`verified: 0` in verl's reward extra info), and the session ends by the server's --idle-timeout.
"""

from __future__ import annotations

from typing import Any, Optional

DATA_SOURCE = "envfleet"


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: Optional[dict[str, Any]] = None, **kwargs: Any) -> dict[str, Any]:
    if data_source != DATA_SOURCE:
        raise ValueError(f"verl_reward.compute_score scores envfleet rows only, not data_source={data_source!r}")
    info = extra_info or {}
    turn_scores = [s for s in (info.get("turn_scores") or []) if s is not None]
    if turn_scores:
        # The last turn score is the one EnvfleetInteraction returned: verify's reward for this trajectory.
        return {"score": float(turn_scores[-1]), "verified": 1.0}
    return {"score": 0.0, "verified": 0.0}
