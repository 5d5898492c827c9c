"""examples/inspect_pytorch_model.py: a PyTorch LSTM imported into bptt and inspected, every number
checked against PyTorch autograd. Runs the example in-process with tiny settings."""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "inspect_pytorch_model.py"
TINY = ["--seconds", "0.5", "--embedding-size", "6", "--hidden-size", "8", "--seq-len", "16", "--batch-size", "8"]
TINY += ["--window", "12"]
CHECK = re.compile(r"^check: (.+) max \|Δ\| = (\S+) \((ok|FAILED)\)$", re.MULTILINE)


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("inspect_pytorch_model", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_every_check_agrees_with_pytorch(example, capsys):
    start = time.perf_counter()
    status = example.main(TINY)
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out
    checks = CHECK.findall(out)
    assert status == 0, out
    assert len(checks) == 8, out
    for what, delta, verdict in checks:
        assert verdict == "ok" and float(delta) <= example.TOLERANCE, (what, delta)
    for heading in ("1. PyTorch", "2. bptt.from_torch", "3a. Jacobian", "3b. ∂J/∂W", "3c. Input sensitivity"):
        assert heading in out
    assert "loss per character" in out and "all agree with PyTorch autograd" in out
    assert elapsed < 10.0


def test_a_failed_check_fails_the_run(example, capsys, monkeypatch):
    """With a tolerance of 0 the rounding differences fail: the script must say so and exit 1."""

    class Strict(example.Checks):
        def __init__(self) -> None:
            super().__init__(tolerance=0.0)

    monkeypatch.setattr(example, "Checks", Strict)
    assert example.main([*TINY, "--seconds", "0"]) == 1
    out = capsys.readouterr().out
    assert "(FAILED)" in out and "SOME DISAGREE" in out


def test_checks_record_the_worst_difference(example, capsys):
    check = example.Checks()
    assert check("exact", [1.0, 2.0], [1.0, 2.0]) == 0.0
    assert check.all_passed
    assert check("off", [[1.0, 2.0]], [[1.0, 2.0 + 3e-9]]) == pytest.approx(3e-9)
    assert not check.all_passed
    nan = example.Checks()
    nan("nan", [float("nan")], [0.0])
    assert not nan.all_passed  # a NaN never passes
    out = capsys.readouterr().out
    assert "check: exact max |Δ| = 0.0e+00 (ok)" in out and "check: off max |Δ| = 3.0e-09 (FAILED)" in out


def test_bad_settings_are_refused(example, capsys):
    with pytest.raises(SystemExit) as exc:
        example.main(["--window", "1"])
    assert exc.value.code == 2
    assert "--window must be ≥ 2, got 1" in capsys.readouterr().err
