"""intake.yaml: which integrations may post, in which format, with which bearer token; and API clients."""

from __future__ import annotations

import hmac
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Credential(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    token: str | None = Field(default=None, min_length=16)
    token_env: str | None = None

    @model_validator(mode="after")
    def _one_token(self) -> Credential:
        if (self.token is None) == (self.token_env is None):
            raise ValueError("give exactly one of 'token' or 'token_env'")
        return self

    def secret(self) -> str:
        if self.token is not None:
            return self.token
        return os.environ.get(self.token_env or "", "")


class Integration(Credential):
    format: Literal["alertmanager", "generic", "pagerduty"]


class IntakeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    integrations: list[Integration] = Field(default_factory=list)
    api_clients: list[Credential] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> IntakeConfig:
        names = [i.name for i in self.integrations]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"integration names must be unique: {sorted(dup)}")
        return self

    def integration(self, name: str) -> Integration | None:
        return next((i for i in self.integrations if i.name == name), None)

    def api_client_for(self, token: str) -> Credential | None:
        found = None
        for client in self.api_clients:
            secret = client.secret()
            # compare against every client so timing does not tell which names exist
            if secret and hmac.compare_digest(secret.encode(), token.encode()):
                found = client
        return found


def token_matches(expected: str, given: str) -> bool:
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())
