"""The local vendor sinks' signed timestamps: a value that is not ASCII digits is refused as the vendor refuses a
bad signature, never an exception in the sink's handler (``str.isdigit`` took "²", which ``int`` refuses)."""

from __future__ import annotations

import time

import pytest

from deploy.local.vendors import feishu, webhook
from deploy.local.vendors.base import Request, is_number
from deploy.local.vendors.dingtalk import DingTalkVendor, expected_sign

NOW = 1_700_000_000.0
NOT_NUMBERS = ["²", "٣", "１", "-1", " 1", "1 ", "", "1e3", "0x10"]


@pytest.mark.parametrize("text", NOT_NUMBERS)
def test_only_ascii_digits_are_a_number(text: str) -> None:
    assert not is_number(text)


@pytest.mark.parametrize("text", ["0", "7", "1700000000000"])
def test_ascii_digits_are_a_number(text: str) -> None:
    assert is_number(text)


def dingtalk_request(timestamp: str, sign: str) -> Request:
    query = {"access_token": "tok", "timestamp": timestamp, "sign": sign}
    return Request("POST", "/robot/send", query, {}, b"{}")


@pytest.mark.parametrize("timestamp", NOT_NUMBERS)
def test_dingtalk_refuses_a_timestamp_that_is_not_a_number(timestamp: str) -> None:
    vendor = DingTalkVendor({"tok": "SECx"})
    answer = vendor.check_sign(dingtalk_request(timestamp, "x"), NOW)
    assert answer is not None
    assert b"invalid timestamp" in answer.body


def test_dingtalk_takes_a_signed_timestamp_of_now() -> None:
    vendor = DingTalkVendor({"tok": "SECx"})
    stamp = str(int(NOW * 1000))
    assert vendor.check_sign(dingtalk_request(stamp, expected_sign("SECx", stamp)), NOW) is None


@pytest.mark.parametrize("timestamp", NOT_NUMBERS)
def test_feishu_refuses_a_timestamp_that_is_not_a_number(timestamp: str) -> None:
    assert feishu.signed({"timestamp": timestamp, "sign": "x"}, "secret", NOW) is False


def test_feishu_takes_a_signed_timestamp_of_now() -> None:
    stamp = str(int(NOW))
    assert feishu.signed({"timestamp": stamp, "sign": feishu.expected_sign("secret", stamp)}, "secret", NOW)


@pytest.mark.parametrize("timestamp", NOT_NUMBERS)
def test_webhook_refuses_a_timestamp_that_is_not_a_number(timestamp: str) -> None:
    problem = webhook.signature_problem("s3cret", timestamp, b"{}", "v1=00", time.time())
    assert problem == "missing or malformed timestamp"
