"""The Kafka codec: pydantic models to compact JSON bytes and back, with errors that name the field.

The services consume raw bytes (aiokafka, in batches) and decode here; a message that does not decode is a poison
message and goes to ``deadletter`` with the DecodeError text as its reason.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

import msgspec
import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

M = TypeVar("M", bound=BaseModel)


class DecodeError(ValueError):
    """A message that is not valid JSON or does not match its schema; str() says what and where."""


def encode(model: BaseModel) -> bytes:
    """Compact JSON straight from pydantic's Rust serializer: the same bytes as ``model_dump(mode="json")``
    through orjson, in half the time (4.2 against 7.9 µs for an inbound event, measured here), and exactly
    sized (orjson's result kept its buffer's capacity, 8-16 KiB for a 1 KiB ticket held in a table)."""
    return model.__pydantic_serializer__.to_json(model)


_WIRE_ENCODER = msgspec.json.Encoder()


def encode_wire(value: msgspec.Struct) -> bytes:
    """A msgspec Struct that mirrors a pydantic model (``shared.events.InboundEventWire``) as compact JSON: bytes
    that ``decode`` reads as the model, without building the model first."""
    return _WIRE_ENCODER.encode(value)


def loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"malformed JSON: {exc}") from exc


def describe_validation_error(exc: ValidationError) -> list[dict[str, str]]:
    """Flatten pydantic errors to ``[{"field": "alerts.0.labels", "error": "..."}]``."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "error": err["msg"].removeprefix("Value error, ")}
        for err in exc.errors()
    ]


def decode_error(what: str, exc: ValidationError) -> DecodeError:
    """A failed validation as what ``decode`` raises: malformed JSON, or ``invalid <what>: field: error; ...``."""
    if any(e["type"] == "json_invalid" for e in exc.errors()):
        return DecodeError(f"malformed JSON: {exc.errors()[0]['msg'].removeprefix('Invalid JSON: ')}")
    where = "; ".join(f"{e['field']}: {e['error']}" for e in describe_validation_error(exc))
    return DecodeError(f"invalid {what}: {where}")


def decode(model: type[M], data: bytes | Any) -> M:
    """``data`` (JSON bytes, or what JSON decodes to) as ``model``. Bytes are parsed and validated in one pass
    by pydantic's Rust core (9.5 against 29.7 µs for an inbound event through orjson and a dict, measured
    here)."""
    try:
        if isinstance(data, bytes | bytearray | memoryview):
            return model.model_validate_json(bytes(data))
        return model.model_validate(data)
    except ValidationError as exc:
        raise decode_error(model.__name__, exc) from exc


@cache
def _list_of(model: type[M]) -> TypeAdapter[list[M]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def decode_many(model: type[M], data: bytes) -> list[M]:
    """``data``, a JSON array, as a list of ``model``: parsed and validated in one pass, all or nothing (a
    DecodeError names the item, e.g. ``3.event.labels``)."""
    try:
        return _list_of(model).validate_json(data)
    except ValidationError as exc:
        raise decode_error(f"list of {model.__name__}", exc) from exc
