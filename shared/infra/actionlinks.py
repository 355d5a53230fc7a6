"""Signed, expiring one-click action links (pure).

A token is ``<payload>.<signature>``: the payload is URL-safe base64 (unpadded) of the compact JSON array
``[1, kid, link_id, ticket_id, action, person, expires_unix_s]``; the signature is URL-safe base64 (unpadded)
of HMAC-SHA256 over the payload's text as it appears in the token (so any edited character changes what is
signed). ``kid`` is the first 8 hex digits of sha256(key): ``keys[0]`` signs, every key verifies, so a new key
can be put first while links signed with the old one still work until they expire.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

import orjson
from pydantic import SecretStr

LinkAction = Literal["ack", "resolve", "snooze", "take", "survey", "solved"]
"""``survey``: the reporter's satisfaction survey (``/survey/<token>``, answerable until it expires); ``solved``: the
reporter's answer to a suggested workaround (``/solved/<token>``); the others act once on ``/act/<token>``."""
ACTIONS: tuple[LinkAction, ...] = get_args(LinkAction)
RefusalReason = Literal["malformed", "forged", "expired"]

FORMAT_VERSION = 1
MIN_KEY_CHARS = 16
MAX_TOKEN_CHARS = 2048
MAX_FIELD_CHARS = 256
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class LinkKeys:
    """Signing keys: ``keys[0]`` signs new links, every key verifies."""

    keys: tuple[SecretStr, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("action links need at least one key")
        for n, key in enumerate(self.keys, 1):
            if len(key.get_secret_value()) < MIN_KEY_CHARS:
                raise ValueError(f"action link key {n} is shorter than {MIN_KEY_CHARS} characters")


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a verified token says."""

    link_id: str
    ticket_id: str
    action: LinkAction
    person: str
    expires_at: datetime
    kid: str


class LinkRefused(Exception):  # noqa: N818 - the name says what happened to the link
    """A token that must not act: ``reason`` is malformed, forged or expired (never the token itself).

    ``claims`` is set only for ``expired``: the token is authentic, so its ticket and action can be shown.
    """

    def __init__(self, reason: RefusalReason, claims: LinkClaims | None = None) -> None:
        super().__init__(f"action link refused: {reason}")
        self.reason: RefusalReason = reason
        self.claims = claims


def kid_of(key: SecretStr) -> str:
    """The key id: the first 8 hex digits of sha256(key)."""
    return hashlib.sha256(key.get_secret_value().encode()).hexdigest()[:8]


def keys_from_setting(text: str) -> LinkKeys:
    """Keys from a comma-separated setting (the first signs); blanks around commas are ignored."""
    parts = [p.strip() for p in text.split(",")]
    return LinkKeys(tuple(SecretStr(p) for p in parts if p))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: SecretStr, payload: str) -> str:
    return _b64(hmac.new(key.get_secret_value().encode(), payload.encode("ascii"), hashlib.sha256).digest())


def issue(keys: LinkKeys, ticket_id: str, action: LinkAction, person: str, expires_at: datetime) -> str:
    """A new token (with a random link id) for ``person`` to do ``action`` on ``ticket_id`` until ``expires_at``."""
    if action not in ACTIONS:
        raise ValueError(f"unknown link action {action!r}; one of {list(ACTIONS)}")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at needs a time zone")
    for name, value in (("ticket_id", ticket_id), ("person", person)):
        if not value or len(value) > MAX_FIELD_CHARS:
            raise ValueError(f"{name} must have 1 to {MAX_FIELD_CHARS} characters")
    signer = keys.keys[0]
    body = [FORMAT_VERSION, kid_of(signer), secrets.token_urlsafe(12), ticket_id, action, person]
    payload = _b64(orjson.dumps([*body, int(expires_at.timestamp())]))
    return f"{payload}.{_sign(signer, payload)}"


def link_url(public_url: str, token: str) -> str:
    """The address a button points to: ``{public_url}/act/{token}``."""
    return f"{public_url.rstrip('/')}/act/{token}"


def survey_url(public_url: str, token: str, score: int | None = None) -> str:
    """The address of a satisfaction survey: ``{public_url}/survey/{token}``, with a score chosen in the mail."""
    return f"{public_url.rstrip('/')}/survey/{token}" + (f"?score={score}" if score is not None else "")


def solved_url(public_url: str, token: str, solved: bool) -> str:
    """The address of a "this solved it / it did not" answer: ``{public_url}/solved/{token}?answer=yes|no``."""
    return f"{public_url.rstrip('/')}/solved/{token}?answer={'yes' if solved else 'no'}"


def token_from_link(text: str) -> str:
    """The token in ``text``: a bare token, or a link URL ending in ``/act/<token>`` (query and fragment dropped)."""
    text = text.strip()
    if "/act/" in text:
        text = text.rsplit("/act/", 1)[1]
    return re.split(r"[?#]", text, maxsplit=1)[0]


def _claims(payload: str) -> LinkClaims:
    """The payload's fields, or LinkRefused('malformed')."""
    try:
        fields = orjson.loads(_unb64(payload))
    except (binascii.Error, ValueError) as exc:
        raise LinkRefused("malformed") from exc
    if not (isinstance(fields, list) and len(fields) == 7 and type(fields[0]) is int and fields[0] == FORMAT_VERSION):
        raise LinkRefused("malformed")
    _, kid, link_id, ticket_id, action, person, expires = fields
    texts = (kid, link_id, ticket_id, person)
    if not all(isinstance(t, str) and 0 < len(t) <= MAX_FIELD_CHARS for t in texts):
        raise LinkRefused("malformed")
    if action not in ACTIONS or type(expires) is not int:
        raise LinkRefused("malformed")
    try:
        expires_at = datetime.fromtimestamp(expires, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise LinkRefused("malformed") from exc
    return LinkClaims(link_id, ticket_id, action, person, expires_at, kid)


def verify(keys: LinkKeys, token: str, now: datetime) -> LinkClaims:
    """The claims of an authentic, unexpired token; else LinkRefused(malformed | forged | expired).

    The signature is checked before the payload is read, so an edited token is ``forged``, not ``malformed``.
    """
    payload, dot, signature = token.partition(".")
    if not dot or len(token) > MAX_TOKEN_CHARS or not (_B64URL.fullmatch(payload) and _B64URL.fullmatch(signature)):
        raise LinkRefused("malformed")
    signer = next((k for k in keys.keys if hmac.compare_digest(_sign(k, payload), signature)), None)
    if signer is None:
        raise LinkRefused("forged")
    claims = _claims(payload)
    if claims.kid != kid_of(signer):
        raise LinkRefused("forged")
    if now >= claims.expires_at:
        raise LinkRefused("expired", claims)
    return claims


__all__ = [
    "ACTIONS",
    "LinkAction",
    "LinkClaims",
    "LinkKeys",
    "LinkRefused",
    "issue",
    "keys_from_setting",
    "kid_of",
    "link_url",
    "solved_url",
    "survey_url",
    "token_from_link",
    "verify",
]
