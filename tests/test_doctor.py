"""``edgefusion doctor``: the report on this machine, and on made-up Jetsons and GPU hosts through a fake Host."""

import fnmatch
import json
import re
import shutil
import types

import cv2
import pytest

from edgefusion import doctor
from edgefusion.backends.onnxruntime import GPU_INSTALL_HINT
from edgefusion.cli import main
from edgefusion.doctor import Host, diagnose

SITE = "/home/nvidia/ef/lib/python3.10/site-packages"
SYSTEM = "/usr/lib/python3/dist-packages"
BUILD = "  Video I/O:\n    FFMPEG:      YES\n    GStreamer:   {}\n    v4l/v4l2:    YES (linux/videodev2.h)\n"
GST_BUILD, PIP_BUILD = BUILD.format("YES (1.20.3)"), BUILD.format("NO")
ORIN = {"/proc/device-tree/model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00",
        "/etc/nv_tegra_release": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64",
        "/usr/local/cuda/version.json": '{"cuda": {"name": "CUDA SDK", "version": "12.6.68"}}',
        "/dev/video0": "", "/sys/class/video4linux/video0/name": "vi-output, imx219 9-0010\n",
        "/usr/lib/aarch64-linux-gnu/gstreamer-1.0/libgstnvarguscamerasrc.so": "",
        "/proc/asound/cards": " 0 [APE            ]: tegra-ape - NVIDIA Jetson Orin Nano APE\n"}


def _module(version, **attrs):
    return types.SimpleNamespace(__version__=version, **attrs)


def _ort(*providers):
    return _module("1.20.0", get_available_providers=lambda: list(providers))


def _sounddevice(*inputs):
    return _module("0.5.1", query_devices=lambda: [{"name": n, "max_input_channels": 1} for n in inputs])


class FakeHost(Host):
    """A machine made of dictionaries: files, commands' output, distributions, modules (or import errors)."""

    def __init__(self, files=(), commands=(), dists=(), modules=(), python=(), sessions=()):
        self.files, self.commands, self.dists_, self.modules = dict(files), dict(commands), dict(dists), dict(modules)
        self.py = {"version": "3.10.12", "executable": "/home/nvidia/ef/bin/python", "machine": "aarch64",
                   "venv": True, "system_site_packages": True, "sys_path": [SITE, SYSTEM], **dict(python)}
        self.sessions = dict(sessions)

    def read(self, path):
        return self.files.get(path)

    def glob(self, pattern):
        return sorted({p for f in self.files for p in _parents(f) if fnmatch.fnmatch(p, pattern)})

    def run(self, argv):
        return self.commands.get(argv[0])

    def dist_version(self, name):
        return self.dists_.get(name)

    def dists(self, prefix):
        return sorted(d for d in self.dists_ if d.startswith(prefix))

    def module(self, name):
        m = self.modules.get(name, f"ModuleNotFoundError: No module named '{name}'")
        return (None, m) if isinstance(m, str) else (m, None)

    def has_module(self, name):
        return not isinstance(self.modules.get(name, ""), str)

    def python(self):
        return dict(self.py)

    def try_provider(self, backend):
        return self.sessions.get(backend)


def _parents(path):
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(2, len(parts) + 1)]


def _by_name(report):
    out = {}
    for c in report.checks:
        out.setdefault(c.name, []).append(c)
    return out


def _healthy_jetson(**override):
    """Orin Nano, JetPack 6.2: JetPack's OpenCV, TensorRT and onnxruntime-gpu, cuda-python 12.x, a system-site venv."""
    cv = _module("4.8.0", __file__=f"{SYSTEM}/cv2/__init__.py", getBuildInformation=lambda: GST_BUILD)
    args = {"files": {**ORIN, f"{SYSTEM}/cv2/__init__.py": "", "/usr/lib/python3.10/dist-packages/tensorrt": ""},
            "commands": {"nvpmodel": "NV Power Mode: MAXN_SUPER\n2\n", "dpkg-query": "6.2+b77"},
            "dists": {"numpy": "1.26.4", "onnxruntime-gpu": "1.20.0", "cuda-python": "12.6.2"},
            "modules": {"numpy": _module("1.26.4"), "cv2": cv, "tensorrt": _module("10.3.0"),
                        "onnxruntime": _ort("TensorrtExecutionProvider", "CUDAExecutionProvider",
                                            "CPUExecutionProvider"),
                        "sounddevice": _sounddevice("APE: - (hw:0,0)")}}
    for key, value in override.items():
        args[key] = {**args.get(key, {}), **value}
    return FakeHost(**args)


def test_this_machine_gets_a_correct_report_and_exit_0(capsys):
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in report["checks"]}  # the first check of each name
    gst = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())[1] == "YES"
    assert report["ok"] and report["problems"] == 0
    assert checks["opencv"]["details"]["gstreamer"] is gst and checks["opencv"]["details"]["version"] == cv2.__version__
    assert checks["gstreamer"]["status"] == ("ok" if gst else "no")
    assert "CPUExecutionProvider" in checks["onnxruntime"]["details"]["providers"]
    assert checks["gpu"]["status"] == ("ok" if shutil.which("nvidia-smi") else "no")
    fp32 = next(r for r in report["runs_here"]["smart_home"] if (r["variant"], r["backend"]) == ("fp32", "onnxruntime"))
    assert fp32["ok"] and fp32["why"].startswith("ran one step on generated inputs")  # opened and run, not assumed
    assert main(["doctor", "--packages", "driving"]) == 0
    text = capsys.readouterr().out
    assert "driving runs here on: onnxruntime:fp32" in text and text.rstrip().endswith("how to add it")


def test_a_healthy_jetson_reports_its_gpu_jetpack_cameras_and_providers():
    report = diagnose(_healthy_jetson())
    c = _by_name(report)
    assert not report.problems, report.problems
    assert c["gpu"][0].summary == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super integrated GPU " \
                                  "(compute capability 8.7)"
    assert c["jetson"][0].summary.endswith("L4T 36.4.3, JetPack 6.2+b77, power mode MAXN_SUPER")
    assert c["opencv"][0].summary.startswith("OpenCV 4.8.0 (not from pip, /usr/lib/python3/dist-packages/cv2): "
                                             "FFmpeg yes, V4L2 yes, GStreamer yes")
    assert c["gstreamer"][0].status == "ok" and "nvarguscamerasrc" in c["gstreamer"][0].summary
    assert c["cameras"][0].summary == "/dev/video0 (vi-output, imx219 9-0010); CSI through nvarguscamerasrc"
    assert [x.summary for x in c["ort-gpu"]] == ["onnxruntime-trt: a session opened",
                                                 "onnxruntime-cuda: a session opened"]
    assert c["tensorrt"][0].summary == "TensorRT 10.3.0" and c["cuda"][0].status == "ok"
    assert c["audio"][0].summary == "input devices: APE: - (hw:0,0)"


def test_a_jetson_with_a_pip_install_on_top_is_told_what_to_remove(monkeypatch, capsys):
    pip_cv = _module("4.12.0", __file__=f"{SITE}/cv2/__init__.py", getBuildInformation=lambda: PIP_BUILD)
    host = _healthy_jetson(files={f"{SITE}/cv2/__init__.py": ""},
                           dists={"opencv-python-headless": "4.12.0.88", "onnxruntime": "1.23.2",
                                  "cuda-python": "13.0.1"},
                           modules={"cv2": pip_cv, "tensorrt": "ModuleNotFoundError: No module named 'tensorrt'"},
                           python={"system_site_packages": False, "sys_path": [SITE]})
    monkeypatch.setattr(doctor, "Host", lambda: host)
    with pytest.raises(SystemExit) as exit_:
        main(["doctor", "--packages", ""])
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    report = diagnose(host)
    assert [(c.name, c.status) for c in report.problems] == [("opencv", "problem"), ("onnxruntime", "problem"),
                                                              ("tensorrt", "problem"), ("cuda", "problem")]
    hidden, ort_, trt, cuda = report.problems
    assert hidden.summary == "another OpenCV is hidden behind this one: /usr/lib/python3/dist-packages"
    assert hidden.fix.startswith("JetPack's OpenCV has GStreamer: pip uninstall -y opencv-python-headless, in a "
                                 "virtual environment made with --system-site-packages")
    assert ort_.fix == "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu " \
                       "(deploy/jetson/requirements.txt on a Jetson)"
    assert "--system-site-packages" in trt.fix and "/usr/lib/python3.10/dist-packages/tensorrt" in trt.fix
    assert cuda.summary.endswith("cuda-python 13.0.1 needs CUDA 13")
    assert cuda.fix == "pip install 'cuda-python>=12.0,<13'"
    assert "-> pip install 'cuda-python>=12.0,<13'" in out and out.rstrip().endswith(
        "4 problems: opencv, onnxruntime, tensorrt, cuda")


def test_an_opencv_built_for_numpy_1_says_to_pin_numpy():
    host = _healthy_jetson(modules={"cv2": "ImportError: numpy.core.multiarray failed to import",
                                    "numpy": _module("2.2.6")})
    (cv,) = _by_name(diagnose(host))["opencv"]
    assert cv.status == "problem" and cv.fix == "pip install 'numpy<2' (this OpenCV was built against numpy 1.x)"


def test_missing_opencv_and_onnxruntime_are_problems_with_the_install_line():
    host = FakeHost(modules={"numpy": _module("1.26.4")}, python={"machine": "x86_64", "sys_path": []})
    report = diagnose(host)
    c = _by_name(report)
    assert c["opencv"][0].fix == "pip install opencv-python-headless"
    assert c["onnxruntime"][0].fix == "pip install onnxruntime (CPU) or onnxruntime-gpu"
    assert c["jetson"][0].summary.startswith("not a Jetson") and c["gpu"][0].status == "no"
    assert c["audio"][0].fix == "pip install 'edgefusion[audio]'"
    assert c["extras"][0].fix == ("pip install 'edgefusion[audio,mcap,serve,train,bench,speech,ros2,foxglove,fleet,"
                                  "tensorrt]' for what they add")  # every extra in pyproject.toml


def test_a_gpu_host_with_the_cpu_onnxruntime_is_told_to_install_the_gpu_build():
    host = FakeHost(commands={"nvidia-smi": "NVIDIA H200, 9.0, 570.124.06\n"},
                    files={"/usr/local/cuda/version.json": '{"cuda": {"version": "12.8.1"}}'},
                    modules={"numpy": _module("2.2.6"), "onnxruntime": _ort("CPUExecutionProvider"),
                             "sounddevice": "OSError: PortAudio library not found"},
                    dists={"onnxruntime": "1.23.2"}, python={"machine": "x86_64", "sys_path": []})
    c = _by_name(diagnose(host))
    assert c["gpu"][0].summary == "NVIDIA H200 (compute capability 9.0, driver 570.124.06)"
    assert c["ort-gpu"][0].status == "no" and c["ort-gpu"][0].fix == GPU_INSTALL_HINT
    assert c["tensorrt"][0].status == "no" and "pip install tensorrt cuda-python" in c["tensorrt"][0].fix
    assert c["cuda"][0].fix == "pip install 'cuda-python>=12.0,<13' (the tensorrt backend's CUDA calls)"
    assert c["audio"][0].fix == "sudo apt install libportaudio2"


def test_a_gpu_provider_that_does_not_start_says_why():
    host = _healthy_jetson(sessions={"onnxruntime-trt": "ONNX Runtime dropped TensorrtExecutionProvider while opening"})
    trt, cuda = _by_name(diagnose(host))["ort-gpu"]
    assert (trt.status, cuda.status) == ("no", "ok") and "dropped TensorrtExecutionProvider" in trt.summary


@pytest.mark.parametrize("status,mode", [("pmode:0001 fmode:quiet", "mode 1"), (None, "unknown (nvpmodel -q)")])
def test_the_power_mode_falls_back_to_nvpmodels_status_file(status, mode):
    host = _healthy_jetson(commands={"nvpmodel": None}, files={"/var/lib/nvpmodel/status": status})
    assert _by_name(diagnose(host))["jetson"][0].details["power_mode"] == mode


def test_a_package_that_cannot_load_is_reported_not_dropped():
    report = diagnose(_healthy_jetson(), packages=("no_such_package",))
    (row,) = report.runs_here["no_such_package"]
    assert row["ok"] is False and "no_such_package" in row["why"]


def test_a_gpu_without_a_cuda_version_anywhere_points_at_the_driver():
    host = FakeHost(commands={"nvidia-smi": "Tesla T4, 7.5, 470.01\n"}, dists={"cuda-python": "12.6.0"},
                    modules={"numpy": _module("2.2.6")}, python={"machine": "x86_64", "sys_path": []})
    (cuda,) = _by_name(diagnose(host))["cuda"]
    assert cuda.status == "no" and cuda.summary.startswith("CUDA not found; cuda-python 12.6.0")
    assert cuda.fix == "the NVIDIA driver (nvidia-smi names its CUDA version), or JetPack"


def test_doctor_knows_every_extra_of_the_package():
    """doctor's extras line left out speech, ros2, foxglove, fleet and tensorrt."""
    import sys
    from pathlib import Path

    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    from edgefusion.doctor import EXTRAS

    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert set(meta["project"]["optional-dependencies"]) - {"dev"} == set(EXTRAS)
