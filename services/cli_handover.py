"""``ticketloop handover check|import|show``: the handover package of a project (services/router/packages.py).

    ticketloop handover check webshop-package.yaml [--strict]   # valid? what does it still lack? (file:line errors)
    ticketloop handover import webshop-package.yaml             # store it as the project's next version
    ticketloop handover show webshop                            # the version in force and what it holds

``check`` exits 1 when the file does not validate, or with ``--strict`` when it lacks anything; it says how long
until the project's go-live. ``import`` refuses to replace a version (the same version with other content, or an
older one) and writes nothing then; the running router picks the new version up within seconds.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from services.router.packages import (
    HandoverPackage,
    ImportRefusedError,
    completeness,
    import_package,
    load_packages,
    versions,
)
from services.router.projects import ProjectsConfig
from shared.infra.config import ConfigError, load_yaml_model


def add_handover_commands(sub: Any) -> None:
    handover = sub.add_parser("handover", help="the handover package of a project").add_subparsers(
        dest="action", required=True
    )
    check = handover.add_parser("check", help="validate a package and say what it still lacks")
    check.add_argument("file", type=Path)
    check.add_argument("--strict", action="store_true", help="exit 1 if the package lacks anything")
    do_import = handover.add_parser("import", help="store a package as its project's next version")
    do_import.add_argument("file", type=Path)
    show = handover.add_parser("show", help="the package in force for a project")
    show.add_argument("project")
    for p in (check, do_import, show):
        p.add_argument(
            "--config-dir", type=Path, default=None, help="default: $TICKETLOOP_CONFIG_DIR or deploy/local/config"
        )


def handover_command(args: argparse.Namespace, config_dir: Path, out: TextIO) -> int:
    try:
        projects = load_yaml_model(config_dir / "projects.yaml", ProjectsConfig)
        if args.action == "check":
            return _check(load_yaml_model(args.file, HandoverPackage), projects, args.strict, out)
        if args.action == "import":
            imported = import_package(config_dir, args.file, projects)
            if imported.replaced:
                print(f"imported: {imported.path} (in force now)", file=out)
            else:
                print(f"unchanged: {imported.path} holds this package already", file=out)
            return 0
        return _show(config_dir, args.project, out)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=out)
        return 1
    except ImportRefusedError as exc:
        print(f"refused: {exc}", file=out)
        return 1
    except OSError as exc:  # the packages' directory cannot be made or written (a file in its way, permissions)
        where = exc.filename if exc.filename is not None else config_dir / "handover"
        print(f"error: cannot write {where}: {exc.strerror or type(exc).__name__}", file=out)
        return 1


def _check(package: HandoverPackage, projects: ProjectsConfig, strict: bool, out: TextIO) -> int:
    project = next((p for p in projects.projects if p.name == package.project), None)
    if project is None:
        print(f"error: project {package.project!r} is not in projects.yaml", file=out)
        return 1
    lacks = completeness(package)
    days = (project.go_live - datetime.now(UTC)).days
    when = f"go-live in {days} days" if days >= 0 else f"live since {project.go_live.date().isoformat()}"
    print(f"ok: {package.label()} ({when}): {len(package.known_issues)} known issues", file=out)
    for lack in lacks:
        print(f"lacks: {lack}", file=out)
    if not lacks:
        print("complete", file=out)
    return 1 if strict and lacks else 0


def _show(config_dir: Path, project: str, out: TextIO) -> int:
    package = load_packages(config_dir).get(project)
    if package is None:
        print(f"no handover package imported for {project!r}", file=out)
        return 1
    print(
        f"{package.label()} (in force; versions imported: {', '.join(map(str, versions(config_dir, project)))})",
        file=out,
    )
    for what in ("architecture", "deployment", "configuration"):
        text = getattr(package, what).strip()
        print(f"{what}: {text.splitlines()[0][:100] + ' ...' if text else '-'}", file=out)
    for issue in package.known_issues:
        print(f"known issue {issue.id}: {issue.title}", file=out)
    for kind in ("training", "manuals"):
        for doc in getattr(package, kind):
            print(f"{kind}: {doc.title} v{doc.version} {doc.link}".rstrip(), file=out)
    for c in package.contacts:
        reach = ", ".join(x for x in (c.email, c.phone) if x)
        print(f"contact: {c.name} ({c.role}) {reach}".rstrip(), file=out)
    for lack in completeness(package):
        print(f"lacks: {lack}", file=out)
    return 0
