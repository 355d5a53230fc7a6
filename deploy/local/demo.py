"""The local stack and a short demo of the loop: ``make demo`` (or ``python -m deploy.local.demo``).

Starts the real Kafka broker, a mail sink (SMTP on 127.0.0.1:1025) and a chat sink (HTTP on 127.0.0.1:8099 that
imitates Slack, DingTalk, WeCom, Feishu, Teams and ticketloop's signed webhook, each checking that vendor's
signature and body rules) that print what they receive, and the four services on SQLite, with the config in
deploy/local/config. Then it plays: an alert storm, a customer bug report, a ticket acknowledged in time with one
click on its chat message's link, one left to escalate, and one resolved by its source. The stack keeps running
until Ctrl-C (``--exit`` stops after the demo), and the broker or a service that exits meanwhile (a crash, a
SIGKILL) is started again as compose's ``restart: unless-stopped`` would (``revive_all``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from deploy.local.kafka_local import LocalKafka, ensure_jars
from deploy.local.sinks import ReceivedMail, SmtpSink
from deploy.local.stack import REPO, Stack
from deploy.local.vendors import lab
from deploy.local.vendors.base import ReceivedChat, VendorSink
from services.cli import main as cli_main
from services.sla.policy import SlaConfig, acknowledge_target
from shared.infra.restarts import exit_reason

CONFIG = REPO / "deploy" / "local" / "config"
INTAKE_PORT = 8080
SMTP_PORT = 1025
HANDOVER_AFTER_S = 75  # webshop's hypercare ends this long after the demo starts: its open tickets move to operations
MAIL_IN_PORT = 2525  # intake's SMTP receiver: mail to support@acme.example here becomes a feedback ticket
CHAT_PORT = 8099
WORKER_METRICS = {"router": 9101, "sla": 9102, "notifier": 9103}
_print_lock = threading.Lock()


def say(kind: str, text: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")  # noqa: DTZ005 - the viewer's local time
    with _print_lock:
        print(f"{stamp} {kind:<9} {text}", flush=True)


def on_mail(mail: ReceivedMail) -> None:
    say("[mail]", f"to {', '.join(mail.recipients)}: {mail.subject}")


def on_chat(message: ReceivedChat) -> None:
    say("[chat]", lab.readable(message))


def tokens() -> tuple[str, str, str]:
    intake = yaml.safe_load((CONFIG / "intake.yaml").read_text())
    by_name = {i["name"]: i["token"] for i in intake["integrations"] if "token" in i}  # not those given by hash
    return by_name["alertmanager"], by_name["support-portal"], intake["api_clients"][0]["token"]


def wait_for(probe: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    raise TimeoutError("the demo waited too long; see the service logs")


def am_alert(name: str, service: str, severity: str, status: str, starts: datetime) -> dict[str, Any]:
    labels = {"alertname": name, "service": service, "severity": severity, "instance": f"{service}-1"}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "ticketloop",
        "groupLabels": {"alertname": name},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": f"{name} on {service}-1"},
                "startsAt": starts.isoformat(),
                "endsAt": (datetime.now(UTC) if status == "resolved" else datetime(1, 1, 1, tzinfo=UTC)).isoformat(),
                "generatorURL": "http://127.0.0.1:9090/graph",
                "fingerprint": f"{name}-{service}".lower(),
            }
        ],
    }


def action_link(chat: VendorSink, ticket_id: str, label: str) -> str | None:
    """The URL behind a button of the first chat message about this ticket that has one."""
    for message in chat.received():
        if ticket_id in message.title + message.text:
            found = next((url for text, url in message.actions if text == label), None)
            if found:
                return found
    return None


def play(stack: Stack, chat: VendorSink, mail: SmtpSink) -> None:
    am_token, portal_token, api_token = tokens()
    base = stack.intake_url
    am = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {am_token}"}, timeout=10)
    portal = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {portal_token}"}, timeout=10)
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {api_token}"}, timeout=10)

    def ticket(dedup_key: str, **want: Any) -> dict[str, Any] | None:
        for t in api.get("/api/v1/tickets", params={"limit": 1000}).json()["tickets"]:
            if t["dedup_key"] == dedup_key and all(t[k] == v for k, v in want.items()):
                return dict(t)
        return None

    say("[demo]", "1) an alert storm: 30 'disk almost full' events from the support portal's monitoring feed")
    for i in range(30):
        portal.post(
            "/api/v1/integrations/support-portal",
            json={
                "summary": "Disk almost full on db-1",
                "dedup_key": "disk-db-1",
                "severity": "warning",
                "labels": {"service": "database"},
                "event_id": f"disk-db-1-{i}",
            },
        ).raise_for_status()
    storm = wait_for(lambda: ticket("support-portal/disk-db-1", occurrences=30))
    say(
        "[ticket]",
        f"{storm['ticket_id']}: 30 events -> one ticket, occurrences={storm['occurrences']}, team={storm['team']}",
    )

    say("[demo]", "2) a customer reports a bug")
    portal.post(
        "/api/v1/integrations/support-portal",
        json={
            "summary": "Checkout button does nothing on mobile",
            "kind": "feedback",
            "severity": "error",
            "reporter": "buyer@customer.example",
            "labels": {"customer": "acme", "project": "webshop"},
        },
    ).raise_for_status()
    bug = wait_for(
        lambda: next((t for t in api.get("/api/v1/tickets").json()["tickets"] if t["kind"] == "feedback"), None)
    )
    say(
        "[ticket]",
        f"{bug['ticket_id']}: feedback from acme -> owner {bug['person']} ({bug['team']}), watching: "
        f"{', '.join(bug['watchers']) or '-'}; project {bug['project']}, phase {bug['phase']}",
    )

    portal.post(
        "/api/v1/integrations/support-portal",
        json={
            "summary": "Search results load slowly",
            "kind": "feedback",
            "dedup_key": "search-slow",
            "category": "question",
            "reporter": "buyer@customer.example",
            "labels": {"customer": "acme", "project": "webshop"},
        },
    ).raise_for_status()
    slow = wait_for(lambda: ticket("support-portal/search-slow"))
    say("[ticket]", f"{slow['ticket_id']}: a second report, left open: owner {slow['person']} ({slow['team']})")

    say("[demo]", "3) the implementation engineer acknowledges the bug report with one click in chat")
    link = wait_for(lambda: action_link(chat, bug["ticket_id"], "Acknowledge"))
    browser = httpx.Client(timeout=10)
    page = browser.get(link)
    say("[link]", f"GET {link[:60]}... -> {page.status_code}: a confirmation page; nothing changes on a GET")
    done = browser.post(link)
    say("[link]", f"POST (the page's button) -> {done.status_code}: {page_title(done.text)}")
    acked = wait_for(
        lambda: (t := api.get(f"/api/v1/tickets/{bug['ticket_id']}").json())["state"] == "acknowledged" and t
    )
    who = next(e["actor"] for e in acked["timeline"] if e["change"] == "acknowledged")
    say("[ticket]", f"{bug['ticket_id']}: acknowledged by {who} (the person the link was issued to): its clock stops")
    again = browser.post(link)
    say("[link]", f"the same link again -> {again.status_code}: {page_title(again.text)}")

    say(
        "[demo]",
        "4) Alertmanager: the database is down (critical -> P1, 20 s to acknowledge in this demo); nobody acks",
    )
    am.post(
        "/api/v1/integrations/alertmanager",
        json=am_alert("DatabaseDown", "database", "critical", "firing", datetime.now(UTC)),
    ).raise_for_status()
    db_down = wait_for(lambda: ticket("alertmanager/databasedown-database"))
    say(
        "[ticket]",
        f"{db_down['ticket_id']}: {db_down['summary']} -> {db_down['team']} {db_down['priority']}; "
        "waiting for the deadline...",
    )

    say("[demo]", "5) Alertmanager: checkout latency fires, then resolves by itself")
    started = datetime.now(UTC) - timedelta(minutes=2)
    am.post(
        "/api/v1/integrations/alertmanager", json=am_alert("HighLatency", "checkout", "warning", "firing", started)
    ).raise_for_status()
    latency = wait_for(lambda: ticket("alertmanager/highlatency-checkout"))
    say("[ticket]", f"{latency['ticket_id']}: {latency['summary']} -> {latency['team']} {latency['priority']}")
    time.sleep(3)
    am.post(
        "/api/v1/integrations/alertmanager", json=am_alert("HighLatency", "checkout", "warning", "resolved", started)
    ).raise_for_status()
    wait_for(lambda: ticket("alertmanager/highlatency-checkout", state="resolved"))
    say("[ticket]", f"{latency['ticket_id']}: resolved by the source")

    timeline = wait_for(lambda: escalated(api, db_down["ticket_id"]), timeout=180)
    say("[ticket]", f"{db_down['ticket_id']} timeline:")
    for entry in timeline:
        say("", f"  {entry['at'][11:19]} {entry['change']:<12} by {entry['actor']}: {entry['reason']}")
    say("[ticket]", no_escalation_line(api, bug["ticket_id"]))
    say(
        "[demo]", "6) the engineer resolves the bug report; its reporter answers the satisfaction survey mailed to them"
    )
    api.post(f"/api/v1/tickets/{bug['ticket_id']}/resolve", json={"reason": "fixed in 2.3.1"}).raise_for_status()
    survey = wait_for(lambda: survey_link(mail, "buyer@customer.example", bug["ticket_id"], 5))
    form = browser.get(survey)
    nonce = re.search(r'name="n" value="([^"]+)"', form.text)
    say("[link]", f"GET {survey[:60]}... -> {form.status_code}: the survey, 5 already chosen; nothing changes on a GET")
    answered = browser.post(
        survey.split("?", 1)[0],
        data={"score": "5", "comment": "fixed the same day", "n": nonce.group(1) if nonce else ""},
    )
    say("[link]", f"POST (the page's button) -> {answered.status_code}: {page_title(answered.text)}")
    index = wait_for(lambda: satisfaction(api, "webshop"))
    say(
        "[csat]",
        f"webshop: {index['answers']} answer(s), index {index['index']:.0%} (share of 4s and 5s); goal "
        f"{index['goal']['index']:.0%} in the first {index['goal']['within_days']:.0f} days: {index['status']} "
        f"({index['why']})",
    )
    say(
        "[demo]",
        "7) webshop's hypercare ends: its open tickets move to operations, exactly once, on the router's timer",
    )
    moved = wait_for(lambda: handed_over(api, slow["ticket_id"]), timeout=HANDOVER_AFTER_S + 120)
    say("[ticket]", f"{slow['ticket_id']}: {moved['reason']}")
    digest = wait_for(lambda: handover_digest(mail), timeout=120)
    wait_for(lambda: any(c.title.startswith("Handover:") for c in chat.received()), timeout=120)
    told = sorted({r for m in mail.received() if m.subject == digest.subject for r in m.recipients})
    say("[handover]", f"one digest to both teams (mailed to {', '.join(told)}; and their chats): {digest.subject}")
    for line in digest_lines(digest):
        say("", line)

    say("[demo]", "8) the quarterly joint review of implementation and operations, as one HTML file")
    quarter = f"{datetime.now(UTC).year}Q{(datetime.now(UTC).month - 1) // 3 + 1}"
    path = stack.workdir.parent / f"review-{quarter}.html"
    printed = io.StringIO()
    argv = ["review", "--quarter", quarter, "--database-url", stack.database_url, "--out", str(path), "--no-progress"]
    cli_main([*argv, "--config-dir", str(stack.config_dir)], printed)
    say("[review]", printed.getvalue().strip() or f"no review written to {path}")
    say("[demo]", "done. Tickets now:")
    for t in api.get("/api/v1/tickets").json()["tickets"]:
        say(
            "",
            f"{t['ticket_id']}  {t['state']:<12} {t['priority']} {t['team']:<15} x{t['occurrences']:<3} {t['summary']}",
        )


def survey_link(mail: SmtpSink, reporter: str, ticket_id: str, score: int) -> str | None:
    """The link for ``score`` in the survey mailed to ``reporter`` about ``ticket_id`` (None: not mailed yet)."""
    for received in mail.received():
        text = received.message.get_content() if ticket_id in received.subject else ""
        if reporter in received.recipients and "/survey/" in text:
            found = re.search(rf"http://\S+/survey/\S+\?score={score}", text)
            if found:
                return found.group(0)
    return None


def satisfaction(api: httpx.Client, project: str) -> dict[str, Any] | None:
    """The project's goal verdict from the satisfaction API, once it counts an answer."""
    goals = api.get("/api/v1/satisfaction").json()["goals"]
    return next((g for g in goals if g["project"] == project and g["answers"]), None)


def handed_over(api: httpx.Client, ticket_id: str) -> dict[str, Any] | None:
    """The ticket's handover entry on its timeline, once there is one."""
    timeline = api.get(f"/api/v1/tickets/{ticket_id}").json()["timeline"]
    return next((e for e in timeline if e["change"] == "reassigned" and e["reason"].startswith("handover:")), None)


def handover_digest(mail: SmtpSink) -> ReceivedMail | None:
    """The hypercare handover digest, once it is mailed (one mail to each address of both teams)."""
    return next((m for m in mail.received() if m.subject.startswith("Handover:")), None)


def digest_lines(mail: ReceivedMail) -> list[str]:
    """The digest's text up to its ticket list's end, as the teams read it."""
    body = mail.message.get_body(("plain",))
    text = str(body.get_content()) if body is not None else ""
    return [line for line in text.splitlines() if line.strip()][:8]


def demo_config(workdir: Path, hypercare_ends: datetime) -> Path:
    """deploy/local/config, copied, with webshop's hypercare ending at ``hypercare_ends`` (so the demo shows the
    handover to operations); everything else as shipped."""
    target = workdir / "config"
    shutil.copytree(CONFIG, target)
    projects = target / "projects.yaml"
    go_live = datetime.fromisoformat(str(yaml.safe_load(projects.read_text())["projects"][0]["go_live"]))
    seconds = int((hypercare_ends - go_live).total_seconds())
    projects.write_text(projects.read_text().replace("    hypercare: 30d\n", f"    hypercare: {seconds}s\n", 1))
    return target


def page_title(html: str) -> str:
    start, end = html.find("<h1>"), html.find("</h1>")
    return html[start + 4 : end] if 0 <= start < end else html[:80]


def acknowledge_deadline(ticket: dict[str, Any], sla_yaml: str) -> datetime:
    """When the ticket's acknowledge clock would have run out (its policy in the demo's sla.yaml, its contract's
    if its customer has one), had nobody acknowledged it."""
    config = SlaConfig.model_validate(yaml.safe_load(sla_yaml))
    _, policy = config.policy_for(ticket["policy"], ticket.get("customer"))
    return datetime.fromisoformat(ticket["opened_at"]) + acknowledge_target(policy, ticket["priority"])


def no_escalation_line(api: httpx.Client, ticket_id: str, margin_s: float = 5.0) -> str:
    """Once the acknowledged ticket's deadline has passed (and the sla worker, which has just escalated a later
    ticket, has had ``margin_s`` more): what its timeline says about escalations."""
    ticket = api.get(f"/api/v1/tickets/{ticket_id}").json()
    deadline = acknowledge_deadline(ticket, (CONFIG / "sla.yaml").read_text())
    time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds() + margin_s))
    timeline = api.get(f"/api/v1/tickets/{ticket_id}").json()["timeline"]
    found = [e for e in timeline if e["change"] == "escalated"]
    if found:
        return f"{ticket_id}: ESCALATED although acknowledged in time: {found[0]['reason']}"
    return f"{ticket_id}: its acknowledge deadline ({deadline:%H:%M:%S}) has passed - no escalation"


def escalated(api: httpx.Client, ticket_id: str) -> list[dict[str, Any]] | None:
    timeline = list(api.get(f"/api/v1/tickets/{ticket_id}").json()["timeline"])
    return timeline if any(e["change"] == "escalated" for e in timeline) else None


def revive_all(stack: Stack, broker: LocalKafka) -> list[str]:
    """One look at a stack left running: the broker, then each service, started again if it exited (what to tell
    of each). A broker that cannot start again raises (KafkaStartError, with its log's tail)."""
    told = []
    code = broker.exit_code()
    if code is not None:
        broker.resume()
        told.append(f"the broker exited ({exit_reason(code)}): started again on its data; its log: {broker.log_path}")
    for name, exited in stack.revive():
        told.append(f"{name} exited ({exit_reason(exited)}): started again; its log: {stack.log_path(name)}")
    return told


def stop_on_term(*_: object) -> None:
    """SIGTERM stops the demo as Ctrl-C does; a second one (``timeout`` and a shell may both send one) must not cut
    the clean-up short, or the broker and the services would outlive the demo."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=textwrap.dedent(__doc__ or ""))
    parser.add_argument("--exit", action="store_true", help="stop after the demo instead of running until Ctrl-C")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="ticketloop-demo-"))
    say("[setup]", "fetching the Kafka broker jars with Maven (first run only)...")
    ensure_jars()
    broker = LocalKafka()
    stack: Stack | None = None
    chat = lab.sink(CHAT_PORT, on_chat)
    mail = SmtpSink(port=SMTP_PORT, on_message=on_mail)
    signal.signal(signal.SIGTERM, stop_on_term)
    try:
        broker.start()
        say("[setup]", f"Kafka {broker.bootstrap} ready (log {broker.log_path})")
        mail.start()
        chat.start()
        say("[setup]", f"mail sink smtp://127.0.0.1:{SMTP_PORT}, chat sink http://127.0.0.1:{CHAT_PORT}")
        stack = Stack(
            bootstrap=broker.bootstrap,
            database_url=f"sqlite:///{workdir / 'ticketloop.db'}",
            config_dir=demo_config(workdir, datetime.now(UTC) + timedelta(seconds=HANDOVER_AFTER_S)),
            workdir=workdir / "logs",
            intake_port=INTAKE_PORT,
            smtp_port=SMTP_PORT,
            metrics_ports=WORKER_METRICS,
            # the sla worker snapshots its clocks here (shared/streaming/snapshots.py): a restart reads only the
            # changelog after
            extra_env={
                "TICKETLOOP_STATE_DIR": str(workdir / "state"),
                "TICKETLOOP_INTAKE_SMTP_PORT": str(MAIL_IN_PORT),
            },
        )
        stack.start_all()
        stack.wait_ready()
        say("[setup]", f"services up; logs in {workdir / 'logs'}")
        play(stack, chat, mail)
        say("[stack]", f"API      {stack.intake_url}/api/v1/tickets  (Authorization: Bearer {tokens()[2]})")
        workers = " ".join(f"{s}=http://127.0.0.1:{p}/metrics" for s, p in WORKER_METRICS.items())
        say("[stack]", f"metrics  intake={stack.intake_url}/metrics {workers}")
        say("[stack]", f"post     {stack.intake_url}/api/v1/integrations/<name>  (see deploy/local/config/intake.yaml)")
        say("[stack]", f"mail in  smtp://127.0.0.1:{MAIL_IN_PORT}  (to support@acme.example: a feedback ticket)")
        if not args.exit:
            say("[stack]", "running; Ctrl-C stops everything (the broker or a service that exits is started again)")
            while True:
                for line in revive_all(stack, broker):
                    say("[stack]", line)
                time.sleep(0.5)
    except KeyboardInterrupt:
        say("[stack]", "stopping...")
    finally:
        if stack is not None:
            stack.stop_all()
        chat.stop()
        mail.stop()
        broker.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
