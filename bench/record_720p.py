"""Recording raw 720p at 30 fps: recorder drops (goal 0), encode time per frame, file size.

A synthesized camera (the smart_home scenario's frames, upscaled to 1280x720 with a fixed
sensor-noise pattern so zstd has real work) runs in real time through the pipeline with a
live recorder (``--image-format raw``: foxglove.RawImage in protobuf, zstd chunks). The
recorder drops what the disk cannot take (``recorder/queue_full``); this reports them, the
protobuf encode time per frame, the whole write per frame (encode, chunking, compression
when a chunk fills), the file size, and for comparison the previous format's JSON+base64
encode of one frame, and the frames per second the writer alone takes back to back (its
ceiling on this machine, under whatever else loads it). The file is then read back with
the ``mcap`` reader and every camera message decoded with the official protobuf class.

    python bench/record_720p.py [--duration 60] [--compression zstd|lz4] [--out bench/results/record_720p.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
from mcap.reader import make_reader

from edgefusion import load_package, open_backend
from edgefusion.benchmark.report import machine_facts, save_json
from edgefusion.logs import LogWriter, foxproto
from edgefusion.logs.recorder import Recorder
from edgefusion.metrics import percentiles_ms
from edgefusion.pipeline import Pipeline, PipelineConfig
from edgefusion.samples import Frame
from edgefusion.scenarios import generate_timeline, get_scenario
from edgefusion.sources.base import Source, pace_until

W, H, FPS = 1280, 720, 30


class Synth720p(Source):
    """The scenario's frames at 1280x720, paced at 30 fps on the monotonic clock."""

    name = "camera"
    drives_run = True

    def __init__(self, duration_s: float, seed: int = 0) -> None:
        super().__init__()
        tl = generate_timeline(get_scenario("smart_home"), min(duration_s, 20.0), seed=seed)
        self.small = list(tl.frames)
        rng = np.random.default_rng(seed)
        self.noise = [rng.normal(0, 3, (H, W, 3)).astype(np.int16) for _ in range(4)]
        self.n = int(duration_s * FPS)

    def __iter__(self) -> Iterator[Frame]:
        t0 = time.monotonic_ns()
        for i in range(self.n):
            due = t0 + i * 1_000_000_000 // FPS
            if not pace_until(self.stop, due):
                return
            big = cv2.resize(self.small[i % len(self.small)], (W, H), interpolation=cv2.INTER_LINEAR)
            img = np.clip(big.astype(np.int16) + self.noise[i % 4], 0, 255).astype(np.uint8)
            yield Frame(t_ns=self.clock.now_ns(), image=img, source="camera")


def _json_encode_ms(img: np.ndarray, n: int = 5) -> float:
    """The previous format: one frame as JSON with a base64 payload (median of ``n``)."""
    times = []
    for _ in range(n):
        a = time.perf_counter_ns()
        json.dumps({"timestamp": {"sec": 0, "nsec": 0}, "frame_id": "camera", "width": W, "height": H,
                    "encoding": "bgr8", "step": W * 3, "data": base64.b64encode(img.tobytes()).decode("ascii")},
                   separators=(",", ":")).encode()
        times.append(time.perf_counter_ns() - a)
    return float(np.median(times)) / 1e6


def writer_capacity_fps(path: Path, compression: str, n: int = 90) -> float:
    """Frames per second the writer alone takes, back to back (no pipeline, no pacing): its ceiling here."""
    src = Synth720p(n / FPS)
    frames = []
    for i in range(n):
        big = cv2.resize(src.small[i % len(src.small)], (W, H), interpolation=cv2.INTER_LINEAR)
        frames.append(np.clip(big.astype(np.int16) + src.noise[i % 4], 0, 255).astype(np.uint8))
    t = time.perf_counter()
    with LogWriter(path, image_format="raw", compression=compression) as w:
        for i, img in enumerate(frames):
            w.frame(Frame(t_ns=i * 33_333_333, image=img), i * 33_333_333)
    return round(n / (time.perf_counter() - t), 1)


def run(duration_s: float, path: Path, backend: str, compression: str) -> dict[str, Any]:
    encode_ns: list[int] = []
    write_ns: list[int] = []
    raw_image = foxproto.raw_image

    def timed_encode(*a: Any) -> bytes:
        t = time.perf_counter_ns()
        out = raw_image(*a)
        encode_ns.append(time.perf_counter_ns() - t)
        return out

    class TimedWriter(LogWriter):
        def frame(self, f: Frame, log_time_ns: int, topic: str = "/camera") -> None:
            t = time.perf_counter_ns()
            super().frame(f, log_time_ns, topic)
            write_ns.append(time.perf_counter_ns() - t)

    foxproto.raw_image = timed_encode  # type: ignore[assignment]
    src = Synth720p(duration_s)
    pkg = load_package("smart_home")
    try:
        with open_backend(backend, pkg, threads=1) as be:
            pipe = Pipeline(pkg, be, [src], [], PipelineConfig())
            rec = Recorder(TimedWriter(path, image_format="raw", compression=compression), drops=pipe.drops,
                           wall_clock=True)
            rec.describe_run(pkg.manifest.raw, {"bench": "record_720p"}, "", "smart_home")
            pipe.sinks.append(rec)
            pipe.taps.append(rec.tap)
            stats = pipe.run()
            rec.close()
    finally:
        foxproto.raw_image = raw_image  # type: ignore[assignment]
    size = path.stat().st_size
    decoded = 0
    t = time.perf_counter()
    with open(path, "rb") as f:
        for schema, _ch, m in make_reader(f).iter_messages(topics=["/camera"]):
            img = RawImage.FromString(m.data)
            assert schema is not None and schema.name == "foxglove.RawImage"
            assert (img.width, img.height, len(img.data)) == (W, H, W * H * 3)
            decoded += 1
    read_s = time.perf_counter() - t
    sample = np.zeros((H, W, 3), np.uint8)
    return {
        "duration_s": duration_s, "resolution": f"{W}x{H}", "fps": FPS, "backend": backend, "compression": compression,
        "frames_offered": src.n, "frames_recorded": len(write_ns), "frames_decoded_back": decoded,
        "recorder_drops": stats.drops.get("recorder/queue_full", 0), "all_drops": stats.drops,
        "steps": stats.steps, "wall_s": round(stats.wall_s, 2),
        "encode_ms": percentiles_ms(encode_ns), "frame_write_ms": percentiles_ms(write_ns),
        "file_bytes": size, "file_mb_per_s_of_capture": round(size / 1e6 / duration_s, 1),
        "raw_mb_per_s": round(W * H * 3 * FPS / 1e6, 1), "read_back_s": round(read_s, 2),
        "previous_format_json_base64_encode_ms": round(_json_encode_ms(sample), 2),
        "end_to_end_ms": stats.latency_ms.get("end_to_end", {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of capture (default 60)")
    ap.add_argument("--backend", default="onnxruntime", help="onnxruntime (default) or null")
    ap.add_argument("--compression", default="zstd", choices=["zstd", "lz4", "none"], help="chunk compression")
    ap.add_argument("--out", default="bench/results/record_720p.json")
    ap.add_argument("--keep", metavar="FILE", help="keep the recording here (default: a temporary file, removed)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(a.keep) if a.keep else Path(d) / "720p.mcap"
        result = run(a.duration, path, a.backend, a.compression)
        result["writer_alone_fps"] = writer_capacity_fps(Path(d) / "capacity.mcap", a.compression)
    report = {"machine": machine_facts(), "note": "2 shared CPU cores, loaded by other work while measured",
              "result": result}
    save_json(report, a.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
