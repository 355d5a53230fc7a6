"""One-click action links and Slack's interactive callback: the routes intake adds for them.

``GET /act/{token}`` shows a confirmation page and never acts (mail scanners and link previews fetch URLs).
``POST /act/{token}`` acts, once per link id: it publishes a Command to ``commands`` as the ticket API does,
with actor = the link's person (nothing from the request). ``POST /api/v1/slack/interactions`` takes Slack's
signed ``block_actions`` callback, whose button values are action-link tokens, and acts through the same path.

Once per link, and at most one publish when two requests race: a request first *claims* the link (an insert
on the ``action_link_uses`` primary key; the loser of a race sees a conflict and publishes nothing), then
publishes, and only once Kafka acknowledged marks the link used. If the publish fails the claim is given back,
so the link works again. A claim whose holder died is taken over after ``CLAIM_LEASE_S``. The command id is
derived from the link id, so even a publish repeated after an unclear failure is ignored by the router, which
skips command ids it has seen.

Slack wants its callback answered within 3 seconds, and a publish may wait up to the publisher's own timeout
(5 s by default), so the callback answers 200 at once and acts in a background task after the answer is sent;
the result reaches the user through the payload's ``response_url``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import parse_qs

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from services.intake.action_pages import (
    VERBS,
    Outcome,
    confirm_page,
    html,
    not_configured_page,
    refused_page,
    result_page,
    slack_redraw,
    unavailable_page,
    used_page,
)
from services.intake.edge import HttpError, read_body, trace_id_of
from services.intake.publisher import Record
from services.intake.shell import Door, Edge
from shared.events import Action, Command
from shared.infra.actionlinks import LinkClaims, LinkKeys, LinkRefused, token_from_link, verify
from shared.infra.logging import get_logger, make_headers
from shared.infra.metrics import counter
from shared.rules.oncall import person_may_act
from shared.store import db
from shared.streaming.codec import encode

log = get_logger(__name__)

REASON = "one-click link"
SNOOZE_FOR = timedelta(hours=1)
CLAIM_LEASE_S = 60.0
"""a claim older than this is taken over: far longer than a publish may take (its own timeout, 5 s by default)"""
SLACK_MAX_AGE_S = 300
REDRAW_TIMEOUT_S = 5.0
_DIGITS = re.compile(r"[0-9]{1,12}")


def command_for(claims: LinkClaims, now: datetime, reason: str, trace_id: str) -> Command:
    """The command a verified link stands for; its id is the link's, so a repeat is a duplicate."""
    action = VERBS[claims.action].action
    return Command(
        command_id=f"link:{claims.link_id}",
        ticket_id=claims.ticket_id,
        action=action,
        actor=claims.person,
        reason=reason,
        person=claims.person if action is Action.reassign else None,
        until=now + SNOOZE_FOR if action is Action.snooze else None,
        issued_at=now,
        trace_id=trace_id,
    )


def slack_signature_problem(
    secret: SecretStr, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> Literal["bad signature", "stale request"] | None:
    """None if Slack signed ``body``: ``v0=`` + hex HMAC-SHA256(secret, ``v0:{timestamp}:{body}``), sent within
    five minutes of ``now``; else what is wrong."""
    if not timestamp or not signature or not _DIGITS.fullmatch(timestamp):
        return "bad signature"
    if abs(now - int(timestamp)) > SLACK_MAX_AGE_S:
        return "stale request"
    mac = hmac.new(secret.get_secret_value().encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    if not hmac.compare_digest(("v0=" + mac.hexdigest()).encode(), signature.encode("utf-8", "replace")):
        return "bad signature"
    return None


class SlackUser(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = ""
    username: str | None = None


class SlackAction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    value: str | None = None


class SlackInteraction(BaseModel):
    """The fields of Slack's interaction payload that are used here."""

    model_config = ConfigDict(extra="ignore")
    type: str
    user: SlackUser = SlackUser()
    actions: list[SlackAction] = []
    response_url: str | None = None

    def who(self) -> str:
        return self.user.username or self.user.id or "someone"


def slack_interaction(body: bytes) -> SlackInteraction | None:
    """The ``payload=`` JSON of a form-encoded Slack callback, or None if it is not one."""
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=20)
        return SlackInteraction.model_validate(orjson.loads(fields["payload"][0]))
    except (UnicodeDecodeError, ValueError, KeyError, ValidationError):
        return None


def _label(claims: LinkClaims | None) -> str:
    return claims.action if claims is not None else "unknown"


def checked_link(token: str, keys: LinkKeys, now: datetime) -> LinkClaims | Outcome:
    """The claims of an action link that verifies at ``now`` and names an action of these pages; else the
    refusal."""
    try:
        claims = verify(keys, token, now)
    except LinkRefused as exc:
        known = exc.claims is None or exc.claims.action in VERBS
        return Outcome(exc.reason, exc.claims) if known else Outcome("malformed")
    # a survey link is answered on /survey/ (services/intake/survey.py), never acted on here
    return claims if claims.action in VERBS else Outcome("malformed")


def page_for(outcome: Outcome, *, posted: bool) -> HTMLResponse:
    """The page that tells an outcome (``posted``: the button was pressed, so a retry button is offered)."""
    c, t = outcome.claims, outcome.ticket
    match outcome.result:
        case "acted" if c is not None and t is not None:
            return html(result_page(c, t))
        case "confirmed_page" if c is not None and t is not None:
            return html(confirm_page(c, t))
        case "already_used" if c is not None and t is not None:
            return html(used_page(c, t, outcome.use))
        case "unavailable":
            return html(unavailable_page(c, with_button=posted), 503, **{"Retry-After": "5"})
        case "expired" | "forged" | "malformed" | "unknown_ticket" | "not_allowed":
            return html(refused_page(outcome.result, c), 403)
    raise AssertionError(f"no page for {outcome.result}")


class ActionsIn(Door):
    """The /act/{token} pages and Slack's interactive callback (see the module doc)."""

    def __init__(self, edge: Edge) -> None:
        super().__init__(edge)
        self.links_total = counter(
            self.deps.registry,
            "ticketloop_intake_action_links_total",
            "Uses of one-click action links, by link action and result",
            ["action", "result"],
        )

    def routes(self) -> list[Route]:
        return [
            Route("/act/{token}", self.show, methods=["GET"]),
            Route("/act/{token}", self.press, methods=["POST"]),
            Route("/api/v1/slack/interactions", self.slack, methods=["POST"]),
        ]

    def done(self, outcome: Outcome, via: str) -> Outcome:
        """Count and log an outcome (never the token)."""
        c = outcome.claims
        self.links_total.labels(action=_label(c), result=outcome.result).inc()
        fields = {"link_id": c.link_id, "ticket_id": c.ticket_id, "person": c.person, "kid": c.kid} if c else {}
        level = log.info if outcome.result in ("acted", "confirmed_page", "already_used") else log.warning
        level("action_link", result=outcome.result, action=_label(c), via=via, **fields)
        return outcome

    async def act(self, claims: LinkClaims, reason: str, trace_id: str) -> Outcome:
        """Publish the link's command unless the link was used; mark it used once Kafka acknowledged."""
        engine = self.deps.engine
        now = datetime.now(UTC)
        claim = uuid.uuid4().hex
        try:
            found = await run_in_threadpool(db.get_ticket, engine, claims.ticket_id)
            if found is None:
                return Outcome("unknown_ticket", claims)
            ticket = found[0]
            if not person_may_act((await self.edge.current_teams()).people, claims.person):
                return Outcome("not_allowed", claims, ticket)  # the link stays unused: nothing was done with it
            got = await run_in_threadpool(
                lambda: db.claim_link(
                    engine,
                    link_id=claims.link_id,
                    ticket_id=claims.ticket_id,
                    action=claims.action,
                    person=claims.person,
                    claim=claim,
                    now=now,
                    lease_s=CLAIM_LEASE_S,
                )
            )
            if not got:
                use = await run_in_threadpool(db.get_link_use, engine, claims.link_id)
                return Outcome("already_used", claims, ticket, use)
        except SQLAlchemyError as exc:
            log.warning("action_link_db_unavailable", error=type(exc).__name__)
            return Outcome("unavailable", claims)
        cmd = command_for(claims, now, reason, trace_id)
        record = Record(
            self.deps.topics.commands.name,
            claims.ticket_id,
            encode(cmd),
            make_headers(trace_id=trace_id, ticket_id=claims.ticket_id),
        )
        try:
            await self.edge.publish([record])
        except HttpError:
            try:
                await run_in_threadpool(db.release_link, engine, claims.link_id, claim)
            except SQLAlchemyError as exc:  # the claim then lapses after CLAIM_LEASE_S
                log.warning("action_link_release_failed", link_id=claims.link_id, error=type(exc).__name__)
            return Outcome("unavailable", claims, ticket)
        try:
            await run_in_threadpool(db.confirm_link_use, engine, claims.link_id, claim, datetime.now(UTC))
        except SQLAlchemyError as exc:  # published: a retake after the lease repeats the same command id
            log.warning("action_link_confirm_failed", link_id=claims.link_id, error=type(exc).__name__)
        return Outcome("acted", claims, ticket)

    async def show(self, request: Request) -> Response:
        """GET: what the button will do, and the button. Changes nothing."""
        keys, engine = self.deps.link_keys, self.deps.engine
        if keys is None:
            return html(not_configured_page(), 404)
        checked = checked_link(request.path_params["token"], keys, datetime.now(UTC))
        if isinstance(checked, Outcome):
            return page_for(self.done(checked, "page"), posted=False)
        try:
            found = await run_in_threadpool(db.get_ticket, engine, checked.ticket_id)
            use = await run_in_threadpool(db.get_link_use, engine, checked.link_id) if found else None
        except SQLAlchemyError as exc:
            log.warning("action_link_db_unavailable", error=type(exc).__name__)
            return page_for(self.done(Outcome("unavailable", checked), "page"), posted=False)
        if found is None:
            outcome = Outcome("unknown_ticket", checked)
        elif not person_may_act((await self.edge.current_teams()).people, checked.person):
            outcome = Outcome("not_allowed", checked, found[0])
        elif use is not None and use.used_at is not None:
            outcome = Outcome("already_used", checked, found[0], use)
        else:
            outcome = Outcome("confirmed_page", checked, found[0])
        return page_for(self.done(outcome, "page"), posted=False)

    async def press(self, request: Request) -> Response:
        """POST: act (once per link)."""
        keys = self.deps.link_keys
        if keys is None:
            return html(not_configured_page(), 404)
        checked = checked_link(request.path_params["token"], keys, datetime.now(UTC))
        if isinstance(checked, Outcome):
            return page_for(self.done(checked, "page"), posted=True)
        trace_id = trace_id_of(request)
        return page_for(self.done(await self.act(checked, REASON, trace_id), "page"), posted=True)

    async def slack_actions(self, interaction: SlackInteraction, keys: LinkKeys, trace_id: str) -> None:
        """Act on each button of a block_actions callback, then redraw the message through response_url."""
        outcomes: list[Outcome] = []
        for value in [a.value for a in interaction.actions if a.value]:
            checked = checked_link(token_from_link(value), keys, datetime.now(UTC))
            if isinstance(checked, LinkClaims):
                checked = await self.act(checked, f"{REASON} via Slack by @{interaction.who()}", trace_id)
            outcomes.append(self.done(checked, "slack"))
        if interaction.response_url and outcomes:
            await self.redraw(interaction.response_url, slack_redraw(outcomes, interaction.who()))

    async def redraw(self, url: str, body: dict[str, object]) -> None:
        http = self.deps.http
        if http is None:
            log.warning("slack_redraw_skipped", reason="no HTTP client")
            return
        try:
            answer = await http.post(url, json=body, timeout=REDRAW_TIMEOUT_S)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # its text says which URL: only the kind is logged
            log.warning("slack_redraw_failed", error=type(exc).__name__)
            return
        if answer.status_code >= 300:
            log.warning("slack_redraw_failed", status=answer.status_code)

    async def slack(self, request: Request) -> Response:
        """Slack's interactive callback: verify, answer 200 at once, act and redraw after the answer is sent."""
        secret, keys = self.deps.slack_signing_secret, self.deps.link_keys
        if secret is None or keys is None:  # its buttons carry action links
            return JSONResponse({"error": "slack interactions are not configured"}, status_code=404)
        rejected = self.metrics.rejected
        try:
            raw = await read_body(request, self.deps.max_body_bytes)
        except HttpError as exc:
            rejected.labels(reason="oversize").inc()
            return JSONResponse({"error": exc.error}, status_code=exc.status)
        problem = slack_signature_problem(
            secret,
            request.headers.get("x-slack-request-timestamp"),
            request.headers.get("x-slack-signature"),
            raw,
            datetime.now(UTC).timestamp(),
        )
        if problem is not None:
            rejected.labels(reason="unauthorized").inc()
            log.warning("slack_request_refused", problem=problem)
            return JSONResponse({"error": problem}, status_code=401)
        interaction = slack_interaction(raw)
        if interaction is None:
            rejected.labels(reason="malformed").inc()
            return JSONResponse({"error": "expected a form field 'payload' holding a JSON object"}, status_code=400)
        if interaction.type != "block_actions":
            return Response(status_code=200)
        trace_id = trace_id_of(request)
        # Slack wants an answer within 3 s and a publish may wait up to its own timeout (5 s by default): answer
        # now, act in the background (after the answer is sent), and tell the user through response_url.
        return Response(status_code=200, background=BackgroundTask(self.slack_actions, interaction, keys, trace_id))
