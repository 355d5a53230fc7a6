"""notify.yaml: the channels of each team.

    teams:
      operations:
        email: [ops@example.test]
        channels:                       # any of the kinds in services/notifier/channels/registry.py
          - {type: slack, name: ops-slack, url_env: OPS_SLACK_WEBHOOK_URL}
          - {type: dingtalk, name: ops-ding, url_env: OPS_DINGTALK_URL, secret_env: OPS_DINGTALK_SECRET}
    fallback_team: operations           # who hears about a team with no channels

Each entry is validated against its kind's model (``type`` chooses it); a secret is given inline or by the name
of an environment variable (``*_env``), which must be set when the file is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.notifier.channels.base import ChannelConfig
from services.notifier.channels.registry import EMAIL, KINDS
from shared.infra.config import Address

if TYPE_CHECKING:
    ChannelEntry = ChannelConfig
else:
    _models: tuple[type[ChannelConfig], ...] = tuple(k.config for k in KINDS)
    ChannelEntry = (
        Annotated[Union[_models], Field(discriminator="type")]  # noqa: UP007 - a union built from the registry
        if len(_models) > 1
        else _models[0]
    )


class TeamChannels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: list[Address] = Field(default_factory=list)
    channels: list[ChannelEntry] = Field(default_factory=list)

    def targets(self) -> list[tuple[str, str]]:
        """(channel kind, target) pairs: each address, then each entry by name."""
        return [(EMAIL, str(a)) for a in self.email] + [(c.type, c.name) for c in self.channels]


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    teams: dict[str, TeamChannels]
    fallback_team: str | None = Field(default=None, description="who hears about a team with no channels")

    @model_validator(mode="after")
    def _unique_names(self) -> NotifyConfig:
        names = [c.name for t in self.teams.values() for c in t.channels]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"channel names must be unique across teams: {dup}")
        if self.fallback_team is not None and self.fallback_team not in self.teams:
            raise ValueError(f"fallback_team {self.fallback_team!r} is not a team")
        return self

    def entries(self) -> list[ChannelConfig]:
        return [c for t in self.teams.values() for c in t.channels]


def describe(config: NotifyConfig) -> dict[str, list[str]]:
    """Which channels each team reaches, for people (``ticketloop config check``): kinds and names, no secrets."""
    return {
        name: [f"{kind} {target}" for kind, target in team.targets()] for name, team in sorted(config.teams.items())
    }
