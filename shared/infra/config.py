"""Behaviour configuration from YAML, validated on load with errors that name file, line and field.

``load_yaml_model(path, Model)`` parses with line marks kept, validates with pydantic, and on failure raises
ConfigError whose message reads ``routing.yaml:12: rules.0.team: Field required``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from prometheus_client import Counter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from shared.infra.logging import get_logger

M = TypeVar("M", bound=BaseModel)
log = get_logger(__name__)


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ConfigError(ValueError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _to_python(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the deepest node along ``loc`` that exists in the document. A part that is not a key
    of a mapping is passed over (pydantic puts a union member's tag in the path: ``channels.0.webhook.url_env``)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            if match is None:
                continue
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def yaml_problem(filename: str, text: str, exc: yaml.YAMLError) -> ConfigProblem:
    """What is wrong with a YAML text, and on which line: a syntax error or a node YAML cannot construct (marked),
    or a character YAML does not allow anywhere (a NUL, a control character: the reader gives its position)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return ConfigProblem(
            filename, mark.line + 1 if mark else None, "", f"YAML syntax: {exc.problem or exc.context}"
        )
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        return ConfigProblem(filename, line, "", f"YAML syntax: character U+{code:04X} is not allowed in YAML text")
    return ConfigProblem(filename, None, "", "YAML syntax: the text cannot be read as YAML")


def unreadable_scalar(root: yaml.Node) -> tuple[int, str] | None:
    """The line of the first value that YAML resolves (or is told by a tag) to a type it then cannot build, and
    what is wrong with it (a date that does not exist, ``2026-02-30``; an integer of more than 4,300 digits;
    ``!!timestamp soon``); None when there is none."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:  # an alias: the node was looked at (and may hold itself)
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                yaml.safe_load(yaml.serialize(node))
            except Exception as exc:  # noqa: BLE001 - PyYAML's constructors raise ValueError, AttributeError, IndexError
                return node.start_mark.line + 1, _unbuildable(node.tag, exc)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            stack.extend(reversed([n for pair in node.value for n in pair]))
    return None


def _unbuildable(tag: str, exc: Exception) -> str:
    """Why a value cannot be built, in words for the person who wrote it (never the value: it may be a secret)."""
    kind = tag.rsplit(":", 1)[-1]
    if isinstance(exc, ValueError) and "Exceeds the limit" in str(exc):
        return "an integer of more than 4,300 digits"
    if kind == "timestamp" and isinstance(exc, ValueError) and not isinstance(exc, yaml.YAMLError):
        # the date's own reason ("day is out of range for month"), which never quotes the value; int()'s and
        # float()'s do, and a value tagged !!int may be a token
        return f"not a {kind}: {str(exc).splitlines()[0]}"
    return f"not a {kind}"


def parse_yaml_text(text: str, model: type[M], *, filename: str) -> M:
    root: yaml.Node | None = None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = _to_python(root) if root is not None else {}
    except yaml.YAMLError as exc:
        raise ConfigError([yaml_problem(filename, text, exc)]) from exc
    except RecursionError as exc:
        raise ConfigError([ConfigProblem(filename, None, "", "YAML nested too deeply to read")]) from exc
    except Exception as exc:  # a value PyYAML resolved to a type and then could not build
        found = unreadable_scalar(root) if root is not None else None
        line, why = found if found is not None else (None, "a value YAML cannot read")
        raise ConfigError([ConfigProblem(filename, line, "", f"a value YAML cannot read: {why}")]) from exc
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            ConfigProblem(filename, _line_of(root, tuple(err["loc"])), ".".join(str(p) for p in err["loc"]), err["msg"])
            for err in exc.errors()
        ]
        raise ConfigError(problems) from None  # pydantic's own error shows input values: secrets


def load_yaml_model(path: Path, model: type[M]) -> M:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), None, "", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte {exc.start}): save it as UTF-8"
        raise ConfigError([ConfigProblem(str(path), None, "", problem)]) from exc
    return parse_yaml_text(text, model, filename=str(path))


_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m(?!s))?\s*(?:(\d+)s)?\s*(?:(\d+)ms)?\s*$")


LONGEST_DURATION = timedelta(days=36_500)
"""A hundred years: any longer duration is a mistake (and past what dates can hold from now)."""


def parse_duration(value: object) -> timedelta:
    """``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"``, ``"250ms"``, or a number of seconds; at most
    LONGEST_DURATION."""
    if isinstance(value, timedelta):
        return value
    try:
        found = _parse_duration(value)
    except OverflowError:
        found = None
    if found is None or found > LONGEST_DURATION:
        raise ValueError(f"a duration is at most {LONGEST_DURATION.days} days")
    return found


def _parse_duration(value: object) -> timedelta | None:
    if isinstance(value, bool):
        # pydantic turns a ValueError (not a TypeError) into a validation error naming the field
        raise ValueError("a duration is a number of seconds or a string like '15m'")  # noqa: TRY004
    if isinstance(value, int | float):
        if value != value:  # NaN  # noqa: PLR0124
            raise ValueError("a duration is a number of seconds, not NaN")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value) if value <= LONGEST_DURATION.total_seconds() else None
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and any(m.groups()):
            d, h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
            return timedelta(days=d, hours=h, minutes=mi, seconds=s, milliseconds=ms)
    raise ValueError(f"not a duration: {value!r} (use e.g. '30s', '15m', '4h', '1d')")


class ConfigWatcher(Generic[M]):
    """Holds the running config of one file and reloads it when the file's content changes.

    A file that fails validation never replaces the running config: ``poll`` reports the problems and keeps
    serving the last good one.
    """

    def __init__(self, path: Path, model: type[M], *, optional: bool = False) -> None:
        """``optional``: a missing file means the model's defaults (picked up when the file appears)."""
        self.path, self.model = path, model
        self.current: M = model() if optional and not path.exists() else self.load()
        self._digest = self._read_digest()
        self.last_error: ConfigError | None = None

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def load(self) -> M:
        """The file's config (a subclass may add what belongs with it)."""
        return load_yaml_model(self.path, self.model)

    def poll(self) -> Literal["unchanged", "reloaded", "rejected"]:
        digest = self._read_digest()
        if digest == self._digest:
            return "unchanged"
        self._digest = digest
        try:
            self.current = self.load()
        except ConfigError as exc:
            self.last_error = exc
            return "rejected"
        self.last_error = None
        return "reloaded"


async def poll_watchers(watchers: Sequence[ConfigWatcher[Any]], reloads: Counter) -> None:
    """Re-read the config files that changed (off the event loop): a reload is logged; a refused file is an
    error, and the running config stays. ``reloads`` counts both by result."""
    for watcher in watchers:
        result = await asyncio.to_thread(watcher.poll)
        if result == "unchanged":
            continue
        reloads.labels(result=result).inc()
        if result == "reloaded":
            log.info("routing_reloaded", path=str(watcher.path))
        else:
            log.error(
                "routing_rejected_keeping_running_rules", path=str(watcher.path), problems=str(watcher.last_error)
            )


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _DURATION.pattern, "examples": ["90s", "15m", "1h30m", "2d"]},
                {"type": "number", "minimum": 0, "description": "seconds"},
            ]
        },
        mode="validation",
    ),
]
"""A config field that takes "30s", "15m", "1h30m", "2d" or a number of seconds."""

# Internal domains (.local, .test, .corp) are real in on-premises mail, so only the shape is checked.
Address = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]
"""An email address in a config file."""


def check_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


TimeZone = Annotated[str, AfterValidator(check_time_zone)]
"""A config field naming an IANA time zone, checked on load."""


def check_env_set(name: str) -> str:
    """A ``*_env`` config field: the variable must be set and not empty when the config is loaded (an unset
    variable would otherwise sign with an empty key, accept an empty token or post to nowhere). The error names
    the variable, never its value."""
    if not os.environ.get(name, ""):
        raise ValueError(f"environment variable {name} is unset or empty")
    return name


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"), AfterValidator(check_env_set)]
"""A config field naming an environment variable that holds a secret; checked to be set and not empty on load."""
