"""The HTTP edge, wired: inbound integrations (ingest.py, pagerduty_in.py, opsgenie_in.py, feedback_in.py), the
ticket, silence and on-call APIs (tickets_api.py, silences_api.py, oncall_api.py), the one-click actions, surveys
and deliveries, health and metrics (Starlette, thin handlers over shell.Edge).

Error answers are JSON ``{"error": ..., "problems": [{"field": ..., "error": ...}]}``:
400 malformed JSON, 401 bad or missing token, 404 unknown ticket, 413 oversize body, 422 schema violations
(with field paths), 503 while Kafka does not acknowledge (with Retry-After, so senders retry).
"""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.intake.actions import ActionsIn
from services.intake.deliveries import DeliveriesApi
from services.intake.edge import IntakeDeps, RequestIds
from services.intake.feedback_in import FeedbackIn
from services.intake.ingest import AlertsIn
from services.intake.metrics import IntakeMetrics, KnownIssueAnswers, SatisfactionIndex, UnresolvedTickets
from services.intake.oncall_api import OnCallApi
from services.intake.openapi import document
from services.intake.opsgenie_in import OpsgenieIn
from services.intake.pagerduty_in import PagerDutyIn
from services.intake.shell import Edge
from services.intake.silences_api import SilencesApi
from services.intake.solved import SolvedIn
from services.intake.status_api import StatusApi
from services.intake.survey import SurveyIn
from services.intake.tickets_api import TicketsApi


def create_app(deps: IntakeDeps) -> Starlette:
    """The app: each door and API a class of its own (named handlers, services/intake/*_in.py and *_api.py) over
    one ``Edge`` (services/intake/shell.py), wired here."""
    metrics = IntakeMetrics(deps.registry)
    deps.shown.register(UnresolvedTickets(deps.engine))
    deps.shown.register(SatisfactionIndex(deps.engine))
    deps.shown.register(KnownIssueAnswers(deps.engine))
    edge = Edge(deps, metrics)
    feedback = FeedbackIn(edge)
    routes = [
        *AlertsIn(edge).routes(),
        *PagerDutyIn(edge).routes(),
        *OpsgenieIn(edge).routes(),
        *TicketsApi(edge).routes(),
        *SilencesApi(edge).routes(),
        *OnCallApi(edge).routes(),
        *Health(deps).routes(),
        *feedback.routes(),
        *ActionsIn(edge).routes(),
        *DeliveriesApi(edge).routes(),
        *SurveyIn(edge).routes(),
        *SolvedIn(edge).routes(),
        *StatusApi(edge).routes(),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(RequestIds)])
    app.state.deliver_mail = feedback.deliver_mail
    return app


class Health:
    """Liveness, readiness (the broker answers), the metrics and the OpenAPI document."""

    def __init__(self, deps: IntakeDeps) -> None:
        self.deps = deps
        self.spec = document(deps.config)

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/metrics", self.metrics),
            Route("/openapi.json", self.openapi, methods=["GET"]),
        ]

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok", "worker": self.deps.worker})  # which of the workers answered

    async def readyz(self, _request: Request) -> Response:
        if not await self.deps.publisher.check():
            return JSONResponse({"status": "not ready", "kafka": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def openapi(self, _request: Request) -> Response:
        return JSONResponse(self.spec)

    async def metrics(self, _request: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, self.deps.shown)  # UnresolvedTickets queries SQL
        return Response(body, media_type=CONTENT_TYPE_LATEST)
