"""A detector's boxes in a recording: foxglove.ImageAnnotations beside the camera, for Foxglove's Image panel."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("mcap")

from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations
from mcap.reader import make_reader
from model_kit import write_package
from test_detector import BOXES, DETS, SCORES, _detector, _image

from edgefusion.cli import main


def _messages(path, topic: str) -> list:
    with open(path, "rb") as f:
        reader = make_reader(f)
        return [(schema.name, m.log_time, m.data) for schema, channel, m in reader.iter_messages(topics=[topic])]


@pytest.fixture
def detector(tmp_path):
    return write_package(tmp_path / "det", _detector(BOXES, SCORES), _image(), [DETS], name="det")


def test_a_detector_stages_boxes_are_recorded_as_image_annotations_on_the_frames_times(detector, tmp_path):
    log, rec, again = tmp_path / "in.mcap", tmp_path / "rec.mcap", tmp_path / "again.mcap"
    assert main(["synth", "--scenario", "smart_home", "--duration", "1", "--out", str(log)]) == 0
    for out in (rec, again):
        assert main(["replay", str(log), "--model", "smart_home", "--threads", "1", "--record", str(out),
                     "--stage", f"det={detector},events"]) == 0
    assert rec.read_bytes() == again.read_bytes()  # still byte for byte
    boxes = _messages(rec, "/stages/det/boxes")
    frames = _messages(rec, "/camera")
    assert len(boxes) == len(frames) == 30 and {s for s, _, _ in boxes} == {"foxglove.ImageAnnotations"}
    first = ImageAnnotations.FromString(boxes[0][2])
    # the detector's known boxes: person 0.9 and car 0.7 and car 0.6 (NMS keeps another class's box)
    assert sorted(t.text for t in first.texts) == ["car 0.60", "car 0.70", "person 0.90"]
    assert all(len(p.points) == 4 for p in first.points)
    frame_times = [m[1] for m in frames]
    for _, _, data in boxes:  # each message carries its frame's time, which is how Foxglove pairs them
        assert ImageAnnotations.FromString(data).timestamp.ToNanoseconds() in frame_times
    assert main(["replay", str(rec), "--model", "smart_home", "--threads", "1", "--check",
                 "--stage", f"det={detector},events"]) == 0  # the new channel does not disturb a replay


def test_no_boxes_after_boxes_clears_them_once(tmp_path):
    from edgefusion.logs import LogWriter
    from edgefusion.samples import Result

    def result(seq: int, found: list) -> Result:
        return Result(t_ns=seq * 1000, seq=seq, action="none", action_score=1.0, scores={}, events=(),
                      model="m", stages={"det": {"events": [], "scores": {}, "outputs": {"boxes": found}}})

    person = [{"label": "person", "score": 0.9, "box": [1.0, 2.0, 3.0, 4.0]}]
    path = tmp_path / "r.mcap"
    with LogWriter(path) as w:
        for seq, found in enumerate(([], person, person, [], [], person)):
            w.result(result(seq, found), seq * 1000)
    got = [len(ImageAnnotations.FromString(d).points) for _, _, d in _messages(path, "/stages/det/boxes")]
    assert got == [1, 1, 0, 1]  # nothing before the first box, one clearing message after the last
    assert np.all(np.diff([t for _, t, _ in _messages(path, "/stages/det/boxes")]) > 0)
