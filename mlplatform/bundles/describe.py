"""What a bundle's MLflow model says about its input: a signature and an example of raw values,
both read from the project's input schema (the landing columns the model needs)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from mlplatform.spec import Column

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

    from mlplatform.bundles.format import InputSchema

EXAMPLE_DATE = dt.date(2024, 1, 31)


def raw_example(column: Column) -> str | float:
    """One valid raw value of ``column``, as a landing file would hold it."""
    if column.type in ("float", "int"):
        low = column.min if column.min is not None else 0.0
        high = column.max if column.max is not None else low + 2.0
        middle = (low + high) / 2
        return float(round(middle)) if column.type == "int" else middle
    if column.type == "category":
        return column.values[0] if column.values else ""
    if column.type == "bool":
        return "true"
    if column.type == "date":
        return EXAMPLE_DATE.strftime(column.format or "%Y-%m-%d")
    return "id-1"


def input_example(schema: InputSchema) -> dict[str, list[str | float]]:
    """One row of raw values for every column the model reads (a DataFrame's columns)."""
    return {c: [raw_example(schema.columns[c])] for c in schema.feature_columns}


def input_type(column: Column) -> str:
    """MLflow's type for a raw column: ``string`` where raw values are always text (dates,
    categories of non-numeric values); ``any`` where a caller may send text (a CSV cell) or a
    number or bool (a parsed frame), both of which the model parses."""
    if column.type == "date":
        return "string"
    if column.type == "category" and column.values:
        return "any" if any(_numeric(v) for v in column.values) else "string"
    return "any"


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text.strip().lower() in ("true", "false")
    return True


def signature(schema: InputSchema, classes: list[str] | None) -> ModelSignature:
    """Inputs: the raw feature columns (a nullable one may hold nulls but must be there: the
    model reads it); outputs: the predicted label and one probability per class, or the
    predicted value."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    from mlflow.types.schema import AnyType, DataType

    def spec(name: str) -> ColSpec:
        kind = input_type(schema.columns[name])
        return ColSpec(AnyType() if kind == "any" else DataType.string, name, required=True)

    inputs: list[ColSpec | TensorSpec] = [spec(c) for c in schema.feature_columns]
    if classes:
        outputs: list[ColSpec | TensorSpec] = [ColSpec("string", "label")]
        outputs += [ColSpec("double", f"proba_{c}") for c in classes]
    else:
        outputs = [ColSpec("double", "prediction")]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))
