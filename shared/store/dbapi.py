"""Statements compiled once and run on the DBAPI connection itself, for the hottest short writes.

The notifier writes the delivery log once per answered send in a paced stream: a DELETE and an upsert of one
row, in a transaction of their own (made in place on SQLite, see shared/store/runner.py). Through SQLAlchemy's
``Connection`` that costs about 140 µs, over half of it SQLAlchemy's own work per ``execute`` (the execution
context, parameter processing, the transaction's bookkeeping); on the DBAPI connection the same statements cost
about 60 µs. The SQL is still SQLAlchemy's: compiled from the same Core statement for the engine's dialect, its
parameters converted by the columns' own bind processors, so the rows are the same as through ``execute``, and a
driver error comes out as SQLAlchemy's (``OperationalError`` for a held lock, as callers expect).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


@dataclass(frozen=True, slots=True)
class RawStatement:
    """A Core statement compiled for one dialect with positional parameters (``qmark``, ``format``...)."""

    sql: str
    names: tuple[str, ...]
    """The parameters' names in the order the SQL takes them."""
    processors: tuple[Callable[[Any], Any] | None, ...]
    """Per parameter, its type's bind processor (None: passed as it is)."""
    constants: Mapping[str, Any]
    """Values the statement carries itself (a literal in a WHERE clause), used where a row gives none."""

    def row(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """One execution's parameters, converted as SQLAlchemy converts them."""
        out = []
        for name, process in zip(self.names, self.processors, strict=True):
            value = values[name] if name in values else self.constants[name]
            out.append(process(value) if process is not None and value is not None else value)
        return tuple(out)


def compile_raw(statement: ClauseElement, dialect: Dialect) -> RawStatement:
    """``statement`` compiled for ``dialect``, which must use positional parameters."""
    compiled = statement.compile(dialect=dialect)
    if not isinstance(compiled, SQLCompiler):
        raise TypeError(f"not a SQL statement: {type(statement).__name__}")
    names = compiled.positiontup
    if names is None:
        raise ValueError(f"the {dialect.name} dialect does not take positional parameters")
    processors = tuple(compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
    constants = {k: v for k, v in compiled.params.items() if v is not None}
    return RawStatement(compiled.string, tuple(names), processors, constants)


@functools.cache
def _compiled(statement: ClauseElement, dialect: Dialect) -> RawStatement:
    return compile_raw(statement, dialect)


def execute_many(engine: Engine, steps: Sequence[tuple[ClauseElement, Iterable[Mapping[str, Any]]]]) -> None:
    """Each (statement, rows) executed once per row (``executemany``) on one DBAPI connection, all in one
    transaction: committed when every step is done, rolled back when one fails. Steps without rows are skipped."""
    dialect = engine.dialect
    error = dialect.loaded_dbapi.Error
    raw = engine.raw_connection()
    sql, rows = "", []  # what failed, for the error
    try:
        cursor = raw.cursor()
        try:
            for statement, values in steps:
                compiled = _compiled(statement, dialect)
                sql, rows = compiled.sql, [compiled.row(v) for v in values]
                if rows:
                    cursor.executemany(sql, rows)
            raw.commit()
        finally:
            cursor.close()
    except error as exc:
        raw.rollback()
        raise DBAPIError.instance(sql, rows, exc, error) from exc
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
