"""Foxglove-native recordings: protobuf sensor channels, complete JSON schemas, /log, the wall clock, old logs."""

from __future__ import annotations

import json
import logging
import time

import jsonschema
import numpy as np
import pytest
from conftest import TEST_DATA
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.Log_pb2 import Log
from foxglove_schemas_protobuf.RawAudio_pb2 import RawAudio
from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
from google.protobuf import descriptor_pb2
from mcap.reader import make_reader

from edgefusion import load_package
from edgefusion.cli import main
from edgefusion.errors import InputError
from edgefusion.logs import LogMessage, LogReader, LogWriter, decode
from edgefusion.logs.recorder import Recorder
from edgefusion.samples import AudioChunk, Frame

OLD_LOG = TEST_DATA / "mcap" / "json_v1" / "smart_home_1s.mcap"
PROTO = {"foxglove.RawImage": RawImage, "foxglove.CompressedImage": CompressedImage, "foxglove.RawAudio": RawAudio,
         "foxglove.Log": Log}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    d = tmp_path_factory.mktemp("fox")
    synth = ["synth", "--scenario", "smart_home", "--duration", "2", "--seed", "4", "--out", str(d / "s.mcap")]
    assert main(synth) == 0
    assert main(["replay", str(d / "s.mcap"), "--record", str(d / "r.mcap"), "--threads", "1"]) == 0
    return d / "r.mcap"


def _messages(path):
    with open(path, "rb") as f:
        yield from make_reader(f).iter_messages()


def test_sensor_channels_are_protobuf_with_the_official_schemas(recorded):
    seen: dict[str, int] = {}
    for schema, channel, message in _messages(recorded):
        if channel.topic not in ("/camera", "/audio"):
            continue
        assert schema.encoding == "protobuf" and channel.message_encoding == "protobuf"
        fds = descriptor_pb2.FileDescriptorSet.FromString(schema.data)
        assert schema.name.split(".")[1] in {m.name for f in fds.file for m in f.message_type}
        msg = PROTO[schema.name].FromString(message.data)
        assert msg.timestamp.ToNanoseconds() == message.publish_time
        if schema.name == "foxglove.RawImage":
            assert (msg.encoding, msg.step, len(msg.data)) == ("bgr8", msg.width * 3, msg.width * msg.height * 3)
        else:
            assert msg.format == "pcm-s16" and msg.sample_rate == 16000 and len(msg.data) > 0
        seen[schema.name] = seen.get(schema.name, 0) + 1
    assert seen == {"foxglove.RawImage": 60, "foxglove.RawAudio": 59}


def test_json_channels_have_complete_schemas(recorded):
    pkg = load_package("smart_home")
    labels = {o.kind: list(o.labels) for o in pkg.manifest.outputs}
    checked = set()
    for schema, channel, message in _messages(recorded):
        if channel.message_encoding != "json":
            continue
        s = json.loads(schema.data)
        msg = json.loads(message.data)
        jsonschema.validate(msg, s)
        assert set(msg) <= set(s["properties"]), set(msg) - set(s["properties"])  # every field is declared
        assert set(s["required"]) <= set(msg)
        if schema.name == "edgefusion.Result":
            assert {"action_score", "action_scores", "command", "model", "raw_action", "t_ns"} <= set(s["required"])
            assert list(s["properties"]["scores"]["properties"]) == labels["multilabel_logits"]
            assert list(s["properties"]["action_scores"]["properties"]) == labels["class_logits"]
            assert set(msg["scores"]) == set(labels["multilabel_logits"])
        checked.add(schema.name)
    assert checked == {"edgefusion.Result", "edgefusion.Truth", "edgefusion.Label", "edgefusion.Command"}


def test_a_log_of_the_previous_all_json_format_still_replays_and_matches(tmp_path, capsys):
    # The old log's results came from the package of its day (since retrained), so they are not the
    # reference here: its JSON inputs replay in full, and a recording of that replay (new format)
    # replays to the same results.
    with LogReader(OLD_LOG) as r:
        assert {c["topic"]: c["message_encoding"] for c in r.info().channels}["/camera"] == "json"
    again = tmp_path / "again.mcap"
    assert main(["replay", str(OLD_LOG), "--threads", "1", "--record", str(again)]) == 0
    assert "replayed" in capsys.readouterr().err
    with LogReader(again) as r:
        assert {c["topic"]: c["message_encoding"] for c in r.info().channels}["/camera"] == "protobuf"
    assert main(["replay", str(again), "--check", "--threads", "1"]) == 0
    assert "against recorded results: MATCH: 30 of 30 compared, 0 missing" in capsys.readouterr().out


def test_the_new_format_replays_and_matches(recorded, capsys):
    assert main(["replay", str(recorded), "--check", "--threads", "1"]) == 0
    assert "against recorded results: MATCH: 60 of 60 compared, 0 missing" in capsys.readouterr().out


def test_jpeg_frames_are_compressed_images(tmp_path):
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :, 1] = np.arange(64, dtype=np.uint8)[None, :] * 4  # smooth: JPEG keeps it within a few levels
    with LogWriter(tmp_path / "j.mcap", image_format="jpeg") as w:
        w.frame(Frame(t_ns=5, image=img), 5)
    with LogReader(tmp_path / "j.mcap") as r:
        (m,) = list(r.messages())
    assert (m.schema, m.encoding) == ("foxglove.CompressedImage", "protobuf")
    assert CompressedImage.FromString(m.data).format == "jpeg"
    f = decode(m)
    assert isinstance(f, Frame) and f.image.shape == img.shape and np.abs(f.image.astype(int) - img).mean() < 4


def test_log_records_go_to_log_on_the_sample_clock(tmp_path):
    rec = Recorder(LogWriter(tmp_path / "l.mcap"))
    rec.tap(Frame(t_ns=7_000_000, image=np.zeros((4, 4, 3), np.uint8)))
    rec.tap(AudioChunk(t_ns=9_000_000, samples=np.zeros(16, np.float32), sample_rate=16000))
    logging.getLogger("edgefusion.test").warning("camera %s is stale", "front")
    rec.close()
    with LogReader(tmp_path / "l.mcap") as r:
        logs = [m for m in r.messages(topics=["/log"])]
        clock = r.metadata()["clock"]
    assert len(logs) == 1 and (logs[0].schema, logs[0].encoding) == ("foxglove.Log", "protobuf")
    msg = Log.FromString(logs[0].data)
    assert (msg.message, msg.name, msg.level) == ("camera front is stale", "edgefusion.test", Log.WARNING)
    assert msg.timestamp.ToNanoseconds() == 9_000_000 == logs[0].log_time_ns  # the newest sample's time
    assert clock["wall_offset_ns"] == "0"


def test_a_live_recording_is_on_the_wall_clock_and_replays(tmp_path, capsys):
    out = tmp_path / "live.mcap"
    before = time.time_ns()
    assert main(["record", "--camera", "synth:smart_home", "--duration", "1.5", "--record", str(out),
                 "--image-format", "raw", "--backend", "null", "--compression", "lz4"]) == 0
    with open(out, "rb") as f:
        summary = make_reader(f).get_summary()
        assert summary is not None and {c.compression for c in summary.chunk_indexes} == {"lz4"}
    with LogReader(out) as r:
        clock = r.metadata()["clock"]
        first = min(m.publish_time_ns for m in r.messages(topics=["/camera"]))
    offset = int(clock["wall_offset_ns"])
    assert offset > 0 and before - 10**9 <= first <= time.time_ns()  # Foxglove shows today, not 1970
    assert clock["capture_start_utc"].startswith(time.strftime("%Y-", time.gmtime()))
    capsys.readouterr()
    assert main(["replay", str(out), "--check", "--backend", "null"]) == 0
    assert "MATCH" in capsys.readouterr().out


def test_a_repeatable_recording_keeps_the_sample_clock_and_no_log_records(recorded):
    with LogReader(recorded) as r:
        assert r.metadata()["clock"]["wall_offset_ns"] == "0"
        assert "/log" not in {c["topic"] for c in r.info().channels}
        assert min(m.log_time_ns for m in r.messages()) == 0


def test_seconds_of_720p_record_and_every_message_decodes_with_the_official_classes(tmp_path):
    """The CI-sized version of bench/record_720p.py (which measures drops and timings over 60 s in real time)."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)
    path = tmp_path / "720p.mcap"
    rec = Recorder(LogWriter(path, image_format="raw"), lossless=True, wall_clock=True)
    n = 45  # 1.5 s at 30 fps
    t0 = time.monotonic_ns()
    sent = []
    for i in range(n):
        img = np.ascontiguousarray(np.roll(np.kron(base, np.ones((8, 8, 1), np.uint8)), i, axis=1))
        f = Frame(t_ns=t0 + i * 33_333_333, image=img)
        sent.append(img[::97, ::101].copy())
        rec.tap(f)
        rec.tap(AudioChunk(t_ns=f.t_ns, samples=rng.standard_normal(533).astype(np.float32) * 0.1, sample_rate=16000))
    logging.getLogger("edgefusion.test").warning("720p test")
    rec.close()
    counts: dict[str, int] = {}
    frames = 0
    for schema, channel, message in _messages(path):
        assert schema is not None
        if channel.message_encoding == "protobuf":
            msg = PROTO[schema.name].FromString(message.data)
            if schema.name == "foxglove.RawImage":
                assert (msg.width, msg.height, msg.encoding, msg.step) == (1280, 720, "bgr8", 3840)
                got = np.frombuffer(msg.data, np.uint8).reshape(720, 1280, 3)
                assert np.array_equal(got[::97, ::101], sent[frames])  # bit-exact, in order
                frames += 1
        else:
            json.loads(message.data)
        counts[schema.name] = counts.get(schema.name, 0) + 1
    assert counts == {"foxglove.RawImage": n, "foxglove.RawAudio": n, "foxglove.Log": 1}
    assert rec.drops.snapshot() == {}


@pytest.mark.parametrize(("schema", "data", "problem"), [
    ("foxglove.RawImage", b"\xff\xff\xff", "not a protobuf foxglove.RawImage"),
    ("foxglove.RawImage", RawImage(width=0, height=2, encoding="bgr8").SerializeToString(), "width and height"),
    ("foxglove.RawImage", RawImage(width=99999, height=2, encoding="bgr8").SerializeToString(), "width and height"),
    ("foxglove.RawImage", RawImage(width=4, height=2, encoding="bgr8", step=12, data=b"\0" * 5).SerializeToString(),
     "needs 24 bytes, data has 5"),
    ("foxglove.RawImage", RawImage(width=4, height=2, encoding="yuv422", data=b"").SerializeToString(),
     "image encoding 'yuv422' is not supported"),
    ("foxglove.CompressedImage", CompressedImage(format="jpeg", data=b"nope").SerializeToString(),
     "could not be decoded"),
    ("foxglove.RawAudio", RawAudio(format="pcm-s16", sample_rate=16000, number_of_channels=2,
                                   data=b"\0" * 6).SerializeToString(), "not a whole number of 2-channel"),
    ("foxglove.RawAudio", RawAudio(format="pcm-f32", sample_rate=16000, data=b"").SerializeToString(),
     "audio format 'pcm-f32' is not supported"),
    ("foxglove.RawAudio", RawAudio(format="pcm-s16", sample_rate=0, data=b"").SerializeToString(), "sample_rate"),
])
def test_a_bad_protobuf_message_is_one_line_with_its_offset(schema, data, problem):
    m = LogMessage("/x", schema, "protobuf", 5, 5, data, offset=1234)
    with pytest.raises(InputError, match=r"^/x message at log time 5 ns \(record at byte 1234\): ") as e:
        decode(m)
    assert problem in str(e.value)


def test_a_negative_protobuf_timestamp_is_refused():
    img = RawImage(width=1, height=1, encoding="bgr8", data=b"\0\0\0")
    img.timestamp.seconds = -5
    with pytest.raises(InputError, match="is not a time after 1970"):
        decode(LogMessage("/x", "foxglove.RawImage", "protobuf", 5, 5, img.SerializeToString(), offset=1))


class _SlowFrames(LogWriter):
    def frame(self, *a, **k):
        time.sleep(0.02)  # a disk that takes 20 ms per frame
        super().frame(*a, **k)


def test_a_live_recorder_bounds_the_bytes_it_buffers(tmp_path):
    frame_bytes = 720 * 1280 * 3
    rec = Recorder(_SlowFrames(tmp_path / "b.mcap"), max_queued_bytes=4 * frame_bytes)
    img = np.zeros((720, 1280, 3), np.uint8)
    for i in range(40):
        rec.tap(Frame(t_ns=i * 33_333_333, image=img))
        assert rec._queued_bytes <= 4 * frame_bytes
    rec.close()
    dropped = rec.drops.snapshot().get("recorder/queue_full", 0)
    assert dropped >= 30 and rec.written == 40 - dropped and rec._queued_bytes == 0
