"""What every channel shares (like Alertmanager's notify.Notifier): the message, the error, the interface, and
the description of a channel kind that the registry (``services.notifier.channels.registry``) lists.

A channel *kind* (slack, dingtalk, ...) is one module: its config model (one entry in a team's ``channels`` list
in notify.yaml), its renderer (a pure function from Message to the vendor's body, within the vendor's size
limit) and its sender. A channel *instance* holds every configured entry of its kind, by entry name; a
dispatch's ``target`` is that name (for email: the address).

Secrets (signing keys, bot tokens, and webhook URLs, which are secrets themselves for Slack, DingTalk, WeCom,
Feishu and Teams) are ``SecretStr`` and never appear in an error, a log line, the delivery log or a topic:
a DeliveryError names the channel kind and the entry's name, never its URL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Protocol

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PyreqwestError
from pyreqwest.response import ResponseBodyReader

from services.notifier.refs import MemoryRefs, MessageRefs
from shared.infra.config import EnvName as EnvName  # noqa: PLC0414 - re-exported for the channel modules
from shared.infra.digits import is_digits
from shared.infra.threads import never_preempt


@dataclass(frozen=True, slots=True)
class ActionLink:
    """A one-click action offered with a message: ``action`` is ack, resolve, snooze or take; ``url`` is a
    signed, expiring link (shared.infra.actionlinks) that shows a confirmation page on GET and acts on POST."""

    action: str
    label: str
    url: str


@dataclass(frozen=True, slots=True)
class Mention:
    """The person a message is for, as chat vendors address people (DingTalk/WeCom by mobile number)."""

    name: str
    mobile: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    kind: str
    subject: str
    text: str
    data: dict[str, object] = field(default_factory=dict)
    actions: tuple[ActionLink, ...] = ()
    mention: Mention | None = None


NOTIFICATION_ID = "notification_id"
"""The key in a message's data that names its notification: the same at every attempt, so a receiver drops repeats
by it (the notifier writes it, the webhook sends it as its Idempotency-Key)."""
STATE = "state"
"""The kind of message that redraws a ticket's earlier message (sent only to kinds that redraw)."""
HANDOVER = "handover"
"""The kind of the hypercare handover digest (a list of its own: never folded into a rate limit's digest)."""
UNFOLDED = frozenset({STATE, HANDOVER})
"""Kinds a rate-limited lane sends alone, never folded into a digest of subject lines."""


class DeliveryError(Exception):
    """A failed delivery; ``retryable`` says whether trying again may help (5xx, timeouts, 429, a vendor's
    "busy" code) or not (4xx, a bad signature or token); ``retry_after_s``: the vendor said when (429)."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class Channel(Protocol):
    kind: str

    async def send(self, message: Message, target: str) -> None:
        """Deliver ``message`` to ``target`` (a configured entry's name, or an address) or raise DeliveryError."""


def resolve_secret(value: SecretStr | None, env: str | None) -> SecretStr | None:
    """The secret given inline, or read from the named environment variable (checked on load)."""
    if value is not None:
        return value
    if env is not None:
        return SecretStr(os.environ.get(env, ""))
    return None


def check_http_url(value: SecretStr) -> SecretStr:
    url = value.get_secret_value()
    if not url.startswith(("http://", "https://")) or len(url) > 2048:
        raise ValueError("must be an http:// or https:// URL (at most 2048 characters)")
    return value


SecretUrl = Annotated[SecretStr, AfterValidator(check_http_url)]
"""A webhook URL: a secret (for most vendors the URL itself grants posting), never shown."""


class ChannelConfig(BaseModel):
    """One entry of a team's ``channels`` list; each kind's model adds ``type: Literal[kind]`` and its fields.

    Secret pairs: ``url``/``url_env`` (and ``secret``/``secret_env`` where a kind signs) hold the value inline or
    name the environment variable that holds it; ``exactly_one`` checks a pair, ``secret_of`` reads it.
    """

    model_config = ConfigDict(extra="forbid")

    type: str
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")

    def exactly_one(self, field_name: str, *, required: bool = True) -> None:
        given = getattr(self, field_name) is not None
        from_env = getattr(self, f"{field_name}_env") is not None
        if given and from_env:
            raise ValueError(f"give either {field_name!r} or '{field_name}_env', not both")
        if required and not (given or from_env):
            raise ValueError(f"give {field_name!r} or '{field_name}_env'")

    def secret_of(self, field_name: str) -> SecretStr | None:
        found: SecretStr | None = resolve_secret(getattr(self, field_name), getattr(self, f"{field_name}_env"))
        return found


class UrlChannelConfig(ChannelConfig):
    """An entry posting to a webhook URL that is itself a secret (``url`` or ``url_env``)."""

    url: SecretUrl | None = None
    url_env: EnvName | None = None

    @model_validator(mode="after")
    def _url_given(self) -> UrlChannelConfig:
        self.exactly_one("url")
        return self

    def resolved_url(self) -> str:
        url = self.secret_of("url")
        return url.get_secret_value() if url is not None else ""


class SignedChannelConfig(UrlChannelConfig):
    """An entry that also signs what it sends with a ``secret`` (or ``secret_env``); optional unless the kind
    sets ``secret_required`` (robots secured by keyword or IP have none)."""

    secret_required: ClassVar[bool] = False
    secret: SecretStr | None = Field(default=None, min_length=8)
    secret_env: EnvName | None = None

    @model_validator(mode="after")
    def _secret_given(self) -> SignedChannelConfig:
        self.exactly_one("secret", required=self.secret_required)
        return self

    def signing_key(self) -> str | None:
        found = self.secret_of("secret")
        return found.get_secret_value() if found is not None else None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A vendor's documented limit per target: at most ``burst`` messages in any ``per_s`` seconds (a sliding
    window), e.g. DingTalk's 20 a minute: RateLimit(20, 60)."""

    burst: int
    per_s: float


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer as a channel reads it: status, headers (case-insensitive), the body (at most
    ``ANSWER_MAX_BYTES`` of it)."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


USER_AGENT = "ticketloop-notifier"
CLIENT_THREADS = "pyreqwest"
"""What the HTTP client's runtime threads are named (the kernel's ``comm`` of pyreqwest's Tokio threads)."""
ANSWER_MAX_BYTES = 1 << 20
"""How much of an answer's body is read: a vendor answers in a few kilobytes at most, and a target that streams
without end (a URL that points at the wrong server) must not fill the notifier's memory within the timeout."""


async def answer_body(reader: ResponseBodyReader, limit: int = ANSWER_MAX_BYTES) -> bytes:
    """The answer's body, at most ``limit`` bytes: read until it ends or the limit is reached, the rest left unread
    (the connection is then closed instead of reused)."""
    body = bytearray()
    while len(body) < limit:
        chunk = await reader.read(limit - len(body))
        if chunk is None or len(chunk) == 0:
            break
        body += chunk
    return bytes(body)


class Http:
    """The channels' one HTTP client: pyreqwest (Rust's reqwest and hyper; the request is written and the answer
    read on the client's own thread, off the notifier's loop), a keep-alive pool shared by every target, a total
    timeout per request, no redirects followed, no proxy taken from the environment, no cookies kept. A POST cost
    the loop's thread 37-54 µs here against aiohttp's 150-169 (and httpx's about twice aiohttp's). The client is
    made on the first request, inside the running loop; its thread then runs as ``SCHED_BATCH``
    (shared/infra/threads.py): when it wakes, it no longer preempts the loop's thread."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout = timedelta(seconds=timeout_s)
        self._client: Client | None = None

    def _made(self) -> Client:
        if self._client is None:
            self._client = (
                ClientBuilder()
                .timeout(self.timeout)
                .follow_redirects(False)
                .no_proxy()
                .default_cookie_store(False)
                .user_agent(USER_AGENT)
                .build()
            )
            # its thread (made by the first client) takes a free CPU when it wakes, not the loop's
            never_preempt(CLIENT_THREADS)
        return self._client

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        request = self._made().post(url).body_bytes(body).headers(headers).build_streamed()
        async with request as response:
            return Answer(response.status, response.headers, await answer_body(response.body_reader))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


@dataclass(frozen=True)
class ChannelContext:
    """What a channel's constructor may use: one shared HTTP client, the clock (seconds, for signatures), and
    where to keep the ids of sent messages it may change later (the notifier's: in the database)."""

    http: Http
    clock: Callable[[], float]
    refs: MessageRefs = field(default_factory=MemoryRefs)


@dataclass(frozen=True)
class ChannelKind:
    """A registry row: everything the notifier, ``ticketloop config check`` and the README need of a kind."""

    kind: str
    config: type[ChannelConfig]
    build: Callable[[Sequence[Any], ChannelContext], Channel]
    limit: RateLimit | None
    """The vendor's documented rate limit per target (None: no limit of the vendor's)."""
    max_bytes: int
    """The vendor's size limit for the part we fill (text is cut with a marker to stay within it)."""
    summary: str
    """One line for people: what it posts and how it is secured."""
    redraws: bool = False
    """Whether it redraws a ticket's earlier message in place when someone acts on it (a ``state`` message);
    kinds that cannot are not sent state messages at all (their next message says who acted)."""
    in_flight: int = 1
    """How many messages a lane may have on their way to one target at once, never two of one ticket (each
    ticket's messages keep their order). 1: one at a time, in planning order. More only for a kind without a
    vendor limit, whose receivers take requests side by side (the generic webhook, as Alertmanager sends its
    groups' notifications to one receiver): a lane's rate is then not its round trip's inverse. A notifier
    killed mid-send may repeat up to this many of a lane's messages."""

    def __post_init__(self) -> None:
        if self.in_flight < 1 or (self.in_flight > 1 and self.limit is not None):
            raise ValueError(f"{self.kind}: in_flight must be 1 for a rate-limited kind, and at least 1")


@dataclass(frozen=True)
class VendorCodes:
    """How a vendor that answers HTTP 200 with a code in the body (DingTalk, WeCom, Feishu) says what happened."""

    kind: str
    fields: tuple[str, ...]
    """Where the code is, in order (``errcode``; Feishu: ``code``, or ``StatusCode`` in older answers)."""
    retryable: Mapping[int, str]
    known: Mapping[int, str]
    """Final refusals, in words (any other code is a final "refused")."""
    wait_s: Mapping[int, float] = field(default_factory=dict)
    """Codes that mean "wait this long" (DingTalk mutes a robot over its limit for ten minutes)."""


def answer_error(
    codes: VendorCodes, name: str, status: int, body: bytes, retry_after: str | None = None
) -> DeliveryError | None:
    """What a vendor's answer means: None for success, else the error, naming the entry and the code in words
    (never quoting the answer's text). An answer that cannot be read is retried."""
    if status >= 300:
        return http_error(codes.kind, name, status, retry_after)
    label = codes.fields[0]
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return DeliveryError(f"{codes.kind} {name}: unreadable answer (HTTP {status})", retryable=True)
    found = [parsed[f] for f in codes.fields if isinstance(parsed, dict) and f in parsed]
    code = found[0] if found else None
    if not isinstance(code, int):
        return DeliveryError(f"{codes.kind} {name}: answer without {label} (HTTP {status})", retryable=True)
    if code == 0:
        return None
    if code in codes.retryable:
        text = f"{codes.kind} {name}: {label} {code}, {codes.retryable[code]}"
        return DeliveryError(text, retry_after_s=codes.wait_s.get(code))
    return DeliveryError(f"{codes.kind} {name}: {label} {code}, {codes.known.get(code, 'refused')}", retryable=False)


class UrlChannel:
    """What a channel posting to each entry's webhook URL shares: the entries' URLs and signing keys by name,
    and the clock and HTTP client it signs and posts with. A kind subclasses it with its ``kind`` and ``send``."""

    kind: str

    def __init__(self, entries: Sequence[UrlChannelConfig], context: ChannelContext) -> None:
        self._http, self._clock = context.http, context.clock
        self._urls = {e.name: e.resolved_url() for e in entries}
        self._keys = {e.name: e.signing_key() if isinstance(e, SignedChannelConfig) else None for e in entries}

    def _entry(self, target: str) -> tuple[str, str | None]:
        """The target's URL and signing key (None: it signs nothing), or a final error naming the entry."""
        url = self._urls.get(target)
        if url is None:
            raise DeliveryError(f"{self.kind}: no entry named {target!r}", retryable=False)
        return url, self._keys.get(target)


CUT_MARKER = "\n… (cut: see the ticket for the rest)"


def cut_utf8(text: str, max_bytes: int, marker: str = CUT_MARKER) -> str:
    """``text`` within ``max_bytes`` of UTF-8: whole as it is, or cut at a character boundary with ``marker``."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    room = max(0, max_bytes - len(marker.encode()))
    return data[:room].decode("utf-8", errors="ignore") + marker


def http_error(kind: str, name: str, status: int, retry_after: str | None = None) -> DeliveryError:
    """The error of a non-2xx answer, naming the kind and entry (never the URL): 408, 425, 429 and 5xx are
    retryable, other 4xx are not; a 429's Retry-After (seconds) is kept."""
    retryable = status >= 500 or status in (408, 425, 429)
    after = float(retry_after) if retry_after and is_digits(retry_after.strip()) else None
    return DeliveryError(f"{kind} {name}: HTTP {status}", retryable=retryable, retry_after_s=after)


def transport_error(kind: str, name: str, exc: BaseException) -> DeliveryError:
    """A connection or timeout error, retryable, named by its class only (its text can carry the URL)."""
    return DeliveryError(f"{kind} {name}: {type(exc).__name__}", retryable=True)


JSON_UTF8 = "application/json; charset=utf-8"


async def post(
    http: Http, kind: str, name: str, url: str, body: bytes, headers: Mapping[str, str] | None = None
) -> Answer:
    """POST a JSON body; a connection or timeout error becomes a retryable DeliveryError naming the kind and
    entry, raised without its cause (whose text and traceback can carry the URL, the secret)."""
    try:
        return await http.post(url, body, {"Content-Type": JSON_UTF8, **(headers or {})})
    except (PyreqwestError, TimeoutError) as exc:
        raise transport_error(kind, name, exc) from None
