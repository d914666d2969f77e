"""INT8 calibration: calibration data, QDQ quantization, the accuracy gate and provenance.

Later also sensor calibration (camera intrinsics, audio-video offset). The pipeline is
split by stage, one module each:

- :mod:`calibration.sources` - calibration data as iterables of feed dicts
  (:class:`CalibrationSource`), produced through :mod:`edgefusion.preprocess`;
- :mod:`calibration.recipes` - the ``int8`` (CPU) and ``int8_trt`` (TensorRT) settings;
- :mod:`calibration.qdq` - reading the quantized graph back, and the scale guard;
- :mod:`calibration.gate` - FP32 vs INT8 on held-out data, with a drift report;
- :mod:`calibration.datasets` - recorded datasets (``edgefusion dataset build``) as the gate's
  held-out set (their val split) and as calibration data (their train split);
- :mod:`calibration.quantize` - the pipeline (:func:`quantize_package`).

Calibration and held-out data are built with :mod:`edgefusion.dataset` and the package is
written by :mod:`edgefusion.packaging` (all or nothing), both shared with ``export/``;
nothing here imports ``export/``.

Importing this package needs ``onnx`` and ``onnxruntime`` but never torch.

Example::

    from calibration import QuantizeConfig, quantize_package
    print(quantize_package("path/to/package", QuantizeConfig(method="entropy")).describe())
"""

from __future__ import annotations

from calibration.gate import EvalSet, GateResult, OutputDrift
from calibration.quantize import QuantizeConfig, QuantizeReport, quantize_package
from calibration.recipes import METHODS, RECIPES, Recipe
from calibration.sources import (
    CalibrationInfo,
    CalibrationSource,
    FeedSource,
    ScenarioSource,
    WindowSource,
)

__all__ = [
    "METHODS",
    "RECIPES",
    "CalibrationInfo",
    "CalibrationSource",
    "EvalSet",
    "FeedSource",
    "GateResult",
    "OutputDrift",
    "QuantizeConfig",
    "QuantizeReport",
    "Recipe",
    "ScenarioSource",
    "WindowSource",
    "quantize_package",
]
