"""Statements compiled once and run on the DBAPI connection itself, for the hottest short writes and reads.

The notifier writes the delivery log once per answered send in a paced stream: a DELETE and an upsert of one
row, in a transaction of their own (made in place on SQLite, see shared/store/runner.py). Through SQLAlchemy's
``Connection`` that costs about 140 µs, over half of it SQLAlchemy's own work per ``execute`` (the execution
context, parameter processing, the transaction's bookkeeping); on the DBAPI connection the same statements cost
about 60 µs. The SQL is still SQLAlchemy's: compiled from the same Core statement for the engine's dialect, its
parameters converted by the columns' own bind processors, so the rows are the same as through ``execute``, and a
driver error comes out as SQLAlchemy's (``OperationalError`` for a held lock, as callers expect).

The notifier also reads the silences once per batch of events: a paced stream's batch holds a few tickets, and
through SQLAlchemy's ``Connection`` that read of an empty table cost about 95 µs here against about 40 on the
DBAPI connection (``fetch_all``: each column's value converted by its type's own result processor, as a
``Connection`` converts it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Select
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


@dataclass(frozen=True, slots=True)
class RawQuery:
    """A Core SELECT compiled for one dialect, with how to read its rows."""

    statement: RawStatement
    columns: tuple[str, ...]
    """The selected columns' names, in the order the rows hold them."""
    processors: tuple[Callable[[Any], Any] | None, ...]
    """Per column, its type's result processor (None: the driver's value as it is)."""

    def mapping(self, row: Sequence[Any]) -> dict[str, Any]:
        """One row as column name → value, converted as SQLAlchemy converts it."""
        return {
            name: process(value) if process is not None and value is not None else value
            for name, process, value in zip(self.columns, self.processors, row, strict=True)
        }


def compile_query(select: Select[Any], dialect: Dialect) -> RawQuery:
    """``select`` compiled for ``dialect`` (positional parameters), with its columns' result processors."""
    columns = tuple(select.selected_columns)
    processors = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
    return RawQuery(compile_raw(select, dialect), tuple(str(c.key) for c in columns), processors)


@functools.cache
def _query(select: Select[Any], dialect: Dialect) -> RawQuery:
    return compile_query(select, dialect)


def fetch_all(engine: Engine, select: Select[Any], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of ``select`` with its parameters ``values``, on one DBAPI connection, as mappings."""
    query = _query(select, engine.dialect)
    error = engine.dialect.loaded_dbapi.Error
    raw = engine.raw_connection()
    params: tuple[Any, ...] = ()
    try:
        cursor = raw.cursor()
        try:
            params = query.statement.row(values)
            cursor.execute(query.statement.sql, params)
            rows = cursor.fetchall()
        finally:
            cursor.close()
    except error as exc:
        raise DBAPIError.instance(query.statement.sql, params, exc, error) from exc
    finally:
        raw.close()  # back to the pool, which ends the read's transaction
    return [query.mapping(row) for row in rows]


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
