"""One ONNX graph for a torch candidate: string lookup + network + outputs, like sklearn's.

The network (imputation, scaling, embeddings, MLP, softmax or un-standardization) is exported
with ``torch.onnx.export`` (dynamo exporter, dynamic batch). In front of it, a small graph
concatenates the per-feature [N, 1] inputs and maps category strings to indices with
``ai.onnx.ml.LabelEncoder`` (unknown -> 0); behind it, a graph names the outputs as
skl2onnx does: ``label`` [N] (string) and ``probabilities`` [N, C], or ``variable`` [N, 1].
The three are joined with ``onnx.compose.merge_models``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import onnx
import torch
from onnx import TensorProto, helper

from mlplatform.columns import MISSING_CATEGORY
from mlplatform.steps.features import layout

if TYPE_CHECKING:
    from mlplatform.steps.torch_model import TorchModel

OPSET = 22  # what skl2onnx emits for the sklearn bundles; onnxruntime 1.32 runs it
ML_OPSET = 2  # LabelEncoder with string keys -> int64 values
NET_PREFIX = "__net."  # internal names start with "__": feature names keep theirs


def export_network(model: TorchModel) -> onnx.ModelProto:
    """The network alone: inputs ``numeric`` [N, n] float and/or ``codes`` [N, m] int64."""
    names, example, dynamic = [], [], []
    batch = torch.export.Dim("batch", min=1)
    if model.pre.numeric:
        names.append("numeric")
        example.append(torch.zeros((2, len(model.pre.numeric)), dtype=torch.float32))
        dynamic.append({0: batch})
    if model.pre.categorical:
        names.append("codes")
        example.append(torch.zeros((2, len(model.pre.categorical)), dtype=torch.int64))
        dynamic.append({0: batch})
    with _quiet():
        program = torch.onnx.export(
            model.inference,
            tuple(example),
            dynamo=True,
            input_names=names,
            output_names=["out"],
            opset_version=OPSET,
            dynamic_shapes=(tuple(dynamic),),
            optimize=True,
            verbose=False,
        )
    assert program is not None
    return program.model_proto


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter prints progress, warns, and logs about optional torchvision ops."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _opsets(net: onnx.ModelProto) -> list[onnx.OperatorSetIdProto]:
    found = {o.domain: o.version for o in net.opset_import}
    found.setdefault("", OPSET)
    found["ai.onnx.ml"] = ML_OPSET
    return [helper.make_opsetid(d, v) for d, v in sorted(found.items())]


def _model(graph: onnx.GraphProto, net: onnx.ModelProto) -> onnx.ModelProto:
    return helper.make_model(graph, opset_imports=_opsets(net), ir_version=net.ir_version)


def _front(model: TorchModel, net: onnx.ModelProto) -> onnx.ModelProto:
    """Per-feature inputs -> ``__numeric`` [N, n] float32 and ``__codes`` [N, m] int64."""
    pre = model.pre
    inputs, nodes, outputs = [], [], []
    for name, kind in layout(model.spec):
        elem = TensorProto.FLOAT if kind == "numeric" else TensorProto.STRING
        inputs.append(helper.make_tensor_value_info(name, elem, [None, 1]))
    if pre.numeric:
        nodes.append(helper.make_node("Concat", pre.numeric, ["__numeric"], axis=1))
        outputs.append(
            helper.make_tensor_value_info("__numeric", TensorProto.FLOAT, [None, len(pre.numeric)])
        )
    if pre.categorical:
        coded = []
        for i, (name, vocab) in enumerate(zip(pre.categorical, pre.vocabularies, strict=True)):
            # index i + 1 for the i-th known value, 0 for anything else; LabelEncoder
            # needs at least one key, so a category with no known value maps one to 0
            keys = vocab or [MISSING_CATEGORY]
            values = list(range(1, len(vocab) + 1)) or [0]
            coded.append(f"__code_{i}")
            nodes.append(
                helper.make_node(
                    "LabelEncoder",
                    [name],
                    [coded[-1]],
                    domain="ai.onnx.ml",
                    keys_strings=keys,
                    values_int64s=values,
                    default_int64=0,
                )
            )
        nodes.append(helper.make_node("Concat", coded, ["__codes"], axis=1))
        outputs.append(
            helper.make_tensor_value_info(
                "__codes", TensorProto.INT64, [None, len(pre.categorical)]
            )
        )
    return _model(helper.make_graph(nodes, "front", inputs, outputs), net)


def _back(model: TorchModel, net: onnx.ModelProto) -> onnx.ModelProto:
    """Network output -> ``label`` + ``probabilities``, or ``variable``."""
    classes = model.classes
    if classes is None:
        inputs = [helper.make_tensor_value_info("__out", TensorProto.FLOAT, [None, 1])]
        nodes = [helper.make_node("Identity", ["__out"], ["variable"])]
        outputs = [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])]
        return _model(helper.make_graph(nodes, "back", inputs, outputs), net)
    n = len(classes)
    labels = helper.make_tensor(
        "__class_labels",
        TensorProto.STRING,
        [n],
        [c.encode("utf-8") for c in classes],  # type: ignore[misc]  # onnx's stub: no bytes (STRING)
    )
    inputs = [helper.make_tensor_value_info("__out", TensorProto.FLOAT, [None, n])]
    nodes = [
        helper.make_node("ArgMax", ["__out"], ["__best"], axis=1, keepdims=0),
        helper.make_node("Gather", ["__class_labels", "__best"], ["label"], axis=0),
        helper.make_node("Identity", ["__out"], ["probabilities"]),
    ]
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.STRING, [None]),
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n]),
    ]
    graph = helper.make_graph(nodes, "back", inputs, outputs, initializer=[labels])
    return _model(graph, net)


def model_to_onnx(model: TorchModel) -> onnx.ModelProto:
    """The whole torch candidate as one graph with the sklearn bundles' inputs and outputs."""
    net = onnx.compose.add_prefix(export_network(model), NET_PREFIX)
    front = _front(model, net)
    io_map = [(o.name, NET_PREFIX + o.name.removeprefix("__")) for o in front.graph.output]
    joined = onnx.compose.merge_models(front, net, io_map=io_map)
    full = onnx.compose.merge_models(
        joined, _back(model, net), io_map=[(NET_PREFIX + "out", "__out")]
    )
    opsets = {o.domain: o.version for o in full.opset_import}  # merging repeats them
    del full.opset_import[:]
    full.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(opsets.items()))
    full.doc_string = f"mlplatform {model.spec.name} torch mlp"
    full.producer_name = "mlplatform"
    onnx.checker.check_model(full)
    return full
