"""bptt explain / bptt report: diagnostics of a trained language model as files a person opens."""

from __future__ import annotations

import builtins
import json
import re

import numpy as np
import pytest

import bptt
from bptt.checkpoint import load_checkpoint
from bptt.cli import main
from bptt.train import TrainConfig, Trainer, prepare_data

TEXT = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(300))
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    corpus = folder / "code.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    cfg = TrainConfig(hidden_size=8, seq_len=8, batch_size=4, steps=4, eval_every=2, eval_tokens=200, cell="lstm")
    Trainer(cfg, prepare_data([corpus], cfg), folder, log=lambda m: None).run()
    return folder


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_writes_the_numbers_and_three_pictures(run_dir, tmp_path, capsys):
    text = "def f1(x):\n    return x"
    code, out, err = run_cli(capsys, "explain", run_dir / "best.safetensors", "--text", text, "--out", tmp_path)
    assert code == 0, err
    names = {p.split("/")[-1] for p in out.split()}
    assert names == {"explain.json", "jacobian_map.png", "gradient_by_gap.png", "input_sensitivity.png"}
    for name in names - {"explain.json"}:
        assert (tmp_path / name).read_bytes().startswith(PNG)
    numbers = json.loads((tmp_path / "explain.json").read_text())
    ckpt = load_checkpoint(run_dir / "best.safetensors")
    ids = ckpt.vocab.encode(text).astype(np.intp)
    jm = bptt.jacobian_map(ckpt.model, ids[:-1, None])
    got = np.array([[np.nan if v is None else v for v in row] for row in numbers["jacobian_norms"]["N[t][k]"]])
    np.testing.assert_allclose(got, jm.norms, rtol=1e-12)
    gaps = bptt.gradient_by_gap(ckpt.model, ids[:-1, None], ids[1:, None], "W")
    np.testing.assert_allclose(numbers["gradient_by_gap"]["norms"], gaps.norms_by_gap, rtol=1e-12)
    assert numbers["gradient_by_gap"]["param"] == "W"
    assert numbers["inputs"] == list(text[:-1]) and numbers["targets"] == list(text[1:])


def test_explain_without_plots_and_with_another_parameter(run_dir, tmp_path, capsys):
    code, out, err = run_cli(
        capsys,
        "explain",
        run_dir / "best.safetensors",
        "--text",
        "x + 1",
        "--out",
        tmp_path,
        "--no-plots",
        "--param",
        "U",
    )
    assert code == 0, err
    assert [p.split("/")[-1] for p in out.split()] == ["explain.json"]
    norms = json.loads((tmp_path / "explain.json").read_text())["gradient_by_gap"]["norms"]
    assert norms[0] > 0 and all(v == 0 for v in norms[1:])  # the output layer acts at gap 0 only


@pytest.mark.parametrize(
    "text, extra, pattern",
    [
        ("日本", [], r"text has 2 chars outside the model's vocabulary: '日', '本'"),
        ("d", [], r"text must have at least 2 chars"),
        ("x" * 500, [], r"text has 500 chars; explain reads at most 121"),
        ("def", ["--param", "Q"], r"param must be one of the model's parameters"),
    ],
)
def test_explain_errors_are_one_line(run_dir, tmp_path, capsys, text, extra, pattern):
    code, _, err = run_cli(capsys, "explain", run_dir / "best.safetensors", "--text", text, "--out", tmp_path, *extra)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and re.search(pattern, err), err


def test_missing_matplotlib_is_a_clear_error(run_dir, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    code, _, err = run_cli(capsys, "explain", run_dir / "best.safetensors", "--text", "def", "--out", tmp_path)
    assert code == 2 and "plots need matplotlib: pip install 'bptt[plot]'" in err
    assert not any(tmp_path.iterdir())  # refused before any work
    code, _, err = run_cli(capsys, "report", run_dir)
    assert code == 2 and "plots need matplotlib" in err
    code, _, err = run_cli(
        capsys, "explain", run_dir / "best.safetensors", "--text", "def", "--out", tmp_path, "--no-plots"
    )
    assert code == 0, err  # the numbers need no matplotlib


def test_report_is_one_self_contained_page(run_dir, capsys):
    code, out, err = run_cli(capsys, "report", run_dir, "--text", "def f2(x):")
    assert code == 0, err
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert out.strip().endswith("report.html")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)  # nothing fetched from a network
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4
    import base64

    assert all(base64.b64decode(i).startswith(PNG) for i in images)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(f"<td>{r['step']}</td>" in page for r in rows)
    assert "def f2(x):" in page
    assert not list(run_dir.glob("tmp*"))  # the pictures' scratch folder is gone


def test_report_of_a_folder_without_a_run(tmp_path, capsys):
    code, _, err = run_cli(capsys, "report", tmp_path)
    assert code == 2 and "holds no training run" in err


def test_explain_a_fresh_model_on_random_tokens(tmp_path, capsys):
    args = ["explain", "--cell", "elman", "--hidden-size", 6, "--vocab-size", 7, "--length", 12, "--out", tmp_path]
    code, _, err = run_cli(capsys, *args, "--seed", 3)
    assert code == 0, err
    numbers = json.loads((tmp_path / "explain.json").read_text())
    assert len(numbers["inputs"]) == 12 and all(0 <= int(u) < 7 for u in numbers["inputs"])
    again = tmp_path / "again"
    assert run_cli(capsys, *args[:-1], again, "--seed", 3)[0] == 0
    assert json.loads((again / "explain.json").read_text()) == numbers  # same seed, same numbers


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["explain"], r"give a checkpoint with --text, or a model with --cell"),
        (["explain", "--cell", "gru", "--length", "0"], r"length must be a positive integer, got 0"),
        (["explain", "--cell", "lstm", "--length", "1000"], r"length must be at most 120"),
    ],
)
def test_explain_without_a_checkpoint_errors(tmp_path, capsys, argv, pattern):
    code, _, err = run_cli(capsys, *argv, "--out", tmp_path)
    assert code == 2 and re.search(pattern, err), err


def test_explain_with_a_checkpoint_needs_text(run_dir, capsys):
    code, _, err = run_cli(capsys, "explain", run_dir / "best.safetensors")
    assert code == 2 and "--text is required with a checkpoint" in err


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (["--hidden-size", "8"], r"--hidden-size describe a fresh model; a checkpoint has its own"),
        (["--length", "5", "--seed", "1"], r"--length, --seed describe a fresh model"),
    ],
)
def test_explain_refuses_options_it_would_ignore(run_dir, capsys, extra, pattern):
    code, _, err = run_cli(capsys, "explain", run_dir / "best.safetensors", "--text", "def", *extra)
    assert code == 2 and re.search(pattern, err), err


def test_explain_refuses_text_without_a_checkpoint_and_activation_for_gated_cells(tmp_path, capsys):
    code, _, err = run_cli(capsys, "explain", "--cell", "gru", "--text", "hello", "--out", tmp_path)
    assert code == 2 and "--text needs a checkpoint" in err
    code, _, err = run_cli(capsys, "explain", "--cell", "lstm", "--activation", "relu", "--out", tmp_path)
    assert code == 2 and "--activation is for --cell elman" in err
