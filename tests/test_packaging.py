"""The one package writer: a package is replaced or created whole, or left as it was."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from edgefusion.errors import IntegrityError, PackageError
from edgefusion.package import BUILTIN_DIR, MANIFEST, load_package
from edgefusion.packaging import file_record, staged_package

SRC = BUILTIN_DIR / "smart_home"


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _fill_new(st, with_manifest: dict) -> None:
    for name in ("model.fp32.onnx", "checkpoint.pt"):
        shutil.copyfile(SRC / name, st.path / name)
    st.manifest.update(with_manifest)
    st.manifest["artifacts"] = {"fp32": file_record(st.path, "model.fp32.onnx", format="onnx")}
    st.manifest["sources"] = {"checkpoint": file_record(st.path, "checkpoint.pt", format="torch")}


def test_a_new_package_appears_whole_with_its_parents(tmp_path):
    manifest = json.loads((SRC / MANIFEST).read_text())
    out = tmp_path / "a" / "b" / "pkg"
    with staged_package(out, new=True) as st:
        assert st.manifest == {} and list(st.path.iterdir()) == []
        _fill_new(st, manifest)
        assert not out.exists()  # nothing is visible before the commit
        st.commit()
    pkg = load_package(out)
    assert pkg.manifest.raw["artifacts"]["fp32"]["sha256"] == manifest["artifacts"]["fp32"]["sha256"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["pkg"]


def test_a_failed_new_package_leaves_nothing_not_even_its_parents(tmp_path):
    with pytest.raises(RuntimeError), staged_package(tmp_path / "a" / "b" / "pkg", new=True) as st:
        (st.path / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_a_new_package_replaces_the_old_directory_whole(tmp_path):
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with staged_package(out, new=True) as st:
        _fill_new(st, json.loads((SRC / MANIFEST).read_text()))
        st.commit()
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_a_commit_that_fails_verification_leaves_the_package_as_it_was(tmp_path):
    pkg = tmp_path / "pkg"
    shutil.copytree(SRC, pkg)
    before = _digests(pkg)
    with pytest.raises(IntegrityError), staged_package(pkg) as st:
        (st.path / "note.txt").write_text("hi")
        st.manifest["sources"]["note"] = {**file_record(st.path, "note.txt"), "sha256": "0" * 64}
        st.commit()
    assert _digests(pkg) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_editing_needs_an_existing_package(tmp_path):
    with pytest.raises(PackageError, match="is not a model package"), staged_package(tmp_path):
        pass
