"""The typed manifest: every problem of a bad manifest.json is one line, and nothing leaves the package."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edgefusion.errors import IntegrityError, PackageError
from edgefusion.package import BUILTIN_DIR, load_package


def _write(pkg: Path, manifest: object) -> None:
    (pkg / "manifest.json").write_text(json.dumps(manifest))


def _raw(pkg: Path) -> dict:
    return json.loads((pkg / "manifest.json").read_text())


def _error(pkg: Path) -> str:
    with pytest.raises(PackageError) as exc:
        load_package(pkg)
    return str(exc.value)


def test_the_builtin_manifests_parse_into_typed_fields():
    pkg = load_package("smart_home")
    m = pkg.manifest
    assert m.scenario == "smart_home" and m.artifacts["fp32"].path == "model.fp32.onnx"
    assert m.sources["checkpoint"].meta.get("format") and m.artifacts["int8"].meta["precision"] == "int8"
    assert pkg.file(m.artifacts["fp32"]) == pkg.artifact("fp32")
    assert m.raw == json.loads((BUILTIN_DIR / "smart_home" / "manifest.json").read_text())


@pytest.mark.parametrize("content,expected", [
    (b"[1, 2]", "expected a JSON object, got list"),
    (b"\xff\xfe\x00binary", "cannot read"),
    (b"[" * 100_000 + b"]" * 100_000, "cannot read"),
])
def test_a_manifest_that_is_not_an_object_is_one_line(pkg_copy, content, expected):
    (pkg_copy / "manifest.json").write_bytes(content)
    msg = _error(pkg_copy)
    assert expected in msg and "Traceback" not in msg


def test_every_problem_is_listed_one_per_line(pkg_copy):
    raw = _raw(pkg_copy)
    del raw["artifacts"]["fp32"]["sha256"]
    raw["artifacts"]["int8"] = "model.int8.onnx"
    raw["sources"]["checkpoint"]["path"] = "/etc/passwd"
    raw["artifacts"]["int8_trt"]["path"] = "../../outside.onnx"
    raw["inputs"][0]["shape"] = ["batch", 3, 10**9, 96]
    raw["outputs"][0]["threshold"] = "high"
    _write(pkg_copy, raw)
    lines = _error(pkg_copy).splitlines()
    assert "(6 problems)" in lines[0]
    body = "\n".join(lines[1:])
    for needle in ("artifacts.fp32.sha256: missing", "artifacts.int8: expected an object",
                   "sources.checkpoint.path: '/etc/passwd' leaves the package directory",
                   "artifacts.int8_trt.path: '../../outside.onnx' leaves the package directory",
                   "inputs[0].shape:", "outputs[0].threshold:"):
        assert needle in body, needle
    assert len(lines) == 7


def test_duplicate_names_are_refused(pkg_copy):
    raw = _raw(pkg_copy)
    raw["outputs"][1]["name"] = raw["outputs"][0]["name"]
    _write(pkg_copy, raw)
    assert "outputs: duplicate names ['event_logits']" in _error(pkg_copy)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links on this system")
def test_a_symlink_out_of_the_package_is_refused(pkg_copy, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(pkg_copy / "model.int8.onnx", outside)
    (pkg_copy / "model.int8.onnx").unlink()
    (pkg_copy / "model.int8.onnx").symlink_to(outside)
    with pytest.raises(IntegrityError, match="is a link that leaves the package directory"):
        load_package(pkg_copy)


def test_an_oversized_manifest_is_refused_before_parsing(pkg_copy):
    (pkg_copy / "manifest.json").write_bytes(b" " * (5 << 20))
    assert "a manifest is at most" in _error(pkg_copy)
