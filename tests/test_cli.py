import dataclasses
import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgecls.cli import app

runner = CliRunner()


def test_help_is_a_tour():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "models",
        "train",
        "eval",
        "export",
        "build-engine",
        "camera",
        "bench",
        "baseline",
        "formats",
        "info",
    ):
        assert command in result.output


def test_help_does_not_import_torch():
    code = (
        "import sys; from edgecls.cli import app; assert 'torch' not in sys.modules; assert 'onnx' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_one_vocabulary_of_options_across_commands():
    """The same thing has the same name everywhere (old spellings stay accepted as second names)."""
    import typer.main

    commands = typer.main.get_command(app).commands
    names = {name: {opt for param in command.params for opt in param.opts} for name, command in commands.items()}
    for concept, spelling in (
        ("backend", "--backend"),
        ("precision", "--precision"),
        ("json", "--json"),
        ("public_key", "--public-key"),
        ("data_dir", "--data-dir"),
    ):
        takers = [
            name
            for name, command in commands.items()
            if any(concept in param.name for param in command.params if param.opts[0].startswith("--"))
        ]
        assert takers and all(spelling in names[name] for name in takers), (
            concept,
            [n for n in takers if spelling not in names[n]],
        )
    assert {"--backends", "--precisions"} <= names["bench"] and "--summary-json" in names["camera"]
    for command in ("camera", "train", "eval"):  # flags read as flags (only typer's own --help row keeps its <bool>)
        help_lines = runner.invoke(app, [command, "--help"], terminal_width=200).output.splitlines()
        assert [line for line in help_lines if "<bool>" in line and "--help" not in line] == [], command


def test_train_options_are_declared_once_on_the_config(monkeypatch):
    """`edgecls train`'s options are TrainConfig's fields: same names, defaults and help, choices listed from the
    tuples the config validates against; what the command line passes is exactly what TrainConfig receives."""

    import typer.main

    from edgecls.train.config import TrainConfig

    command = typer.main.get_command(app).commands["train"]
    params = {p.name: p for p in command.params}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(params) == set(fields)
    for name, f in fields.items():
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if name != "model_kwargs":
            assert params[name].default == (None if default is dataclasses.MISSING else default), name
        assert f.metadata["help"] in (params[name].help or f.metadata["help"]), name
        for value in f.metadata["choices"]:
            assert value in params[name].help, (name, value)
    seen = {}
    monkeypatch.setattr("edgecls.train.train", lambda config: seen.setdefault("config", config), raising=False)
    result = runner.invoke(
        app, ["train", "lenet5", "--rotate", "7", "--model-arg", "leaky_relu=0.1", "--schedule", "linear"]
    )
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert (config.rotate_degrees, config.model_kwargs, config.schedule) == (7.0, {"leaky_relu": 0.1}, "linear")
    assert config.out == "runs/lenet5" == TrainConfig(model="lenet5").out
    assert config == TrainConfig(
        model="lenet5", rotate_degrees=7.0, model_kwargs={"leaky_relu": 0.1}, schedule="linear"
    )


def test_quiet_prints_nothing_but_errors(monkeypatch):
    """`edgecls --quiet` (or EDGECLS_QUIET=1) is for scripts: no tables or progress, but an error still says why."""
    assert runner.invoke(app, ["formats"]).output
    quiet = runner.invoke(app, ["--quiet", "formats"])
    assert quiet.exit_code == 0 and quiet.output == ""
    monkeypatch.setenv("EDGECLS_QUIET", "1")
    assert runner.invoke(app, ["formats"]).output == ""
    monkeypatch.delenv("EDGECLS_QUIET")
    assert runner.invoke(app, ["formats"]).output  # one quiet run leaves the next one speaking
    failed = subprocess.run(
        [sys.executable, "-m", "edgecls", "-q", "export", "lenet55"], capture_output=True, text=True, check=False
    )
    assert failed.returncode == 2 and failed.stdout == "" and "unknown model 'lenet55'" in failed.stderr


def test_models_and_formats_tables():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and "1,545,482" in result.output and "mobilenet_mod" in result.output
    result = runner.invoke(app, ["formats"])
    assert result.exit_code == 0 and "model.int8.trt.onnx" in result.output and "modelopt" in result.output


def test_models_names_the_machine_of_each_latency_and_warns_when_they_differ(monkeypatch):
    """The zoo table's latency column comes from cards timed wherever their weights were shipped: it says which
    machine timed which rows (INT8 speed hangs on the dot-product instructions, so they are named)."""
    import edgecls.zoo.pretrained as pretrained

    def timed_on(dot):
        return {"cpu": "AMD EPYC", "int8_dot_product": dot, "logical_cores": 2, "onnxruntime": "1.32.0", "rows": {}}

    cards = {"lenet5": timed_on("avx512_vnni")}  # every other shipped card: timed on a machine without VNNI
    real = pretrained.model_card

    def card(model, dataset="cifar10"):
        found = real(model, dataset)
        latency = cards.get(model, timed_on("none"))
        return found and dataclasses.replace(found, export={**(found.export or {}), "latency": latency})

    monkeypatch.setattr(pretrained, "model_card", card)
    output = " ".join(runner.invoke(app, ["models"], terminal_width=300).output.split())
    assert "latency of lenet5 measured on: AMD EPYC (INT8 dot product: avx512_vnni), 2 cores" in output
    others = re.search(r"latency of ([\w, ]+) measured on: AMD EPYC \(INT8 dot product: none\)", output)
    timed_without_vnni = set(others.group(1).split(", ")) if others else set()
    assert {"mobilenet_mod", "whitened_vgg"} <= timed_without_vnni and "lenet5" not in timed_without_vnni
    assert "rows measured on different machines do not compare" in output
    cards["lenet5"] = timed_on("none")
    assert "do not compare" not in runner.invoke(app, ["models"], terminal_width=300).output


def test_info_verifies_a_bundle(bundle_dir):
    result = runner.invoke(app, ["info", str(bundle_dir)])
    assert result.exit_code == 0, result.output
    assert "7 files verified" in result.output


def test_eval_and_baseline_commands(trained_ckpt, cifar_root, tmp_path):
    result = runner.invoke(
        app, ["eval", str(trained_ckpt), "--data-dir", str(cifar_root), "--json", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 0, result.output
    assert "top-1" in result.output
    in_run_dir = runner.invoke(app, ["eval", str(trained_ckpt.parent), "--data-dir", str(cifar_root)])
    assert in_run_dir.exit_code == 0, in_run_dir.output
    assert re.findall(r"top-1 [\d.]+%", in_run_dir.output) == re.findall(r"top-1 [\d.]+%", result.output) != []
    assert (
        "top-1" in result.output and (tmp_path / "r.confusion.png").exists() and (tmp_path / "r.examples.png").exists()
    )
    result = runner.invoke(app, ["baseline", "knn", "--k", "3", "--metric", "l1", "--data-dir", str(cifar_root)])
    assert result.exit_code == 0, result.output
    assert "macro" in result.output


def test_eval_of_a_bundle_matches_the_accuracy_recorded_at_export(bundle_dir, cifar_root, tmp_path):
    import json

    recorded = json.loads((bundle_dir / "edgecls.json").read_text())["accuracy"]["test"]["files"]["model.int8.onnx"][
        "top1"
    ]
    result = runner.invoke(
        app,
        [
            "eval",
            str(bundle_dir),
            "--precision",
            "int8",
            "--backend",
            "onnxruntime",
            "--device",
            "cpu",
            "--data-dir",
            str(cifar_root),
            "--json",
            str(tmp_path / "int8.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "int8" in result.output and (tmp_path / "int8.confusion.png").exists()
    report = json.loads((tmp_path / "int8.json").read_text())
    assert report["samples"] == 200 and report["top1"] == pytest.approx(recorded, abs=1e-4)


def test_user_errors_exit_2_with_a_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "edgecls", "export", "lenet55", "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2 and "Did you mean lenet5" in result.stderr


def test_build_engine_without_tensorrt_says_what_to_run(bundle_dir):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed: tests/test_tensorrt.py builds engines for real")
    result = subprocess.run(
        [sys.executable, "-m", "edgecls", "build-engine", str(bundle_dir)], capture_output=True, text=True
    )
    assert result.returncode == 2 and "TensorRT is not installed" in result.stderr and "build-engine" in result.stderr


def test_every_option_of_every_command_says_what_it_does():
    import typer

    from edgecls.cli import app

    command = typer.main.get_command(app)
    missing = {
        name: [p.name for p in sub.params if getattr(p, "param_type_name", "") == "option" and not p.help]
        for name, sub in command.commands.items()
    }
    assert not {k: v for k, v in missing.items() if v}


def test_models_and_info_speak_json(bundle_dir):
    result = CliRunner().invoke(app, ["info", str(bundle_dir), "--json", "-"])
    info = json.loads(result.stdout)
    assert info["schema"] == "edgecls.info/1" and info["digest"].startswith("sha256:") and info["model"] == "lenet5"
    models = json.loads(CliRunner().invoke(app, ["models", "--json", "-"]).stdout)
    resnet20 = next(m for m in models["models"] if m["name"] == "resnet20")
    assert models["schema"] == "edgecls.models/1" and 0.26e6 < resnet20["parameters"] < 0.28e6


def test_eval_json_says_what_was_measured(bundle_dir, cifar_root, tmp_path):
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(
        app, ["eval", str(bundle_dir), "--data-dir", str(cifar_root), "--precision", "int8", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["schema"] == "edgecls.eval/1" and report["model"] == "lenet5" and report["precision"] == "int8"
    assert report["backend"] == "onnxruntime/cpu" and report["dataset"] == "cifar10-test" and report["host"]["cpu"]
    assert "created" in report and f"wrote {out}" in " ".join(result.output.split())


def test_install_hints_keep_their_brackets():
    code = (
        "import sys; sys.argv = ['edgecls', 'serve', '/nonexistent']; "
        "import edgecls.serving.serve as s; s.pytriton_unavailable = lambda: s.INSTALL_HINT; "
        "from edgecls.cli import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "pip install 'edgecls[serve]'" in " ".join(result.stderr.split())


def test_a_runtime_only_install_is_told_which_extra_a_command_needs(tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None; sys.argv = ['edgecls', 'train', 'lenet5', '--out', sys.argv[1]]; "
        "from edgecls.cli import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "pip install 'edgecls[train]'" in " ".join(result.stderr.split())


def test_a_bundle_is_evaluated_where_it_is_deployed_without_torch(bundle_dir, cifar_root):
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "
        f"sys.argv = ['edgecls', 'eval', {str(bundle_dir)!r}, '--data-dir', {str(cifar_root)!r}]; "
        "from edgecls.cli import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "top-1" in result.stdout + result.stderr


def _without_torch(*argv: str) -> subprocess.CompletedProcess:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "
        f"sys.argv = ['edgecls', *{list(argv)!r}]; from edgecls.cli import main; main()"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["export", "lenet5", "--int8", "--calib-method", "percentile"], "is ONNX Runtime's only"),
        (["export", "lenet5", "--tensorrt8"], "--tensorrt8 adds a TensorRT INT8 graph"),
        (["export", "lenet5", "--color", "yuv"], "--color must be one of bgr, rgb"),
        (["train", "lenet5", "--schedule", "cosin"], "did you mean 'cosine'"),
    ],
)
def test_bad_options_are_refused_before_any_work(argv, problem, tmp_path):
    """Options are checked when they are made: torch is never imported, nothing is written."""
    result = _without_torch(*argv, "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and problem in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "command, classes, own",
    [
        (
            "export",
            ("edgecls.export.options:ExportOptions", "edgecls.export.options:ForeignOptions"),
            {"source", "triton"},
        ),
        ("eval", ("edgecls.measure_options:EvalOptions", "edgecls.runtime.options:LoadOptions"), set()),
        ("baseline", ("edgecls.measure_options:BaselineOptions",), set()),
        ("bench", ("edgecls.measure_options:BenchOptions",), {"target"}),
        ("camera", ("edgecls.camera.options:CameraOptions", "edgecls.runtime.options:LoadOptions"), {"bundle"}),
        ("serve", ("edgecls.serving.options:ServeOptions",), {"bundle", "public_key"}),
    ],
)
def test_options_are_declared_once_on_their_dataclasses(command, classes, own):
    """A command's options are its dataclasses' fields, with their help and default (what --help shows is what
    the library does when the option is not given)."""
    import dataclasses
    import importlib

    import typer.main

    params = {p.name: p for p in typer.main.get_command(app).commands[command].params}
    fields = [
        f
        for spec in classes
        for f in dataclasses.fields(getattr(importlib.import_module(spec.split(":")[0]), spec.split(":")[1]))
        if f.metadata["cli"]
    ]
    assert set(params) == {f.name for f in fields} | own
    for f in fields:
        assert params[f.name].help.startswith(f.metadata["help"]), f.name
        if f.default is not dataclasses.MISSING and not isinstance(f.default, tuple):
            assert params[f.name].default == f.default, f.name


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["camera", "no-bundle", "--frame-size", "640"], "--frame-size must look like 640x480"),
        (["camera", "no-bundle", "--backend", "tensorrtt"], "--backend must be one of auto, onnxruntime"),
        (["camera", "no-bundle", "--serve", "8080"], "--serve must look like 127.0.0.1:8080"),
        (["serve", "no-bundle", "--grpc-port", "8000"], "three different ports"),
        (["bench", "no-bundle", "--precision", "int4"], "unknown backend or precision 'int4'"),
        (["bench", "no-bundle", "--iterations", "0"], "iterations must be an integer ≥ 1"),
        (["eval", "no-bundle", "--dataset", "cifar11"], "--dataset must be one of"),
        (["baseline", "svm"], "METHOD must be one of knn, centroid"),
    ],
)
def test_runtime_and_measuring_options_are_refused_before_anything_loads(argv, problem):
    """The bundle does not exist: an option error that came after loading it would be a missing-bundle error."""
    result = _without_torch(*argv)
    assert result.returncode == 2 and problem in result.stderr, result.stderr


def test_the_zoo_table_is_listed_where_torch_is_not_installed():
    result = _without_torch("models", "--json", "-")
    assert result.returncode == 0, result.stderr
    table = {m["name"]: m for m in json.loads(result.stdout)["models"]}
    assert table["mobilenet_mod"]["parameters"] == 1_545_482 and table["lenet5"]["bundled_test_top1"] > 0.6


@pytest.mark.parametrize("command", [["export", "lenet55"], ["train", "lenet55"], ["eval", "lenet55"]])
def test_a_mistyped_model_name_is_answered_before_torch_is_imported(command):
    result = _without_torch(*command)
    assert result.returncode == 2, result.stderr
    assert "unknown model 'lenet55'. Did you mean lenet5" in result.stderr


def test_long_work_logs_progress_lines_outside_a_terminal(monkeypatch):
    import io
    import itertools

    from rich.console import Console

    from edgecls import console as console_module

    log = io.StringIO()
    clock = itertools.count(0.0, 10.0)  # each item takes 10 s
    monkeypatch.setattr(console_module, "console", Console(file=log, force_terminal=False, width=200))
    monkeypatch.setattr(console_module.time, "monotonic", lambda: next(clock))
    assert list(console_module.progress(range(12), "evaluating")) == list(range(12))
    lines = log.getvalue().splitlines()
    assert len(lines) >= 3 and lines[-1].startswith("evaluating: 12/12 (100%)")
    assert lines[0].startswith("evaluating: 1/12 (8%)")  # the first line comes with the first item, not 10 s later
    assert any("about" in line and "s left" in line for line in lines[:-1])


def test_the_backends_the_options_name_are_the_runtime_registry():
    from edgecls import names
    from edgecls.runtime.backends import BACKEND_NAMES

    assert BACKEND_NAMES == names.BACKENDS


def test_a_numpy_2_under_a_numpy_1_opencv_is_one_line_with_the_fix(monkeypatch, capsys):
    """What the README's Jetson recipe did before: numpy 2 in the venv, JetPack's (or Debian's) cv2 built against 1.x;
    `import cv2` then fails inside OpenCV with numpy's own words. The user gets the cause and the fix, no traceback."""
    from edgecls.cli import entry as cli

    def broken():
        try:
            raise AttributeError("_ARRAY_API not found")
        except AttributeError as inner:
            raise ImportError("numpy.core.multiarray failed to import") from inner

    monkeypatch.setattr(cli, "app", broken)
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "pip uninstall numpy" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3  # one message (rich may wrap it on a narrow terminal)


def test_build_engine_builds_for_the_gpu_asked_for_and_by_default_what_this_tensorrt_can(bundle_dir, monkeypatch):
    from edgecls.runtime import engines

    asked = {}

    def fake_build(bundle, precisions, **kwargs):
        asked.update(precisions=precisions, **kwargs)
        kwargs["on_skip"]("int8", "TensorRT 8.6.2 (JetPack 6.0 ships 8.6) cannot parse model.int8.trt.onnx")
        return []

    monkeypatch.setattr(engines, "build_bundle_engines", fake_build)
    result = CliRunner().invoke(app, ["build-engine", str(bundle_dir), "--device", "1"])
    assert result.exit_code == 0, result.output
    assert asked["device_index"] == 1 and asked["precisions"] is None and "no int8 engine" in result.output
    CliRunner().invoke(app, ["build-engine", str(bundle_dir), "--precision", "fp16"])
    assert asked["precisions"] == ("fp16",) and asked["device_index"] == 0


def test_a_full_disk_without_a_file_name_reads_as_a_sentence(monkeypatch, capsys):
    """A write on an open file raises ENOSPC without a file name: the message said "device: None"."""
    import errno

    from edgecls.cli import entry as cli

    def full():
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli, "app", full)
    with pytest.raises(SystemExit):
        cli.main()
    err = capsys.readouterr().err
    assert "No space left on device while writing. The disk is full" in err and "None" not in err
