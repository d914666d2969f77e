"""The runtime must work on devices that carry no torch."""

import subprocess
import sys

BLOCK_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, NoTorch())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, timeout=300)


def test_demo_path_runs_with_torch_unavailable():
    p = _run(
        "from edgefusion.cli import main\n"
        "rc = main(['demo', '--duration', '3', '--threads', '1'])\n"
        "assert 'torch' not in sys.modules\n"
        "sys.exit(rc)\n"
    )
    assert p.returncode == 0, p.stderr
    assert "action accuracy" in p.stdout and "inference" in p.stdout


def test_toolchain_commands_say_which_extra_to_install():
    p = _run("from edgefusion.cli import main\nsys.exit(main(['train', '--scenario', 'driving']))\n")
    assert p.returncode == 2
    assert "pip install 'edgefusion[train]'" in p.stderr
