"""notify.yaml: the channels of each team."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.config import Address


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://")
    secret: str | None = Field(default=None, min_length=8)
    secret_env: str | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookConfig:
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of 'secret' or 'secret_env'")
        return self

    def resolved_secret(self) -> str:
        return self.secret if self.secret is not None else os.environ.get(self.secret_env or "", "")


class TeamChannels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: list[Address] = Field(default_factory=list)
    webhooks: list[WebhookConfig] = Field(default_factory=list)


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    teams: dict[str, TeamChannels]
    fallback_team: str | None = Field(default=None, description="who hears about a team with no channels")

    @model_validator(mode="after")
    def _unique_webhooks(self) -> NotifyConfig:
        names = [w.name for t in self.teams.values() for w in t.webhooks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"webhook names must be unique across teams: {dup}")
        if self.fallback_team is not None and self.fallback_team not in self.teams:
            raise ValueError(f"fallback_team {self.fallback_team!r} is not a team")
        return self
