"""Row schemas of the benchmarks' data (pydantic, strict) and the check every loaded table goes through.

Each benchmark module declares a :class:`Rows` subclass, one field per column it reads (aliases for column names
that are not identifiers, ``same_type`` for id columns that may be integers or strings); :func:`check_rows`
validates every row of a table against it, right after the file is read and before any model loads or any file is
written, and raises a one-line ``DataError`` naming the file, the row (counted from 0 in file order, with its id),
the column and what was expected. Values are checked as they are, without coercion: a prompt that is the number 5
is refused, not turned into "5". Columns a schema does not name are kept and not checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dogerm_eval.errors import DataError
from dogerm_mergekit.tables import native

Text = str
TextList = Annotated[list[str], Field(min_length=1)]
Id = int | str
"""An id column: integers or strings, one kind per file (see ``Rows.same_type``)."""


class Rows(BaseModel):
    """Base of every benchmark's row schema: strict types (no coercion), other columns ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=False)

    same_type: ClassVar[tuple[str, ...]] = ()
    """Columns whose values must all be of one type (ids: per-example tables and caches need one kind)."""

    @classmethod
    def columns(cls) -> dict[str, bool]:
        """Column name -> required, in declaration order."""
        return {field.alias or name: field.is_required() for name, field in cls.model_fields.items()}


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _found(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _describe(error: ValidationError, row: Mapping[str, Any], columns: Sequence[str]) -> str:
    """The first failing column of a row as one phrase, e.g. ``, column 'prompt': expected a valid string, found int
    5``; the alternatives of a union (``Id``: integer or string) are joined."""
    errors = error.errors()
    first = errors[0]
    column = str(first["loc"][0])
    if first["type"] == "missing":
        return f" has no value for column {column!r} (expected columns: {', '.join(columns)})"
    branches = [e for e in errors if e["loc"][:1] == (column,) and len(e["loc"]) == 2 and isinstance(e["loc"][1], str)]
    if len(branches) > 1:  # a union (``Id``): one error per alternative, its loc tagged with the type's name
        expected = " or ".join(e["msg"].removeprefix("Input should be ") for e in branches)
        return f", column {column!r}: expected {expected}, found {_found(row[column])}"
    where = "".join(f"[{part}]" for part in first["loc"][1:] if isinstance(part, int))
    message = first["msg"]
    if first["type"] in ("too_short", "too_long"):
        bound = "at least" if first["type"] == "too_short" else "at most"
        limit = first["ctx"]["min_length" if first["type"] == "too_short" else "max_length"]
        message = f"expected {bound} {limit} items, {first['ctx']['actual_length']} found"
        return f", column {column!r}{where}: {message} ({_found(first['input'])})"
    if message.startswith("Input should be "):
        message = "expected " + message.removeprefix("Input should be ")
    else:
        message = message[0].lower() + message[1:]
    return f", column {column!r}{where}: {message}, found {_found(first['input'])}"


def check_rows(frame: pd.DataFrame, schema: type[Rows], dataset: str, id_column: str | None = None,
               description: str | None = None) -> None:
    """Raise DataError unless every row of ``frame`` fits ``schema``: first missing columns (naming the expected
    schema, ``description`` or the schema's columns, and those found), then the first row with a missing or
    ill-typed value (missing values first), then a ``same_type`` column mixing kinds."""
    columns = schema.columns()
    missing = [name for name, required in columns.items() if required and name not in frame.columns]
    if missing:
        expected = description or ", ".join(columns)
        raise DataError(f"{dataset}: missing column(s) {missing}; expected schema: {expected}; found columns "
                        f"{list(frame.columns)}")
    if frame.empty:
        raise DataError(f"{dataset} has no rows")
    present = [name for name in columns if name in frame.columns]
    flags = {name: frame[name].map(_missing).to_numpy(dtype=bool) for name in present if columns[name]}
    holes = [(int(flag.argmax()), name) for name, flag in flags.items() if flag.any()]
    if holes:  # before types: a null turns a parquet integer column into floats
        position, name = min(holes)
        label = f"row {position}"
        if id_column in frame.columns and id_column != name and not _missing(frame[id_column].iloc[position]):
            label += f" ({id_column} {native(frame[id_column].iloc[position])!r})"
        raise DataError(f"{dataset}: {label} has no value for column {name!r} (expected columns: {', '.join(columns)})")
    for position, values in enumerate(zip(*(frame[name] for name in present))):
        row = {name: native(value) for name, value in zip(present, values) if not _missing(value)}
        try:
            schema.model_validate(row)
        except ValidationError as exc:
            label = f"row {position}"
            if id_column is not None and id_column in row and id_column != str(exc.errors()[0]["loc"][0]):
                label += f" ({id_column} {row[id_column]!r})"
            raise DataError(f"{dataset}: {label}{_describe(exc, row, list(columns))}") from None
    for name in schema.same_type:
        if name in frame.columns:
            kinds = [type(native(value)) for value in frame[name]]
            other = next((i for i, kind in enumerate(kinds) if kind is not kinds[0]), None)
            if other is not None:
                first, odd = (_found(native(frame[name].iloc[i])) for i in (0, other))
                raise DataError(f"{dataset}: column {name!r} mixes kinds: row 0 is {first}, row {other} is {odd}; use "
                                "integers for all rows or strings for all rows")
