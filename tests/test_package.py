import json
import shutil

import pytest

from edgefusion import IntegrityError, MissingArtifactError, PackageError, load_package
from edgefusion.errors import ConfigError
from edgefusion.package import builtin_packages


@pytest.mark.parametrize("name", ["smart_home", "driving"])
def test_builtin_packages_load_and_verify(name):
    pkg = load_package(name)
    assert pkg.manifest.raw["format_version"] == 1
    assert [i.name for i in pkg.inputs] == ["image", "audio", "tokens", "token_mask", "present"]
    assert pkg.inputs[0].shape[0] == "batch"
    assert pkg.artifact("fp32").is_file()
    par = pkg.manifest.raw["parity"]
    assert par["max_abs_diff"] <= 1e-4 and par["argmax_agreement"] == 1.0 and par["samples"] >= 256
    prov = pkg.manifest.raw["provenance"]
    for key in ("command", "seed", "git_revision", "data_sha256", "metrics"):
        assert prov[key] is not None, key


def test_builtin_list():
    assert builtin_packages() == ["driving", "smart_home"]


def test_hash_mismatch_is_refused_with_what_to_do(pkg_copy):
    onnx_file = pkg_copy / "model.fp32.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-1] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model.fp32.onnx has sha256 .*the manifest expects .*Restore it or"):
        load_package(pkg_copy)


def test_missing_file_is_named(pkg_copy):
    (pkg_copy / "model.fp32.onnx").unlink()
    with pytest.raises(MissingArtifactError, match=r"the fp32 artifact .*model.fp32.onnx is missing"):
        load_package(pkg_copy)


def test_not_a_package(tmp_path):
    with pytest.raises(PackageError, match=r"is not a model package: it has no manifest\.json"):
        load_package(tmp_path)
    with pytest.raises(PackageError, match="does not exist"):
        load_package(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"unknown model package 'smarthome'; did you mean 'smart_home'\?"):
        load_package("smarthome")


def test_unsupported_format_version(pkg_copy):
    m = json.loads((pkg_copy / "manifest.json").read_text())
    m["format_version"] = 99
    (pkg_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match="format_version 99 is not supported; expected 1"):
        load_package(pkg_copy)


def test_unknown_variant(pkg_copy):
    pkg = load_package(pkg_copy)
    with pytest.raises(ConfigError, match=r"unknown variant .* 'int9'"):
        pkg.artifact("int9")


def test_user_manifest_without_sources_loads(pkg_copy):
    """Bring-your-own model: a manifest naming only an ONNX file is enough."""
    m = json.loads((pkg_copy / "manifest.json").read_text())
    for key in ("sources", "provenance", "parity", "model", "engines"):
        m.pop(key)
    (pkg_copy / "checkpoint.pt").unlink()
    (pkg_copy / "manifest.json").write_text(json.dumps(m))
    shutil.rmtree(pkg_copy / "__pycache__", ignore_errors=True)
    assert load_package(pkg_copy).variants == ["fp32", "int8", "int8_trt"]
