"""The pure parts of the DingTalk, WeCom and Feishu channels: signatures (known answers), body shapes, limits."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qs, quote_plus, urlsplit

import orjson
import pytest

from services.notifier.channels import dingtalk, feishu, wecom
from services.notifier.channels.base import CUT_MARKER, ActionLink, Mention, Message
from services.notifier.channels.sizing import fit_text

ACTIONS = (
    ActionLink("ack", "Acknowledge", "https://tl.example/act/a1"),
    ActionLink("take", "Take it", "https://tl.example/act/t1"),
)
MOBILE = "13800000000"
LONG_CN = "磁盘已满，数据库写入失败。请尽快处理！\n" * 2000  # 60 bytes a line, about 120 KB


def message(text: str = "磁盘已满 on db-1", *, kind: str = "assignment", mention: Mention | None = None) -> Message:
    return Message(kind, "[P1] 新工单 tl-1: 磁盘已满", text, {"ticket_id": "tl-1"}, ACTIONS, mention)


# --- DingTalk ----------------------------------------------------------------------------------------------------
def test_dingtalk_sign_known_answer() -> None:
    # printf '1700000000000\nSECtest0123' | openssl dgst -sha256 -hmac SECtest0123 -binary | base64
    assert dingtalk.sign("SECtest0123", 1700000000000) == "v6Hxf6IvcnltSQbs%2BWlEyxycOekEdXxweFtI8lImMLc%3D"


def test_dingtalk_sign_matches_an_independent_computation() -> None:
    secret, ts = "SEC密钥-with-unicode", 1712345678901
    digest = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    assert dingtalk.sign(secret, ts) == quote_plus(base64.b64encode(digest))


def test_dingtalk_signed_url_carries_timestamp_and_decodable_sign() -> None:
    url = dingtalk.signed_url("https://oapi.dingtalk.com/robot/send?access_token=T", "SECtest0123", 1700000000000)
    query = parse_qs(urlsplit(url).query)
    assert query["access_token"] == ["T"]
    assert query["timestamp"] == ["1700000000000"]
    assert query["sign"] == ["v6Hxf6IvcnltSQbs+WlEyxycOekEdXxweFtI8lImMLc="], "the + survives url-decoding"
    assert dingtalk.signed_url("https://x/robot/send?access_token=T", None, 1) == "https://x/robot/send?access_token=T"


def test_dingtalk_actions_without_mention_make_an_action_card() -> None:
    body = orjson.loads(dingtalk.render(message()))
    assert body["msgtype"] == "actionCard"
    card = body["actionCard"]
    assert card["btnOrientation"] == "0"
    assert card["btns"] == [{"title": a.label, "actionURL": a.url} for a in ACTIONS]
    assert card["title"] == "[P1] 新工单 tl-1: 磁盘已满"
    assert "磁盘已满 on db-1" in card["text"]
    assert "at" not in body


def test_dingtalk_mention_by_mobile_is_markdown_with_at_and_the_mobile_in_the_text() -> None:
    body = orjson.loads(dingtalk.render(message(mention=Mention("Olga", mobile=MOBILE))))
    assert body["msgtype"] == "markdown"
    assert body["at"] == {"atMobiles": [MOBILE], "isAtAll": False}
    text = body["markdown"]["text"]
    assert text.endswith(f"@{MOBILE}")
    assert "[Acknowledge](https://tl.example/act/a1)" in text and "[Take it](https://tl.example/act/t1)" in text


def test_dingtalk_mention_without_mobile_names_the_person() -> None:
    body = orjson.loads(dingtalk.render(message(mention=Mention("Olga"))))
    assert body["msgtype"] == "actionCard"
    assert "For: Olga" in body["actionCard"]["text"]


def test_dingtalk_long_chinese_text_is_cut_to_the_body_limit_keeping_the_mention() -> None:
    raw = dingtalk.render(message(LONG_CN, mention=Mention("Olga", mobile=MOBILE)))
    assert len(raw) <= dingtalk.MAX_BODY_BYTES
    assert len(raw) > dingtalk.MAX_BODY_BYTES - 200, "cut close to the limit, not far below it"
    text = orjson.loads(raw)["markdown"]["text"]  # valid JSON and UTF-8: no character was split
    assert CUT_MARKER.strip() in text
    assert text.endswith(f"@{MOBILE}")


@pytest.mark.parametrize(
    ("status", "answer", "retryable", "after"),
    [
        (200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}, True, 600.0),
        (200, {"errcode": -1, "errmsg": "系统繁忙"}, True, None),
        (200, {"errcode": 310000, "errmsg": "sign not match"}, False, None),
        (200, {"errcode": 300001, "errmsg": "token is not exist"}, False, None),
        (200, {"errcode": 460101, "errmsg": "message too long"}, False, None),
        (503, {}, True, None),
        (429, {}, True, None),
        (400, {}, False, None),
    ],
)
def test_dingtalk_answers_are_classified(
    status: int, answer: dict[str, object], retryable: bool, after: float | None
) -> None:
    error = dingtalk.answer_error("ops", status, orjson.dumps(answer))
    assert error is not None
    assert (error.retryable, error.retry_after_s) == (retryable, after)
    assert "errmsg" not in str(error) and "sign not match" not in str(error), "the vendor's text is not quoted"


def test_dingtalk_errcode_zero_is_success_and_an_unreadable_answer_is_retryable() -> None:
    assert dingtalk.answer_error("ops", 200, b'{"errcode":0,"errmsg":"ok"}') is None
    error = dingtalk.answer_error("ops", 200, b"<html>gateway</html>")
    assert error is not None and error.retryable


# --- WeCom -------------------------------------------------------------------------------------------------------
def test_wecom_markdown_has_links_and_names_the_person() -> None:
    body = orjson.loads(wecom.render(message(mention=Mention("Olga"))))
    assert body["msgtype"] == "markdown"
    content = body["markdown"]["content"]
    assert content.startswith("**[P1] 新工单 tl-1: 磁盘已满**\n")
    assert "[Acknowledge](https://tl.example/act/a1)" in content
    assert "For: Olga" in content


def test_wecom_mention_by_mobile_is_a_text_message_with_mentioned_mobile_list() -> None:
    body = orjson.loads(wecom.render(message(mention=Mention("Olga", mobile=MOBILE))))
    assert body["msgtype"] == "text"
    assert body["text"]["mentioned_mobile_list"] == [MOBILE]
    assert "Acknowledge: https://tl.example/act/a1" in body["text"]["content"].split("\n")


def test_wecom_long_chinese_text_stays_within_each_msgtype_byte_limit() -> None:
    markdown = orjson.loads(wecom.render(message(LONG_CN)))["markdown"]["content"]
    assert wecom.MARKDOWN_MAX_BYTES - 100 < len(markdown.encode()) <= wecom.MARKDOWN_MAX_BYTES
    assert CUT_MARKER.strip() in markdown and markdown.endswith("[Take it](https://tl.example/act/t1)")
    text = orjson.loads(wecom.render(message(LONG_CN, mention=Mention("Olga", mobile=MOBILE))))["text"]["content"]
    assert wecom.TEXT_MAX_BYTES - 100 < len(text.encode()) <= wecom.TEXT_MAX_BYTES
    assert CUT_MARKER.strip() in text and text.endswith("Take it: https://tl.example/act/t1")


@pytest.mark.parametrize(
    ("code", "retryable", "after"),
    [(45009, True, 60.0), (-1, True, None), (93000, False, None), (40058, False, None), (40008, False, None)],
)
def test_wecom_errcodes_are_classified(code: int, retryable: bool, after: float | None) -> None:
    error = wecom.answer_error("ops", 200, orjson.dumps({"errcode": code, "errmsg": "x"}))
    assert error is not None and (error.retryable, error.retry_after_s) == (retryable, after)


# --- Feishu ------------------------------------------------------------------------------------------------------
def test_feishu_sign_known_answer() -> None:
    # printf '' | openssl dgst -sha256 -hmac "$(printf '1700000000\nlarksecret99')" -binary | base64
    assert feishu.sign("larksecret99", 1700000000) == "T5LyU4ZFlYkUKHoYtSLW/yNigJmjLsbe3bB053upi/o="


def test_feishu_sign_puts_key_and_message_the_other_way_round_from_dingtalk() -> None:
    secret, ts = "lark-密钥", 1712345678
    digest = hmac.new(f"{ts}\n{secret}".encode(), b"", hashlib.sha256).digest()
    assert feishu.sign(secret, ts) == base64.b64encode(digest).decode()
    wrong_way = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    assert feishu.sign(secret, ts) != base64.b64encode(wrong_way).decode()


def test_feishu_card_shape() -> None:
    body = orjson.loads(feishu.render(message(mention=Mention("Olga", email="olga@example.test")), None, 1))
    assert "timestamp" not in body and "sign" not in body
    assert body["msg_type"] == "interactive"
    card = body["card"]
    assert card["header"] == {
        "title": {"tag": "plain_text", "content": "[P1] 新工单 tl-1: 磁盘已满"},
        "template": "blue",
    }
    div, action = card["elements"]
    assert div == {"tag": "div", "text": {"tag": "lark_md", "content": "磁盘已满 on db-1\n**For:** Olga"}}
    assert action["tag"] == "action"
    assert [(b["text"]["content"], b["type"], b["url"]) for b in action["actions"]] == [
        ("Acknowledge", "primary", "https://tl.example/act/a1"),
        ("Take it", "default", "https://tl.example/act/t1"),
    ]


@pytest.mark.parametrize(
    ("kind", "template"), [("escalation", "red"), ("breach", "red"), ("warning", "orange"), ("resolution", "blue")]
)
def test_feishu_header_colour_follows_the_kind(kind: str, template: str) -> None:
    assert orjson.loads(feishu.render(message(kind=kind), None, 1))["card"]["header"]["template"] == template


def test_feishu_signed_body_carries_timestamp_seconds_as_string() -> None:
    body = orjson.loads(feishu.render(message(), "larksecret99", 1700000000))
    assert body["timestamp"] == "1700000000"
    assert body["sign"] == "T5LyU4ZFlYkUKHoYtSLW/yNigJmjLsbe3bB053upi/o="


def test_feishu_long_chinese_text_keeps_the_whole_body_under_the_limit() -> None:
    raw = feishu.render(message(LONG_CN), "larksecret99", 1700000000)
    assert feishu.MAX_BODY_BYTES - 200 < len(raw) <= feishu.MAX_BODY_BYTES
    card = orjson.loads(raw)["card"]
    assert CUT_MARKER.strip() in card["elements"][0]["text"]["content"]
    assert len(card["elements"][1]["actions"]) == 2, "the buttons survive the cut"


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [
        ({"code": 11232, "msg": "frequency limited"}, True),
        ({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}, False),
        ({"code": 19024, "msg": "Key Words Not Found"}, False),
        ({"code": 9499, "msg": "Bad Request"}, False),
        ({"StatusCode": 19001, "StatusMessage": "param invalid"}, False),
    ],
)
def test_feishu_codes_are_classified(answer: dict[str, object], retryable: bool) -> None:
    error = feishu.answer_error("ops", 200, orjson.dumps(answer))
    assert error is not None and error.retryable is retryable


def test_feishu_success_in_either_form() -> None:
    assert feishu.answer_error("ops", 200, b'{"code":0,"msg":"success","data":{}}') is None
    assert feishu.answer_error("ops", 200, b'{"StatusCode":0,"StatusMessage":"success"}') is None


# --- sizing --------------------------------------------------------------------------------------------------------
def test_fit_text_counts_json_escapes() -> None:
    text = '"引号"\n' * 5000  # each line: 2 quotes and a newline that JSON escapes to two bytes each

    def size(t: str) -> int:
        return len(orjson.dumps({"text": t}))

    fitted = fit_text(text, 1000, size)
    assert size(fitted) <= 1000
    assert fitted.endswith(CUT_MARKER)
    assert fit_text("short", 1000, size) == "short"
