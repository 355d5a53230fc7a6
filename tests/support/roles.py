"""The roles table both role tests run (tests/unit/test_intake_roles.py in process, tests/e2e/test_roles.py
against the running stack): each endpoint of the API and the least role that may call it."""

from __future__ import annotations

from typing import Any

import orjson

TOKENS = {role: f"{role}-token-0123456789abcdef" for role in ("viewer", "responder", "admin")}
RANK = {"viewer": 0, "responder": 1, "admin": 2}
CONSOLE_TOKEN = "console-token-0123456789ab"
"""A client with no role of its own (responder by default) that may act for alice only."""

# (method, path with {ticket} for a ticket's id, JSON body, the least role that may)
ENDPOINTS: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/v1/tickets", None, "viewer"),
    ("GET", "/api/v1/tickets/{ticket}", None, "viewer"),
    ("POST", "/api/v1/tickets/{ticket}/ack", {}, "responder"),
    ("POST", "/api/v1/tickets/{ticket}/comment", {"reason": "hi"}, "responder"),
    ("GET", "/api/v1/silences", None, "viewer"),
    (
        "POST",
        "/api/v1/silences",
        {"matchers": ['service="nothing-here"'], "duration": "1h", "comment": "c"},
        "responder",
    ),
    ("GET", "/api/v1/silences/none", None, "viewer"),
    ("DELETE", "/api/v1/silences/none", None, "responder"),
    ("GET", "/api/v1/oncall", None, "viewer"),
    ("GET", "/api/v1/oncall/operations", None, "viewer"),
    ("POST", "/api/v1/oncall/operations/overrides", {"person": "olga", "duration": "1h"}, "responder"),
    ("DELETE", "/api/v1/oncall/operations/overrides/none", None, "responder"),
    ("GET", "/api/v1/deliveries", None, "viewer"),
    ("POST", "/api/v1/deliveries/none/redrive", None, "responder"),
    ("GET", "/api/v1/status", None, "admin"),
]


def clients() -> list[dict[str, Any]]:
    """intake.yaml's ``api_clients`` entries for the table's roles and the console."""
    out: list[dict[str, Any]] = [{"name": role, "token": token, "role": role} for role, token in TOKENS.items()]
    return [*out, {"name": "console", "token": CONSOLE_TOKEN, "acts_for": ["alice"]}]


def body_of(body: Any) -> bytes | None:
    return orjson.dumps(body) if body is not None else None


def verdict(role: str, needed: str, status: int, answer: str) -> str | None:
    """What is wrong with an answer to ``role`` on an endpoint that needs ``needed`` (None: nothing)."""
    if RANK[role] < RANK[needed]:
        if status != 403:
            return f"{role} was answered {status}, not 403: {answer[:300]}"
        if f"has role {role}; this needs {needed}" not in answer:
            return f"the 403 does not say which role is needed: {answer[:300]}"
        return None
    return f"{role} was refused ({status}): {answer[:300]}" if status in (401, 403) else None
