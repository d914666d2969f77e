"""Small ONNX models built in the tests with onnx.helper, and packages around them (sha256 and all)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def write_package(root: Path, model: onnx.ModelProto | bytes, inputs: list[dict[str, Any]],
                  outputs: list[dict[str, Any]], name: str = "m", version: int = 2) -> Path:
    """A package directory: model.onnx and a manifest naming it with its sha256."""
    root.mkdir(parents=True, exist_ok=True)
    data = model if isinstance(model, bytes) else model.SerializeToString()
    (root / "model.onnx").write_bytes(data)
    manifest = {"format_version": version, "name": name, "inputs": inputs, "outputs": outputs,
                "artifacts": {"fp32": {"path": "model.onnx", "sha256": hashlib.sha256(data).hexdigest(),
                                       "bytes": len(data)}}}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return root


def model(nodes: list[onnx.NodeProto], inputs: list[tuple[str, int, list[Any]]],
          outputs: list[tuple[str, int, list[Any]]], inits: dict[str, np.ndarray] | None = None,
          opset: int = 17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                          [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


F = TensorProto.FLOAT


def image_scorer(h: int, w: int, labels: int = 2) -> onnx.ModelProto:
    """image (batch, 3, h, w) -> scores (batch, labels): channel means, a fixed linear layer."""
    weights = np.linspace(-1, 1, 3 * labels, dtype=np.float32).reshape(3, labels)
    return model([helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
                  helper.make_node("Flatten", ["pooled"], ["flat"]),
                  helper.make_node("MatMul", ["flat", "w"], ["scores"])],
                 [("image", F, ["batch", 3, h, w])], [("scores", F, ["batch", labels])], {"w": weights})


def image_input(h: int, w: int, **pre: Any) -> dict[str, Any]:
    return {"name": "image", "modality": "image", "dtype": "float32", "shape": ["batch", 3, h, w],
            "preprocess": {"kind": "image", "width": w, "height": h, **pre}}
