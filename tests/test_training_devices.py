"""The `training` assignment's device choice (autograder/kit/devices.py), with the GPU forced on and off:
no GPU is needed to check that a CUDA runner's tests would run on CUDA, with TF32 off, on its budget."""
import pytest
import torch

from autograder import manifest as manifest_module
from autograder.kit import devices


def test_pick_device_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.pick_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.pick_device() == "cpu"


def test_tf32_off_and_restored():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        with devices.tf32_off():
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def test_device_fixture_yields_the_picked_device_with_tf32_off(tmp_path):
    """the fixture, in a pytest run of its own, on a machine that pretends to have a GPU"""
    import os
    import pathlib
    import subprocess
    import sys

    (tmp_path / "conftest.py").write_text(
        "import torch\ntorch.cuda.is_available = lambda: True\n"
        "torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True\n")
    (tmp_path / "test_it.py").write_text(
        "import torch\n"
        "from autograder.kit.devices import device  # noqa: F401\n\n"
        "def test_it(device):\n"
        "    assert device == 'cuda'\n"
        "    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32\n")
    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                          "-c", "/dev/null", "--rootdir", str(tmp_path), str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert "1 passed" in run.stdout, run.stdout + run.stderr


def test_budget_per_device():
    table = {"cpu": 60, "cuda": 150}
    assert devices.budget(table, "cpu") == 60
    assert devices.budget(table, "cuda") == 150
    assert devices.budget(table, "cuda:1") == 150
    assert devices.budget({"cpu": 60}, "cuda") == 60   # no GPU figure: the CPU's


def test_a_named_budget_comes_from_the_manifest_and_a_missing_one_says_so():
    budgets = manifest_module.load("training").budgets
    assert budgets["overfit_steps"] == {"cpu": 60, "cuda": 150}
    saved = dict(devices._BUDGETS)
    try:
        devices.set_budgets(budgets)
        assert devices.budget("overfit_steps", "cuda:0") == 150
        assert devices.budget("classifier_epochs", "cpu") == 12
        with pytest.raises(LookupError, match="no training budget named 'epochs'"):
            devices.budget("epochs", "cpu")
    finally:
        devices.set_budgets(saved)


def test_training_tests_take_the_device_fixture():
    """every training test that builds a model on a device takes it from the fixture (or names the CPU or meta)"""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent
    for path in [*root.glob("tests_public/training/*.py"), *root.glob("tests_hidden/training/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "build_model":
                given = {k.arg: k.value for k in node.keywords}
                device = given.get("device")
                assert device is None or isinstance(device, (ast.Name, ast.Constant)), (path.name, node.lineno)
                if isinstance(device, ast.Constant):
                    assert device.value == "meta", (path.name, node.lineno)
