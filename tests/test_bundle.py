"""The manifest is a closed, sealed format: malformed, edited or foreign-pointing manifests are refused with
BundleError."""

import json
import shutil

import numpy as np
import pytest

from edgecls.bundle import MANIFEST, PUBLIC_KEY_ENV, Bundle, seal
from edgecls.errors import BundleError, IntegrityError, SignatureError
from edgecls.runtime import Classifier


@pytest.fixture()
def copy(bundle_dir, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dst)
    return dst


def _edit(root, change, reseal=False):
    manifest = json.loads((root / MANIFEST).read_text())
    change(manifest)
    (root / MANIFEST).write_text(json.dumps(seal(manifest) if reseal else manifest))


def _point_outside(m, root, absolute):
    target = root.parent / "other.onnx"
    shutil.copy(root / "model.onnx", target)
    entry = m["files"].pop("model.onnx")
    m["files"][str(target) if absolute else "../other.onnx"] = entry


@pytest.mark.parametrize("absolute", [False, True])
def test_a_file_entry_outside_the_bundle_is_refused_even_with_its_right_hash(copy, absolute):
    _edit(copy, lambda m: _point_outside(m, copy, absolute), reseal=True)
    with pytest.raises(BundleError, match="not a plain file name inside the bundle"):
        Bundle.open(copy)


def test_an_absolute_path_with_a_wrong_hash_does_not_reveal_the_host_file(copy):
    def change(m):
        m["files"]["/etc/hostname"] = {**m["files"].pop("model.onnx"), "bytes": 1}

    _edit(copy, change, reseal=True)
    with pytest.raises(BundleError) as err:
        Bundle.open(copy)
    assert "bytes" not in str(err.value) and "plain file name" in str(err.value)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m["files"]["model.onnx"].pop("sha256"), r"lacks \['sha256'\]"),
        (lambda m: m["files"]["model.onnx"].update(origin="x"), r"unknown fields \['origin'\]"),
        (lambda m: m.update(format_version="2"), "format_version must be int"),
        (lambda m: m.update(files=list(m["files"])), "files must be an object"),
        (lambda m: m.update(source=5), "source must be str"),
        (lambda m: m["input"].update(color="yuv"), r"input.color must be one of \['bgr', 'rgb'\]"),
        (lambda m: m["preprocess"]["normalization"].update(mean=[1.0, float("nan"), 1.0]), "finite number"),
        (lambda m: m["preprocess"]["normalization"].pop("mean"), r"lacks \['mean'\]"),
        (lambda m: m["input"].update(size=True), "input.size must be int"),
        (lambda m: m["preprocess"]["normalization"].update(std=[0.0, 1.0, 1.0]), "std must be > 0"),
        (lambda m: m.update(classes=["cat", "cat"]), "distinct names"),
        (lambda m: m["input"].update(channels=2), r"input.channels must be one of \[1, 3\]"),
        (lambda m: m.update(surprise=1), r"unknown fields \['surprise'\]"),
    ],
)
def test_malformed_manifests_raise_bundle_errors_that_name_the_field(copy, change, message):
    _edit(copy, change)  # the schema is checked before the digest: these fail the same re-sealed or not
    with pytest.raises(BundleError, match=message):
        Bundle.open(copy)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m["classes"].__setitem__(9, "airplane2"),
        lambda m: m["preprocess"]["normalization"]["mean"].__setitem__(0, 0.0),
        lambda m: m["classes"].pop(),
        lambda m: m["files"]["model.onnx"].update(precision="int8"),
    ],
)
def test_edits_to_the_manifest_itself_are_caught_by_its_digest(copy, change):
    _edit(copy, change)
    with pytest.raises(IntegrityError, match="does not match its digest"):
        Classifier.load(copy)


def test_a_resealed_manifest_that_drops_a_class_fails_with_a_bundle_error_not_index_error(copy):
    _edit(copy, lambda m: m["classes"].pop(), reseal=True)
    clf = Classifier.load(copy, backend="onnxruntime", precision="fp32")
    with pytest.raises(BundleError, match="10 scores per image but the manifest names 9 classes"):
        clf.predict(np.zeros((32, 32, 3), np.uint8))


def test_old_unsealed_format_asks_for_a_reexport(copy):
    def change(m):
        m.pop("digest")
        m["format_version"] = 1

    _edit(copy, change)
    with pytest.raises(BundleError, match="format 1 .*re-export"):
        Bundle.open(copy)


def test_signed_bundles_load_only_with_the_trusting_key(copy, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from edgecls.bundle import sign_bundle
    from edgecls.cli import app
    from edgecls.signing import generate_key

    key, pub = generate_key(tmp_path / "fleet.key")
    _, other_pub = generate_key(tmp_path / "other.key")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(SignatureError, match="not signed"):
        Classifier.load(copy, public_key=pub)
    signature = sign_bundle(copy, key)
    assert Classifier.load(copy, public_key=pub).predict(np.zeros((32, 32, 3), np.uint8)).label
    with pytest.raises(SignatureError, match="does not verify"):
        Classifier.load(copy, public_key=other_pub)
    monkeypatch.setenv(PUBLIC_KEY_ENV, str(other_pub))
    with pytest.raises(SignatureError):
        Classifier.load(copy)
    monkeypatch.setenv(PUBLIC_KEY_ENV, str(pub))
    result = CliRunner().invoke(app, ["info", str(copy)])
    assert result.exit_code == 0, result.output
    assert f"signed by key {signature['key_id']} (verified)" in result.output and "sha256:" in result.output

    def relabel(m):  # re-sealed after the edit, as an attacker would: the digest is fine, the signature is not
        m["classes"][0], m["classes"][9] = m["classes"][9], m["classes"][0]
        m["signature"] = signature

    _edit(copy, relabel)
    manifest = json.loads((copy / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps({**seal(manifest), "signature": signature}))
    with pytest.raises(SignatureError, match="does not verify"):
        Classifier.load(copy)
    with pytest.raises(Exception, match="never overwrites"):
        generate_key(key)


def test_a_private_key_is_unreadable_by_others_from_its_first_byte(tmp_path, monkeypatch):
    """Another user polling the directory must never find the key readable, not even while it is being written."""
    import os

    from edgecls import fileio
    from edgecls.signing import generate_key

    modes = []
    real_write = fileio.atomic_write

    def watching(path, write, private=False):
        return real_write(path, lambda f: (modes.append(os.stat(f.name).st_mode & 0o777), write(f)), private)

    monkeypatch.setattr(fileio, "atomic_write", watching)
    key, pub = generate_key(tmp_path / "fleet.key")
    assert modes[0] == 0o600 and key.stat().st_mode & 0o777 == 0o600
    assert pub.stat().st_mode & 0o044  # the public key stays readable


def test_a_model_swapped_between_check_and_load_never_runs(copy, monkeypatch):
    """The attack: replace the file right after the digest check opened it. Whatever the loader runs must be the
    checked bytes, so the answers stay the original model's."""
    import builtins
    import os

    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(copy / "model.onnx"))
    for init in model.graph.initializer:  # every weight negated: a different model with the same interface
        init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    tampered = copy.parent / "tampered.onnx"
    onnx.save(model, str(tampered))
    frame = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
    honest = Classifier.load(copy, precision="fp32").predict(frame).logits

    target, real_open, real_os_open, swapped = str(copy / "model.onnx"), builtins.open, os.open, []

    def swap_after_first_open(opener):
        def wrapped(path, *args, **kwargs):
            handle = opener(path, *args, **kwargs)
            if str(path) == target and not swapped:
                swapped.append(path)
                os.replace(tampered, target)  # the open handle keeps the checked inode; a second open gets this one
            return handle

        return wrapped

    monkeypatch.setattr(builtins, "open", swap_after_first_open(real_open))
    monkeypatch.setattr(os, "open", swap_after_first_open(real_os_open))
    logits = Classifier.load(copy, precision="fp32").predict(frame).logits
    monkeypatch.undo()
    assert swapped, "the loader never opened model.onnx through Python: the swap did not happen"
    np.testing.assert_allclose(logits, honest, rtol=1e-5, atol=1e-5)
    with pytest.raises(IntegrityError):  # the swapped-in file is on disk now, and the next load refuses it
        Classifier.load(copy, precision="fp32")


def test_a_manifest_that_is_not_json_is_refused_by_name(copy):
    (copy / MANIFEST).write_text('{"model": "lenet5", ')
    with pytest.raises(BundleError, match="edgecls.json is not valid JSON"):
        Bundle.open(copy)


def test_a_model_file_replaced_by_a_symlink_is_refused_even_to_its_own_bytes(copy, tmp_path):
    """A link can be retargeted between the check and the load; a bundle's files must be the files themselves."""
    real = tmp_path / "elsewhere.onnx"
    shutil.move(copy / "model.onnx", real)
    (copy / "model.onnx").symlink_to(real)
    with pytest.raises(IntegrityError, match="model.onnx"):
        Classifier.load(copy, backend="onnxruntime", precision="fp32", device="cpu")


def test_the_manifest_schema_in_docs_is_written_from_the_records():
    """docs/manifest.schema.json is what other tools validate against: it must say what `Bundle.open` checks."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    from write_manifest_schema import SCHEMA_FILE, schema_text

    assert SCHEMA_FILE.read_text() == schema_text(), "run `python tools/write_manifest_schema.py` after a format change"


def test_a_real_manifest_meets_the_schema_and_an_edited_one_does_not(bundle_dir):
    jsonschema = pytest.importorskip("jsonschema")
    from edgecls.manifest import manifest_schema

    schema, manifest = manifest_schema(), json.loads((bundle_dir / MANIFEST).read_text())
    jsonschema.validate(manifest, schema)
    jsonschema.validate({**manifest, "accuracy": None, "calibration": None}, schema)  # exported without data
    for change in (lambda m: m.update(surprise=1), lambda m: m["input"].update(channels=2), lambda m: m.pop("files")):
        edited = json.loads(json.dumps(manifest))
        change(edited)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(edited, schema)


def test_a_fifo_in_place_of_a_bundle_file_is_refused_at_once(copy):
    """A FIFO under a listed name blocked Classifier.load and `edgecls info` forever in open(); both refuse it in time
    (each runs in a child with a deadline, so the old behaviour fails here instead of hanging the suite)."""
    import os
    import subprocess
    import sys

    (copy / "model.int8.onnx").unlink()
    os.mkfifo(copy / "model.int8.onnx")
    load = f"from edgecls.runtime import Classifier; Classifier.load({str(copy)!r}, precision='int8')"
    for command in ([sys.executable, "-c", load], [sys.executable, "-m", "edgecls", "info", str(copy)]):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{command[-2:]} blocked on the FIFO")
        assert result.returncode != 0 and "not a regular file" in result.stderr, result.stderr[-500:]


@pytest.mark.parametrize(("size", "channels"), [(28, 3), (32, 1)])
def test_a_manifest_whose_geometry_disagrees_with_its_graphs_is_refused_at_load_and_by_info(copy, size, channels):
    """It loaded, then every predict raised ONNX Runtime's untyped InvalidArgument, while `info` said verified."""
    from typer.testing import CliRunner

    from edgecls.cli import app

    def change(manifest):
        manifest["input"].update(size=size, channels=channels, shape=[-1, channels, size, size])
        for key in ("mean", "std"):
            values = manifest["preprocess"]["normalization"][key]
            manifest["preprocess"]["normalization"][key] = values[:channels]

    _edit(copy, change, reseal=True)
    with pytest.raises(BundleError, match="manifest declares N×"):
        Classifier.load(copy, backend="onnxruntime", precision="fp32", device="cpu")
    result = CliRunner().invoke(app, ["info", str(copy)])
    assert result.exit_code != 0 and "manifest declares" in str(result.exception or result.output)
