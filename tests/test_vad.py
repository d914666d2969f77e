"""Silero VAD (from the installed silero-vad package) as a stage: waveform in, state carried, constant rate."""

import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("silero_vad")

from edgefusion.anymodel import silero_vad_package
from edgefusion.backends import open_backend
from edgefusion.engine import FusionStep
from edgefusion.samples import FusionWindow

CLIPS = Path(__file__).parent / "data" / "audio" / "speech_commands"
STEP_NS = 32_000_000  # 512 samples at 16 kHz: Silero's step


def _clip(name: str) -> np.ndarray:
    with wave.open(str(CLIPS / f"{name}_1000ms.wav")) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


@pytest.fixture(scope="module")
def vad(tmp_path_factory):
    pkg = silero_vad_package(tmp_path_factory.mktemp("vad") / "silero_vad")
    with open_backend("onnxruntime", pkg, threads=1) as be:
        yield pkg, be


def _speech(vad, x: np.ndarray, stateless: bool = False) -> list[float]:
    pkg, be = vad
    step = FusionStep(pkg, be)
    out = []
    for k in range(1, len(x) // 512 + 1):
        if stateless:
            step.state.reset()
        w = FusionWindow(t_ns=k * STEP_NS, image=None, audio=x[: k * 512], command=None)
        out.append(step(w).scores["speech"])
    return out


@pytest.mark.parametrize("name, speech", [("yes", True), ("no", True), ("noise", False), ("silence", False)])
def test_speech_probability_is_high_on_words_and_low_on_silence_and_noise(vad, name, speech):
    p = _speech(vad, _clip(name))
    assert len(p) == 31
    if speech:
        assert max(p) > 0.9, p
        assert sum(v > 0.5 for v in p) >= 3, p  # a word lasts several steps
    else:
        assert max(p) < 0.1, p


def test_the_state_is_carried_across_steps(vad):
    x = _clip("no")
    carried, fresh = _speech(vad, x), _speech(vad, x, stateless=True)
    assert max(carried) > 0.9 and max(fresh) < 0.5  # the quiet "no" is heard only with the state carried
    assert np.abs(np.subtract(carried, fresh)).max() > 0.5


def test_a_gap_between_windows_resets_the_state(vad):
    pkg, be = vad
    step, x = FusionStep(pkg, be), _clip("yes")
    for k in range(1, 20):
        step(FusionWindow(t_ns=k * STEP_NS, image=None, audio=x[: k * 512], command=None))
    assert step.state.values and step.state.resets == 0
    step(FusionWindow(t_ns=10**10, image=None, audio=x, command=None))  # 10 s later: a fresh state
    assert step.state.resets == 1


def test_the_package_reads_the_model_from_the_installed_silero_vad(vad):
    import importlib.resources

    pkg, _ = vad
    shipped = Path(str(importlib.resources.files("silero_vad") / "data" / "silero_vad.onnx"))
    assert (pkg.path / "model.onnx").read_bytes() == shipped.read_bytes()
    assert [(i.name, i.preprocess["kind"]) for i in pkg.inputs] == [("input", "waveform"), ("state", "state"),
                                                                      ("sr", "constant")]
