"""Every vendor imitation configured at once, with the notify.yaml entries that reach it: the demo's chat sink
and the end-to-end tests' (``make demo`` prints what each receives as a person would read it).

All secrets here are demo values for 127.0.0.1 only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from deploy.local.vendors.base import Answer, Limit, ReceivedChat, Request, VendorHandler, VendorSink
from deploy.local.vendors.dingtalk import DingTalkVendor
from deploy.local.vendors.feishu import FeishuVendor
from deploy.local.vendors.slack import SlackVendor
from deploy.local.vendors.teams import TeamsVendor
from deploy.local.vendors.webhook import TicketloopWebhookVendor
from deploy.local.vendors.wecom import WeComVendor

SLACK_TOKEN = "xoxb-demo-0000-ticketloop"  # noqa: S105 - a demo value for the local imitation
SLACK_CHANNEL = "C0DEMOOPS01"
SLACK_HOOK = "/services/T0DEMO/B0IMPL/demo-slack-webhook-secret"
DINGTALK_TOKEN, DINGTALK_SECRET = "demo-dingtalk-token", "SECdemo-dingtalk-signing-secret"
WECOM_KEY = "demo-wecom-key-0000"
FEISHU_TOKEN, FEISHU_SECRET = "demo-feishu-token", "demo-feishu-signing-secret"
TEAMS_PATH = "/workflows/demo-implementation"
WEBHOOK_SECRETS = {"operations": "demo-webhook-secret-operations", "implementation": "demo-webhook-secret-impl"}


class SlackResponseUrls:
    """Slack's ``response_url`` for interactive messages: ``POST /slack-responses/<id>`` with JSON
    ({"replace_original": true, "text": ..., "blocks": [...]}) answers 200 "ok"; each is recorded."""

    vendor = "slack-response"
    prefix = "/slack-responses"
    limit: Limit | None = None

    def hook_of(self, request: Request) -> str:
        return request.path

    def rejected(self, request: Request, why: str) -> Answer:  # noqa: ARG002
        return Answer(400, why.encode(), "text/plain")

    def over_limit(self, request: Request) -> Answer:  # noqa: ARG002
        return Answer(429, b"rate limited", "text/plain")

    def handle(self, request: Request, now: float) -> tuple[Answer, ReceivedChat | None]:
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return self.rejected(request, "invalid_payload"), None
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return self.rejected(request, "no_text"), None
        found = body.get("blocks")
        blocks = " ".join(
            str(b["text"].get("text", ""))
            for b in (found if isinstance(found, list) else [])
            if isinstance(b, dict) and isinstance(b.get("text"), dict)
        )
        text = str(body.get("text", ""))
        return Answer(200, b"ok", "text/plain"), ReceivedChat(
            self.vendor, request.path, text, blocks, body=body, at=now
        )


def handlers() -> list[VendorHandler]:
    return [
        SlackResponseUrls(),
        SlackVendor(hooks={SLACK_HOOK}, tokens={SLACK_TOKEN}, channels={SLACK_CHANNEL}),
        DingTalkVendor({DINGTALK_TOKEN: DINGTALK_SECRET}),
        WeComVendor([WECOM_KEY]),
        FeishuVendor({FEISHU_TOKEN: FEISHU_SECRET}),
        TeamsVendor(hooks={TEAMS_PATH}),
        TicketloopWebhookVendor(WEBHOOK_SECRETS),
    ]


def sink(port: int, on_message: Callable[[ReceivedChat], None] | None = None) -> VendorSink:
    return VendorSink(port, handlers(), on_message)


def entries(base: str) -> dict[str, list[dict[str, Any]]]:
    """notify.yaml ``channels`` per team, pointing at a lab sink at ``base`` (e.g. http://127.0.0.1:8099):
    operations on Slack (bot token), DingTalk and WeCom; implementation on Slack (webhook), Feishu, Teams;
    each on ticketloop's signed webhook too."""
    return {
        "operations": [
            {
                "type": "slack",
                "name": "ops-slack",
                "token": SLACK_TOKEN,
                "channel": SLACK_CHANNEL,
                "api_url": f"{base}/slack/api",
            },
            {
                "type": "dingtalk",
                "name": "ops-dingtalk",
                "url": f"{base}/dingtalk/robot/send?access_token={DINGTALK_TOKEN}",
                "secret": DINGTALK_SECRET,
            },
            {"type": "wecom", "name": "ops-wecom", "url": f"{base}/wecom/cgi-bin/webhook/send?key={WECOM_KEY}"},
            {
                "type": "webhook",
                "name": "ops-hook",
                "url": f"{base}/hooks/operations",
                "secret": WEBHOOK_SECRETS["operations"],
            },
        ],
        "implementation": [
            {"type": "slack", "name": "impl-slack", "url": f"{base}/slack{SLACK_HOOK}"},
            {
                "type": "feishu",
                "name": "impl-feishu",
                "url": f"{base}/feishu/open-apis/bot/v2/hook/{FEISHU_TOKEN}",
                "secret": FEISHU_SECRET,
            },
            {"type": "teams", "name": "impl-teams", "url": f"{base}/teams{TEAMS_PATH}"},
            {
                "type": "webhook",
                "name": "impl-hook",
                "url": f"{base}/hooks/implementation",
                "secret": WEBHOOK_SECRETS["implementation"],
            },
        ],
    }


def readable(message: ReceivedChat) -> str:
    """One message as a person in the chat would see it at a glance: where, its title, who is called, its buttons."""
    line = f"{message.vendor:<8} {message.title}"
    if message.mentions:
        line += "  @" + " @".join(message.mentions)
    buttons = [label for label, url in message.actions if "/act/" in url]
    if buttons:
        line += "  " + " ".join(f"[{label}]" for label in buttons)
    return line
