"""The OpenAPI 3.1 document of intake's whole HTTP surface, generated from the request models (pydantic's JSON
schemas) and the operations table below, served at ``/openapi.json``. A unit test holds the table and the app's
routes to each other, so the document cannot drift from what is served.

Integrations are per deployment: the ``name`` of ``/api/v1/integrations/{name}`` and of the heartbeat endpoint is
an enum of the configured ones, and each integration's body is the model of its format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.intake.config import IntakeConfig
from services.intake.edge import CommandBody
from services.intake.formats.opsgenie import OpsgenieAction, OpsgenieCreate
from services.intake.formats.pagerduty import ChangeEvent, PagerDutyEvent
from services.intake.formats.registry import FORMATS
from shared.rules.oncall import OverrideRequest
from shared.rules.silences import SilenceRequest

Auth = Literal["bearer", "genie", "routing_key", "link", "slack", "none"]

FORMAT_MODELS: dict[str, type[BaseModel]] = {name: kind.model for name, kind in FORMATS.items()}
"""The body each integration format takes at ``/api/v1/integrations/{name}`` (the formats' registry's)."""


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    summary: str
    auth: Auth
    success: int
    body: type[BaseModel] | Literal["integration", "raw"] | None = None
    tag: str = "api"
    query: tuple[str, ...] = ()


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/api/v1/integrations/{name}",
        "An event or a webhook of the integration's format",
        "bearer",
        202,
        "integration",
        "intake",
    ),
    Operation(
        "PUT", "/api/v1/integrations/{name}", "The same, as Grafana may send it", "bearer", 202, "integration", "intake"
    ),
    Operation("POST", "/v2/enqueue", "PagerDuty Events API v2", "routing_key", 202, PagerDutyEvent, "intake"),
    Operation(
        "POST",
        "/v2/change/enqueue",
        "PagerDuty change event: noted on the integration's open tickets",
        "routing_key",
        202,
        ChangeEvent,
        "intake",
    ),
    Operation("POST", "/api/v1/heartbeats/{name}", "One beat of a heartbeat", "bearer", 202, None, "intake"),
    Operation("PUT", "/api/v1/heartbeats/{name}", "One beat of a heartbeat", "bearer", 202, None, "intake"),
    Operation("POST", "/v2/alerts", "Opsgenie: create an alert", "genie", 202, OpsgenieCreate, "intake"),
    Operation(
        "POST",
        "/v2/alerts/{identifier}/close",
        "Opsgenie: close by alias",
        "genie",
        202,
        OpsgenieAction,
        "intake",
        ("identifierType",),
    ),
    Operation(
        "POST",
        "/v2/alerts/{identifier}/acknowledge",
        "Opsgenie: acknowledge by alias",
        "genie",
        202,
        OpsgenieAction,
        "intake",
        ("identifierType",),
    ),
    Operation(
        "GET", "/api/v1/tickets", "Tickets, newest first", "bearer", 200, query=("state", "team", "limit", "offset")
    ),
    Operation("GET", "/api/v1/tickets/{ticket_id}", "A ticket with its timeline", "bearer", 200),
    Operation(
        "POST",
        "/api/v1/tickets/{ticket_id}/{verb}",
        "A command on a ticket (ack, resolve, reassign, ...)",
        "bearer",
        202,
        CommandBody,
    ),
    Operation("POST", "/api/v1/silences", "Create a silence", "bearer", 201, SilenceRequest),
    Operation("GET", "/api/v1/silences", "Silences", "bearer", 200, query=("state",)),
    Operation("GET", "/api/v1/silences/{silence_id}", "A silence", "bearer", 200),
    Operation("DELETE", "/api/v1/silences/{silence_id}", "Expire a silence", "bearer", 200),
    Operation(
        "GET", "/api/v1/status", "This intake's configuration (no secrets), broker and schema (admin)", "bearer", 200
    ),
    Operation("GET", "/api/v1/oncall", "Who is on call for each team", "bearer", 200, query=("at",)),
    Operation(
        "GET", "/api/v1/oncall/{team}", "Who is on call for a team, and the next shifts", "bearer", 200, query=("at",)
    ),
    Operation("POST", "/api/v1/oncall/{team}/overrides", "An on-call override", "bearer", 201, OverrideRequest),
    Operation("DELETE", "/api/v1/oncall/{team}/overrides/{override_id}", "Remove an override", "bearer", 200),
    Operation("GET", "/api/v1/deliveries", "Notifications that were given up", "bearer", 200, query=("limit",)),
    Operation(
        "POST", "/api/v1/deliveries/{notification_id}/redrive", "Send a given-up notification again", "bearer", 202
    ),
    Operation(
        "GET", "/act/{token}", "A one-click action's confirmation page (changes nothing)", "link", 200, tag="actions"
    ),
    Operation("POST", "/act/{token}", "Do a one-click action", "link", 200, "raw", "actions"),
    Operation(
        "POST", "/api/v1/slack/interactions", "Slack's interactive callback (signed)", "slack", 200, "raw", "actions"
    ),
    Operation(
        "GET",
        "/survey/{token}",
        "A resolved report's satisfaction survey, for its reporter (HTML; changes nothing)",
        "link",
        200,
        tag="surveys",
        query=("score", "lang"),
    ),
    Operation(
        "POST", "/survey/{token}", "Answer the satisfaction survey (1-5, a comment)", "link", 202, "raw", "surveys"
    ),
    Operation(
        "GET",
        "/solved/{token}",
        "Did a suggested workaround solve it? For the reporter (HTML; changes nothing)",
        "link",
        200,
        tag="surveys",
        query=("answer", "lang"),
    ),
    Operation("POST", "/solved/{token}", "Answer whether the workaround solved it", "link", 202, "raw", "surveys"),
    Operation(
        "GET",
        "/api/v1/satisfaction",
        "The satisfaction index by project, customer or team, and the projects' goals",
        "bearer",
        200,
        query=("by", "since", "until", "project", "customer", "team"),
    ),
    Operation("GET", "/healthz", "Alive", "none", 200, tag="ops"),
    Operation("GET", "/readyz", "Ready: the broker answers", "none", 200, tag="ops"),
    Operation("GET", "/metrics", "Prometheus metrics", "none", 200, tag="ops"),
    Operation("GET", "/openapi.json", "This document", "none", 200, tag="ops"),
    Operation(
        "GET",
        "/feedback/{project}",
        "A project's public feedback form (HTML)",
        "link",
        200,
        tag="forms",
        query=("t", "lang"),
    ),
    Operation("POST", "/feedback/{project}", "Send the feedback form", "link", 201, "raw", "forms"),
    Operation(
        "GET",
        "/feedback/{project}/status/{reference}",
        "A report's ticket number and state, for its reporter (HTML)",
        "link",
        200,
        tag="forms",
        query=("t", "lang"),
    ),
)

SECURITY: dict[str, dict[str, Any]] = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "genie": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "GenieKey <key>"},
}
ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "problems": {
            "type": "array",
            "items": {"type": "object", "properties": {"field": {"type": "string"}, "error": {"type": "string"}}},
        },
    },
}


def _params(op: Operation, config: IntakeConfig) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in op.path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            schema: dict[str, Any] = {"type": "string", "minLength": 1}
            if op.path.startswith("/api/v1/integrations/") and name == "name":
                schema = {"type": "string", "enum": sorted(i.name for i in config.integrations) or ["-"]}
            elif op.path.startswith("/api/v1/heartbeats/") and name == "name":
                beats = sorted(n for n in (i.heartbeat_name() for i in config.integrations) if n)
                schema = {"type": "string", "enum": beats or ["-"]}
            out.append({"name": name, "in": "path", "required": True, "schema": schema})
    out += [{"name": q, "in": "query", "required": False, "schema": {"type": "string"}} for q in op.query]
    return out


def _body(op: Operation, config: IntakeConfig) -> dict[str, Any] | None:
    if op.body is None:
        return None
    if op.body == "raw":
        media = {"application/x-www-form-urlencoded": {"schema": {"type": "string"}}}
        return {"required": False, "content": media}
    if op.body == "integration":
        formats = sorted({i.format for i in config.integrations} or FORMAT_MODELS)
        refs = [{"$ref": f"#/components/schemas/{FORMAT_MODELS[f].__name__}"} for f in formats]
        schema: dict[str, Any] = refs[0] if len(refs) == 1 else {"oneOf": refs}
        return {"required": True, "content": {"application/json": {"schema": schema}}}
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}},
    }


def document(config: IntakeConfig, version: str = "1") -> dict[str, Any]:
    """The OpenAPI document for this deployment's configuration."""
    models = {*FORMAT_MODELS.values(), *(op.body for op in OPERATIONS if isinstance(op.body, type))}
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": _params(op, config),
            "responses": {
                str(op.success): {"description": "done"},
                "4XX": {"description": "refused: what and where", "content": {"application/json": {"schema": ERROR}}},
                "503": {"description": "the broker did not acknowledge: retry after Retry-After"},
            },
        }
        body = _body(op, config)
        if body is not None:
            entry["requestBody"] = body
        if op.auth in ("bearer", "genie"):
            entry["security"] = [{op.auth: []}]
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "ticketloop intake", "version": version},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}), "securitySchemes": SECURITY},
    }
