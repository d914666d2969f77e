"""``edgefusion doctor``: what this device can run, and what to install for what it cannot.

Each check reads the machine through one :class:`Host` (files, commands, imports, installed
distributions), so the tests run every check against a made-up Jetson or a broken install
without one. A check ends as ``ok``, ``no`` (a capability this device lacks, with how to
get it), or ``problem`` (an install that works against itself: two ONNX Runtime builds
overwriting each other, a pip OpenCV hiding JetPack's, a CUDA binding for another CUDA);
the command exits 1 when there is a problem.

Example:
    >>> report = diagnose(Host())
    >>> report.checks[0].name, report.checks[0].status
    ('python', 'ok')
"""

from __future__ import annotations

import glob
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["OPENCV_DISTS", "Check", "Host", "Report", "diagnose"]

OPENCV_DISTS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
EXTRAS = {"audio": ("soundfile", "sounddevice"), "mcap": ("mcap", "zstandard", "lz4"),
          "serve": ("paho", "prometheus_client"), "train": ("torch", "onnx", "onnxscript"),
          "bench": ("matplotlib", "tqdm"), "speech": ("pocketsphinx",), "ros2": ("mcap_ros2", "yaml"),
          "foxglove": ("foxglove",), "fleet": ("ray",), "tensorrt": ("tensorrt",)}
# Jetson modules by the name in their device tree -> compute capability (no nvidia-smi there)
JETSON_CC = {"thor": (11, 0), "orin": (8, 7), "xavier": (7, 2), "tx2": (6, 2), "nano": (5, 3)}


def _jetson_opencv(pip_dists: list[str]) -> str:
    return (f"JetPack's OpenCV has GStreamer: pip uninstall -y {' '.join(pip_dists or OPENCV_DISTS)}, in a virtual "
            "environment made with --system-site-packages (deploy/jetson/requirements.txt)")


@dataclass(frozen=True)
class Check:
    """One line of the report: what was found and, unless ``ok``, what to do."""

    name: str
    status: str  # ok | no | problem
    summary: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """Every check, plus which backend and variant of the built-in packages run here."""

    checks: list[Check]
    runs_here: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == "problem"]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": not self.problems, "problems": len(self.problems),
                "checks": [asdict(c) for c in self.checks], "runs_here": self.runs_here}

    def lines(self) -> list[str]:
        out = ["EdgeFusion doctor: what this device can run, and why not"]
        for c in self.checks:
            out.append(f"  {c.status:<8} {c.name:<12} {c.summary}")
            if c.fix:
                out.append(f"  {'':<8} {'':<12} -> {c.fix}")
        for pkg, rows in self.runs_here.items():
            yes = [f"{r['backend']}:{r['variant']}" for r in rows if r["ok"]]
            out.append(f"  {pkg} runs here on: {', '.join(yes) or 'nothing'}")
        n = len(self.problems)
        tail = ": " + ", ".join(c.name for c in self.problems) if n else \
            "; 'no' lines are what this device lacks, and how to add it"
        out.append(f"{n} problem{'s' if n != 1 else ''}{tail}")
        return out


class Host:
    """This machine, as the checks read it; the tests replace these methods."""

    def read(self, path: str) -> str | None:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return None

    def glob(self, pattern: str) -> list[str]:
        return sorted(glob.glob(pattern))

    def run(self, argv: list[str]) -> str | None:
        """stdout of a command that exists and succeeds within 5 s, else None."""
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return p.stdout if p.returncode == 0 else None

    def dist_version(self, name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    def dists(self, prefix: str) -> list[str]:
        names = {(d.metadata["Name"] or "").lower().replace("_", "-") for d in importlib.metadata.distributions()}
        return sorted(n for n in names if n.startswith(prefix))

    def module(self, name: str) -> tuple[Any, str | None]:
        """The imported module, or None and why not (an ImportError, or a binary built for another numpy)."""
        try:
            return importlib.import_module(name), None
        except Exception as exc:  # an extension module can fail in many ways
            return None, f"{type(exc).__name__}: {exc}".splitlines()[0]

    def has_module(self, name: str) -> bool:
        """Whether ``name`` can be found, without importing it (torch takes seconds)."""
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    def python(self) -> dict[str, Any]:
        cfg = self.read(os.path.join(sys.prefix, "pyvenv.cfg")) or ""
        return {"version": platform.python_version(), "executable": sys.executable, "machine": platform.machine(),
                "venv": sys.prefix != sys.base_prefix, "sys_path": list(sys.path),
                "system_site_packages": bool(re.search(r"include-system-site-packages\s*=\s*true", cfg, re.I))}

    def try_provider(self, backend: str) -> str | None:
        """Open the smart_home package on an ONNX Runtime GPU backend; None if it opened, else why not."""
        from edgefusion.backends import open_backend
        from edgefusion.errors import EdgeFusionError
        from edgefusion.package import load_package

        try:
            open_backend(backend, load_package("smart_home")).close()
        except EdgeFusionError as exc:
            return str(exc)
        return None


def _jetson(host: Host) -> dict[str, Any] | None:
    model = (host.read("/proc/device-tree/model") or "").strip("\x00\n ")
    release = host.read("/etc/nv_tegra_release")
    if release is None and "jetson" not in model.lower():
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release or "")
    return {"model": model or "unknown Jetson", "l4t": f"{m[1]}.{m[2]}" if m else None}


def check_python(host: Host, py: dict[str, Any]) -> Check:
    where = "virtual environment" + (", with system site-packages" if py["system_site_packages"] else "") \
        if py["venv"] else "no virtual environment"
    ok = tuple(int(x) for x in py["version"].split(".")[:2]) >= (3, 10)
    return Check("python", "ok" if ok else "problem", f"Python {py['version']} on {py['machine']} ({py['executable']}; "
                 f"{where})", "" if ok else "EdgeFusion needs Python 3.10 or newer",
                 {k: v for k, v in py.items() if k != "sys_path"})


def check_numpy(host: Host) -> Check:
    np_, err = host.module("numpy")
    if np_ is None:
        return Check("numpy", "problem", f"numpy does not import ({err})", "pip install 'numpy>=1.24'")
    return Check("numpy", "ok", f"numpy {np_.__version__}", details={"version": np_.__version__})


def _cv2_build(info: str) -> dict[str, bool]:
    found = {}
    for key, label in (("gstreamer", "GStreamer"), ("v4l2", "v4l/v4l2"), ("ffmpeg", "FFMPEG")):
        m = re.search(rf"^\s*{re.escape(label)}:\s*(\w+)", info, re.M | re.I)
        found[key] = bool(m and m[1].upper() == "YES")
    return found


def check_opencv(host: Host, py: dict[str, Any], jetson: dict[str, Any] | None) -> list[Check]:
    cv2, err = host.module("cv2")
    if cv2 is None:
        fix = "pip install 'numpy<2' (this OpenCV was built against numpy 1.x)" if "numpy" in (err or "") else \
            ("pip install opencv-python-headless" + (f"; or {_jetson_opencv([])}" if jetson else ""))
        return [Check("opencv", "problem", f"OpenCV does not import ({err})", fix)]
    path = os.path.dirname(getattr(cv2, "__file__", "") or "")
    pip_dists = [d for d in OPENCV_DISTS if host.dist_version(d)]
    dist = pip_dists[0] if pip_dists else None
    build = _cv2_build(cv2.getBuildInformation())
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in
                      (("FFmpeg", build["ffmpeg"]), ("V4L2", build["v4l2"]), ("GStreamer", build["gstreamer"])))
    checks = [Check("opencv", "ok", f"OpenCV {cv2.__version__} ({dist or 'not from pip'}, {path}): {flags}",
                    details={"version": cv2.__version__, "distribution": dist, "path": path, **build})]
    # another cv2 further down the path, or in the system's dist-packages a venv does not see
    here = os.path.realpath(os.path.dirname(path))
    places = [p for p in py["sys_path"] if p] + host.glob("/usr/lib/python3*/dist-packages") + \
        host.glob("/usr/local/lib/python3*/dist-packages")
    hidden = sorted({os.path.realpath(p) for p in places if os.path.realpath(p) != here and
                     (host.glob(os.path.join(p, "cv2", "__init__.py")) or host.glob(os.path.join(p, "cv2*.so")))})
    if hidden and not build["gstreamer"]:
        status = "problem" if jetson else "ok"
        checks.append(Check("opencv", status, f"another OpenCV is hidden behind this one: {', '.join(hidden)}",
                            _jetson_opencv(pip_dists) if jetson else "", {"hidden": hidden}))
    if build["gstreamer"]:
        checks.append(Check("gstreamer", "ok", "GStreamer pipelines ending in appsink can be cameras"
                            + (" (nvarguscamerasrc for CSI cameras)" if jetson else "")))
    else:
        checks.append(Check("gstreamer", "no", "this OpenCV has no GStreamer: no CSI camera (nvarguscamerasrc) and "
                            "no GStreamer pipelines; devices, files and rtsp:// still work through V4L2/FFmpeg",
                            _jetson_opencv(pip_dists) if jetson else "pip's OpenCV never has GStreamer: use the "
                            "system's (apt install python3-opencv) in a venv made with --system-site-packages"))
    return checks


def check_devices(host: Host, jetson: dict[str, Any] | None) -> list[Check]:
    cams = []
    for dev in host.glob("/dev/video*"):
        name = (host.read(f"/sys/class/video4linux/{os.path.basename(dev)}/name") or "").strip()
        cams.append(f"{dev} ({name})" if name else dev)
    argus = bool(host.glob("/usr/lib/*-linux-gnu/gstreamer-1.0/libgstnvarguscamerasrc.so"))
    if jetson:
        cams.append("CSI through nvarguscamerasrc" if argus else "no nvarguscamerasrc plugin (CSI cameras need it: "
                                                               "sudo apt install nvidia-l4t-gstreamer)")
    found = [c for c in cams if c.startswith("/dev/") or c.startswith("CSI")]
    checks = [Check("cameras", "ok" if found else "no", "; ".join(cams) or "no /dev/video* device",
                    "" if found else "a video file, an rtsp:// URL or synth:SCENARIO work without one",
                    {"devices": cams})]
    cards = [line.strip() for line in (host.read("/proc/asound/cards") or "").splitlines()
             if re.match(r"\s*\d+ \[", line)]
    sd, err = host.module("sounddevice")
    if sd is None:
        fix = "sudo apt install libportaudio2" if err and "PortAudio" in err else "pip install 'edgefusion[audio]'"
        checks.append(Check("audio", "no", f"no microphone input: sounddevice unusable ({err}); sound cards: "
                            f"{'; '.join(cards) or 'none'}", fix, {"cards": cards}))
        return checks
    try:
        inputs = [d["name"] for d in sd.query_devices() if d.get("max_input_channels", 0) > 0]
    except Exception as exc:  # PortAudio errors are not typed
        inputs, cards = [], [*cards, f"query failed: {exc}"]
    checks.append(Check("audio", "ok" if inputs else "no", f"input devices: {', '.join(inputs) or 'none'}",
                        "" if inputs else "audio files work without one (--audio clip.wav)", {"inputs": inputs}))
    return checks


def check_onnxruntime(host: Host, gpu: bool) -> list[Check]:
    from edgefusion.backends.onnxruntime import GPU_INSTALL_HINT, PROVIDERS

    ort, err = host.module("onnxruntime")
    dists = host.dists("onnxruntime")
    if ort is None:
        return [Check("onnxruntime", "problem", f"ONNX Runtime does not import ({err})",
                      "pip install onnxruntime (CPU) or onnxruntime-gpu")]
    providers = list(ort.get_available_providers())
    checks = [Check("onnxruntime", "ok", f"ONNX Runtime {ort.__version__} ({', '.join(dists) or 'not from pip'}): "
                    f"{', '.join(providers)}", details={"version": ort.__version__, "providers": providers,
                                                        "distributions": dists})]
    if len(dists) > 1:
        keep = next((d for d in dists if d.endswith("-gpu")), dists[0])
        checks.append(Check("onnxruntime", "problem", f"{len(dists)} ONNX Runtime builds are installed "
                            f"({', '.join(dists)}): they overwrite each other's files",
                            f"pip uninstall -y {' '.join(dists)} && pip install "
                            f"{keep} (deploy/jetson/requirements.txt on a Jetson)"))
    if PROVIDERS["cpu"] not in providers:
        checks.append(Check("onnxruntime", "problem", "this onnxruntime has no CPUExecutionProvider",
                            "reinstall onnxruntime"))
    on_gpu = [b for b, p in (("onnxruntime-trt", "tensorrt"), ("onnxruntime-cuda", "cuda"))
              if PROVIDERS[p] in providers]
    if not on_gpu:
        checks.append(Check("ort-gpu", "no", "no CUDA or TensorRT provider in this onnxruntime",
                            GPU_INSTALL_HINT if gpu else "needs an NVIDIA GPU and onnxruntime-gpu"))
    for backend in on_gpu:
        why = host.try_provider(backend) if gpu else "no NVIDIA GPU found"
        checks.append(Check("ort-gpu", "ok" if why is None else "no",
                            f"{backend}: " + ("a session opened" if why is None else why)))
    return checks


def check_gpu(host: Host, jetson: dict[str, Any] | None) -> Check:
    out = host.run(["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"])
    gpus = [[x.strip() for x in line.split(",")] for line in (out or "").splitlines() if line.strip()]
    if gpus:
        names = "; ".join(f"{g[0]} (compute capability {g[1]}, driver {g[2]})" if len(g) >= 3 else g[0] for g in gpus)
        return Check("gpu", "ok", names, details={"gpus": gpus})
    if jetson:
        cc = next((v for k, v in JETSON_CC.items() if k in jetson["model"].lower()), None)
        return Check("gpu", "ok", f"{jetson['model']} integrated GPU" +
                     (f" (compute capability {cc[0]}.{cc[1]})" if cc else ""), details={"compute_capability": cc})
    return Check("gpu", "no", "no NVIDIA GPU (nvidia-smi lists none)", "the CPU runs every package with ONNX "
                 "Runtime; TensorRT and ONNX Runtime's GPU providers need an NVIDIA GPU and its driver")


def _cuda_version(host: Host) -> str | None:
    text = host.read("/usr/local/cuda/version.json") or host.read("/usr/local/cuda/version.txt") or ""
    m = re.search(r'"cuda"\s*:\s*\{[^}]*"version"\s*:\s*"([\d.]+)"', text) or re.search(r"CUDA Version ([\d.]+)", text)
    if not m:
        m = re.search(r"CUDA Version:\s*([\d.]+)", host.run(["nvidia-smi"]) or "")
    return m[1] if m else None


def check_tensorrt(host: Host, py: dict[str, Any], jetson: dict[str, Any] | None, gpu: bool) -> list[Check]:
    from edgefusion.backends.tensorrt.deps import INSTALL_HINT

    cuda = _cuda_version(host)
    bindings = host.dist_version("cuda-python") or host.dist_version("cuda-bindings")
    pycuda = host.dist_version("pycuda")
    checks = []
    trt, err = host.module("tensorrt")
    if trt is not None:
        checks.append(Check("tensorrt", "ok", f"TensorRT {trt.__version__}", details={"version": trt.__version__}))
    else:
        fix = INSTALL_HINT if gpu else "needs an NVIDIA GPU first"
        system = host.glob("/usr/lib/python3*/dist-packages/tensorrt")
        if system and py["venv"] and not py["system_site_packages"]:
            fix = (f"JetPack's TensorRT is at {system[0]}, which this virtual environment cannot see: recreate it "
                   "with python3 -m venv --system-site-packages")
        checks.append(Check("tensorrt", "problem" if system and py["venv"] and not py["system_site_packages"] else "no",
                            f"TensorRT is not importable ({err})", fix))
    summary = (f"CUDA {cuda or 'not found'}; cuda-python {bindings or 'not installed'}; "
               f"pycuda {pycuda or 'not installed'}")
    major, needs = int((cuda or "0").split(".")[0]), int((bindings or "0").split(".")[0])
    if cuda and needs > major:  # cuda-python N.x loads CUDA N's libraries (the 13.x that pip picks fails on JetPack 6)
        return [*checks, Check("cuda", "problem", f"{summary}: cuda-python {bindings} needs CUDA {needs}",
                               f"pip install 'cuda-python>={major}.0,<{major + 1}'")]
    if not gpu:
        return [*checks, Check("cuda", "no", summary, "needs an NVIDIA GPU first")]
    if cuda is None:
        return [*checks, Check("cuda", "no", summary, "the NVIDIA driver (nvidia-smi names its CUDA version), or "
                               "JetPack")]
    if not (bindings or pycuda):
        return [*checks, Check("cuda", "no", summary, f"pip install 'cuda-python>={major}.0,<{major + 1}' (the "
                               "tensorrt backend's CUDA calls)")]
    return [*checks, Check("cuda", "ok", summary)]


def check_jetson(host: Host, jetson: dict[str, Any] | None) -> Check:
    if jetson is None:
        return Check("jetson", "ok", "not a Jetson (no /etc/nv_tegra_release)")
    jetpack = (host.run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"]) or "").strip()
    mode = host.run(["nvpmodel", "-q"])
    m = re.search(r"NV Power Mode:\s*(.+)", mode or "")
    power = m[1].strip() if m else None
    if power is None:
        s = re.search(r"pmode:(\d+)", host.read("/var/lib/nvpmodel/status") or "")
        power = f"mode {int(s[1])}" if s else "unknown (nvpmodel -q)"
    return Check("jetson", "ok", f"{jetson['model']}, L4T {jetson['l4t'] or 'unknown'}, "
                 f"JetPack {jetpack or 'unknown'}, "
                 f"power mode {power}", details=dict(jetson, jetpack=jetpack or None, power_mode=power))


def check_extras(host: Host) -> Check:
    missing = {extra: [m for m in mods if not host.has_module(m)] for extra, mods in EXTRAS.items()}
    have = [e for e, m in missing.items() if not m]
    lack = [e for e, m in missing.items() if m]
    return Check("extras", "ok", f"installed: {', '.join(have) or 'none'}; not installed: {', '.join(lack) or 'none'}",
                 f"pip install 'edgefusion[{','.join(lack)}]' for what they add" if lack else "",
                 {e: not m for e, m in missing.items()})


def diagnose(host: Host, packages: tuple[str, ...] = ()) -> Report:
    """Run every check on ``host``; with ``packages``, also say which of their variants run here."""
    py = host.python()
    jetson = _jetson(host)
    gpu = check_gpu(host, jetson)
    has_gpu = gpu.status == "ok"
    checks = [check_python(host, py), check_numpy(host), *check_opencv(host, py, jetson),
              *check_onnxruntime(host, has_gpu), gpu, *check_tensorrt(host, py, jetson, has_gpu),
              check_jetson(host, jetson), *check_devices(host, jetson), check_extras(host)]
    report = Report(checks)
    for name in packages:
        try:
            from edgefusion.backends import availability
            from edgefusion.package import load_package

            report.runs_here[name] = [{"variant": v, "backend": b, "ok": ok, "why": why}
                                      for v, b, ok, why in availability(load_package(name))]
        except Exception as exc:  # a broken install shows above; say it here too rather than drop the package
            report.runs_here[name] = [{"variant": "*", "backend": "*", "ok": False, "why": f"{type(exc).__name__}: "
                                                                                           f"{exc}"}]
    return report
