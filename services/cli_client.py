"""The ``ticketloop`` commands that talk to the REST API (like amtool talks to Alertmanager).

    ticketloop silence add --comment TEXT (--duration 2h | --end TIME) [--start TIME] [--author NAME] matcher...
    ticketloop silence query [--state active|pending|expired|all]
    ticketloop silence expire ID...
    ticketloop oncall show [TEAM] [--at TIME]
    ticketloop oncall override TEAM PERSON (--duration 8h | --end TIME) [--start TIME] [--reason TEXT]
    ticketloop oncall remove TEAM OVERRIDE_ID
    ticketloop deliveries failed [--limit N]
    ticketloop deliveries redrive (ID... | --all)

The API address and token come from ``--api-url`` / ``--api-token`` or ``TICKETLOOP_API_URL`` /
``TICKETLOOP_API_TOKEN``. Errors from the API are printed with the field they name; the exit code is 1.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiError(Exception):
    pass


def shown_url(url: str) -> str:
    """An API address as it may be printed: without a user, password, query or fragment (they may hold a secret)."""
    try:
        parsed = httpx.URL(url)
        return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "(an address that is not a URL)"


UNEXPECTED = "unexpected answer from the API at {url} (is it ticketloop's intake?)"


class ApiClient:
    def __init__(self, http: httpx.Client, token: str) -> None:
        self.http, self.token = http, token

    @property
    def url(self) -> str:
        return shown_url(str(self.http.base_url))

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """The API's JSON object answer; ApiError saying what went wrong, never with the token or the URL's
        credentials (a header httpx refuses to send is not quoted: it is the token's)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            resp = self.http.request(method, path, json=body, params=params, headers=headers)
        except httpx.LocalProtocolError:
            raise ApiError(f"the request to {self.url} could not be sent (is the API token one line?)") from None
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the API at {self.url}: {type(exc).__name__}{_reason(exc)}") from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code >= 400:
            if not isinstance(data, dict):
                raise ApiError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:200]}")
            found = data.get("problems")
            problems = "".join(
                f"\n  {p.get('field', '')}: {p.get('error', '')}" if isinstance(p, dict) else f"\n  {p}"
                for p in (found if isinstance(found, list) else [])
            )
            raise ApiError(f"{method} {path}: {data.get('error', resp.status_code)}{problems}")
        if not isinstance(data, dict):
            raise ApiError(UNEXPECTED.format(url=self.url))
        return data


def _reason(exc: httpx.HTTPError) -> str:
    """httpx's text for a request it sent and got no answer to (``[Errno 111] Connection refused``, ``timed
    out``): it names neither the URL nor a header."""
    text = str(exc)
    return f": {text}" if text else ""


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-url", default=None, help=f"default: $TICKETLOOP_API_URL or {DEFAULT_URL}")
    parser.add_argument("--api-token", default=None, help="default: $TICKETLOOP_API_TOKEN")


def client_from(args: argparse.Namespace, http: httpx.Client | None) -> ApiClient:
    """The API client of the arguments; ApiError for a token that is not one word of printable ASCII (it would
    go into a header; spaces and a line end around it, as a token file saved on Windows has, are dropped) or an
    address that is not a URL (neither is quoted)."""
    token = (args.api_token or os.environ.get("TICKETLOOP_API_TOKEN", "")).strip()
    if not all(33 <= ord(c) < 127 for c in token):
        raise ApiError("the API token must be printable ASCII without spaces (it is not shown here)")
    if http is None:
        url = args.api_url or os.environ.get("TICKETLOOP_API_URL", DEFAULT_URL)
        try:
            http = httpx.Client(base_url=url, timeout=10.0)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise ApiError("the API address is not a URL (e.g. http://127.0.0.1:8080)") from None
    return ApiClient(http, token)


def run_api_command(
    command: Callable[[argparse.Namespace, ApiClient, TextIO], int],
    args: argparse.Namespace,
    http: httpx.Client | None,
    out: TextIO,
) -> int:
    """Run one API command with the client of the arguments (an unusable token or address: its error, exit 1);
    an answer without the fields the command reads (a wrong address that answers JSON) is said so, exit 1."""
    try:
        api = client_from(args, http)
    except ApiError as exc:
        print(f"error: {exc}", file=out)
        return 1
    try:
        return command(args, api, out)
    except (KeyError, TypeError, AttributeError, ValueError):
        print(f"error: {UNEXPECTED.format(url=api.url)}", file=out)
        return 1


def segment(value: str) -> str:
    """An id as one path segment (``a?b`` is the id, not a query)."""
    return quote(value, safe="")


def nonempty(value: str) -> str:
    """An argparse type: a value that is not empty."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def add_silence_commands(sub: Any, aware: Callable[[str], datetime]) -> None:
    silence = sub.add_parser("silence", help="mute notifications by matchers").add_subparsers(
        dest="action", required=True
    )
    add = silence.add_parser("add", help="create a silence")
    add.add_argument("matchers", nargs="+", metavar='name="value"')
    add.add_argument("--comment", required=True)
    add.add_argument("--author", default=None, help="default: the API client's name")
    end = add.add_mutually_exclusive_group(required=True)
    end.add_argument("--duration", type=nonempty, help='e.g. "2h", "30m", "1d"')
    end.add_argument("--end", type=aware, help="ISO 8601 time")
    add.add_argument("--start", type=aware, default=None, help="ISO 8601 time (default: now)")
    query = silence.add_parser("query", help="list silences")
    query.add_argument("--state", choices=["active", "pending", "expired", "all"], default=None)
    expire = silence.add_parser("expire", help="end silences now")
    expire.add_argument("ids", nargs="+", type=nonempty)
    for p in (add, query, expire):
        add_api_arguments(p)


def _silence_line(s: dict[str, Any]) -> str:
    return (
        f"{s['silence_id']}  {s['state']:<8} {' '.join(s['matchers'])}  {s['starts_at']} -> {s['ends_at']}  "
        f"{s['created_by']}: {s['comment']}"
    )


def silence_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    try:
        if args.action == "add":
            body: dict[str, Any] = {"matchers": args.matchers, "comment": args.comment}
            if args.author:
                body["created_by"] = args.author
            if args.duration:
                body["duration"] = args.duration
            else:
                body["ends_at"] = args.end.isoformat()
            if args.start:
                body["starts_at"] = args.start.isoformat()
            made = api.call("POST", "/api/v1/silences", body)
            print(made["silence_id"], file=out)
        elif args.action == "query":
            wanted = {"state": args.state} if args.state and args.state != "all" else None
            found = api.call("GET", "/api/v1/silences", params=wanted)
            rows = found["silences"]
            if args.state is None:
                rows = [s for s in rows if s["state"] != "expired"]
            for s in rows:
                print(_silence_line(s), file=out)
        else:
            for sid in args.ids:
                print(_silence_line(api.call("DELETE", f"/api/v1/silences/{segment(sid)}")), file=out)
    except ApiError as exc:
        print(f"error: {exc}", file=out)
        return 1
    return 0


def add_oncall_commands(sub: Any, aware: Callable[[str], datetime]) -> None:
    oncall = sub.add_parser("oncall", help="who is on call; overrides").add_subparsers(dest="action", required=True)
    show = oncall.add_parser("show", help="who is on call now (or --at), for every team or one")
    show.add_argument("team", nargs="?")
    show.add_argument("--at", type=aware, default=None)
    override = oncall.add_parser("override", help="put someone on call for a team for a while")
    override.add_argument("team")
    override.add_argument("person")
    end = override.add_mutually_exclusive_group(required=True)
    end.add_argument("--duration", type=nonempty, help='e.g. "8h"')
    end.add_argument("--end", type=aware)
    override.add_argument("--start", type=aware, default=None)
    override.add_argument("--reason", default="")
    remove = oncall.add_parser("remove", help="remove an override")
    remove.add_argument("team")
    remove.add_argument("override_id", type=nonempty)
    for p in (show, override, remove):
        add_api_arguments(p)


def _who(entry: dict[str, Any]) -> str:
    if not entry.get("person"):
        return "nobody (the team)"
    how = f"override {entry['override_id']}" if entry["source"] == "override" else "rotation"
    return f"{entry['person']} ({how}, until {entry['until']})"


def oncall_show(args: argparse.Namespace, api: ApiClient, out: TextIO) -> None:
    """Who is on call for every team, or one team's rotation and overrides."""
    query = {"at": args.at.isoformat()} if args.at else None
    if not args.team:
        for entry in api.call("GET", "/api/v1/oncall", params=query)["teams"]:
            print(f"{entry['team']}: {_who(entry)}", file=out)
        return
    team = api.call("GET", f"/api/v1/oncall/{segment(args.team)}", params=query)
    print(f"{team['team']}: {_who(team['on_call'])}", file=out)
    for shift in team["rotation"]:
        print(f"  rotation: {shift['person']}  {shift['starts_at']} -> {shift['ends_at']}", file=out)
    for o in team["overrides"]:
        print(
            f"  override {o['override_id']}: {o['person']}  {o['starts_at']} -> {o['ends_at']}  "
            f"({o['created_by']}: {o['reason'] or '-'})",
            file=out,
        )


def oncall_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    try:
        if args.action == "show":
            oncall_show(args, api, out)
        elif args.action == "override":
            body: dict[str, Any] = {"person": args.person, "reason": args.reason}
            if args.duration:
                body["duration"] = args.duration
            else:
                body["ends_at"] = args.end.isoformat()
            if args.start:
                body["starts_at"] = args.start.isoformat()
            made = api.call("POST", f"/api/v1/oncall/{segment(args.team)}/overrides", body)
            print(made["override_id"], file=out)
        else:
            gone = api.call("DELETE", f"/api/v1/oncall/{segment(args.team)}/overrides/{segment(args.override_id)}")
            print(f"removed {gone['override_id']}: {gone['person']} for {gone['team']}", file=out)
    except ApiError as exc:
        print(f"error: {exc}", file=out)
        return 1
    return 0


REDRIVE_ALL_LIMIT = 1000
"""``deliveries redrive --all`` takes at most this many per run (the API's largest page)."""


def add_delivery_commands(sub: Any) -> None:
    deliveries = sub.add_parser(
        "deliveries", help="notifications the notifier gave up; send them again"
    ).add_subparsers(dest="action", required=True)
    failed = deliveries.add_parser("failed", help="list failed (dead-lettered) notifications, oldest first")
    failed.add_argument("--limit", type=int, default=100, help="at most this many (default 100, at most 1000)")
    redrive = deliveries.add_parser("redrive", help="send failed notifications again")
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", default=[], metavar="ID", type=nonempty)
    which.add_argument("--all", action="store_true", help="every failed notification")
    for p in (failed, redrive):
        add_api_arguments(p)


def age(since: datetime, now: datetime) -> str:
    """A short age: ``45s``, ``12m``, ``3h05m``, ``2d04h``."""
    seconds = max(int((now - since).total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m" if minutes else f"{secs}s"


def delivery_line(d: dict[str, Any], now: datetime) -> str:
    """One failed notification: id, ticket, channel and target, attempts, last error, age."""
    created = datetime.fromisoformat(d["created_at"])
    error = d["error"] or "-"
    return (
        f"{d['notification_id']}  {d['ticket_id']}  {d['channel']} {d['target']}  "
        f"attempts={d['attempts']}  {age(created, now)}  {error}"
    )


def failed_deliveries(api: ApiClient, limit: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.call(
        "GET", "/api/v1/deliveries", params={"status": "failed", "limit": str(limit)}
    )["deliveries"]
    return found


def delivery_command(args: argparse.Namespace, api: ApiClient, out: TextIO) -> int:
    """``failed`` lists; ``redrive`` tries every id and exits 1 if any was not a failed notification."""
    try:
        if args.action == "failed":
            now = datetime.now(UTC)
            for d in failed_deliveries(api, args.limit):
                print(delivery_line(d, now), file=out)
            return 0
        ids: list[str] = list(args.ids)
        if args.all:
            ids = [d["notification_id"] for d in failed_deliveries(api, REDRIVE_ALL_LIMIT)]
            if len(ids) == REDRIVE_ALL_LIMIT:
                print(f"note: redriving the first {REDRIVE_ALL_LIMIT}; run again for the rest", file=out)
    except ApiError as exc:
        print(f"error: {exc}", file=out)
        return 1
    code = 0
    for nid in ids:
        try:
            api.call("POST", f"/api/v1/deliveries/{segment(nid)}/redrive")
        except ApiError as exc:
            print(f"error: {exc}", file=out)
            code = 1
        else:
            print(f"redriving {nid}", file=out)
    return code
