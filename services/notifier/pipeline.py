"""From events to dispatches: what people are told (``notices_for_*``) and who gets it over which channel
(pure ``plan``). Sending is services/notifier/lanes.py, through the outbox.

Every dispatch has a stable notification id — the notice's id, the channel and the target — so a notice
handled twice (after a restart, or a re-fired timer) is sent once: the outbox and the delivery log are checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from services.notifier.channels.base import HANDOVER, ActionLink, Mention, Message
from services.notifier.channels.registry import REDRAWING
from services.notifier.config import NotifyConfig
from services.notifier.stages import digest_budget, in_parts
from services.notifier.templates import (
    STATE_HEADLINES,
    render_assignment,
    render_escalation,
    render_handover,
    render_resolution,
    render_state,
    render_survey,
    render_update,
    render_workaround,
)
from shared.events import Change, Delivery, Escalation, EventKind, HandoverDigest, TicketEvent
from shared.infra.ids import derived_id, ordered_id
from shared.rules.muting import Mute
from shared.rules.oncall import OnCall, TeamsConfig, person_may_act
from shared.rules.satisfaction import SCORES, SURVEY_WINDOW


@dataclass(frozen=True, slots=True)
class Dispatch:
    notification_id: str
    ticket_id: str
    channel: str
    target: str
    message: Message


@dataclass(frozen=True, slots=True)
class Notice:
    """Something people are told about: who (a team, its watchers), over which channel kinds, and what."""

    notice_id: str
    ticket_id: str
    team: str
    message: Message
    watchers: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    recipients: tuple[tuple[str, str], ...] = ()
    """Explicit (channel, target) pairs instead of teams: e.g. the reporter of a piece of feedback."""
    person: str | None = None
    """The person it is for (the owner, or whoever is on call for the target team): mailed in person too."""
    opened: datetime | None = None
    """When its ticket opened (None: no ticket): its notification ids begin with it (``ordered_id``), so the
    delivery log's key grows at its end as tickets open."""


SurveyLinker = Callable[[str, str, datetime, int], str]
"""(ticket id, reporter, closes at, score) -> the signed survey link with that score chosen (wired in main)."""
SolvedLinker = Callable[[str, str, bool], str]
"""(ticket id, reporter, solved) -> the signed "this solved it / it did not" link (wired in main)."""
SOLVED_LABELS = {True: "Yes, this solved it / 已解决", False: "No, it did not / 未解决"}


def survey_notice(event: TicketEvent, survey: SurveyLinker | None) -> Notice | None:
    """A resolved report's satisfaction survey, mailed to its reporter (when the reporter left an address and
    survey links are configured); its links work until ``SURVEY_WINDOW`` after the resolution."""
    t = event.ticket
    reporter = t.labels.get("reporter", "")
    if survey is None or event.change is not Change.resolved or t.kind is not EventKind.feedback:
        return None
    if "@" not in reporter or t.resolved_at is None:
        return None
    closes = t.resolved_at + SURVEY_WINDOW
    links = {score: survey(t.ticket_id, reporter, closes, score) for score in SCORES}
    message = render_survey(event, links, f"{closes:%Y-%m-%d %H:%M} UTC")
    return Notice(
        f"{event.change_id}:survey", t.ticket_id, t.team, message, recipients=(("email", reporter),), opened=t.opened_at
    )


def notices_for_ticket_event(
    event: TicketEvent, public_url: str, survey: SurveyLinker | None = None, solved: SolvedLinker | None = None
) -> list[Notice]:
    """Everything people are told about one ticket event: the owner's notice; for a report that matches a
    known issue, the workaround to its reporter; for a resolved report, the survey to its reporter. (Whether they
    may go out now is the mute stage's call.)"""
    notices = []
    owner = notice_for_ticket_event(event, public_url)
    if owner is not None:
        notices.append(owner)
    state = state_notice(event, public_url)
    if state is not None:
        notices.append(state)
    reporter = event.ticket.labels.get("reporter", "")
    if event.workaround and event.notify_reporter and "@" in reporter:
        message = render_workaround(event, public_url)
        if solved is not None:  # the reporter's word on the suggestion feeds the known issue's statistics
            answers = tuple(
                ActionLink("solved", SOLVED_LABELS[yes], solved(event.ticket.ticket_id, reporter, yes))
                for yes in (True, False)
            )
            message = replace(message, actions=answers)
        notices.append(
            Notice(
                f"{event.change_id}:workaround",
                event.ticket.ticket_id,
                event.ticket.team,
                message,
                recipients=(("email", reporter),),
                opened=event.ticket.opened_at,
            )
        )
    asked = survey_notice(event, survey)
    if asked is not None:
        notices.append(asked)
    return notices


def notice_for_ticket_event(event: TicketEvent, public_url: str) -> Notice | None:
    """Assignments (opened, or group_notified after group_wait; reassigned, reopened), updates about joining
    alerts and resolutions go to the owner and the watchers; other changes notify nobody."""
    t = event.ticket
    if event.change is Change.opened and t.notify_at is not None and t.notified_at is None:
        return None  # the route's group_wait holds the first notification (a group_notified change follows)
    if event.change in (Change.opened, Change.reassigned, Change.reopened, Change.group_notified):
        message = render_assignment(event, public_url)
    elif event.change is Change.alerts_joined:
        message = render_update(event, public_url)
    elif event.change is Change.resolved:
        message = render_resolution(event, public_url)
    else:
        return None
    return Notice(
        event.change_id,
        t.ticket_id,
        t.team,
        message,
        tuple(t.watchers),
        tuple(t.channels),
        person=t.person,
        opened=t.opened_at,
    )


def state_notice(event: TicketEvent, public_url: str) -> Notice | None:
    """Someone acted on the ticket: its message is redrawn in place where the channel can (Slack); channels that
    cannot are not told (their next message shows the state)."""
    if event.change.value not in STATE_HEADLINES:
        return None
    t = event.ticket
    kinds = tuple(k for k in REDRAWING if not t.channels or k in t.channels)
    if not kinds:
        return None
    message = render_state(event, public_url)
    return Notice(
        f"{event.change_id}:state",
        t.ticket_id,
        t.team,
        message,
        tuple(t.watchers),
        kinds,
        person=t.person,
        opened=t.opened_at,
    )


def notice_for_handover(digest: HandoverDigest, public_url: str) -> Notice:
    """One notice to both teams of the project (operations, and the implementation team as a watcher: one
    message per distinct target), keyed by the digest's id."""
    message = render_handover(digest, public_url)
    return Notice(digest.digest_id, digest.digest_id, digest.operations, message, (digest.implementation,))


def notifies(escalation: Escalation) -> bool:
    """An acknowledge breach is recorded on the timeline and counted, not sent: the policy's escalation levels
    notify. The other clocks' breaches have no levels after them, so they go to the owner."""
    return escalation.kind != "breach" or escalation.clock != "acknowledge"


def notice_for_escalation(
    escalation: Escalation, public_url: str, on_call: OnCall | None = None, teams: TeamsConfig | None = None
) -> Notice:
    """To the target team and a person: its lead (teams.yaml) when the level says so and the team has one; else
    the owner when the owner's team is the target; else whoever is on call for the target team."""
    message = render_escalation(escalation, public_url)
    t = escalation.ticket
    team = teams.teams.get(escalation.target_team) if teams is not None else None
    person = team.lead if escalation.to_lead and team is not None else None
    if person is None and escalation.target_team == t.team and t.person:
        person = t.person
    if person is None and on_call is not None and on_call.team == escalation.target_team:
        person = on_call.person
    return Notice(
        escalation.escalation_id,
        escalation.ticket_id,
        escalation.target_team,
        message,
        kinds=tuple(t.channels),
        person=person,
        opened=t.opened_at,
    )


LinkIssuer = Callable[[str, str, str], str]
"""(ticket id, action, person) -> a signed action link's URL (shared.infra.actionlinks, wired in main)."""

LINK_ACTIONS: dict[str, tuple[str, ...]] = {
    "assignment": ("ack", "take", "snooze", "resolve"),
    "update": ("ack", "take", "snooze", "resolve"),
    "warning": ("ack", "take", "snooze", "resolve"),
    "escalation": ("ack", "take", "snooze", "resolve"),
    "breach": ("resolve",),
    "state": ("ack", "take", "snooze", "resolve"),
}
LINK_LABELS = {"ack": "Acknowledge", "take": "Take it", "snooze": "Snooze 1 h", "resolve": "Resolve"}


def with_actions(notice: Notice, issue: LinkIssuer | None, state: str, teams: TeamsConfig | None = None) -> Notice:
    """The notice with its one-click links, each bound to the person it is for (or, without one, to the team:
    the timeline then names the team). Messages to reporters never carry links, nor messages to a viewer in
    ``teams`` (their links would not act); "take it" needs a person, and "acknowledge" is left out of a ticket
    already acknowledged."""
    if issue is None or notice.recipients or state not in ("open", "acknowledged"):
        return notice
    if teams is not None and notice.person is not None and not person_may_act(teams.people, notice.person):
        return notice
    person = notice.person or f"{notice.team} team"
    actions = [
        a
        for a in LINK_ACTIONS.get(notice.message.kind, ())
        if not (a == "take" and notice.person is None) and not (a == "ack" and state != "open")
    ]
    links = tuple(ActionLink(a, LINK_LABELS[a], issue(notice.ticket_id, a, person)) for a in actions)
    return replace(notice, message=replace(notice.message, actions=links))


def with_mention(notice: Notice, teams: TeamsConfig) -> Notice:
    """The notice names its person for chat robots that mention people (by mobile, where teams.yaml has one)."""
    if notice.person is None or notice.recipients:
        return notice
    found = teams.people.get(notice.person)
    mention = Mention(
        (found.name if found is not None else None) or notice.person,
        found.mobile if found is not None else None,
        found.email if found is not None else None,
    )
    return replace(notice, message=replace(notice.message, mention=mention))


def plan_notice(notice: Notice, config: NotifyConfig, person_email: str | None = None) -> list[Dispatch]:
    """The dispatches of a notice; ``person_email``: the notice's person's address (teams.yaml), if any."""
    if notice.recipients:
        return [
            Dispatch(
                ordered_id(notice.opened, notice.notice_id, channel, target),
                notice.ticket_id,
                channel,
                target,
                notice.message,
            )
            for channel, target in notice.recipients
        ]
    planned = plan(
        notice.notice_id,
        notice.ticket_id,
        notice.team,
        notice.message,
        config,
        watchers=notice.watchers,
        kinds=notice.kinds,
        opened=notice.opened,
    )
    wants_email = not notice.kinds or "email" in notice.kinds
    if person_email and wants_email and all(d.target != person_email for d in planned):
        nid = ordered_id(notice.opened, notice.notice_id, "email", person_email)
        planned.insert(0, Dispatch(nid, notice.ticket_id, "email", person_email, notice.message))
    return planned


def in_channel_parts(dispatch: Dispatch, max_bytes: Mapping[str, int]) -> list[Dispatch]:
    """A handover digest longer than its channel's message takes (``max_bytes`` by channel kind, less the room
    ``digest_budget`` leaves for the vendor's envelope), as several dispatches (``stages.in_parts``), sent in
    order by the target's lane. The first keeps the dispatch's id; part k's id adds its number (stable: the same
    digest to the same channel parts the same way again)."""
    if dispatch.message.kind != HANDOVER or dispatch.channel not in max_bytes:
        return [dispatch]
    parts = in_parts(dispatch.message, digest_budget(max_bytes[dispatch.channel]))
    return [
        replace(
            dispatch,
            notification_id=dispatch.notification_id if k == 1 else derived_id(dispatch.notification_id, f"part {k}"),
            message=part,
        )
        for k, part in enumerate(parts, start=1)
    ]


def _team_targets(team: str, config: NotifyConfig) -> list[tuple[str, str]]:
    channels = config.teams.get(team)
    if (channels is None or not channels.targets()) and config.fallback_team:
        channels = config.teams[config.fallback_team]
    return channels.targets() if channels is not None else []


def plan(
    notice_id: str,
    ticket_id: str,
    team: str,
    message: Message,
    config: NotifyConfig,
    *,
    watchers: Sequence[str] = (),
    kinds: Sequence[str] = (),
    opened: datetime | None = None,
) -> list[Dispatch]:
    """One dispatch per distinct (channel, target) of the team and its watchers, limited to ``kinds`` if given;
    ``opened``: when the ticket opened (``Notice.opened``)."""
    targets: dict[tuple[str, str], None] = {}
    for name in (team, *watchers):
        for target in _team_targets(name, config):
            if not kinds or target[0] in kinds:
                targets.setdefault(target)
    return [
        Dispatch(ordered_id(opened, notice_id, channel, target), ticket_id, channel, target, message)
        for channel, target in targets
    ]


def suppressed(notice: Notice, mute: Mute, now: datetime) -> Delivery:
    """The delivery log's record of a notice the mute stage held back: which one, and what muted it."""
    return Delivery(
        notification_id=ordered_id(notice.opened, notice.notice_id, "muted"),
        ticket_id=notice.ticket_id,
        kind=notice.message.kind,
        channel="none",
        recipient=notice.team,
        status="suppressed",
        attempts=0,
        error=f"{mute.cause}: {mute.reason}",
        at=now,
    )
