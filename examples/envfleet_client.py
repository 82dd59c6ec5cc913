"""A tiny client for `envfleet serve`, standard library only (urllib), shared by the trainer recipes.

It speaks the server's NeMo Gym style surface (docs/env-server.md, "HTTP, NeMo Gym style"): one session
per rollout, carried by the `envfleet_session` cookie; every response re-sends it and the client keeps the
cookie of the latest response, as NeMo Gym's agent does.

    from envfleet_client import EnvfleetSession

    s = EnvfleetSession("http://127.0.0.1:8090")          # token: ENVFLEET_SERVE_TOKEN or token=...
    s.seed("scn-…")                                         # or a row of rl-verl.json / rl-prompts.jsonl
    print(s.task, s.tools)
    print(s.call("get_member", {"member_id": "M7"}))        # the text an episode gives the model
    result = s.verify()                                     # ends the session
    print(result["reward"], result["envfleet"]["checks"])

Run it by itself to play a scenario with a fixed list of calls:

    python examples/envfleet_client.py --url http://127.0.0.1:8090 --scenario SCN \
        --calls '[["get_member", {"member_id": "M7"}]]'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

COOKIE = "envfleet_session"

# Codes that concern one tool call: the model should read them and try again, the session goes on.
# Anything else (NO_SESSION, SESSION_CLOSED, UNAUTHORIZED, OVER_CAPACITY, ENVIRONMENT_FAILED, …) is raised.
TOOL_LEVEL_STATUSES = (400, 404, 422)
SESSION_LEVEL_CODES = ("NO_SESSION", "UNKNOWN_SESSION", "SESSION_CLOSED", "MALFORMED_JSON", "NOT_FOUND", "UNAUTHORIZED")


class EnvfleetError(Exception):
    """An error answer of the server: `code` is the server's stable code (docs/errors.md)."""

    def __init__(self, status: int, code: str, message: str, body: Any) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.status = status
        self.code = code
        self.body = body


def default_token() -> Optional[str]:
    """The bearer token the server wants off loopback (the same variable `envfleet serve` reads)."""
    return os.environ.get("ENVFLEET_SERVE_TOKEN") or None


class EnvfleetSession:
    """One environment session on the server (one rollout). Not thread-safe: one per rollout."""

    def __init__(self, base_url: str, token: Optional[str] = None, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token if token is not None else default_token()
        self.timeout = timeout
        self.cookie: Optional[str] = None
        self.session_id: Optional[str] = None
        self.scenario_id: Optional[str] = None
        self.task: Optional[str] = None
        self.tools: list[str] = []
        self.result: Optional[dict[str, Any]] = None  # what verify answered, once the session has ended

    # -- transport --------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.cookie:
            headers["cookie"] = self.cookie
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                status, text, cookies = res.status, res.read().decode("utf-8"), res.headers.get_all("Set-Cookie") or []
        except urllib.error.HTTPError as e:
            status, text, cookies = e.code, e.read().decode("utf-8"), e.headers.get_all("Set-Cookie") or []
        # Keep only the cookies of the latest response (none if it set none), as NeMo Gym's agent does.
        self.cookie = "; ".join(c.split(";", 1)[0] for c in cookies) or None
        return status, text

    def _json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        status, text = self._request(method, path, body)
        parsed = json.loads(text) if text else {}
        if status >= 400:
            err = parsed.get("error", {}) if isinstance(parsed, dict) else {}
            raise EnvfleetError(status, str(err.get("code", "HTTP_ERROR")), str(err.get("message", text)), parsed)
        return parsed

    # -- the session ------------------------------------------------------------------------------
    def seed(self, scenario: Any) -> dict[str, Any]:
        """Opens the session: `scenario` is a scenario id, or a row of rl-verl.json / rl-prompts.jsonl."""
        body = {"scenario_id": scenario} if isinstance(scenario, str) else scenario
        seeded = self._json("POST", "/seed_session", body)
        self.session_id = seeded.get("session_id")
        self.scenario_id = seeded.get("scenario_id")
        self.task = seeded.get("task")
        self.tools = list(seeded.get("tools") or [])
        self.result = None
        return seeded

    def call(self, tool: str, arguments: Optional[dict[str, Any]] = None) -> str:
        """Calls a tool; returns the text the model reads (also for an error of the call itself, such as
        INVALID_ARGUMENTS or TOOL_THREW, which the model can correct). Raises EnvfleetError when the session
        cannot take calls (no session, ended, unauthorized, over capacity, …)."""
        status, text = self._request("POST", "/" + urllib.parse.quote(tool, safe=""), arguments or {})
        if status >= 400:
            try:
                code = json.loads(text).get("error", {}).get("code", "")
            except ValueError:
                code = ""
            if status not in TOOL_LEVEL_STATUSES or code in SESSION_LEVEL_CODES:
                raise EnvfleetError(status, code or "HTTP_ERROR", text, text)
        return text

    def verify(self, body: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """Ends the session and returns `{reward, reward_components, envfleet: {reward, solved, checks, …}}`
        (plus the echoed body). Verifying again returns the kept result."""
        self.result = self._json("POST", "/verify", body or {})
        return self.result

    @property
    def reward(self) -> Optional[float]:
        return None if self.result is None else float(self.result["reward"])

    def close(self) -> Optional[dict[str, Any]]:
        """Ends the session without using its reward (DELETE /session); a no-op once verified."""
        if self.cookie is None or self.result is not None:
            return None
        try:
            return self._json("DELETE", "/session")
        except EnvfleetError:
            return None


def health(base_url: str, token: Optional[str] = None, timeout: float = 10.0) -> dict[str, Any]:
    with urllib.request.urlopen(base_url.rstrip("/") + "/health", timeout=timeout) as res:
        return json.loads(res.read().decode("utf-8"))


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The options every example's smoke mode takes."""
    parser.add_argument("--url", required=True, help="the server's base URL, e.g. http://127.0.0.1:8090")
    parser.add_argument("--scenario", required=True, help="a ready scenario's id")
    parser.add_argument("--calls", default="[]", help='JSON list of [tool, {arguments}] pairs to play, in order')
    parser.add_argument("--token", default=None, help="bearer token (default: ENVFLEET_SERVE_TOKEN)")


def parse_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    return [(str(name), dict(args)) for name, args in json.loads(text)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    args = parser.parse_args(argv)
    s = EnvfleetSession(args.url, token=args.token)
    s.seed(args.scenario)
    outputs = [s.call(name, arguments) for name, arguments in parse_calls(args.calls)]
    result = s.verify()
    print(json.dumps({"reward": result["reward"], "session_id": s.session_id, "outputs": outputs}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
