"""ROS 2 bags in: CDR images, strings and audio, rosbag2 folders with split files, clear refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import TEST_DATA
from mcap_ros2._dynamic import serialize_dynamic
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from edgefusion.cli import main
from edgefusion.errors import InputError
from edgefusion.logs import LogMessage, decode
from edgefusion.logs.bag import open_log
from edgefusion.samples import AudioChunk, Command, Frame
from edgefusion.sources.replay import ReplaySource

TS = get_typestore(Stores.ROS2_HUMBLE)
T0 = 1_700_000_000 * 10**9
PERIOD = 33_333_333
COMMAND = "turn on the lights"


def _write_bag(path, frames: range, command_at: int | None = None) -> None:
    """A rosbag2 folder (MCAP storage) with an rgb8 camera topic and a command topic, as rosbags writes it."""
    t = TS.types
    header, stamp, image, string = (t["std_msgs/msg/Header"], t["builtin_interfaces/msg/Time"],
                                    t["sensor_msgs/msg/Image"], t["std_msgs/msg/String"])
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        cam = w.add_connection("/cam/image_raw", image.__msgtype__, typestore=TS)
        cmd = w.add_connection("/cmd", string.__msgtype__, typestore=TS)
        for i in frames:
            ts = T0 + i * PERIOD
            rgb = np.zeros((120, 160, 3), np.uint8)
            rgb[..., 0], rgb[..., 2] = 200, i  # red high, blue counts frames: decoding must swap to BGR
            msg = image(header=header(stamp=stamp(sec=ts // 10**9, nanosec=ts % 10**9), frame_id="cam"),
                        height=120, width=160, encoding="rgb8", is_bigendian=0, step=480, data=rgb.reshape(-1))
            w.write(cam, ts, TS.serialize_cdr(msg, image.__msgtype__))
            if i == command_at:
                w.write(cmd, ts + 1, TS.serialize_cdr(string(data=COMMAND), string.__msgtype__))


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("ros") / "bag"
    _write_bag(path, range(30), command_at=3)
    return path


def _frames(path, mapping):
    with ReplaySource(path, mapping=mapping) as src:
        return list(src)


def test_image_and_string_topics_replay_through_map_and_commands_reach_the_results(bag, tmp_path):
    out = tmp_path / "results.jsonl"
    assert main(["replay", str(bag), "--map", "camera=/cam/image_raw,text=/cmd", "--model", "smart_home",
                 "--threads", "1", "--out", f"jsonl:{out}"]) == 0
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["t_ns"] for r in results] == [T0 + i * PERIOD for i in range(30)]  # the header stamps
    assert results[2]["command"] is None and results[4]["command"] == COMMAND
    assert results[4]["text_status"] == "command"


def test_cdr_images_are_converted_to_bgr(bag):
    samples = _frames(bag, {"camera": "/cam/image_raw", "text": "/cmd"})
    frames = [s for s in samples if isinstance(s, Frame)]
    assert len(frames) == 30 and frames[7].image.shape == (120, 160, 3)
    assert frames[7].image[0, 0].tolist() == [7, 0, 200]
    assert [s.text for s in samples if isinstance(s, Command)] == [COMMAND]


def test_a_split_rosbag2_folder_replays_its_files_in_order(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _write_bag(a, range(0, 12))
    _write_bag(b, range(12, 25), command_at=20)
    shutil.move(str(b / "b.mcap"), str(a / "b.mcap"))
    meta = yaml.safe_load((a / "metadata.yaml").read_text())
    meta["rosbag2_bagfile_information"]["relative_file_paths"] = ["a.mcap", "b.mcap"]
    (a / "metadata.yaml").write_text(yaml.safe_dump(meta))
    samples = _frames(a, {"camera": "/cam/image_raw", "text": "/cmd"})
    times = [s.t_ns for s in samples if isinstance(s, Frame)]
    assert times == [T0 + i * PERIOD for i in range(25)]
    assert main(["log", "info", str(a)]) == 0
    out = capsys.readouterr().out
    assert "26 messages" in out and "sensor_msgs/msg/Image" in out and "'files': 'a.mcap, b.mcap'" in out


def test_a_bag_folder_that_points_outside_or_is_not_mcap_is_refused(bag, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(bag, bad)
    meta = yaml.safe_load((bad / "metadata.yaml").read_text())
    meta["rosbag2_bagfile_information"]["relative_file_paths"] = ["../bag/bag.mcap"]
    (bad / "metadata.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(InputError, match="lies outside the bag's folder"):
        open_log(bad)
    meta["rosbag2_bagfile_information"]["storage_identifier"] = "sqlite3"
    (bad / "metadata.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(InputError, match="storage 'sqlite3' is not supported"):
        open_log(bad)


def test_a_cdr_topic_of_an_unsupported_type_is_refused_naming_its_type():
    p = subprocess.run([sys.executable, "-m", "edgefusion", "replay", str(TEST_DATA / "mcap" / "rosbag2" /
                        "cdr_test_0.mcap"), "--model", "smart_home", "--map", "camera=/test_topic"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "topic /test_topic (camera) has schema 'test_msgs/msg/BasicTypes' with message encoding 'cdr'" in p.stderr
    assert "sensor_msgs/msg/Image (cdr)" in p.stderr  # what would work


AUDIO_DATA = "uint8[] data"
AUDIO_STAMPED = """std_msgs/Header header
audio_common_msgs/Audio audio
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
================================================================================
MSG: audio_common_msgs/Audio
audio_common_msgs/AudioInfo info
audio_common_msgs/AudioData audio_data
================================================================================
MSG: audio_common_msgs/AudioInfo
int32 format
int32 channels
int32 rate
int32 chunk
================================================================================
MSG: audio_common_msgs/AudioData
float32[] float32_data
int32[] int32_data
int16[] int16_data
int8[] int8_data
uint8[] uint8_data
"""


def _cdr(name: str, definition: str, msg: dict) -> LogMessage:
    data = serialize_dynamic(name, definition)[name](msg)
    return LogMessage("/mic", name, "cdr", 5, 5, data, offset=99, schema_data=definition.encode())


def test_audio_common_messages_decode():
    pcm = (np.arange(320, dtype="<i2") * 50).tobytes()
    chunk = decode(_cdr("audio_common_msgs/msg/AudioData", AUDIO_DATA, {"data": pcm}), "audio")
    assert isinstance(chunk, AudioChunk) and chunk.sample_rate == 16000 and chunk.samples.size == 320
    assert chunk.samples[10] == pytest.approx(500 / 32768)
    stereo = np.stack([np.full(160, 1000, np.int16), np.full(160, 3000, np.int16)], 1).reshape(-1).tolist()
    msg = {"header": {"stamp": {"sec": 3, "nanosec": 5}, "frame_id": "mic"},
           "audio": {"info": {"format": 8, "channels": 2, "rate": 48000, "chunk": 160},
                     "audio_data": {"float32_data": [], "int32_data": [], "int16_data": stereo, "int8_data": [],
                                    "uint8_data": b""}}}
    chunk = decode(_cdr("audio_common_msgs/msg/AudioStamped", AUDIO_STAMPED, msg), "audio")
    assert isinstance(chunk, AudioChunk) and chunk.t_ns == 3 * 10**9 + 5 and chunk.sample_rate == 48000
    assert chunk.samples.size == 160 and chunk.samples[0] == pytest.approx(2000 / 32768)


def test_a_torn_cdr_message_is_one_line_with_its_offset():
    m = _cdr("audio_common_msgs/msg/AudioData", AUDIO_DATA, {"data": b"\x00\x01" * 8})
    torn = LogMessage(m.topic, m.schema, m.encoding, 5, 5, m.data[:6] + b"\xff\xff\xff\x7f", offset=99,
                      schema_data=m.schema_data)
    where = r"^/mic message at log time 5 ns \(record at byte 99\): "
    with pytest.raises(InputError, match=where + "its data field is torn"):
        decode(torn, "audio")
    short = LogMessage(m.topic, m.schema, m.encoding, 5, 5, m.data[:5], offset=99, schema_data=m.schema_data)
    with pytest.raises(InputError, match=r"\(record at byte 99\): not a CDR audio_common_msgs/msg/AudioData"):
        decode(short, "audio")


def test_without_a_camera_topic_the_hint_names_a_mapping_that_works(bag):
    from edgefusion.errors import SourceError

    with pytest.raises(SourceError, match=r"Use --map camera=/cam/image_raw,text=/cmd$"):
        ReplaySource(bag).open()
    with pytest.raises(SourceError, match="none of them is a camera type EdgeFusion decodes"):
        ReplaySource(TEST_DATA / "mcap" / "rosbag2" / "talker.mcap").open()
