"""The one list of channel kinds: adding a channel is one module plus one line here.

notify.yaml's entries are validated against these kinds' config models (a discriminated union on ``type``),
the notifier builds one channel per kind from them, and ``ticketloop config check`` and the README describe them
from here. Email is a channel too, but its targets are the addresses in a team's ``email`` list and its server
comes from the environment (``TICKETLOOP_NOTIFIER_SMTP_*``), so it is built in services/notifier/main.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.notifier.channels import dingtalk, feishu, slack, teams, webhook, wecom
from services.notifier.channels.base import Channel, ChannelConfig, ChannelContext, ChannelKind

KINDS: tuple[ChannelKind, ...] = (
    webhook.KIND,
    slack.KIND,
    dingtalk.KIND,
    wecom.KIND,
    feishu.KIND,
    teams.KIND,
)
REGISTRY: Mapping[str, ChannelKind] = {k.kind: k for k in KINDS}
REDRAWING: tuple[str, ...] = tuple(k.kind for k in KINDS if k.redraws)
EMAIL = "email"


def build_channels(entries: Sequence[ChannelConfig], context: ChannelContext) -> dict[str, Channel]:
    """One channel per kind that has entries, each holding all of its kind's entries."""
    by_kind: dict[str, list[ChannelConfig]] = {}
    for entry in entries:
        by_kind.setdefault(entry.type, []).append(entry)
    return {kind: REGISTRY[kind].build(found, context) for kind, found in by_kind.items()}
