import numpy as np
import pytest

from edgefusion import AudioChunk, Command, Frame, FusionWindow, SampleError
from edgefusion.samples import MAX_COMMAND_CHARS


def test_command_is_normalized():
    assert Command(t_ns=0, text="  turn   on the lights ").text == "turn on the lights"


def test_empty_command_is_refused_with_a_clear_message():
    with pytest.raises(SampleError, match="command is empty; expected a text such as"):
        Command(t_ns=0, text="   ")


def test_10kb_command_is_refused_with_the_limit():
    with pytest.raises(SampleError, match=rf"command is 10240 characters long; the limit is {MAX_COMMAND_CHARS}"):
        Command(t_ns=0, text="a" * 10240)


def test_control_characters_are_refused_and_named():
    with pytest.raises(SampleError, match=r"control characters \(U\+0007, U\+001B\)"):
        Command(t_ns=0, text="lock\x1b[31m the door\x07")


def test_frame_validation_gives_expected_and_actual():
    with pytest.raises(SampleError, match=r"BGR uint8 of shape \(H, W, 3\); got dtype float32 and shape \(4, 4\)"):
        Frame(t_ns=0, image=np.zeros((4, 4), np.float32))


def test_time_must_be_integer_ns():
    with pytest.raises(SampleError, match="integer number of nanoseconds"):
        Frame(t_ns=1.5, image=np.zeros((2, 2, 3), np.uint8))  # type: ignore[arg-type]


def test_audio_chunk_end_time():
    c = AudioChunk(t_ns=1_000, samples=np.zeros(16000, np.float32), sample_rate=16000)
    assert c.end_ns == 1_000 + 1_000_000_000
    with pytest.raises(SampleError, match="mono float32"):
        AudioChunk(t_ns=0, samples=np.zeros((2, 5), np.float32), sample_rate=16000)


def test_window_reports_missing_modalities():
    w = FusionWindow(t_ns=0, image=np.zeros((2, 2, 3), np.uint8), audio=None, command="hi", missing=("text",))
    assert w.missing == ("audio", "text")
