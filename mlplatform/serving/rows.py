"""Predict-row validation per bundle: the rows ``POST /v1/projects/{p}/predict`` accepts.

The rows a bundle accepts are described by its input schema; ``PredictValidator`` compiles
that schema into a pydantic ``TypeAdapter`` once per bundle. A value is refused (422, naming
its field path and the reason) when it has the wrong type for its column: a number column's
value is not a (finite) number or numeric string, a bool column's value is not true/false-like,
a category or date column's value is not a string, or the field is not a known column.
Everything else is handled exactly as in training (``mlplatform.columns``): missing tokens are
missing, an unknown category, an unparseable date or a fractional int counts as missing, and
out-of-range numbers are clipped (or made missing, per the spec).
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from typing_extensions import TypedDict

from mlplatform.bundles.format import InputSchema
from mlplatform.serving.scalars import bool_parser, numeric_parser
from mlplatform.spec import Column

MAX_ROWS = 10_000
MAX_ERRORS = 100
# The shortest JSON items ("0,") take 2 bytes: a shorter body cannot hold MAX_ROWS + 1 rows.
PRESCAN_BYTES = 2 * MAX_ROWS
_SPACE = re.compile(r"[ \t\n\r]*")
CHUNK_ROWS = 256  # rows validated per call on large bodies (other threads run in between)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # as pydantic's parser: NaN/Infinity are refused


_SCAN = json.JSONDecoder(parse_constant=_no_constant).scan_once  # type: ignore[attr-defined]

# -- predict requests ---------------------------------------------------------------------

ACCEPTS = {
    "float": "number or numeric string",
    "int": "number or numeric string (a fraction counts as missing, as in training)",
    "category": "string (a value outside 'values' counts as missing, as in training)",
    "bool": "boolean or true/false-like string",
    "date": "string in 'format' (an unparseable date counts as missing, as in training)",
    "id": "any scalar (ignored)",
}
JSON_TYPES: dict[str, list[str]] = {
    "float": ["number", "string", "null"],
    "int": ["number", "string", "null"],
    "category": ["string", "null"],
    "bool": ["boolean", "string", "number", "null"],
    "date": ["string", "null"],
}
_ANY_NUMBER = numeric_parser(Column(type="float"))


def _shown(value: Any) -> str:
    return repr(value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "...")


def _value_validator(column: Column) -> Any:
    """A pydantic plain validator of one feature column (see the module docstring)."""
    kind = column.type
    accepts = ACCEPTS[kind].split(" (")[0]
    parse_bool = bool_parser(column) if kind == "bool" else None

    def validate(value: Any) -> Any:
        if value is None:
            return None
        if kind in ("float", "int"):
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(f"expected a {accepts}, got {type(value).__name__}")
            number, reason = _ANY_NUMBER(value)
            if reason is not None:
                raise ValueError(f"not a number: {_shown(value)}")
            return number
        if parse_bool is not None:
            if not isinstance(value, bool | int | float | str):
                raise ValueError(f"expected a {accepts}, got {type(value).__name__}")
            flag, reason = parse_bool(value)
            if reason is not None:
                raise ValueError(f"{reason}: {_shown(value)}")
            return flag
        if not isinstance(value, str):
            raise ValueError(f"expected a {accepts}, got {type(value).__name__}")
        return value

    return validate


def _ignored(value: Any) -> Any:
    if value is not None and not isinstance(value, bool | int | float | str):
        raise ValueError("expected a scalar value")
    return value


def _column_json_schema(column: Column) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": JSON_TYPES[column.type], "description": ACCEPTS[column.type]}
    if column.values is not None:
        schema["examples"] = list(column.values)
    if column.format is not None:
        schema["description"] += f" in {column.format} format"
    return schema


class PredictValidator:
    """Compiled validation of ``{"rows": [...]}`` against one bundle's input schema."""

    def __init__(self, schema: InputSchema):
        features = set(schema.feature_columns)
        fields: dict[str, Any] = {}
        for name, column in schema.columns.items():
            if name in features:
                fields[name] = Annotated[
                    Any,
                    PlainValidator(_value_validator(column)),
                    WithJsonSchema(_column_json_schema(column)),
                ]
            else:  # known (id, target, excluded): accepted and ignored
                fields[name] = Annotated[
                    Any, PlainValidator(_ignored), WithJsonSchema({"description": "ignored"})
                ]
        row = TypedDict("Row", fields, total=False)  # type: ignore[misc]
        row.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        rows = Annotated[list[row], Field(min_length=1, max_length=MAX_ROWS)]
        PredictBody = TypedDict("PredictBody", {"rows": rows})  # noqa: UP013
        PredictBody.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        self.adapter: TypeAdapter[Any] = TypeAdapter(PredictBody)
        self.row_list: TypeAdapter[Any] = TypeAdapter(list[row])

    def rows(self, payload: bytes | bytearray) -> list[dict[str, Any]]:
        """Validated rows (values already parsed); raises pydantic's ValidationError.

        A body large enough to hold too many rows is scanned row by row first, so that
        parsing stops at row MAX_ROWS + 1 (or at a field other than ``rows``) instead of
        building them all; its rows are then validated CHUNK_ROWS at a time, so that a large
        batch never holds the interpreter for long (it runs in a worker thread)."""
        if len(payload) > PRESCAN_BYTES:
            scanned = prescan(payload, MAX_ROWS)
            if scanned.error is not None:
                raise ValidationError.from_exception_data("PredictBody", [scanned.error])
            if scanned.rows:
                return self._in_chunks(scanned.rows)
        return self.adapter.validate_json(payload)["rows"]

    def _in_chunks(self, rows: list[Any]) -> list[dict[str, Any]]:
        valid: list[dict[str, Any]] = []
        errors: list[InitErrorDetails] = []
        for start in range(0, len(rows), CHUNK_ROWS):
            try:
                valid += self.row_list.validate_python(rows[start : start + CHUNK_ROWS])
            except ValidationError as exc:
                for e in exc.errors(include_url=False):
                    index, *rest = e["loc"]
                    found = InitErrorDetails(
                        type=e["type"], loc=("rows", start + int(index), *rest), input=e["input"]
                    )
                    if "ctx" in e:
                        found["ctx"] = e["ctx"]
                    errors.append(found)
                if len(errors) >= MAX_ERRORS:
                    break
        if errors:  # messages as validating the JSON body would word them
            raise ValidationError.from_exception_data(
                "PredictBody", errors[:MAX_ERRORS], input_type="json"
            )
        return valid


def _space(text: str, at: int) -> int:
    found = _SPACE.match(text, at)
    assert found is not None  # the pattern matches the empty string
    return found.end()


class _IncompleteError(Exception):
    """The scan reached the end of a prefix of the body."""


@dataclass
class Scanned:
    """What a scan of a predict body found: a refusal, or its rows (parsed, not validated)
    when the body is exactly ``{"rows": [...]}``; neither when it is shaped otherwise."""

    error: InitErrorDetails | None = None
    rows: list[Any] | None = None


def prescan(payload: bytes | bytearray, max_rows: int) -> Scanned:
    """Scan a ``{"rows": [...]}`` body row by row: more than ``max_rows`` rows or another field
    is an error, found without parsing further; an empty Scanned when the body is not shaped
    like that (the full validation then names the problem).

    Only a growing prefix of the body is decoded, so an abusive body costs its first rows."""
    size = 1 << 20
    while True:
        complete = size >= len(payload)
        try:
            text = codecs.getincrementaldecoder("utf-8")().decode(payload[:size], final=complete)
            return _prescan_text(text, max_rows, complete)
        except _IncompleteError:
            size *= 4
        except UnicodeDecodeError:
            return Scanned()


def _prescan_text(text: str, max_rows: int, complete: bool) -> Scanned:
    def shapeless(at: int) -> Scanned:
        """Not shaped like {"rows": [...]}, or (in a prefix) the prefix ran out first."""
        if not complete and at >= len(text) - 1:
            raise _IncompleteError
        return Scanned()

    at = 0
    rows: list[Any] | None = None
    try:
        at = _space(text, 0)
        if text[at : at + 1] != "{":
            return shapeless(at)
        at = _space(text, at + 1)
        while text[at : at + 1] == '"':
            key, at = _SCAN(text, at)
            at = _space(text, at)
            if text[at : at + 1] != ":":
                return shapeless(at)
            at = _space(text, at + 1)
            if key != "rows":
                return Scanned(InitErrorDetails(type="extra_forbidden", loc=(key,), input=None))
            if text[at : at + 1] != "[":
                return shapeless(at)
            at, rows = _space(text, at + 1), []
            while text[at : at + 1] != "]":
                item, at = _SCAN(text, at)
                rows.append(item)
                if len(rows) > max_rows:
                    error = PydanticCustomError(
                        "too_long",
                        "more than {max_rows} rows; send at most {max_rows} rows per request",
                        {"max_rows": max_rows},
                    )
                    return Scanned(InitErrorDetails(type=error, loc=("rows",), input=None))
                at = _space(text, at)
                if text[at : at + 1] == ",":
                    at = _space(text, at + 1)
                elif text[at : at + 1] != "]":
                    return shapeless(at)
            at = _space(text, at + 1)
            if text[at : at + 1] != ",":
                break
            at = _space(text, at + 1)
            if text[at : at + 1] != '"':
                return shapeless(at)
        if text[at : at + 1] == "}" and _space(text, at + 1) == len(text) and complete:
            return Scanned(rows=rows)
        return shapeless(at)
    except (ValueError, StopIteration):
        # Invalid JSON here, or an item cut by the end of the prefix: read on to be sure.
        return shapeless(len(text)) if not complete else Scanned()


def error_details(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict]:
    """422 details: ``field`` (dotted path such as ``rows.0.tenure_months``), ``msg``, ``type``."""
    details = []
    for err in exc.errors(include_url=False, include_input=False)[:MAX_ERRORS]:
        loc = (*prefix, *err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (not a column of the production bundle's input schema)"
        details.append(
            {
                "field": ".".join(str(p) for p in loc) or "body",
                "loc": list(loc),
                "msg": msg,
                "type": err["type"],
            }
        )
    return details
