"""Reading a QDQ graph back: what was quantized, what stayed float, and whether the scales are sane.

The quantizer is trusted only as far as the written graph shows. :func:`summarize_qdq`
walks the QuantizeLinear / DequantizeLinear nodes of a model and reports the op types that
really run on quantized inputs, the nodes kept in float, every scale and zero point, and
how weights are quantized (per tensor or per channel). :func:`check_scales` is the guard:
a scale that is inf, NaN, zero or negative fails the run.

Example:
    >>> import onnx
    >>> from onnx import TensorProto, helper
    >>> g = helper.make_graph(
    ...     [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
    ...      helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])], "g",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    ...     [helper.make_tensor("s", TensorProto.FLOAT, [], [0.0]), helper.make_tensor("z", TensorProto.INT8, [], [0])])
    >>> summarize_qdq(helper.make_model(g)).bad_scales
    ['s']
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgefusion.errors import QuantizationError

__all__ = ["QdqSummary", "check_scales", "summarize_qdq"]

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass
class QdqSummary:
    """What a QDQ model holds; ``to_dict`` is stored in the artifact's provenance."""

    quantized_nodes: list[str] = field(default_factory=list)
    op_types_quantized: list[str] = field(default_factory=list)
    nodes_kept_float: list[str] = field(default_factory=list)
    kept_float_by_op_type: dict[str, int] = field(default_factory=dict)
    quantize_nodes: int = 0
    dequantize_nodes: int = 0
    scale_values: int = 0
    scale_min: float = float("nan")
    scale_max: float = float("nan")
    bad_scales: list[str] = field(default_factory=list)
    unit_scales: list[str] = field(default_factory=list)
    zero_points_nonzero: int = 0
    activation_dtypes: list[str] = field(default_factory=list)
    weight_dtypes: list[str] = field(default_factory=list)
    weights_per_channel: int = 0
    weights_per_tensor: int = 0
    float_weights_with_qdq: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:  # scales may also come from Constant nodes
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return consts


def summarize_qdq(model: onnx.ModelProto, op_types: tuple[str, ...] = ("Conv", "MatMul", "Gemm")) -> QdqSummary:
    """Summarize the Q/DQ structure of ``model``.

    A node counts as quantized when its op type is one of ``op_types`` and its data or weight
    input comes from a DequantizeLinear; every other non-Q/DQ node is kept in float.
    Scales exactly 1.0 are listed separately: ONNX Runtime substitutes 1.0 when a tensor's
    calibrated range is empty (all zeros), which means the calibration data never
    exercised that tensor.
    """
    g = model.graph
    consts = _constants(model)
    producer = {o: n for n in g.node for o in n.output}
    s = QdqSummary()
    scale_values: list[np.ndarray] = []
    act_types: set[str] = set()
    w_types: set[str] = set()
    seen_scales: set[str] = set()
    for n in g.node:
        if n.op_type not in QDQ_OPS:
            continue
        if n.op_type == "QuantizeLinear":
            s.quantize_nodes += 1
        else:
            s.dequantize_nodes += 1
        scale_name = n.input[1]
        scale = consts.get(scale_name)
        if scale is None:
            s.bad_scales.append(f"{scale_name} (not a constant)")
            continue
        if scale_name not in seen_scales:
            seen_scales.add(scale_name)
            scale_values.append(scale.astype(np.float64).ravel())
            if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
                s.bad_scales.append(scale_name)
            elif np.any(scale == 1.0):
                s.unit_scales.append(scale_name)
        zp = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is not None and scale_name in seen_scales and n.op_type == "DequantizeLinear":
            s.zero_points_nonzero += int(np.count_nonzero(zp))
        if n.op_type != "DequantizeLinear":
            continue
        src = n.input[0]
        if src in consts:  # a weight stored quantized, dequantized at run time
            w_types.add(str(consts[src].dtype))
            if scale.size > 1:
                s.weights_per_channel += 1
            else:
                s.weights_per_tensor += 1
        elif src in producer and producer[src].op_type == "QuantizeLinear" and producer[src].input[0] in consts:
            s.float_weights_with_qdq += 1  # Q/DQ pair on a float weight (AddQDQPairToWeight)
            if scale.size > 1:
                s.weights_per_channel += 1
            else:
                s.weights_per_tensor += 1
        elif zp is not None:
            act_types.add(str(zp.dtype))
    kept: Counter[str] = Counter()
    for n in g.node:
        if n.op_type in QDQ_OPS or n.op_type == "Constant":
            continue
        # Only the requested op types compute in INT8; any other node fed by a DequantizeLinear
        # (e.g. a Relu after a quantized Conv) still computes in float.
        if n.op_type in op_types and any(i in producer and producer[i].op_type == "DequantizeLinear"
                                         for i in n.input[:2]):
            s.quantized_nodes.append(n.name or n.output[0])
            if n.op_type not in s.op_types_quantized:
                s.op_types_quantized.append(n.op_type)
        else:
            s.nodes_kept_float.append(n.name or n.output[0])
            kept[n.op_type] += 1
    s.op_types_quantized.sort()
    s.kept_float_by_op_type = dict(sorted(kept.items()))
    s.activation_dtypes, s.weight_dtypes = sorted(act_types), sorted(w_types)
    if scale_values:
        allv = np.concatenate(scale_values)
        finite = allv[np.isfinite(allv)]
        s.scale_values = int(allv.size)
        if finite.size:
            s.scale_min, s.scale_max = float(finite.min()), float(finite.max())
    return s


def check_scales(summary: QdqSummary, what: str) -> None:
    """Raise QuantizationError when any Q/DQ scale is inf, NaN, zero or negative."""
    if summary.bad_scales:
        shown = ", ".join(summary.bad_scales[:8]) + (" …" if len(summary.bad_scales) > 8 else "")
        raise QuantizationError(
            f"{what}: {len(summary.bad_scales)} Q/DQ scale(s) are inf, NaN, zero or negative ({shown}); "
            "expected finite positive scales. The calibration data gave degenerate ranges for these tensors "
            "(e.g. -inf masks, or data that never exercises them); fix the model or the calibration data. "
            "Nothing was written"
        )
    if summary.quantize_nodes + summary.dequantize_nodes == 0:
        raise QuantizationError(f"{what}: the quantizer inserted no Q/DQ nodes; expected the op types it was asked "
                                "to quantize to be present in the model. Nothing was written")
