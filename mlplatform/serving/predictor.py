"""Fast prediction from rows of raw values: prebuilt per-column converters, one ONNX run.

Used by the HTTP app and the in-process client. Results equal ``Bundle.predict_rows``
(parity-tested); values of unusual types fall back to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlplatform.bundles.format import Bundle
from mlplatform.serving.scalars import PLAIN_TYPES, feature_function


class FastPredictor:
    """Predict from rows of raw values without the column parsers' per-call numpy overhead.

    Per feature column a prebuilt scalar converter (``serving.scalars``, held to the exact
    semantics of ``mlplatform.columns`` by a parity test) fills one small tensor per model
    input; then one ``session.run`` for the output that is needed. Values of unusual types
    (numpy scalars, datetimes, ...) fall back to ``Bundle.predict_rows``.
    """

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        schema = bundle.schema
        self._columns = list(schema.feature_columns)
        self._functions = [
            feature_function(schema.columns[c], c, schema.features) for c in self._columns
        ]
        kinds = dict(schema.layout)
        self._names = [n for n, _ in schema.layout]
        # Layout order is column order with each date column expanded in place.
        produced = []
        for c in self._columns:
            col = schema.columns[c]
            if col.type == "date":
                produced += [f"{c}_{p}" for p in schema.features.date_parts.get(c, ())]
            else:
                produced.append(c)
        self._usable = produced == self._names  # else: always the general path
        self._numeric = [kinds[n] == "numeric" for n in self._names]
        self.classes = bundle.classes
        outputs = bundle.session.get_outputs()
        self._output = [outputs[0 if self.classes is None else 1].name]

    def feeds(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray] | None:
        """ONNX inputs for the rows, or None when a value needs the general parsers."""
        n = len(rows)
        values: list[list[Any]] = [[] for _ in self._names]
        for row in rows:
            i = 0
            for column, fn in zip(self._columns, self._functions, strict=True):
                raw = row.get(column)
                if type(raw) not in PLAIN_TYPES:
                    return None
                for v in fn(raw):
                    values[i].append(v)
                    i += 1
        feeds = {}
        for name, numeric, vals in zip(self._names, self._numeric, values, strict=True):
            if numeric:
                feeds[name] = np.array(vals, dtype=np.float32).reshape(n, 1)
            else:
                feeds[name] = np.array(vals, dtype=object).reshape(n, 1)
        return feeds

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Same results as ``Bundle.predict_rows``."""
        if not rows:
            return []
        feeds = self.feeds(rows) if self._usable else None
        if feeds is None:
            return self.bundle.predict_rows(rows)
        out = np.asarray(self.bundle.session.run(self._output, feeds)[0], dtype=np.float64)
        return format_predictions(out, self.classes)


def format_predictions(out: np.ndarray, classes: list[str] | None) -> list[dict[str, Any]]:
    """``{"value"}`` per row, or ``{"label", "probabilities"}`` (as ``Bundle.predict_rows``)."""
    if classes is None:
        return [{"value": float(v)} for v in out.reshape(-1)]
    results = []
    for p in out:
        results.append(
            {
                "label": classes[int(np.argmax(p))],
                "probabilities": dict(zip(classes, map(float, p), strict=True)),
            }
        )
    return results
