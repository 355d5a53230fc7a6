"""The ``ticketloop`` commands that talk to the REST API (like amtool talks to Alertmanager).

    ticketloop silence add --comment TEXT (--duration 2h | --end TIME) [--start TIME] [--author NAME] matcher...
    ticketloop silence query [--state active|pending|expired|all]
    ticketloop silence expire ID...

The API address and token come from ``--api-url`` / ``--api-token`` or ``TICKETLOOP_API_URL`` /
``TICKETLOOP_API_TOKEN``. Errors from the API are printed with the field they name; the exit code is 1.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiError(Exception):
    pass


class ApiClient:
    def __init__(self, http: httpx.Client, token: str) -> None:
        self.http, self.token = http, token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            resp = self.http.request(method, path, json=body, headers={"Authorization": f"Bearer {self.token}"})
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the API at {self.http.base_url}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                data = resp.json()
            except ValueError:
                raise ApiError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:200]}") from None
            problems = "".join(f"\n  {p.get('field', '')}: {p.get('error', '')}" for p in data.get("problems", []))
            raise ApiError(f"{method} {path}: {data.get('error', resp.status_code)}{problems}")
        return resp.json()


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-url", default=None, help=f"default: $TICKETLOOP_API_URL or {DEFAULT_URL}")
    parser.add_argument("--api-token", default=None, help="default: $TICKETLOOP_API_TOKEN")


def client_from(args: argparse.Namespace, http: httpx.Client | None) -> ApiClient:
    token = args.api_token or os.environ.get("TICKETLOOP_API_TOKEN", "")
    if http is None:
        url = args.api_url or os.environ.get("TICKETLOOP_API_URL", DEFAULT_URL)
        http = httpx.Client(base_url=url, timeout=10.0)
    return ApiClient(http, token)


def add_silence_commands(sub: Any, aware: Callable[[str], datetime]) -> None:
    silence = sub.add_parser("silence", help="mute notifications by matchers").add_subparsers(
        dest="action", required=True
    )
    add = silence.add_parser("add", help="create a silence")
    add.add_argument("matchers", nargs="+", metavar='name="value"')
    add.add_argument("--comment", required=True)
    add.add_argument("--author", default=None, help="default: the API client's name")
    end = add.add_mutually_exclusive_group(required=True)
    end.add_argument("--duration", help='e.g. "2h", "30m", "1d"')
    end.add_argument("--end", type=aware, help="ISO 8601 time")
    add.add_argument("--start", type=aware, default=None, help="ISO 8601 time (default: now)")
    query = silence.add_parser("query", help="list silences")
    query.add_argument("--state", choices=["active", "pending", "expired", "all"], default=None)
    expire = silence.add_parser("expire", help="end silences now")
    expire.add_argument("ids", nargs="+")
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
            path = "/api/v1/silences"
            found = api.call("GET", path + (f"?state={args.state}" if args.state and args.state != "all" else ""))
            rows = found["silences"]
            if args.state is None:
                rows = [s for s in rows if s["state"] != "expired"]
            for s in rows:
                print(_silence_line(s), file=out)
        else:
            for sid in args.ids:
                print(_silence_line(api.call("DELETE", f"/api/v1/silences/{sid}")), file=out)
    except ApiError as exc:
        print(f"error: {exc}", file=out)
        return 1
    return 0
