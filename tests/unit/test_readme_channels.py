"""The README names every channel kind the registry has (services/notifier/channels/registry.py): in notify.yaml's
row of the configuration table and with a "Connecting chat" entry showing how to configure it."""

from __future__ import annotations

import re
from pathlib import Path

from services.intake.formats.registry import FORMATS
from services.notifier.channels.registry import REGISTRY

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_notify_yaml_row_lists_exactly_the_registrys_kinds() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `notify.yaml`"))
    listed = re.search(r"\(`type`: (.*?); a `name`", row)
    assert listed is not None, row
    assert set(re.findall(r"`(\w+)`", listed.group(1))) == set(REGISTRY)


def test_each_kind_has_a_connecting_entry_with_its_config_line() -> None:
    section = README.split("**Connecting chat.**", 1)[1].split("**One-click links.**", 1)[0]
    for kind in REGISTRY:
        assert f"{{type: {kind}, name:" in section, f"no configuration example for {kind}"


def test_the_intake_yaml_row_lists_exactly_the_registrys_formats() -> None:
    """The same for intake's formats (services/intake/formats/registry.py)."""
    row = next(line for line in README.splitlines() if line.startswith("| `intake.yaml`"))
    listed = re.search(r"format: (.*?)\)?; exactly one of", row)
    assert listed is not None, row
    assert set(re.findall(r"`(\w+)`", listed.group(1))) == set(FORMATS)
