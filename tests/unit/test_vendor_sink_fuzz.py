"""The local vendor sinks (deploy/local/vendors, as deploy/local/vendors/lab.py runs them for the demo and the
tests): whatever JSON reaches a vendor's path, with its right credentials and a valid signature so the body is
read, the vendor's handler answers below 500 and raises nothing (an exception ended the connection's thread
without an answer). Hypothesis drives the bodies: objects keyed by the vendors' own field names, any JSON value
under each. And a body a handler still cannot read is refused as that vendor refuses, not dropped."""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import urlencode

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from deploy.local.vendors import dingtalk, feishu, lab
from deploy.local.vendors.base import Answer, Limit, ReceivedChat, Request, VendorSink
from tests.support.fuzzing import json_values

NOW = 1_700_000_000.0
PATHS = [
    "/slack-responses/r-1",
    "/slack" + lab.SLACK_HOOK,
    "/slack/api/chat.postMessage",
    "/slack/api/chat.update",
    "/dingtalk/robot/send?access_token=" + lab.DINGTALK_TOKEN,
    "/wecom/cgi-bin/webhook/send?key=" + lab.WECOM_KEY,
    "/feishu/open-apis/bot/v2/hook/" + lab.FEISHU_TOKEN,
    "/teams" + lab.TEAMS_PATH,
    "/hooks/operations",
]
FIELDS = [
    "text",
    "blocks",
    "elements",
    "type",
    "msgtype",
    "msg_type",
    "markdown",
    "content",
    "card",
    "header",
    "title",
    "tag",
    "actions",
    "btns",
    "actionCard",
    "singleTitle",
    "singleURL",
    "at",
    "atMobiles",
    "mentioned_list",
    "mentioned_mobile_list",
    "attachments",
    "contentType",
    "body",
    "version",
    "url",
    "label",
    "channel",
    "ts",
    "thread_ts",
    "replace_original",
    "subject",
    "notification_id",
    "ticket_id",
    "kind",
    "data",
    "value",
    "i18n_elements",
    "isAtAll",
    "template",
    "fields",
    "accessory",
]
BODY = json_values(FIELDS)
FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def signed(path: str, body: object) -> tuple[str, dict[str, str], bytes]:
    """The request as the vendor's rightful sender makes it: its token, its signature over this body."""
    headers = {"content-type": "application/json"}
    if path.startswith("/slack/api"):
        headers["authorization"] = f"Bearer {lab.SLACK_TOKEN}"
    if path.startswith("/dingtalk"):
        stamp = str(int(NOW * 1000))
        path += "&" + urlencode({"timestamp": stamp, "sign": dingtalk.expected_sign(lab.DINGTALK_SECRET, stamp)})
    if path.startswith("/feishu") and isinstance(body, dict):
        stamp = str(int(NOW))
        body = {**body, "timestamp": stamp, "sign": feishu.expected_sign(lab.FEISHU_SECRET, stamp)}
    raw = json.dumps(body).encode()
    if path.startswith("/hooks"):
        stamp = str(int(NOW))
        secret = lab.WEBHOOK_SECRETS["operations"].encode()
        headers["x-ticketloop-timestamp"] = stamp
        headers["x-ticketloop-signature"] = (
            "v1=" + hmac.new(secret, f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
        )
    return path, headers, raw


@FUZZ
@given(path=st.sampled_from(PATHS), body=BODY)
@example(path="/slack-responses/r-1", body={"blocks": [{"text": "a string, not a text object"}]})
@example(path="/slack-responses/r-1", body={"text": "t", "blocks": 5})
@example(path="/wecom/cgi-bin/webhook/send?key=" + lab.WECOM_KEY, body={"msgtype": ["text"]})
@example(path="/dingtalk/robot/send?access_token=" + lab.DINGTALK_TOKEN, body={"msgtype": {"a": 1}})
@example(path="/feishu/open-apis/bot/v2/hook/" + lab.FEISHU_TOKEN, body={"msg_type": []})
@example(path="/hooks/operations", body={"actions": [None]})
@example(path="/hooks/operations", body={"actions": True})
def test_a_signed_body_of_any_shape_is_answered_below_500(path: str, body: object) -> None:
    raw_path, headers, raw = signed(path, body)
    # never started: the request is read as its server reads it, and the handler called directly (serve's safety
    # net would turn an exception into an answer)
    found = lab.sink(0).request_for("POST", raw_path, headers, raw)
    assert found is not None
    handler, request = found
    answer, _ = handler.handle(request, NOW)
    assert answer.status < 500, (raw_path, raw[:200], answer)


class Faulty:
    """A handler whose reading of a body fails as a shape it does not check would make it fail."""

    vendor = "faulty"
    prefix = "/faulty"
    limit: Limit | None = None

    def handle(self, request: Request, now: float) -> tuple[Answer, ReceivedChat | None]:
        return Answer(200, b"ok"), ReceivedChat(self.vendor, "", "", "", at=now, body=json.loads(request.body)["x"])

    def rejected(self, request: Request, why: str) -> Answer:  # noqa: ARG002
        return Answer(400, why.encode(), "text/plain")

    def over_limit(self, request: Request) -> Answer:  # noqa: ARG002
        return Answer(429, b"", "text/plain")

    def hook_of(self, request: Request) -> str:
        return request.path


def test_a_body_a_handler_cannot_read_is_refused_as_its_vendor_refuses() -> None:
    sink = VendorSink(0, [Faulty()], clock=lambda: NOW)
    answer = sink.serve("POST", "/faulty/h", {}, b'{"y": 1}')
    assert answer == Answer(400, b"malformed request body (KeyError)", "text/plain")
    assert sink.rejections == [("faulty", "/h", "malformed request body (KeyError)")]
    assert sink.received() == []
