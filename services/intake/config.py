"""intake.yaml: which integrations may post, in which format, with which bearer token; and API clients.

    integrations:
      - {name: alertmanager, format: alertmanager, token_env: AM_TOKEN}   # or token: <at least 16 characters>
    api_clients:
      - {name: ops-console, token_sha256: 9f86d0...0a08, role: responder, acts_for: ["*"]}

Each credential gives exactly one of ``token``, ``token_env`` or ``token_sha256`` (the hex SHA-256 of the token,
``printf %s "$TOKEN" | sha256sum``: the file then holds no token at all, only what checks one). A ``token_env``
must name a variable that is set and not empty when the file is loaded (else a ConfigError naming file, line,
field and variable). Tokens are ``SecretStr``: no repr, str or error shows them; the plain value is read only
where a presented token is compared with it (``Credential.accepts``, in constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from services.intake.formats.registry import FORMATS, SIGNING_FORMATS
from services.intake.limits import RateLimitConfig
from services.intake.mail_in import MailConfig
from shared.events import Severity
from shared.infra.config import Duration, EnvName

MIN_TOKEN = 16


def check_token_length(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < MIN_TOKEN:
        raise ValueError(f"a token must have at least {MIN_TOKEN} characters")
    return value


Token = Annotated[SecretStr, AfterValidator(check_token_length)]
"""A bearer token given inline: a secret of at least 16 characters, never shown."""
TokenHash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
"""A token's SHA-256 in lower-case hex."""


class Credential(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    token: Token | None = None
    token_env: EnvName | None = None
    token_sha256: TokenHash | None = Field(
        default=None, description="the token's SHA-256 in hex (printf %s TOKEN | sha256sum): no token in the file"
    )

    @field_validator("token_env")
    @classmethod
    def _env_token_length(cls, name: str | None) -> str | None:
        if name is not None and len(os.environ.get(name, "")) < MIN_TOKEN:
            raise ValueError(f"environment variable {name} must hold a token of at least {MIN_TOKEN} characters")
        return name

    @model_validator(mode="after")
    def _one_token(self) -> Credential:
        if [self.token, self.token_env, self.token_sha256].count(None) != 2:
            raise ValueError("give exactly one of 'token', 'token_env' or 'token_sha256'")
        return self

    def secret(self) -> SecretStr:
        """The token, inline or from ``token_env`` (read now; it was checked to be set when the file was loaded);
        empty for a credential given by its hash, which has no token to give."""
        if self.token is not None:
            return self.token
        return SecretStr(os.environ.get(self.token_env or "", ""))

    def accepts(self, presented: str) -> bool:
        """Whether a presented token is this credential's (constant time; by its hash when given as one)."""
        if self.token_sha256 is not None:
            return hash_matches(self.token_sha256, presented)
        return token_matches(self.secret(), presented)


Role = Literal["viewer", "responder", "admin"]
ROLE_RANK: dict[str, int] = {"viewer": 0, "responder": 1, "admin": 2}


def role_allows(role: str, needed: str) -> bool:
    """viewer < responder < admin: a role may do what the roles below it may."""
    return ROLE_RANK[role] >= ROLE_RANK[needed]


def may_act_for(acts_for: list[str], client: str, person: str) -> bool:
    """Whether an API client may record ``person`` as the one acting: itself always, others only as listed
    (``"*"``: anyone, e.g. a console that signs people in itself)."""
    return person == client or "*" in acts_for or person in acts_for


class ApiClient(Credential):
    """An API client: its role (viewer reads; responder also acts on tickets, silences, overrides and
    deliveries; admin also changes configuration) and the people it may act for."""

    role: Role = "responder"
    acts_for: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(default_factory=list)


class HeartbeatConfig(BaseModel):
    """``heartbeat: {every: 1m, grace: 2m}`` on an integration: it must beat at least every ``every`` (by ``POST
    /api/v1/heartbeats/<name>``, or, for Alertmanager and Grafana, by sending the always-firing ``alertname``
    alert); ``grace`` later without a beat, a ticket opens, and the next beat resolves it."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,128}$", description="default: the integration's")
    every: Duration
    grace: Duration | None = Field(default=None, description="default: every")
    alertname: str = Field(default="Watchdog", min_length=1, max_length=256)

    @model_validator(mode="after")
    def _positive(self) -> HeartbeatConfig:
        if self.every.total_seconds() < 1:
            raise ValueError("'every' must be at least 1s")
        return self


class Integration(Credential):
    format: str
    """One of services/intake/formats/registry.py's ``FORMATS``."""
    signing_secret: Token | None = None
    """The sender's HMAC key (Grafana's contact point "HMAC signature" secret): when set, every request must be
    signed with it."""
    signing_secret_env: EnvName | None = None
    signature_timestamp_header: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,64}$")
    heartbeat: HeartbeatConfig | None = None
    """A dead man's switch this sender keeps beating (None: none)."""
    rate_limit: RateLimitConfig | None = None
    """Requests per period this sender may make (over it: 429 with Retry-After); None: no limit."""
    severities: dict[Annotated[str, Field(min_length=1, max_length=64)], Severity] = Field(default_factory=dict)
    """The sender's own severity words (an alert's ``severity`` label, any case) and what each means, beyond the
    built-in ones (critical, p1, error, major, warning, minor, info, low, ...), e.g. ``{disaster: critical}``."""

    @field_validator("format")
    @classmethod
    def _known_format(cls, name: str) -> str:
        if name not in FORMATS:
            raise ValueError(f"unknown format {name!r} (one of: {', '.join(sorted(FORMATS))})")
        return name

    @field_validator("severities")
    @classmethod
    def _lower_words(cls, words: dict[str, Severity]) -> dict[str, Severity]:
        return {word.strip().lower(): severity for word, severity in words.items()}

    """The timestamp header the sender is configured with (then signed together with the body)."""

    @field_validator("signing_secret_env")
    @classmethod
    def _env_secret_set(cls, name: str | None) -> str | None:
        if name is not None and len(os.environ.get(name, "")) < MIN_TOKEN:
            raise ValueError(f"environment variable {name} must hold a secret of at least {MIN_TOKEN} characters")
        return name

    @model_validator(mode="after")
    def _signing_fits(self) -> Integration:
        signs = self.signing_secret is not None or self.signing_secret_env is not None
        if self.signing_secret is not None and self.signing_secret_env is not None:
            raise ValueError("give at most one of 'signing_secret' or 'signing_secret_env'")
        if (signs or self.signature_timestamp_header) and self.format not in SIGNING_FORMATS:
            raise ValueError(
                f"format {self.format!r} is not signed (signing is for: {', '.join(sorted(SIGNING_FORMATS))})"
            )
        if self.signature_timestamp_header and not signs:
            raise ValueError("'signature_timestamp_header' needs 'signing_secret' or 'signing_secret_env'")
        return self

    def heartbeat_name(self) -> str | None:
        return (self.heartbeat.name or self.name) if self.heartbeat is not None else None

    def signing_key(self) -> SecretStr | None:
        """The HMAC key requests must be signed with (None: not signed)."""
        if self.signing_secret is not None:
            return self.signing_secret
        if self.signing_secret_env is not None:
            return SecretStr(os.environ.get(self.signing_secret_env, ""))
        return None


def _default_form_limit() -> RateLimitConfig:
    return RateLimitConfig.model_validate({"requests": 20, "per": "1m"})


class FeedbackForm(Credential):
    """``forms:`` in intake.yaml: a project's public feedback form at ``/feedback/<project>?t=<token>``; ``name``
    is the project, the token the form token in the link given to the customer (not a secret kept from them:
    it keeps strangers and scanners out); ``rate_limit`` bounds its submissions."""

    title: str = Field(default="", max_length=200)
    customer: str | None = Field(default=None, max_length=200)
    rate_limit: RateLimitConfig = Field(default_factory=_default_form_limit)


class IntakeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    integrations: list[Integration] = Field(default_factory=list)
    api_clients: list[ApiClient] = Field(default_factory=list)
    forms: list[FeedbackForm] = Field(default_factory=list)
    mail: MailConfig | None = None
    """The support addresses intake's SMTP receiver takes (services/intake/mail_in.py)."""

    @model_validator(mode="after")
    def _unique_names(self) -> IntakeConfig:
        names = [i.name for i in self.integrations]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"integration names must be unique: {sorted(dup)}")
        beats = [b for b in (i.heartbeat_name() for i in self.integrations) if b is not None]
        dup = {n for n in beats if beats.count(n) > 1}
        if dup:
            raise ValueError(f"heartbeat names must be unique: {sorted(dup)}")
        return self

    def integration(self, name: str) -> Integration | None:
        return next((i for i in self.integrations if i.name == name), None)

    def form(self, project: str) -> FeedbackForm | None:
        return next((f for f in self.forms if f.name == project), None)

    def heartbeat(self, name: str) -> Integration | None:
        """The integration that beats heartbeat ``name``."""
        return next((i for i in self.integrations if i.heartbeat_name() == name), None)

    def api_client_for(self, token: str) -> ApiClient | None:
        found = None
        for client in self.api_clients:
            # compare against every client so timing does not tell which names exist
            if client.accepts(token):
                found = client
        return found


def token_matches(expected: SecretStr, given: str) -> bool:
    """Whether a presented token is the expected one (constant time; an empty expected token matches nothing)."""
    plain = expected.get_secret_value()
    return bool(plain) and hmac.compare_digest(plain.encode(), given.encode())


def hash_matches(sha256_hex: str, given: str) -> bool:
    """Whether a presented token hashes to the configured SHA-256 (hex; compared in constant time)."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).hexdigest(), sha256_hex)
