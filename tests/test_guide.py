"""docs/bring-your-model.md: every example runs, from the repository root."""

import doctest
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_bring_your_model_guide_runs(monkeypatch):
    pytest.importorskip("silero_vad")
    monkeypatch.chdir(REPO)
    result = doctest.testfile(str(REPO / "docs" / "bring-your-model.md"), module_relative=False,
                              optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 20 and result.failed == 0
