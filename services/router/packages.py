"""The handover package: what the implementation team hands operations when a project goes live, kept as
versioned files beside projects.yaml and read by the router with it.

    <config dir>/handover/<project>/v<version>.yaml     (written by ``ticketloop handover import``)

    project: webshop
    version: 3
    architecture: |            # how the system is built, what runs where
      ...
    deployment: |              # how it is deployed, released and rolled back
      ...
    configuration: |           # the core configuration and what each setting does
      ...
    known_issues:              # as in projects.yaml: matching customer reports get the workaround at once
      - {id: WEB-12, title: ..., keywords: [...], workaround: ..., reply_to_reporter: true}
    training: [{title: Operations training, version: "1.2", link: https://...}]
    manuals: [{title: Admin manual, version: "2.3", link: https://...}]
    contacts: [{name: Ian, role: implementation engineer, email: ian@example.test}]

The newest version of a project's package is the one in force: its known issues join the project's own (a
package's entry wins over projects.yaml's of the same id), and a report that matches one says on its timeline
which package version answered it. An import never silently replaces a version: the same version again is
refused unless identical, an older one is refused. ``completeness`` says what a package still lacks (checked
before go-live). Models and decisions are pure; ``load_packages`` and ``import_package`` do the file I/O.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from services.router.projects import KnownIssue, ProjectsConfig
from shared.infra.config import ConfigError, ConfigProblem, ConfigWatcher, load_yaml_model

_VERSION_FILE = re.compile(r"^v([0-9]{1,9})\.yaml$")
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class Document(BaseModel):
    """A training material or manual: its title, its version and where it is."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=64)
    link: str = Field(default="", max_length=2000)


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=256)
    phone: str | None = Field(default=None, max_length=64)


class HandoverPackage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project: str = Field(pattern=NAME)
    version: int = Field(ge=1, le=999_999_999)
    architecture: str = ""
    deployment: str = ""
    configuration: str = ""
    known_issues: list[KnownIssue] = Field(default_factory=list)
    training: list[Document] = Field(default_factory=list)
    manuals: list[Document] = Field(default_factory=list)
    contacts: list[Contact] = Field(default_factory=list)

    def label(self) -> str:
        return f"handover package {self.project} v{self.version}"


def completeness(package: HandoverPackage) -> list[str]:
    """What the package still lacks, in words (empty: complete)."""
    lacks = [
        f"{what} notes"
        for what in ("architecture", "deployment", "configuration")
        if not getattr(package, what).strip()
    ]
    lacks += [
        w.replace("_", " ") for w in ("known_issues", "training", "manuals", "contacts") if not getattr(package, w)
    ]
    lacks += [f"a way to reach contact {c.name} (email or phone)" for c in package.contacts if not (c.email or c.phone)]
    lacks += [
        f"a link to {kind} {d.title!r}"
        for kind in ("training", "manuals")
        for d in getattr(package, kind)
        if not d.link
    ]
    return lacks


def with_packages(projects: ProjectsConfig, packages: dict[str, HandoverPackage]) -> ProjectsConfig:
    """The projects with each one's package in force: its known issues join the project's (the package's entry
    wins for an id both have), each marked with the package version it comes from."""
    changed = []
    for project in projects.projects:
        package = packages.get(project.name)
        if package is None:
            changed.append(project)
            continue
        ours = {k.id for k in package.known_issues}
        issues = [k for k in project.known_issues if k.id not in ours]
        issues += [k.model_copy(update={"source": package.label()}) for k in package.known_issues]
        update = {"known_issues": issues, "package_version": package.version, "package_lacks": completeness(package)}
        changed.append(project.model_copy(update=update))
    return projects.model_copy(update={"projects": changed})


def versions(config_dir: Path, project: str) -> list[int]:
    """The versions of a project's package that were imported, oldest first."""
    folder = config_dir / "handover" / project
    if not folder.is_dir():
        return []
    found = (_VERSION_FILE.match(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in found if m is not None)


def package_path(config_dir: Path, project: str, version: int) -> Path:
    return config_dir / "handover" / project / f"v{version}.yaml"


def load_packages(config_dir: Path) -> dict[str, HandoverPackage]:
    """Each project's package in force (its newest version); a file that does not validate is a ConfigError."""
    root = config_dir / "handover"
    if not root.is_dir():
        return {}
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        numbers = versions(config_dir, folder.name)
        if numbers:
            path = package_path(config_dir, folder.name, numbers[-1])
            package = load_yaml_model(path, HandoverPackage)
            if (package.project, package.version) != (folder.name, numbers[-1]):
                where = f"{folder.name} v{numbers[-1]}"
                raise ConfigError(
                    [ConfigProblem(str(path), None, "project", f"names {package.label()}, but the file is {where}")]
                )
            found[folder.name] = package
    return found


def load_projects(config_dir: Path) -> ProjectsConfig:
    """projects.yaml with the handover packages in force."""
    return with_packages(load_yaml_model(config_dir / "projects.yaml", ProjectsConfig), load_packages(config_dir))


@dataclass(frozen=True, slots=True)
class Imported:
    path: Path
    replaced: bool
    """False: the same version with the same content was there already (nothing written)."""


class ImportRefusedError(ValueError):
    """An import that would replace a version silently; str() says why."""


def import_decision(package: HandoverPackage, text: str, existing: list[int], same_version_text: str | None) -> bool:
    """Whether to write the package (True), or that it is already there (False); ImportRefusedError if neither."""
    if same_version_text is not None:
        if same_version_text == text:
            return False
        raise ImportRefusedError(
            f"{package.label()} was imported before with other content: give the changed package a new version"
        )
    if existing and package.version < existing[-1]:
        raise ImportRefusedError(
            f"{package.label()} is older than v{existing[-1]}, the version in force: give it a version above it"
        )
    return True


def import_package(config_dir: Path, source: Path, projects: ProjectsConfig) -> Imported:
    """Validate ``source`` and store it as its project's version; ConfigError (file:line) or ImportRefusedError."""
    package = load_yaml_model(source, HandoverPackage)
    if not any(p.name == package.project for p in projects.projects):
        raise ConfigError([ConfigProblem(str(source), None, "project", f"{package.project!r} is not in projects.yaml")])
    text = source.read_text(encoding="utf-8")
    target = package_path(config_dir, package.project, package.version)
    existing = versions(config_dir, package.project)
    before = target.read_text(encoding="utf-8") if target.exists() else None
    if not import_decision(package, text, existing, before):
        return Imported(target, replaced=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".yaml.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)  # whole or not at all: the router never reads half a package
    return Imported(target, replaced=True)


class ProjectsWatcher(ConfigWatcher[ProjectsConfig]):
    """projects.yaml and the handover packages in force, reloaded when either changes (an import included)."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        super().__init__(config_dir / "projects.yaml", ProjectsConfig)

    def load(self) -> ProjectsConfig:
        return load_projects(self.config_dir)

    def _read_digest(self) -> str | None:
        digest = hashlib.sha256()
        try:
            digest.update(self.path.read_bytes())
        except OSError:
            return None
        root = self.config_dir / "handover"
        for path in sorted(root.glob("*/v*.yaml")) if root.is_dir() else []:
            digest.update(str(path.relative_to(root)).encode())
            with contextlib.suppress(OSError):
                digest.update(path.read_bytes())
        return digest.hexdigest()
