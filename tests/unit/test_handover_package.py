"""The handover package: what it lacks, versions that never silently replace each other, its known issues in force
in the router (the timeline names the version), and ``ticketloop handover check|import|show``."""

from __future__ import annotations

import io
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.cli import main
from services.router.packages import (
    HandoverPackage,
    ImportRefusedError,
    ProjectsWatcher,
    completeness,
    import_decision,
    load_projects,
)
from shared.events import Change, EventKind
from shared.infra.config import ConfigError
from shared.streaming.codec import encode
from tests.unit.factories import event
from tests.unit.test_router_service import changes, router_broker

GO_LIVE = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)
PROJECTS = f"""
projects:
  - name: webshop
    customer: acme
    matchers: ['customer="acme"']
    go_live: {GO_LIVE.isoformat()}
    implementation: {{team: implementation, engineers: [ian]}}
    operations: {{team: operations}}
    known_issues:
      - {{id: WEB-1, title: Old note, keywords: [coupon], workaround: Type the code in capitals.}}
      - {{id: WEB-12, title: Checkout on Safari, keywords: [checkout], workaround: Use the app.}}
"""
PACKAGE = """project: webshop
version: {version}
architecture: |
  Two app servers behind a load balancer; PostgreSQL primary and replica.
deployment: Blue/green through the release pipeline; rollback is the previous colour.
configuration: ""
known_issues:
  - id: WEB-12
    title: Checkout button unresponsive on mobile Safari
    keywords: [checkout]
    workaround: {workaround}
    reply_to_reporter: true
training: [{{title: Operations training, version: "1.2", link: "https://wiki.example/training"}}]
manuals: [{{title: Admin manual, version: "2.3"}}]
contacts:
  - {{name: Ian, role: implementation engineer, email: ian@example.test}}
  - {{name: Olga, role: operations lead}}
"""


def write(path: Path, version: int = 2, workaround: str = "Use the desktop site until 2.3.1.") -> Path:
    path.write_text(PACKAGE.format(version=version, workaround=workaround))
    return path


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out), out.getvalue()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "projects.yaml").write_text(PROJECTS)
    return tmp_path


def test_what_a_package_lacks() -> None:
    package = HandoverPackage.model_validate({"project": "webshop", "version": 1})
    assert completeness(package) == [
        "architecture notes",
        "deployment notes",
        "configuration notes",
        "known issues",
        "training",
        "manuals",
        "contacts",
    ]


def test_check_says_what_is_lacking_and_how_long_until_go_live(config: Path) -> None:
    code, out = run("handover", "check", str(write(config / "p.yaml")), "--config-dir", str(config))
    assert code == 0, out
    assert out.splitlines() == [
        "ok: handover package webshop v2 (go-live in 4 days): 1 known issues",
        "lacks: configuration notes",
        "lacks: a way to reach contact Olga (email or phone)",
        "lacks: a link to manuals 'Admin manual'",
    ]
    assert run("handover", "check", str(config / "p.yaml"), "--strict", "--config-dir", str(config))[0] == 1


def test_check_names_the_file_and_line_of_what_is_wrong(config: Path) -> None:
    bad = config / "bad.yaml"
    bad.write_text(
        PACKAGE.format(version=2, workaround="x").replace("  - {name: Olga, role: operations lead}", "  - {name: Olga}")
    )
    code, out = run("handover", "check", str(bad), "--config-dir", str(config))
    assert code == 1 and f"error: {bad}:17: contacts.1.role: Field required" in out, out


def test_an_import_never_silently_replaces_a_version(config: Path) -> None:
    code, out = run("handover", "import", str(write(config / "p.yaml")), "--config-dir", str(config))
    assert (code, out) == (0, f"imported: {config / 'handover/webshop/v2.yaml'} (in force now)\n")
    assert run("handover", "import", str(config / "p.yaml"), "--config-dir", str(config))[1].startswith("unchanged:")
    code, out = run(
        "handover", "import", str(write(config / "p2.yaml", workaround="Other")), "--config-dir", str(config)
    )
    assert code == 1 and "imported before with other content" in out
    code, out = run("handover", "import", str(write(config / "p1.yaml", version=1)), "--config-dir", str(config))
    assert code == 1 and "older than v2" in out
    assert "Use the desktop site" in (config / "handover/webshop/v2.yaml").read_text()
    assert not (config / "handover/webshop/v1.yaml").exists()
    other = config / "other.yaml"
    other.write_text(PACKAGE.format(version=1, workaround="x").replace("project: webshop", "project: billing"))
    code, out = run("handover", "import", str(other), "--config-dir", str(config))
    assert code == 1 and "'billing' is not in projects.yaml" in out


def test_import_decisions() -> None:
    package = HandoverPackage.model_validate({"project": "p", "version": 3})
    assert import_decision(package, "a", [1, 2], None) is True
    assert import_decision(package, "a", [3], "a") is False
    with pytest.raises(ImportRefusedError):
        import_decision(package, "a", [3], "b")
    with pytest.raises(ImportRefusedError):
        import_decision(package, "a", [4], None)


def test_show_prints_the_version_in_force(config: Path) -> None:
    assert run("handover", "show", "webshop", "--config-dir", str(config))[0] == 1
    run("handover", "import", str(write(config / "p.yaml")), "--config-dir", str(config))
    run("handover", "import", str(write(config / "p3.yaml", version=3)), "--config-dir", str(config))
    code, out = run("handover", "show", "webshop", "--config-dir", str(config))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "handover package webshop v3 (in force; versions imported: 2, 3)"
    assert "known issue WEB-12: Checkout button unresponsive on mobile Safari" in lines
    assert "training: Operations training v1.2 https://wiki.example/training" in lines
    assert "contact: Ian (implementation engineer) ian@example.test" in lines


def test_the_packages_known_issues_are_in_force_with_their_version(config: Path) -> None:
    run("handover", "import", str(write(config / "p.yaml")), "--config-dir", str(config))
    [project] = load_projects(config).projects
    assert project.package_version == 2
    issues = {k.id: (k.workaround, k.source) for k in project.known_issues}
    assert issues == {
        "WEB-1": ("Type the code in capitals.", None),
        "WEB-12": ("Use the desktop site until 2.3.1.", "handover package webshop v2"),
    }, "the package's entry wins over projects.yaml's of the same id"


def test_the_router_answers_from_the_package_in_force_and_picks_up_an_import(config: Path) -> None:
    watcher = ProjectsWatcher(config)
    assert watcher.current.projects[0].package_version is None
    run("handover", "import", str(write(config / "p.yaml")), "--config-dir", str(config))
    assert watcher.poll() == "reloaded" and watcher.current.projects[0].package_version == 2
    assert watcher.poll() == "unchanged"
    broker, topics = router_broker(config, "route:\n  team: ops\n", PROJECTS)
    report = event(
        event_id="fb1",
        kind=EventKind.feedback,
        dedup_key="portal/fb1",
        summary="The checkout does nothing on my phone",
        labels={"customer": "acme", "reporter": "ann@acme.example"},
    )
    broker.produce(topics.events.name, b"portal/fb1", encode(report))
    broker.run()
    [opened] = changes(broker, topics)
    assert opened.change is Change.opened and opened.ticket.known_issue == "WEB-12"
    assert opened.workaround is not None and "from handover package webshop v2" in opened.workaround
    assert "Use the desktop site until 2.3.1." in opened.workaround
    assert "handover package v2" in opened.reason, "the ticket links to the package in force"


def test_the_example_package_checks_complete_and_config_check_lists_the_package_in_force(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    example = repo / "deploy/local/handover/webshop-package.yaml"
    code, out = run("handover", "check", str(example), "--strict", "--config-dir", str(repo / "deploy/local/config"))
    assert code == 0 and out.endswith("complete\n"), out
    config = tmp_path / "config"
    shutil.copytree(repo / "deploy/local/config", config)
    assert run("handover", "import", str(example), "--config-dir", str(config))[0] == 0
    code, out = run("config", "check", "--config-dir", str(config))
    assert code == 0 and "ok: handover package webshop v1 in force" in out.splitlines(), out
    (config / "handover/webshop/v2.yaml").write_text("project: webshop\nversion: two\n")
    code, out = run("config", "check", "--config-dir", str(config))
    assert code == 1 and f"error: {config / 'handover/webshop/v2.yaml'}:2: version:" in out, out


def test_a_package_file_naming_another_project_or_version_than_its_place_is_refused(config: Path) -> None:
    folder = config / "handover" / "webshop"
    folder.mkdir(parents=True)
    (folder / "v1.yaml").write_text("project: billing\nversion: 1\n")
    with pytest.raises(ConfigError, match="names handover package billing v1, but the file is webshop v1"):
        load_projects(config)
    (folder / "v1.yaml").write_text("project: webshop\nversion: 3\n")
    with pytest.raises(ConfigError, match="but the file is webshop v1"):
        load_projects(config)


def test_a_package_file_that_is_not_utf8_is_a_named_error(config: Path) -> None:
    bad = config / "pkg.yaml"
    bad.write_bytes("project: webshop\nversion: 1\narchitecture: caf\xe9\n".encode("latin-1"))
    code, out = run("handover", "check", str(bad), "--config-dir", str(config))
    assert code == 1 and f"error: {bad}: not UTF-8 text" in out, out


def test_an_import_that_cannot_write_says_where_and_why(config: Path) -> None:
    (config / "handover").write_text("a file where the packages' directory belongs")
    code, out = run("handover", "import", str(write(config / "p.yaml")), "--config-dir", str(config))
    assert code == 1 and out.startswith(f"error: cannot write {config / 'handover'}"), out
