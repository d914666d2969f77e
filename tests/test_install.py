"""Install profiles and the GPU check, checked without a GPU.

- ``deploy/jetson/``: the requirements cover the runtime's dependencies except OpenCV and ONNX
  Runtime, the constraints cap numpy and cuda-python, and together they resolve for cp310
  aarch64 on the package index (numpy < 2, no OpenCV wheel, cuda-python 12.x); the index
  checks skip, with the reason, where it cannot be reached;
- a fresh Python 3.10 virtual environment with the base install runs ``config check`` and
  ``demo`` (skipped without a python3.10 or the index);
- the TensorRT backend's lines run without a GPU (coverage of ``backends/tensorrt`` >= 80%);
- ``bench/gpu_check.sh`` stops at once, saying why, without a GPU or TensorRT, and its parity
  and latency part runs in its CPU selftest.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from edgefusion.doctor import OPENCV_DISTS

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
JETSON = REPO / "deploy" / "jetson"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# JetPack 6: Ubuntu 22.04 (glibc 2.35), Python 3.10, aarch64; pip takes --platform literally, so every manylinux tag
PLATFORMS = [f"--platform=manylinux_2_{g}_aarch64" for g in (35, 34, 31, 28, 27, 26, 24, 17)] + \
    ["--platform=manylinux2014_aarch64", "--platform=linux_aarch64"]
JETSON_ENV = {"python_version": "3.10", "python_full_version": "3.10.12", "platform_machine": "aarch64",
              "sys_platform": "linux", "platform_system": "Linux"}


def _lines(path: Path) -> list[str]:
    return [ln.split(" #")[0].strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _requirements(path: Path) -> dict[str, Requirement]:
    return {r.name: r for r in (Requirement(ln) for ln in _lines(path) if not ln.startswith("-"))}


def _on_jetson(reqs: list[str]) -> dict[str, Requirement]:
    """The requirements that apply on JetPack 6 (markers evaluated for it, not for this interpreter)."""
    return {r.name: r for r in map(Requirement, reqs) if r.marker is None or r.marker.evaluate(JETSON_ENV)}


def test_the_jetson_requirements_are_the_runtime_without_opencv_and_onnxruntime():
    project = PYPROJECT["project"]
    reqs = _requirements(JETSON / "requirements.txt")
    assert "-c constraints.txt" in _lines(JETSON / "requirements.txt")
    assert not [n for n in reqs if n.startswith(("opencv", "onnxruntime"))]
    wanted = _on_jetson(project["dependencies"])
    for extra in ("serve", "mcap"):
        wanted.update(_on_jetson(project["optional-dependencies"][extra]))
    for name, req in wanted.items():
        if name.startswith(("opencv", "onnxruntime")):
            continue
        assert name in reqs, f"deploy/jetson/requirements.txt lacks {req}"
        assert set(req.specifier) <= set(reqs[name].specifier) and str(req.marker) == str(reqs[name].marker), name
    assert str(reqs["tomli"].marker) == 'python_version < "3.11"' and reqs["tomli"].marker.evaluate(JETSON_ENV)


def test_the_jetson_constraints_cap_numpy_cuda_python_and_pip_opencv():
    caps = _requirements(JETSON / "constraints.txt")
    assert str(caps["numpy"].specifier) == "<2"
    assert str(caps["cuda-python"].specifier) == str(caps["cuda-bindings"].specifier) == "<13"
    assert all(str(caps[d].specifier) == "<4.12" for d in OPENCV_DISTS)
    # what the tensorrt extra asks for on aarch64 is what the Jetson profile resolves to
    (extra,) = [r for r in _on_jetson(PYPROJECT["project"]["optional-dependencies"]["tensorrt"]).values()
                if r.name == "cuda-python"]
    given = _requirements(JETSON / "requirements.txt")["cuda-python"]
    assert set(extra.specifier) == set(given.specifier) | set(caps["cuda-python"].specifier)


def _index_unreachable() -> str | None:
    url = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/") + "/numpy/"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10).close()
    except (OSError, ValueError) as exc:
        return f"the package index is unreachable ({url}: {exc})"
    return None


def _resolve(tmp_path: Path, *args: str) -> dict[str, Version]:
    """What ``pip install --dry-run`` picks for cp310 aarch64, name -> version (markers: this interpreter's)."""
    report = tmp_path / f"report-{len(list(tmp_path.iterdir()))}.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--report",
           str(report), "--python-version", "3.10", "--only-binary=:all:", *PLATFORMS, *args]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return {i["metadata"]["name"].lower().replace("_", "-"): Version(i["metadata"]["version"])
            for i in json.loads(report.read_text())["install"]}


@pytest.mark.slow
def test_the_jetson_profile_resolves_for_cp310_aarch64(tmp_path):
    reason = _index_unreachable()
    if reason:
        pytest.skip(reason)
    got = _resolve(tmp_path, "-r", "deploy/jetson/requirements.txt")
    assert got["numpy"].major == 1 and got["cuda-python"].major == 12 and got["cuda-bindings"].major == 12
    assert not [n for n in got if n.startswith(("opencv", "onnxruntime", "tensorrt"))], sorted(got)
    assert {"paho-mqtt", "prometheus-client", "mcap", "zstandard", "lz4"} <= set(got)
    # the CPU ONNX Runtime and pip's OpenCV (no JetPack OpenCV), under the same constraints
    got = _resolve(tmp_path, "-r", "deploy/jetson/requirements.txt", "onnxruntime>=1.17", "opencv-python-headless>=4.8")
    assert got["numpy"].major == 1 and got["opencv-python-headless"].release[:2] == (4, 11)
    assert got["onnxruntime"] >= Version("1.17")


def _python310() -> str | None:
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))
    found = [shutil.which("python3.10"), *pyenv]
    for exe in filter(None, found):
        check = subprocess.run([exe, "-c", "import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 10)"],
                               capture_output=True)
        if check.returncode == 0:
            return exe
    return None


@pytest.mark.slow
def test_a_fresh_python_310_venv_with_the_base_install_runs_config_check_and_demo(tmp_path):
    exe = _python310()
    if exe is None:
        pytest.skip("no Python 3.10 here (python3.10 on PATH, or pyenv's)")
    reason = _index_unreachable()
    if reason:
        pytest.skip(reason)
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "edgefusion", "export", "calibration", "examples"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree
                                          else {}))
    venv = tmp_path / "venv"
    subprocess.run([exe, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(src)], env=env,
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]

    def edgefusion(*args: str) -> str:
        run = subprocess.run([str(venv / "bin" / "edgefusion"), *args], cwd=src, env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        return run.stdout

    assert "examples/smart_home.toml: OK (model smart_home-attention" in edgefusion("config", "check",
                                                                                   "examples/smart_home.toml")
    assert "action events: precision" in edgefusion("demo", "--duration", "3")
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import sys, tomli, importlib.util; "
                            "print(sys.version_info[:2], importlib.util.find_spec('torch') is None)"],
                           env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "(3, 10) True"


@pytest.mark.slow
def test_the_tensorrt_backend_lines_run_without_a_gpu(tmp_path):
    pytest.importorskip("coverage", reason="coverage comes with the dev extra: pip install -e '.[dev]'")
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, COVERAGE_FILE=str(tmp_path / ".coverage"))
    tests = ["tests/test_tensorrt_runner.py", "tests/test_tensorrt.py", "tests/test_backends.py"]
    # --include, not --source=<package>: importing the package early makes numpy load twice under pytest
    include = f"--include={REPO}/edgefusion/backends/tensorrt/*"
    run = subprocess.run([sys.executable, "-m", "coverage", "run", include, "-m", "pytest", "-q", "-p",
                          "no:cacheprovider", "-m", "not gpu", *tests],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:]
    subprocess.run([sys.executable, "-m", "coverage", "json", "-q", "-o", str(tmp_path / "cov.json")], cwd=REPO,
                   env=env, check=True, timeout=120)
    cov = json.loads((tmp_path / "cov.json").read_text())
    per_file = {Path(f).name: round(v["summary"]["percent_covered"], 1) for f, v in cov["files"].items()}
    assert set(per_file) == {"__init__.py", "cuda.py", "deps.py", "engines.py", "runner.py"}
    assert cov["totals"]["percent_covered"] >= 80, per_file
    print(f"coverage of edgefusion/backends/tensorrt without a GPU: {cov['totals']['percent_covered']:.1f}% {per_file}")


def _gpu_check(tmp_path: Path, nvidia_smi: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run bench/gpu_check.sh with a stand-in nvidia-smi first on PATH."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    (bin_ / "nvidia-smi").write_text(f"#!/bin/sh\n{nvidia_smi}\n")
    (bin_ / "nvidia-smi").chmod(0o755)
    full = dict(os.environ, PATH=f"{bin_}{os.pathsep}{os.environ['PATH']}", PYTHON=sys.executable, **env)
    return subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), str(tmp_path / "out")], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(os.path.exists("/etc/nv_tegra_release"), reason="a Jetson always has a GPU")
def test_the_gpu_check_stops_at_once_without_a_gpu(tmp_path):
    run = _gpu_check(tmp_path, "echo 'No devices were found'; exit 6")
    assert run.returncode == 2
    assert run.stderr.strip() == "gpu_check: cannot run here: no NVIDIA GPU (nvidia-smi lists none and this is not a " \
                                 "Jetson). This check needs one; 'edgefusion doctor' says what this machine has"
    assert not (tmp_path / "out" / "gpu_check.json").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_the_gpu_check_stops_at_once_without_tensorrt(tmp_path):
    run = _gpu_check(tmp_path, "echo 'GPU 0: NVIDIA H200 (UUID: GPU-0)'")
    assert run.returncode == 2
    assert "bench/gpu_check.sh needs the Python module 'tensorrt'" in run.stderr
    assert run.stderr.rstrip().endswith("cannot run here: TensorRT or CUDA is not usable (above); 'edgefusion doctor' "
                                        "says what to install")


@pytest.mark.slow
def test_the_gpu_check_parity_and_latency_part_runs_in_its_selftest(tmp_path):
    run = _gpu_check(tmp_path, "exit 6", GPU_CHECK_SELFTEST="1", SAMPLES="8", ITERS="3")
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["selftest"] is True and report["failed"] == [] and report["steps"] == []
    assert [(p["package"], p["engine"]) for p in report["parity"]] == [
        ("smart_home", "fp16"), ("smart_home", "int8"), ("driving", "fp16"), ("driving", "int8")]
    assert all({"event_logits", "action_logits"} <= set(p["max_abs_delta"])  # and intent_logits where declared
               and set(p["max_abs_delta"].values()) == {0.0} and p["action_argmax_agreement"] == 1
               for p in report["parity"])  # the selftest compares ONNX Runtime with itself
    rows = {(r["package"], r["config"], r["batch"]) for r in report["latency"]}
    torch_ok = importlib.util.find_spec("torch") is not None
    assert len(rows) == 2 * 2 * (3 + torch_ok) and len(report["skipped"]) == 2 * (not torch_ok)
