"""The two INT8 recipes: what ONNX Runtime's quantizer is asked to do, and why.

Both quantize only the compute-bound linear ops (:data:`OP_TYPES`). Static INT8 with ONNX
Runtime's default op set also quantizes Softmax, LayerNormalization, Add/Mul around the
attention mask and so on: their ranges are wide or lopsided (the mask bias is -1e4), and
they cost accuracy for no speed, since the CPU provider has no INT8 kernels for the
normalizations or the GRU. Everything outside :data:`OP_TYPES` therefore stays in float,
and the written graph is read back to record exactly which nodes did.

- ``int8`` (target: ONNX Runtime on CPUs): QDQ, unsigned asymmetric activations, signed
  symmetric per-tensor weights, INT32 bias - the U8S8 layout ONNX Runtime's CPU kernels
  are fastest with. Per-tensor weights: per-channel costs CPU throughput. Each Relu after a
  quantized Conv is folded into that Conv's output QuantizeLinear (:data:`FUSED_ACTIVATIONS`:
  with asymmetric activations its range starts at 0, so the Q clips exactly as the Relu
  did): the image CNN then runs as one chain of QLinearConv with no Q/DQ/Relu between
  them (bench/int8_latency.py: 2.2x -> 2.4x FP32 at batch 8, one thread).
- ``int8_trt`` (target: TensorRT explicit quantization): signed symmetric activations and
  weights (every zero point 0), per-channel weights, bias left in float (TensorRT fuses it
  itself), and a dedicated Q/DQ pair per consumer because TensorRT does not share one
  Q/DQ pair between nodes. Weights are stored as INT8 initializers with a
  DequantizeLinear, which TensorRT accepts as pre-quantized weights; the file stays small.

Example:
    >>> RECIPES["int8_trt"].extra_options()["ActivationSymmetric"]
    True
    >>> RECIPES["int8"].target
    'cpu'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FUSED_ACTIVATIONS", "METHODS", "OP_RULE", "OP_TYPES", "RECIPES", "Recipe"]

OP_TYPES = ("Conv", "MatMul", "Gemm")
#: activations the CPU recipe folds into the quantized op before them (ONNX Runtime removes them
#: when activations are asymmetric; symmetric TensorRT activations keep them)
FUSED_ACTIVATIONS = ("Relu",)
OP_RULE = ("quantize only Conv, MatMul and Gemm; keep normalization, softmax, GELU, GRU, the attention-mask "
           "arithmetic and all elementwise and shape ops in float")
METHODS = ("minmax", "entropy", "percentile")
PERCENTILE = 99.999  # for --method percentile: clip the top 0.001 % of each activation's values


@dataclass(frozen=True)
class Recipe:
    """One INT8 artifact: its target and the quantizer settings that produce it.

    Example:
        >>> r = RECIPES["int8"]
        >>> (r.activation_type, r.weight_type, r.per_channel)
        ('QUInt8', 'QInt8', False)
    """

    variant: str
    target: str
    activation_type: str
    weight_type: str
    activation_symmetric: bool
    weight_symmetric: bool
    per_channel: bool
    quantize_bias: bool
    dedicated_qdq_pair: bool
    reduce_range: bool = False
    op_types: tuple[str, ...] = OP_TYPES
    fused_activations: tuple[str, ...] = ()

    @property
    def quantizer_op_types(self) -> list[str]:
        """What ONNX Runtime's quantizer is asked to handle: the INT8 ops and the activations folded into them."""
        return [*self.op_types, *self.fused_activations]

    def extra_options(self, method: str = "minmax") -> dict[str, Any]:
        """The quantizer's ``extra_options``, spelled out (its keys are not checked by ONNX Runtime)."""
        opts: dict[str, Any] = {
            "ActivationSymmetric": self.activation_symmetric,
            "WeightSymmetric": self.weight_symmetric,
            "QuantizeBias": self.quantize_bias,
            "DedicatedQDQPair": self.dedicated_qdq_pair,
        }
        if method == "percentile":
            opts["CalibPercentile"] = PERCENTILE
        return opts

    def to_dict(self, method: str = "minmax") -> dict[str, Any]:
        d = asdict(self)
        d["op_types"] = list(self.op_types)
        d["fused_activations"] = list(self.fused_activations)
        d.update(format="QDQ", rule=OP_RULE, extra_options=self.extra_options(method))
        return d

    def summary(self) -> dict[str, str]:
        """Human-readable layout for the manifest."""
        def layout(qtype: str, symmetric: bool, per_channel: bool) -> str:
            return (f"{'int8' if qtype == 'QInt8' else 'uint8'} {'symmetric' if symmetric else 'asymmetric'} "
                    f"{'per-channel' if per_channel else 'per-tensor'}")

        act = layout(self.activation_type, self.activation_symmetric, False)
        wt = layout(self.weight_type, self.weight_symmetric, self.per_channel)
        return {"activations": act, "weights": wt, "bias": "int32" if self.quantize_bias else "float"}


RECIPES = {
    "int8": Recipe("int8", "cpu", "QUInt8", "QInt8", activation_symmetric=False, weight_symmetric=True,
                   per_channel=False, quantize_bias=True, dedicated_qdq_pair=False,
                   fused_activations=FUSED_ACTIVATIONS),
    "int8_trt": Recipe("int8_trt", "tensorrt", "QInt8", "QInt8", activation_symmetric=True, weight_symmetric=True,
                       per_channel=True, quantize_bias=False, dedicated_qdq_pair=True),
}
