"""``ticketloop``: the operator's command line (like amtool).

    ticketloop config check [--config-dir DIR]
    ticketloop routes test [--config-dir DIR] [--severity S] [--source NAME] [--kind alert|feedback] name=value ...
    ticketloop routes show [--config-dir DIR]
    ticketloop silence add|query|expire ...      (through the REST API; see services/cli_client.py)
    ticketloop oncall show|override|remove ...
    ticketloop deliveries failed | redrive ID... | redrive --all
    ticketloop sla replay --proposed NEW_SLA_YAML (--events FILE.jsonl | --kafka BOOTSTRAP) [--until T]
    ticketloop deadletters list | redrive PARTITION:OFFSET... [--again] [--kafka BOOTSTRAP]   (cli_deadletters.py)

``config check`` validates every config file (errors name file, line and field; exit 1; a ``*_env`` variable that is
unset or empty is an error), says which channels each team in notify.yaml reaches, and warns about teams that
routes or escalations name but notify.yaml gives no channels. ``routes test`` says which route an event with
those labels takes, who owns it, with which priority and policy, who watches, and why. ``sla replay`` runs a
recorded ticket event stream (JSON lines, or the tickets topic read from the start) against the live sla.yaml and
a proposed one, and lists the tickets that would have breached, warned or escalated differently.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TextIO

import httpx
from pydantic import BaseModel

from services.cli_client import (
    ApiClient,
    add_delivery_commands,
    add_oncall_commands,
    add_silence_commands,
    delivery_command,
    oncall_command,
    run_api_command,
    silence_command,
)
from services.cli_db import add_db_commands, db_command
from services.cli_deadletters import add_deadletter_commands, deadletter_command
from services.cli_handover import add_handover_commands, handover_command
from services.intake.config import IntakeConfig
from services.notifier.config import NotifyConfig
from services.notifier.config import describe as describe_channels
from services.review.command import add_review_command, review_command
from services.router.decision import decide_labels
from services.router.packages import completeness, load_packages
from services.router.projects import ProjectsConfig
from services.router.rules import RoutingConfig, describe
from services.sla.calendar import unknown_years
from services.sla.policy import NEXT, OWNER, SlaConfig
from services.sla.replay_io import read_events, read_topic, replay_report
from shared.events import EventKind, Severity, bounded_time
from shared.infra.config import ConfigError, load_yaml_model
from shared.rules.matchers import matcher_labels
from shared.rules.oncall import TeamsConfig
from shared.streaming.reader import TopicReadError
from shared.streaming.topics import Topics

FILES: dict[str, type[BaseModel]] = {
    "intake.yaml": IntakeConfig,
    "routing.yaml": RoutingConfig,
    "projects.yaml": ProjectsConfig,
    "sla.yaml": SlaConfig,
    "notify.yaml": NotifyConfig,
    "teams.yaml": TeamsConfig,
}


OPTIONAL = {"teams.yaml"}
"""Files a deployment may leave out: no teams.yaml means no rotations, tickets stay with teams."""


def default_config_dir() -> Path:
    return Path(os.environ.get("TICKETLOOP_CONFIG_DIR", "deploy/local/config"))


def config_check(config_dir: Path, out: TextIO) -> int:
    loaded: dict[str, BaseModel] = {}
    failed = False
    for name, model in FILES.items():
        if name in OPTIONAL and not (config_dir / name).exists():
            print(f"skipped: {config_dir / name} (optional, not there)", file=out)
            continue
        try:
            loaded[name] = load_yaml_model(config_dir / name, model)
        except ConfigError as exc:
            failed = True
            for problem in exc.problems:
                print(f"error: {problem}", file=out)
        else:
            print(f"ok: {config_dir / name}", file=out)
    lines, packages_ok = package_lines(config_dir)
    failed = failed or not packages_ok
    for line in lines:
        print(line, file=out)
    intake = loaded.get("intake.yaml")
    if isinstance(intake, IntakeConfig):
        for line in door_lines(intake):
            print(line, file=out)
    notify = loaded.get("notify.yaml")
    if isinstance(notify, NotifyConfig):
        for line in reach_lines(notify):
            print(line, file=out)
    for warning in cross_check(loaded):
        print(f"warning: {warning}", file=out)
    return 1 if failed else 0


def package_lines(config_dir: Path) -> tuple[list[str], bool]:
    """The handover packages in force and what each lacks, or the errors of one that does not validate."""
    try:
        packages = load_packages(config_dir)
    except ConfigError as exc:
        return [f"error: {problem}" for problem in exc.problems], False
    return [
        f"ok: {p.label()} in force" + (f"; lacks {', '.join(lacks)}" if (lacks := completeness(p)) else "")
        for p in packages.values()
    ], True


def door_lines(intake: IntakeConfig) -> list[str]:
    """Which doors intake.yaml opens: each integration's format, signing, heartbeat and rate limit, each API
    client's role, each form and the mail addresses; names and limits only, never a token or secret."""
    lines = []
    for i in intake.integrations:
        parts = [f"format {i.format}"]
        if i.signing_key() is not None:
            parts.append("signed")
        if i.heartbeat is not None:
            every = i.heartbeat.every.total_seconds()
            grace = (i.heartbeat.grace or i.heartbeat.every).total_seconds()
            parts.append(f"heartbeat {i.heartbeat_name()} every {every:g} s, grace {grace:g} s")
        parts.append(f"rate limit {i.rate_limit.describe()}" if i.rate_limit is not None else "no rate limit")
        lines.append(f"intake.yaml: integration {i.name}: {', '.join(parts)}")
    for c in intake.api_clients:
        acts = f", acts for {', '.join(c.acts_for)}" if c.acts_for else ""
        lines.append(f"intake.yaml: api client {c.name}: role {c.role}{acts}")
    for f in intake.forms:
        who = f" (customer {f.customer})" if f.customer else ""
        lines.append(f"intake.yaml: form /feedback/{f.name}{who}, rate limit {f.rate_limit.describe()}")
    if intake.mail is not None:
        m = intake.mail
        where = ", ".join(
            x
            for x in (f"project {m.project}" if m.project else "", f"customer {m.customer}" if m.customer else "")
            if x
        )
        lines.append(f"intake.yaml: mail to {', '.join(m.addresses)}" + (f" ({where})" if where else ""))
    return lines


def reach_lines(notify: NotifyConfig) -> list[str]:
    """Which channels each team in notify.yaml reaches: kinds and entry names or addresses, never a URL or secret."""
    return [
        f"notify.yaml: {team} reaches {', '.join(targets) if targets else 'nothing'}"
        for team, targets in describe_channels(notify).items()
    ]


def cross_check(loaded: dict[str, BaseModel], today: date | None = None) -> list[str]:
    warnings = _unknown_people(loaded) + _unpublished_years(loaded, today or datetime.now(UTC).date())
    warnings += _leaderless(loaded)
    notify = loaded.get("notify.yaml")
    if not isinstance(notify, NotifyConfig) or notify.fallback_team:
        return warnings
    reachable = {name for name, t in notify.teams.items() if t.targets()}
    routing = loaded.get("routing.yaml")
    if isinstance(routing, RoutingConfig):
        warnings.extend(
            f"routing.yaml route {row['route']}: team {row['team']!r} has no channels in notify.yaml"
            for row in describe(routing)
            if row["team"] not in reachable
        )
    sla = loaded.get("sla.yaml")
    if isinstance(sla, SlaConfig):
        for pname, policy in sla.policies.items():
            for i, level in enumerate(policy.escalation):
                if level.team not in (OWNER, NEXT) and level.team not in reachable:
                    warnings.append(
                        f"sla.yaml policies.{pname}.escalation.{i}: team {level.team!r} has no channels in notify.yaml"
                    )
    return warnings


def _unpublished_years(loaded: dict[str, BaseModel], today: date) -> list[str]:
    """China's holiday calendar of this year or the next that the installed chinesecalendar does not know yet."""
    sla = loaded.get("sla.yaml")
    if not isinstance(sla, SlaConfig):
        return []
    return [
        f"sla.yaml calendars.{name}: China's official holidays for {year} are not known to the installed "
        f"chinesecalendar; until it is updated, that year counts {', '.join(cal.days)} (list its holidays and "
        "make-up days under holidays/workdays)"
        for name, cal in sla.calendars.items()
        for year in unknown_years(cal, [today.year, today.year + 1])
    ]


def _leaderless(loaded: dict[str, BaseModel]) -> list[str]:
    """Escalation levels for a team's lead where teams.yaml names no lead (the on-call person gets them)."""
    teams, sla = loaded.get("teams.yaml"), loaded.get("sla.yaml")
    if not isinstance(sla, SlaConfig) or not isinstance(teams, TeamsConfig):  # a teams.yaml in error is said so
        return []
    leads = {name: t.lead for name, t in teams.teams.items()}
    return [
        f"sla.yaml policies.{pname}.escalation.{i}: lead of {level.team!r}, but teams.yaml names no lead for it; "
        "its on-call person gets it"
        for pname, policy in sla.policies.items()
        for i, level in enumerate(policy.escalation)
        if level.lead and level.team not in (OWNER, NEXT) and not leads.get(level.team)
    ]


def _unknown_people(loaded: dict[str, BaseModel]) -> list[str]:
    """Engineers that projects.yaml names but teams.yaml does not know (nobody could reach them)."""
    teams, projects = loaded.get("teams.yaml"), loaded.get("projects.yaml")
    if not isinstance(teams, TeamsConfig) or not isinstance(projects, ProjectsConfig):
        return []
    return [
        f"projects.yaml project {p.name}: engineer {e!r} is not in teams.yaml people"
        for p in projects.projects
        for e in p.implementation.engineers
        if e not in teams.people
    ]


def routes_test(
    config_dir: Path,
    labels: dict[str, str],
    severity: Severity,
    source: str,
    kind: EventKind,
    at: datetime,
    out: TextIO,
) -> int:
    try:
        routing = load_yaml_model(config_dir / "routing.yaml", RoutingConfig)
        projects = load_yaml_model(config_dir / "projects.yaml", ProjectsConfig)
    except ConfigError as exc:
        print(f"error: {exc}", file=out)
        return 1
    seen = matcher_labels(labels, severity.value, source, kind.value)
    d = decide_labels(seen, severity, routing, projects, at)  # the router's own decision (services/router/decision.py)
    print(f"route:    {d.rule}", file=out)
    print(f"owner:    {d.person + ' (' + d.team + ')' if d.person else d.team}", file=out)
    print(f"priority: {d.priority}", file=out)
    print(f"policy:   {d.policy}", file=out)
    print(f"watchers: {', '.join(d.watchers) or '-'}", file=out)
    print(f"channels: {', '.join(d.channels) or 'all of the team'}", file=out)
    if d.muted_until is not None:
        print(f"muted:    by {', '.join(d.muted_by)} until {d.muted_until.isoformat()}", file=out)
    if d.project:
        print(f"project:  {d.project} ({d.customer}), phase {d.phase}, next level {d.next_level or '-'}", file=out)
    print(f"why:      {d.explain()}", file=out)
    return 0


def routes_show(config_dir: Path, out: TextIO) -> int:
    try:
        routing = load_yaml_model(config_dir / "routing.yaml", RoutingConfig)
    except ConfigError as exc:
        print(f"error: {exc}", file=out)
        return 1
    for row in describe(routing):
        depth = row["route"].count(" > ")
        matchers = ", ".join(row["matchers"]) or "*"
        owner = f"{row['person']} ({row['team']})" if row["person"] else row["team"]
        cont = " continue" if row["continue"] else ""
        name = row["route"].split(" > ")[-1]
        print(f"{'  ' * depth}{name} {{{matchers}}} -> {owner} {row['priority']} {row['policy']}{cont}", file=out)
    return 0


def _aware(text: str) -> datetime:
    """An ISO 8601 time (naive: UTC) between the years the loop computes with (1970-9000, as the API takes)."""
    try:
        return bounded_time(datetime.fromisoformat(text))  # a naive time comes back as UTC
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time {text!r}: {exc}") from None


def event_fields(
    labels: Mapping[str, str], severity: Severity | None, source: str | None, kind: EventKind | None
) -> tuple[Severity, str, EventKind]:
    """The tested event's severity, source and kind: the option, else the label of that name (matchers see these
    three as labels, so ``severity=critical`` means a critical event), else warning, ``cli``, alert. ValueError
    when an option and its label disagree, or a label is not a severity or kind."""
    picked: dict[str, str] = {}
    for name, given, default in (("severity", severity, "warning"), ("source", source, "cli"), ("kind", kind, "alert")):
        label = labels.get(name)
        if given is not None and label is not None and label != str(given):
            raise ValueError(f"--{name} {given} and the label {name}={label} disagree: give one")
        picked[name] = str(given) if given is not None else label if label is not None else default
    try:
        return Severity(picked["severity"]), picked["source"], EventKind(picked["kind"])
    except ValueError:
        raise ValueError(
            f"severity is one of {', '.join(Severity)} and kind one of {', '.join(EventKind)}, "
            f"not {picked['severity']!r} and {picked['kind']!r}"
        ) from None


def parse_label(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"labels are name=value, not {text!r}")
    return name, value


def sla_replay(args: argparse.Namespace, config_dir: Path, out: TextIO) -> int:
    try:
        live = load_yaml_model(config_dir / "sla.yaml", SlaConfig)
        proposed = load_yaml_model(args.proposed, SlaConfig)
        if args.events is not None:
            events = read_events(args.events)
        else:
            events = asyncio.run(read_topic(args.kafka, Topics(args.topic_prefix).tickets.name, not args.no_progress))
    except (ConfigError, TopicReadError) as exc:
        print(f"error: {exc}", file=out)
        return 1
    # the clocks run on to now unless told otherwise: a ticket still open past its deadline has breached by now,
    # under either policy, even if nothing was recorded after its deadline
    horizon = args.until or datetime.now(UTC)
    try:
        report = replay_report(events, live, proposed, args.proposed, horizon, not args.no_progress)
    except OverflowError:  # recorded events come through intake, which takes only 1970-9000; a hand-made file may not
        print("error: a time in these events is past what dates can hold once a target is added to it", file=out)
        return 1
    print(report, file=out)
    return 0


API_COMMANDS: dict[str, Callable[[argparse.Namespace, ApiClient, TextIO], int]] = {
    "silence": silence_command,
    "oncall": oncall_command,
    "deliveries": delivery_command,
}
"""The areas that talk to the REST API (services/cli_client.py)."""

OWN_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "deadletters": deadletter_command,
    "db": db_command,
}
"""The areas that reach what they need themselves (Kafka, the database), no configuration directory."""

LOCAL_COMMANDS: dict[str, Callable[[argparse.Namespace, Path, TextIO], int]] = {
    "sla": sla_replay,
    "review": review_command,
    "handover": handover_command,
}
"""The areas that read the configuration directory (and the read model or the tickets topic) themselves."""


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, http: httpx.Client | None = None) -> int:
    """``http``: the client for the API commands (tests pass one bound to an in-process app)."""
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="ticketloop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="area", required=True)
    config = sub.add_parser("config", help="configuration files").add_subparsers(dest="action", required=True)
    check = config.add_parser("check", help="validate every config file")
    routes = sub.add_parser("routes", help="the routing tree").add_subparsers(dest="action", required=True)
    test = routes.add_parser("test", help="which route an event with these labels takes")
    test.add_argument("labels", nargs="*", type=parse_label, metavar="name=value")
    test.add_argument(
        "--severity", type=Severity, default=None, choices=list(Severity), help="or a severity= label (default warning)"
    )
    test.add_argument("--source", default=None, help="or a source= label (default cli)")
    test.add_argument(
        "--kind", type=EventKind, default=None, choices=list(EventKind), help="or a kind= label (default alert)"
    )
    test.add_argument(
        "--at", type=_aware, default=None, help="decide as at this time (ISO 8601), e.g. to check a handover"
    )
    show = routes.add_parser("show", help="the routing tree with each route's effective settings")
    for p in (check, test, show):
        p.add_argument(
            "--config-dir", type=Path, default=None, help="default: $TICKETLOOP_CONFIG_DIR or deploy/local/config"
        )
    sla = sub.add_parser("sla", help="SLA policies").add_subparsers(dest="action", required=True)
    what_if = sla.add_parser("replay", help="what a proposed sla.yaml would have done to recorded tickets")
    what_if.add_argument("--proposed", type=Path, required=True, help="the changed sla.yaml")
    source = what_if.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", type=Path, help="ticket events, one JSON object per line")
    source.add_argument("--kafka", metavar="BOOTSTRAP", help="read the tickets topic from the start")
    what_if.add_argument("--topic-prefix", default=os.environ.get("TICKETLOOP_TOPIC_PREFIX", "ticketloop."))
    what_if.add_argument(
        "--until", type=_aware, default=None, help="run the clocks on to this time (ISO 8601; default: now)"
    )
    what_if.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    what_if.add_argument(
        "--config-dir", type=Path, default=None, help="the live sla.yaml's directory (default as config check)"
    )
    add_silence_commands(sub, _aware)
    add_oncall_commands(sub, _aware)
    add_delivery_commands(sub)
    add_review_command(sub, _aware)
    add_handover_commands(sub)
    add_deadletter_commands(sub)
    add_db_commands(sub)
    args = parser.parse_args(argv)
    own_command = OWN_COMMANDS.get(args.area)
    if own_command is not None:
        return own_command(args, out)
    api_command = API_COMMANDS.get(args.area)
    if api_command is not None:
        return run_api_command(api_command, args, http, out)
    config_dir = args.config_dir or default_config_dir()
    local_command = LOCAL_COMMANDS.get(args.area)
    if local_command is not None:
        return local_command(args, config_dir, out)
    if args.area == "config":
        return config_check(config_dir, out)
    if args.action == "test":
        return routes_test_command(args, config_dir, out)
    return routes_show(config_dir, out)


def routes_test_command(args: argparse.Namespace, config_dir: Path, out: TextIO) -> int:
    labels = dict(args.labels)
    try:
        severity, origin, kind = event_fields(labels, args.severity, args.source, args.kind)
    except ValueError as exc:
        print(f"error: {exc}", file=out)
        return 1
    return routes_test(config_dir, labels, severity, origin, kind, args.at or datetime.now(UTC), out)


if __name__ == "__main__":
    sys.exit(main())
