"""services/intake/read_timeout.py's decision: what a client whose request did not arrive in time is sent."""

from __future__ import annotations

import orjson

from services.intake.read_timeout import ReadTimeoutProtocol, read_timeout_protocol, timed_out_answer


def test_incomplete_headers_get_a_408_that_says_why_and_closes() -> None:
    answer = timed_out_answer(False, 30.0)
    assert answer is not None
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 408 Request Timeout"
    assert b"connection: close" in lines and b"content-type: application/json" in lines
    assert f"content-length: {len(body)}".encode() in lines
    assert orjson.loads(body) == {"error": "the request did not arrive in full within 30 s"}


def test_a_request_whose_handler_has_it_gets_no_answer_only_the_close() -> None:
    assert timed_out_answer(True, 30.0) is None


def test_the_protocol_class_carries_its_timeout() -> None:
    made = read_timeout_protocol(2.5)
    assert issubclass(made, ReadTimeoutProtocol) and made.read_timeout_s == 2.5
    assert ReadTimeoutProtocol.read_timeout_s == 30.0  # the class itself is left as it was
