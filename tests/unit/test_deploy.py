"""compose.yaml stays true to the code: each service runs its module, and every TICKETLOOP_* variable it
sets is a real setting (pydantic-settings would silently ignore a misspelt one)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from shared.infra.settings import CommonSettings, IntakeSettings, NotifierSettings, RouterSettings, SlaSettings

REPO = Path(__file__).resolve().parents[2]
SETTINGS: dict[str, type[CommonSettings]] = {
    "intake": IntakeSettings,
    "router": RouterSettings,
    "sla": SlaSettings,
    "notifier": NotifierSettings,
}


def env_names(service: str) -> set[str]:
    cls: type[CommonSettings] = SETTINGS[service]
    names = {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}
    for field in CommonSettings.model_fields:
        names.add(f"TICKETLOOP_{field.upper()}")
    for field in cls.model_fields:
        names.add(f"TICKETLOOP_{service.upper()}_{field.upper()}")
    return names


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_service_runs_its_module_with_known_settings(service: str) -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    spec = compose["services"][service]
    assert spec["command"] == ["python", "-m", f"services.{service}.main"]
    assert importlib.util.find_spec(f"services.{service}.main") is not None
    unknown = set(spec["environment"]) - env_names(service)
    assert not unknown, f"compose sets variables no setting reads: {sorted(unknown)}"


def test_settings_read_their_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETLOOP_CONFIG_DIR", "/etc/tl")
    monkeypatch.setenv("TICKETLOOP_ROUTER_METRICS_PORT", "9101")
    monkeypatch.setenv("TICKETLOOP_SLA_METRICS_PORT", "9102")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9092")
    router, sla = RouterSettings(), SlaSettings()
    assert (str(router.config_dir), router.metrics_port, router.kafka_bootstrap_servers) == ("/etc/tl", 9101, "k:9092")
    assert sla.metrics_port == 9102


def test_cluster_ids_are_kafka_shaped_and_never_look_like_options() -> None:
    from deploy.local.kafka_local import random_cluster_id

    ids = [random_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
