"""The `fastnn` command: info, train (tiny runs) and experiment."""
import json
import os
import subprocess
import sys

import pytest

from fastnn import cli


@pytest.fixture
def no_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASTNN_DATA", raising=False)


def test_info_lists_versions_kernels_threads(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("fastnn", "numpy", "numba", "python", "compiled kernels", "Numba kernels",
                 "OpenMP", "BLAS"):
        assert word in out
    assert "runtime" in out  # the compiled OpenMP runtime module is always built
    from fastnn.kernels import isa
    assert f"ISA      flavour {isa.get_isa()}" in out     # and the body each kernel runs
    assert "dense GEMM" in out and "batch norm" in out


def test_info_under_a_forced_flavour(tmp_path):
    env = dict(os.environ, FASTNN_ISA="portable")
    r = subprocess.run([sys.executable, "-c", "import sys; from fastnn.cli import main; sys.exit(main(['info']))"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "ISA      flavour portable" in r.stdout
    assert "BLAS (np.matmul)" in r.stdout            # the portable flavour has no sgemm kernel


def test_console_script_entry_point(tmp_path):
    # run outside the source tree, so the installed package (with its compiled kernels) is used
    script = os.path.join(os.path.dirname(sys.executable), "fastnn")
    cmd = [script] if os.path.exists(script) else [
        sys.executable, "-c", "import sys; from fastnn.cli import main; sys.exit(main())"]
    r = subprocess.run([*cmd, "info"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and "BLAS" in r.stdout


def test_default_dataset(no_mnist, mnist_dir, monkeypatch):
    assert cli.default_dataset() == "digits"
    monkeypatch.setenv("FASTNN_DATA", mnist_dir)
    assert cli.default_dataset() == "mnist"


def test_registry_has_the_named_models():
    assert {"mlp", "mnist_convnet", "digits_convnet", "small_vgg"} <= set(cli.MODELS)


def test_parser_rejects_unknown_choices(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--dataset", "cifar"])
    with pytest.raises(SystemExit):
        cli.main(["train", "--model", "resnet"])
    with pytest.raises(SystemExit, match="unknown experiment"):
        cli.main(["experiment", "nonsense", "--tiny"])


def test_train_tiny_on_digits(no_mnist, tmp_path, capsys, require):
    require("sklearn")
    require("matplotlib")
    out = tmp_path / "out"
    assert cli.main(["train", "--model", "mlp", "--epochs", "2", "--batch-size", "64",
                     "--seed", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mlp on digits" in text and "test accuracy" in text and "samples/s" in text
    summary = json.loads((out / "mlp_digits.json").read_text())
    assert 0.5 < summary["test_accuracy"] <= 1.0  # 2 epochs of an MLP already learn the digits
    assert len(summary["history"]["loss"]) == 2 and "val_loss" in summary["history"]
    assert os.path.getsize(out / "mlp_digits_learning_curves.png") > 5000


def test_train_mnist_convnet_refuses_8x8(no_mnist, tmp_path, require):
    require("sklearn")
    with pytest.raises(SystemExit, match="needs 28x28"):
        cli.main(["train", "--model", "mnist_convnet", "--dataset", "digits", "--out", str(tmp_path)])


def test_small_vgg_and_digits_convnet_build(no_mnist):
    import numpy as np
    for name, shape in (("small_vgg", (8, 8, 1)), ("digits_convnet", (8, 8, 1)), ("mnist_convnet", (28, 28, 1))):
        model = cli.MODELS[name](shape, 10)
        p = model.predict(np.zeros((2, *shape), np.float32), verbose=0)
        assert p.shape == (2, 10)


def test_experiment_command_tiny(mnist_dir, monkeypatch, tmp_path, capsys, require):
    require("matplotlib")
    monkeypatch.setenv("FASTNN_DATA", mnist_dir)
    assert cli.main(["experiment", "overfitting", "--tiny", "--out", str(tmp_path)]) == 0
    assert "overfitting.png" in capsys.readouterr().out
    assert (tmp_path / "overfitting.png").exists() and (tmp_path / "overfitting.json").exists()
