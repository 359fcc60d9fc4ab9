"""Spec sections about the raw data: where files land, partitions, columns, features."""

from __future__ import annotations

import datetime as dt
import string
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlplatform.spec.vocabulary import ColumnType, DatePart, Frozen, Weekday


class DataSource(Frozen):
    """Where landing files are and how they are named and read."""

    landing: str = Field(
        description="Folder of landing files. '{home}' expands to MLPLATFORM_HOME; "
        "a relative path is relative to the spec file's folder."
    )
    format: Literal["csv", "parquet"] = "csv"
    filename: str = Field(
        default="{partition}.csv",
        description="File name per partition; '{partition}' is the partition key (YYYY-MM-DD).",
    )
    encoding: str = Field(default="utf-8", description="CSV text encoding, e.g. utf-8, latin-1.")
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    max_file_mb: int = Field(
        default=256,
        ge=1,
        description="Largest landing file read, in MB (2^20 bytes); a larger one is refused "
        "before any byte of it is read.",
    )

    @field_validator("filename")
    @classmethod
    def _one_placeholder(cls, v: str) -> str:
        try:
            fields = [
                (name, spec, conv)
                for _, name, spec, conv in string.Formatter().parse(v)
                if name is not None
            ]
        except ValueError as exc:
            raise ValueError(
                f"{exc}; write literal braces as '{{{{' and '}}}}', e.g. '{{partition}}.csv'"
            ) from None
        others = sorted({"{" + (n or "") + "}" for n, _, _ in fields if n != "partition"})
        if others:
            raise ValueError(
                f"unknown placeholder(s) {', '.join(others)}; only '{{partition}}' is "
                "filled in (the key, YYYY-MM-DD), e.g. 'sales_{partition}.csv'"
            )
        if any(spec or conv for _, spec, conv in fields):
            raise ValueError("write '{partition}' without a format spec or conversion")
        if not fields:
            raise ValueError("must contain '{partition}', e.g. '{partition}.csv'")
        name = v.replace("{partition}", "2024-01-01")
        if "/" in name or "\\" in name:
            raise ValueError("must be a file name, not a path; put folders in data.landing")
        if name.startswith("."):
            raise ValueError("must not start with '.' (hidden files are never read)")
        if any(not ch.isprintable() for ch in name):
            raise ValueError("must not contain control characters (line breaks, tabs, escapes)")
        return v

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            b"x".decode(v, errors="ignore")  # non-text codecs (rot13, base64) raise here
        except LookupError:
            raise ValueError(
                f"unknown text encoding {v!r}; use a Python text codec such as utf-8 or latin-1"
            ) from None
        return v

    @field_validator("delimiter")
    @classmethod
    def _usable_delimiter(cls, v: str) -> str:
        if v in ('"', "\n", "\r"):
            raise ValueError(f"{v!r} cannot separate fields; use e.g. ',', ';' or a tab")
        return v


class Partitions(Frozen):
    """Time-window partitioning of the raw data: one landing file per partition key."""

    granularity: Literal["daily", "weekly", "monthly"] = "monthly"
    start: dt.date = Field(description="First partition key: a period start.")
    end: dt.date | None = Field(
        default=None, description="Exclusive end; default: the last complete period."
    )
    week_starts_on: Weekday = Field(
        default="sunday", description="Weekday that weekly partition keys fall on."
    )


class Column(Frozen):
    """One raw column: its type and what values are valid."""

    type: ColumnType
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] | None = Field(
        default=None, description="Allowed values of a category column."
    )
    max_categories: int | None = Field(
        default=None, ge=2, description="Most distinct values; default: quality.max_categories."
    )
    format: str | None = Field(
        default=None, description="strptime format of a date column, e.g. '%d/%m/%Y'."
    )
    max_missing_fraction: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Largest share of missing values in this column; "
        "default: quality.max_missing_fraction.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        if (self.min is not None or self.max is not None) and self.type not in ("float", "int"):
            raise ValueError(f"min/max apply to float and int columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.values is not None and self.type != "category":
            raise ValueError(f"'values' applies to category columns, not {self.type}")
        if self.max_categories is not None and self.type != "category":
            raise ValueError(f"'max_categories' applies to category columns, not {self.type}")
        if self.format is not None and self.type != "date":
            raise ValueError(f"'format' applies to date columns, not {self.type}")
        if self.type == "date" and self.format is None:
            raise ValueError("a date column needs 'format', e.g. '%Y-%m-%d'")
        return self


class Features(Frozen):
    """Cleaning and feature rules applied to every partition (and to serving input)."""

    numeric_imputation: Literal["median", "mean", "zero"] = "median"
    out_of_range: Literal["clip", "missing"] = Field(
        default="clip", description="What to do with numbers outside [min, max]."
    )
    date_parts: dict[str, tuple[DatePart, ...]] = Field(
        default_factory=dict, description="Date column -> derived parts used as features."
    )
    exclude: tuple[str, ...] = Field(
        default=(), description="Columns never used as features (ids, free text, leaks)."
    )
