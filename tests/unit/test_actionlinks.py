"""Signed action-link tokens (shared/infra/actionlinks.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from shared.infra.actionlinks import (
    ACTIONS,
    LinkKeys,
    LinkRefused,
    issue,
    keys_from_setting,
    kid_of,
    link_url,
    token_from_link,
    verify,
)

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=7)
OLD_KEY = "old-key-0123456789abcdef"
NEW_KEY = "new-key-fedcba9876543210"
KEYS = keys_from_setting(OLD_KEY)


def refusal(keys: LinkKeys, token: str, now: datetime = NOW) -> str:
    with pytest.raises(LinkRefused) as caught:
        verify(keys, token, now)
    return caught.value.reason


@pytest.mark.parametrize("action", ACTIONS)
def test_a_token_round_trips(action: str) -> None:
    token = issue(KEYS, "tl-123", action, "olga", LATER)  # type: ignore[arg-type]
    claims = verify(KEYS, token, NOW)
    assert (claims.ticket_id, claims.action, claims.person) == ("tl-123", action, "olga")
    assert claims.expires_at == LATER
    assert claims.kid == hashlib.sha256(OLD_KEY.encode()).hexdigest()[:8] == kid_of(SecretStr(OLD_KEY))
    assert len(token) < 200, "a link fits in a chat button"


def test_every_token_has_its_own_link_id() -> None:
    first, second = (verify(KEYS, issue(KEYS, "tl-1", "ack", "olga", LATER), NOW) for _ in range(2))
    assert first.link_id != second.link_id
    assert first.link_id and second.link_id


def test_an_expired_token_is_refused_but_says_what_it_was_for() -> None:
    token = issue(KEYS, "tl-1", "resolve", "olga", NOW)
    with pytest.raises(LinkRefused) as caught:
        verify(KEYS, token, NOW)
    assert caught.value.reason == "expired"
    assert caught.value.claims is not None and caught.value.claims.ticket_id == "tl-1"
    assert verify(KEYS, token, NOW - timedelta(seconds=1)).action == "resolve"


def test_a_token_signed_with_an_unknown_key_is_forged() -> None:
    other = keys_from_setting("another-key-0123456789")
    assert refusal(KEYS, issue(other, "tl-1", "ack", "olga", LATER)) == "forged"


def test_rotation_the_new_key_signs_and_the_old_one_still_verifies() -> None:
    old_token = issue(KEYS, "tl-1", "ack", "olga", LATER)
    rotated = keys_from_setting(f"{NEW_KEY}, {OLD_KEY}")
    assert verify(rotated, old_token, NOW).kid == kid_of(SecretStr(OLD_KEY))
    new_token = issue(rotated, "tl-1", "ack", "olga", LATER)
    assert verify(rotated, new_token, NOW).kid == kid_of(SecretStr(NEW_KEY))
    assert refusal(KEYS, new_token) == "forged", "signed with the new key, which the old set does not have"
    assert refusal(keys_from_setting(NEW_KEY), old_token) == "forged", "the old key was dropped"


def test_a_token_edited_by_any_one_character_is_forged() -> None:
    token = issue(KEYS, "tl-1", "ack", "olga", LATER)
    for i, ch in enumerate(token):
        if ch == ".":
            continue
        edited = token[:i] + ("A" if ch != "A" else "B") + token[i + 1 :]
        assert refusal(KEYS, edited) == "forged", f"edited at {i}"


def test_a_token_for_another_ticket_cannot_be_made_by_swapping_the_payload() -> None:
    one = issue(KEYS, "tl-1", "ack", "olga", LATER)
    two = issue(KEYS, "tl-2", "resolve", "olga", LATER)
    spliced = one.split(".")[0] + "." + two.split(".")[1]
    assert refusal(KEYS, spliced) == "forged"


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "abc.", ".abc", "a.b.c", "ab+/.cd", "abc.d=f", "abc.def\n", "é.é", "x" * 3000 + ".y"],
)
def test_malformed_tokens_are_refused_as_malformed(token: str) -> None:
    assert refusal(KEYS, token) == "malformed"


def _signed(payload: bytes, key: str = OLD_KEY) -> str:
    text = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    sig = hmac.new(key.encode(), text.encode(), hashlib.sha256).digest()
    return f"{text}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        orjson.dumps({"a": 1}),
        orjson.dumps([2, kid_of(SecretStr(OLD_KEY)), "n", "tl-1", "ack", "olga", 2_000_000_000]),
        orjson.dumps([True, kid_of(SecretStr(OLD_KEY)), "n", "tl-1", "ack", "olga", 2_000_000_000]),
        orjson.dumps([1, kid_of(SecretStr(OLD_KEY)), "n", "tl-1", "delete", "olga", 2_000_000_000]),
        orjson.dumps([1, kid_of(SecretStr(OLD_KEY)), "n", "", "ack", "olga", 2_000_000_000]),
        orjson.dumps([1, kid_of(SecretStr(OLD_KEY)), "n", "tl-1", "ack", "olga", "tomorrow"]),
        orjson.dumps([1, kid_of(SecretStr(OLD_KEY)), "n", "tl-1", "ack", "olga", 10**18]),
    ],
)
def test_a_well_signed_but_unreadable_payload_is_malformed(payload: bytes) -> None:
    assert refusal(KEYS, _signed(payload)) == "malformed"


def test_a_payload_naming_another_key_id_is_forged() -> None:
    payload = orjson.dumps([1, "ffffffff", "n", "tl-1", "ack", "olga", 2_000_000_000])
    assert refusal(KEYS, _signed(payload)) == "forged"
    assert verify(KEYS, _signed(payload.replace(b"ffffffff", kid_of(SecretStr(OLD_KEY)).encode())), NOW)


def test_refusals_never_carry_the_token_or_the_key() -> None:
    token = issue(KEYS, "tl-1", "ack", "olga", NOW)
    for bad, keys in ((token, KEYS), (token[:-1] + "x", KEYS), (token + "!", KEYS)):
        with pytest.raises(LinkRefused) as caught:
            verify(keys, bad, NOW)
        shown = f"{caught.value!s} {caught.value!r} {caught.value.args}"
        assert token not in shown and token.split(".")[1] not in shown and OLD_KEY not in shown
    assert OLD_KEY not in repr(KEYS) and OLD_KEY not in str(KEYS)


def test_keys_from_setting() -> None:
    keys = keys_from_setting(f" {NEW_KEY} ,, {OLD_KEY} ,")
    assert [k.get_secret_value() for k in keys.keys] == [NEW_KEY, OLD_KEY]
    with pytest.raises(ValueError, match="at least one key"):
        keys_from_setting(" , ")
    with pytest.raises(ValueError, match="key 2 is shorter than 16") as caught:
        keys_from_setting(f"{NEW_KEY},tiny-k3y")
    assert "tiny-k3y" not in str(caught.value)


def test_issue_refuses_what_it_cannot_sign() -> None:
    with pytest.raises(ValueError, match="unknown link action"):
        issue(KEYS, "tl-1", "delete", "olga", LATER)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time zone"):
        issue(KEYS, "tl-1", "ack", "olga", datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="person"):
        issue(KEYS, "tl-1", "ack", "", LATER)


def test_link_url_and_token_from_link() -> None:
    token = issue(KEYS, "tl-1", "ack", "olga", LATER)
    url = link_url("https://tl.example.com/", token)
    assert url == f"https://tl.example.com/act/{token}"
    assert token_from_link(url) == token
    assert token_from_link(f" {url}?utm=x#frag ") == token
    assert token_from_link(token) == token


@given(st.text(max_size=300))
def test_verify_refuses_arbitrary_strings_with_link_refused_only(text: str) -> None:
    with pytest.raises(LinkRefused) as caught:  # anything else raised fails the test
        verify(KEYS, text, NOW)
    assert caught.value.reason in ("malformed", "forged", "expired")


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=300))
def test_verify_refuses_arbitrary_token_shaped_strings(text: str) -> None:
    with pytest.raises(LinkRefused):
        verify(KEYS, text, NOW)
