"""Language-model training: truncated BPTT, exact resume, non-finite stops, the CLI."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest

import bptt
from bptt.checkpoint import load_checkpoint
from bptt.cli import main
from bptt.optim import clip_grad_norm, clip_grad_value
from bptt.train import TrainConfig, Trainer, TrainingError, TrainState, build_model, evaluate_loss, prepare_data

TEXT = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(400))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "code.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def small(**kw) -> TrainConfig:
    base = dict(hidden_size=16, seq_len=8, batch_size=4, steps=12, eval_every=4, eval_tokens=400, lr=5e-3)
    return TrainConfig(**(base | kw))


def test_prepare_data_splits_the_stream_deterministically(corpus):
    cfg = small(val_fraction=0.1)
    a, b = prepare_data([corpus], cfg), prepare_data([corpus], cfg)
    assert a.digest == b.digest and np.array_equal(a.train, b.train)
    assert len(a.val) == int(len(TEXT) * 0.1)
    assert a.vocab.decode(np.concatenate([a.train, a.val])) == TEXT


def test_tbptt_k1_equals_k2_matches_one_long_backward_pass_of_the_loss(corpus):
    """With k1 = k2 the carried state makes window losses those of one long sequence."""
    cfg = small(steps=3, optimizer="sgd", lr=1e-12)  # weights (almost) fixed
    data = prepare_data([corpus], cfg)
    tr = Trainer(cfg, data, corpus.parent / "run")
    losses = [tr.train_step()["loss"] for _ in range(3)]
    x = tr.streams[:, :24].T
    y = tr.streams[:, 1:25].T
    fwd = tr.model.forward(x)
    per_step = tr.model.output.loss(fwd.logits, y)  # (T, B)
    expected = [per_step[i * 8 : (i + 1) * 8].mean() for i in range(3)]
    np.testing.assert_allclose(losses, expected, rtol=1e-4)


def test_tbptt_k2_greater_than_k1_scores_only_new_steps_and_backpropagates_k2(corpus):
    cfg = small(seq_len=4, bptt_len=10, steps=4, dtype="float64", optimizer="sgd", lr=0.1)
    data = prepare_data([corpus], cfg)
    tr = Trainer(cfg, data, corpus.parent / "run")
    model0 = tr.model.copy()
    tr.train_step()  # window [0, 4): no history yet
    tr.train_step()  # window [0, 8): first 4 steps repeated with weight 0
    tr.train_step()  # window [2, 12)
    assert tr.state.pos == 12
    # Reproduce step 3 by hand: the state at column 2 comes from step 2's forward pass (its weights).
    m = model0.copy()
    grads = m.loss_and_grad(tr.streams[:, 0:4].T, tr.streams[:, 1:5].T, loss_weights=np.full((4, 4), 0.25)).grads
    for k in m.params:
        m.params[k] -= 0.1 * _clipped(grads, m, 5.0)[k]
    x2, y2 = tr.streams[:, 0:8].T, tr.streams[:, 1:9].T
    w2 = np.zeros((8, 4))
    w2[4:] = 0.25
    r2 = m.loss_and_grad(x2, y2, loss_weights=w2)
    carried = m.state_at(r2.forward, 1)
    g2 = _clipped(r2.grads, m, 5.0)
    for k in m.params:
        m.params[k] -= 0.1 * g2[k]
    w3 = np.zeros((10, 4))
    w3[6:] = 0.25
    r3 = m.loss_and_grad(tr.streams[:, 2:12].T, tr.streams[:, 3:13].T, carried, loss_weights=w3)
    g3 = _clipped(r3.grads, m, 5.0)
    for k in m.params:
        m.params[k] -= 0.1 * g3[k]
        np.testing.assert_allclose(tr.model.params[k], m.params[k], rtol=1e-12, atol=1e-14)


def _clipped(grads, m, max_norm):
    total = math.sqrt(sum(float((grads[k] ** 2).sum()) for k in m.params))
    scale = max_norm / (total + 1e-12) if total > max_norm else 1.0
    return {k: grads[k] * scale for k in m.params}


@pytest.mark.parametrize("dropout", [(0.0, 0.0), (0.3, 0.2)], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell, optimizer", [("lstm", "adam"), ("gru", "rmsprop"), ("elman", "sgd")])
def test_interrupted_and_resumed_run_equals_the_uninterrupted_run_bit_for_bit(
    tmp_path, corpus, dtype, cell, optimizer, dropout
):
    momentum = 0.9 if optimizer == "sgd" else 0.0
    p, q = dropout
    stack = dict(num_layers=2, dropout=p, recurrent_dropout=q) if p else {}  # dropout acts between layers
    cfg = small(cell=cell, dtype=dtype, optimizer=optimizer, momentum=momentum, **stack)
    data = prepare_data([corpus], cfg)
    whole = Trainer(cfg, data, tmp_path / "whole", log=lambda m: None)
    whole.run()

    first = Trainer(cfg, data, tmp_path / "split", log=lambda m: None)
    first.should_stop = lambda: first.state.step >= 6  # "interrupted" after step 6
    first.run()
    first.save("latest.safetensors")
    resumed = Trainer.resume(tmp_path / "split" / "latest.safetensors", data, tmp_path / "split", log=lambda m: None)
    resumed.run()

    for k in whole.model.params:
        assert np.array_equal(whole.model.params[k], resumed.model.params[k]), k
    for k in whole.state.carried:
        assert np.array_equal(whole.state.carried[k], resumed.state.carried[k]), k
    rows_whole = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    rows_split = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    strip = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows_whole]
    assert strip == [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows_split]
    if p or q:  # the masks' generator was saved and restored, and both runs drew as many masks
        assert resumed.state.dropout_rng.bit_generator.state == whole.state.dropout_rng.bit_generator.state
        saved = load_checkpoint(tmp_path / "split" / "latest.safetensors").train["dropout_rng"]
        assert saved == whole.state.dropout_rng.bit_generator.state and saved["bit_generator"] == "PCG64"
    else:
        assert whole.state.dropout_rng is None and "dropout_rng" not in whole.state.record()


def test_best_and_latest_checkpoints_and_early_stopping(tmp_path, corpus):
    cfg = small(steps=40, eval_every=2, patience=2, lr=0.5, optimizer="sgd")
    data = prepare_data([corpus], cfg)
    tr = Trainer(cfg, data, tmp_path, log=lambda m: None)
    tr.run()
    best = load_checkpoint(tmp_path / "best.safetensors")
    latest = load_checkpoint(tmp_path / "latest.safetensors")
    assert best.train["best_val"] == min(json.loads(r)["val_loss"] for r in (tmp_path / "metrics.jsonl").open())
    assert latest.train["step"] >= best.train["step"]
    if tr.state.step < 40:  # stopped early: the last `patience` evaluations did not improve
        assert tr.state.bad_evals == 2


def test_non_finite_loss_stops_within_one_step_and_writes_no_checkpoint(tmp_path, corpus):
    cfg = small(steps=50, eval_every=1, clip=None, optimizer="sgd", lr=1e30, cell="elman", activation="identity")
    data = prepare_data([corpus], cfg)
    tr = Trainer(cfg, data, tmp_path, log=lambda m: None)
    with pytest.raises(TrainingError, match=r"step \d+: .*(not finite|non-finite|loss is)"):
        tr.run()
    for path in tmp_path.glob("*.safetensors"):
        ckpt = load_checkpoint(path)  # whatever was written is finite and loadable
        assert all(np.isfinite(v).all() for v in ckpt.model.params.values())


def test_evaluate_loss_is_the_mean_cross_entropy_per_token(corpus):
    cfg = small()
    data = prepare_data([corpus], cfg)
    m = Trainer(cfg, data, corpus.parent / "r").model
    ids = data.val[:101]
    whole = m.forward(ids[:-1, None])
    expected = float(m.output.loss(whole.logits, ids[1:, None]).mean())
    assert evaluate_loss(m, ids, batch_size=1, seq_len=7, max_tokens=None) == pytest.approx(expected, rel=1e-5)


def test_training_lowers_validation_loss(tmp_path, corpus):
    cfg = small(steps=60, eval_every=30, hidden_size=32, lr=1e-2)
    data = prepare_data([corpus], cfg)
    tr = Trainer(cfg, data, tmp_path, log=lambda m: None)
    before = tr.evaluate()
    tr.run()
    assert tr.evaluate() < before - 0.5


# -- command line --------------------------------------------------------------------------


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_sample_info_resume(tmp_path, corpus, capsys):
    out_dir = tmp_path / "run"
    args = ["train", corpus, "--out", out_dir, "--cell", "lstm", "--hidden-size", 16, "--seq-len", 8, "--batch-size", 4]
    code, out, err = run_cli(capsys, *args, "--steps", 6, "--eval-every", 3, "--eval-tokens", 200)
    assert code == 0, err
    assert "validation bpc" in out
    assert (out_dir / "metrics.jsonl").exists() and (out_dir / "best.safetensors").exists()

    code, out, err = run_cli(capsys, "sample", out_dir / "latest.safetensors", "--prime", "def ", "-n", 30, "--seed", 1)
    assert code == 0, err
    assert out.startswith("def ") and len(out) >= 30
    again = run_cli(capsys, "sample", out_dir / "latest.safetensors", "--prime", "def ", "-n", 30, "--seed", 1)[1]
    assert again == out
    greedy = run_cli(capsys, "sample", out_dir / "latest.safetensors", "--prime", "def ", "-n", 10, "--greedy")
    assert greedy[0] == 0

    code, out, err = run_cli(capsys, "info", out_dir / "latest.safetensors")
    assert code == 0
    assert "V " in out and "(64, " in out and "total" in out and "c_t = f ⊙ c_{t-1} + i ⊙ g" in out

    code, out, err = run_cli(capsys, "train", corpus, "--resume", out_dir / "latest.safetensors", "--steps", 9)
    assert code == 0, err
    assert "resuming" in err and load_checkpoint(out_dir / "latest.safetensors").train["step"] == 9


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["train", "{missing}"], r"no such file or folder"),
        (["train", "{binary}"], r"not UTF-8 text \(invalid byte 0xff at offset 3\)"),
        (["train", "{empty}"], r"file is empty"),
        (["train", "{short}"], r"corpus too short"),
        (["train", "{corpus}", "--lr", "-1"], r"lr must be a finite number > 0, got -1.0"),
        (["train", "{corpus}", "--lr", "nan"], r"lr must be a finite number > 0"),
        (["train", "{corpus}", "--hidden-size", "0"], r"hidden_size must be an integer ≥ 1, got 0"),
        (["train", "{corpus}", "--seq-len", "8", "--bptt-len", "4"], r"bptt_len \(k2\) must be ≥ seq_len"),
        (["train", "{corpus}", "--cell", "transformer"], r"argument --cell: invalid choice"),
        (["sample", "{missing}"], r"cannot read checkpoint"),
        (["sample", "{corpus}"], r"not a bptt checkpoint"),
        (["info", "{empty}"], r"not a bptt checkpoint"),
        (["sample", "{ckpt}", "--temperature", "0"], r"temperature: must be a finite number > 0"),
        (["sample", "{ckpt}", "--top-k", "100000"], r"top_k must be an integer in \[1, \d+\]"),
        (["sample", "{ckpt}", "--prime", "日本"], r"prime has 2 chars outside the model's vocabulary: '日', '本'"),
        (["train", "{corpus}", "--out", "{readonly}/sub"], r"is a file, not a folder"),
        (
            ["train", "{corpus}", "--out", "{ckpt_dir}"],
            r"already holds a run \(latest.safetensors, best.safetensors, metrics.jsonl\)",
        ),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, corpus, capsys, argv, pattern, trained):
    (tmp_path / "bin.txt").write_bytes(b"abc\xffdef")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "short.txt").write_text("tiny")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    (readonly / "sub").write_text("a file where a folder should be")
    names = dict(
        missing=tmp_path / "nope.txt",
        binary=tmp_path / "bin.txt",
        empty=tmp_path / "empty.txt",
        short=tmp_path / "short.txt",
        corpus=corpus,
        ckpt=trained,
        ckpt_dir=trained.parent,
        readonly=readonly,
    )
    argv = [a.format(**names) for a in argv]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bptt: error: ")
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    text = folder / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    cfg = small(steps=2, eval_every=2)
    tr = Trainer(cfg, prepare_data([text], cfg), folder, log=lambda m: None)
    tr.run()
    return folder / "latest.safetensors"


def test_library_api_is_re_exported():
    for name in ("Elman", "LSTM", "GRU", "RNN", "gradcheck", "generate"):
        assert hasattr(bptt, name)


def test_word_level_training_reports_perplexity(tmp_path, corpus):
    cfg = small(level="word", max_vocab=30, steps=4, eval_every=2, seq_len=6)
    data = prepare_data([corpus], cfg)
    assert len(data.vocab) == 30 and data.vocab.tokens[0] == "<unk>"
    assert data.vocab.decode(data.train[:12]) in TEXT or "<unk>" in data.vocab.decode(data.train[:12])
    lines = []
    Trainer(cfg, data, tmp_path, log=lines.append).run()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert all(math.isclose(r["val_ppl"], math.exp(r["val_loss"])) for r in rows)
    assert any("ETA" in line for line in lines)


def _train_cli(capsys, corpus, out, *extra):
    base = ["train", corpus, "--out", out, "--hidden-size", 8, "--seq-len", 8, "--batch-size", 2, "--eval-tokens", 100]
    return run_cli(capsys, *base, *extra)


def test_cli_resume_never_discards_another_run_or_later_progress(tmp_path, corpus, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train_cli(capsys, corpus, a, "--steps", 4, "--eval-every", 2)[0] == 0
    assert _train_cli(capsys, corpus, b, "--steps", 4, "--eval-every", 2, "--seed", 5)[0] == 0
    b_files = {p.name: p.read_bytes() for p in b.iterdir()}
    code, _, err = run_cli(capsys, "train", corpus, "--resume", a / "latest.safetensors", "--steps", 6, "--out", b)
    assert code == 2 and "holds another run" in err
    assert {p.name: p.read_bytes() for p in b.iterdir()} == b_files  # untouched

    # best (step 2) is older than latest (step 4): resuming from it would discard steps 3-4.
    run_cli(capsys, "train", corpus, "--resume", a / "latest.safetensors", "--steps", 4)
    best_step = load_checkpoint(a / "best.safetensors").train["step"]
    if best_step < 4:
        code, _, err = run_cli(capsys, "train", corpus, "--resume", a / "best.safetensors", "--steps", 8)
        assert code == 2 and f"resuming would discard steps {best_step + 1}-4" in err
    code, _, err = run_cli(capsys, "train", corpus, "--resume", a / "latest.safetensors")
    assert code == 0 and "nothing to do: the run is complete at step 4 of 4" in err


def test_cli_resume_of_an_early_stopped_run_does_nothing(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    args = ("--steps", 40, "--eval-every", 1, "--patience", 1, "--optimizer", "sgd", "--lr", 5, "--clip", 1)
    code, _, err = _train_cli(capsys, corpus, out, *args, "--cell", "elman")
    assert code == 0, err
    assert "early stopping at step" in err
    record = load_checkpoint(out / "latest.safetensors").train
    assert record["stopped"].startswith("early stopping at step")
    before = (out / "latest.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "train", corpus, "--resume", out / "latest.safetensors", "--steps", 80)
    assert code == 0 and "nothing to do: early stopping" in err
    assert (out / "latest.safetensors").read_bytes() == before


def test_cli_resume_with_other_text_names_the_checkpoint(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert _train_cli(capsys, corpus, out, "--steps", 2, "--eval-every", 2)[0] == 0
    other = tmp_path / "other.txt"
    other.write_text(TEXT + "x = 1\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "train", other, "--resume", out / "latest.safetensors", "--steps", 4)
    assert code == 2 and f"{out / 'latest.safetensors'}: the training text differs" in err


def test_fifo_inputs_are_refused_not_read(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, "train", fifo)
    assert code == 2 and "not a regular file" in err
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "pipe.txt")
    (folder / "a.txt").write_text(TEXT)
    from bptt.corpus import read_corpus

    assert read_corpus([folder]).files == (str(folder / "a.txt"),)  # the FIFO is skipped, not opened
    code, _, err = run_cli(capsys, "info", fifo)
    assert code == 2 and "not a checkpoint file" in err


def test_sample_into_a_closed_pipe_is_quiet(trained):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "bptt.cli", "sample", str(trained), "-n", "20000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""


def test_tiny_temperature_is_greedy(trained, capsys):
    greedy = run_cli(capsys, "sample", trained, "--prime", "def ", "-n", 30, "--greedy")[1]
    cold = run_cli(capsys, "sample", trained, "--prime", "def ", "-n", 30, "--temperature", "1e-300")
    assert cold[0] == 0 and cold[1] == greedy and cold[2] == ""


# -- training health: gradient norms, clipping, spectral norms, saturation ---------------------------


def _recording(tr):
    """Wrap ``tr.train_step`` so that every step's outputs are kept, in order."""
    outs, step = [], tr.train_step

    def train_step():
        outs.append(step())
        return outs[-1]

    tr.train_step = train_step
    return outs


def _rows(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_metrics_rows_carry_the_gradient_health_of_every_parameter_and_layer(tmp_path, corpus):
    cfg = small(cell="gru", num_layers=2, dtype="float64", steps=10, eval_every=4)
    data = prepare_data([corpus], cfg)
    tr = Trainer(cfg, data, tmp_path, log=lambda m: None)
    outs = _recording(tr)
    tr.run()
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == [4, 8, 10]
    for row, (lo, hi) in zip(rows, [(0, 4), (4, 8), (8, 10)], strict=True):
        norms = [o["grad_norm"] for o in outs[lo:hi]]
        assert row["grad_norm"] == norms[-1]
        assert row["grad_norm_max"] == max(norms)
        assert row["grad_norm_mean"] == pytest.approx(sum(norms) / len(norms), rel=1e-15)
        assert row["clipped_steps"] == sum(o["clipped"] for o in outs[lo:hi])
        per_param = [row[f"grad_norm/{k}"] for k in tr.model.params]
        assert all(v > 0 for v in per_param)
        assert math.sqrt(sum(v * v for v in per_param)) == pytest.approx(row["grad_norm"], rel=1e-12)
        for k in range(2):
            assert row[f"spectral_norm/layer{k}"] > 0 and row[f"spectral_radius/layer{k}"] > 0
            assert 0.0 <= row[f"saturation/layer{k}"] <= 1.0
    for k in range(2):  # the last row describes the final weights
        W = tr.model.params[f"W_l{k}"]
        assert rows[-1][f"spectral_norm/layer{k}"] == pytest.approx(np.linalg.norm(W, 2), rel=1e-12)


@pytest.mark.parametrize("clip", [1e-8, None])
def test_clipped_steps_counts_the_clipped_steps_of_each_interval(tmp_path, corpus, clip):
    cfg = small(cell="elman", steps=10, eval_every=4, clip=clip)
    data = prepare_data([corpus], cfg)
    lines = []
    Trainer(cfg, data, tmp_path, log=lines.append).run()
    rows = _rows(tmp_path)
    expected = [4, 4, 2] if clip is not None else [0, 0, 0]  # a tiny threshold clips every step
    assert [r["clipped_steps"] for r in rows] == expected
    evaluations = [line for line in lines if line.startswith("step ") and "val bpc" in line]
    assert len(evaluations) == 3
    warned = [line for line in evaluations if "warning: gradient clipped on" in line]
    assert len(warned) == (3 if clip is not None else 0), evaluations
    if clip is not None:
        assert "gradient clipped on 4 of 4 steps" in warned[0]


def test_health_metrics_match_a_fresh_backward_pass_at_the_same_state(tmp_path, corpus):
    """The last step's per-parameter norms and saturation, recomputed from the weights before it."""
    cfg = small(cell="elman", dtype="float64", steps=4, eval_every=4, optimizer="sgd", lr=0.05)
    data = prepare_data([corpus], cfg)
    model = build_model(cfg, len(data.vocab))
    for p in model.params.values():
        p *= 3.0  # some tanh units saturate
    tr = Trainer(cfg, data, tmp_path, model=model, log=lambda m: None)
    for _ in range(3):
        tr.train_step()
    before, carried, pos = tr.model.copy(), dict(tr.state.carried), tr.state.pos
    tr.run()  # step 4, then the evaluation
    (row,) = _rows(tmp_path)
    x, y = tr.streams[:, pos : pos + 8].T, tr.streams[:, pos + 1 : pos + 9].T
    fresh = before.loss_and_grad(x, y, carried, loss_weights=np.full(x.shape, 1 / 8))
    for k, g in fresh.grads.items():
        if k in before.params:
            assert row[f"grad_norm/{k}"] == pytest.approx(np.linalg.norm(g), rel=1e-12), k
    H = fresh.forward.hidden[0]  # (T, B, H): every step of every stream
    saturation = float(np.mean(np.abs(H) > 0.99))
    assert 0.0 < saturation < 1.0
    assert row["saturation/layer0"] == pytest.approx(saturation, rel=1e-12)
    assert row["spectral_norm/layer0"] == pytest.approx(np.linalg.norm(tr.model.params["W"], 2), rel=1e-12)
    radius = np.abs(np.linalg.eigvals(tr.model.params["W"])).max()
    assert row["spectral_radius/layer0"] == pytest.approx(radius, rel=1e-12)


def test_a_saturated_layer_is_reported_on_the_evaluation_line(tmp_path, corpus):
    cfg = small(cell="elman", steps=2, eval_every=2, optimizer="sgd", lr=1e-6, clip=None)
    data = prepare_data([corpus], cfg)
    model = build_model(cfg, len(data.vocab))
    model.params["b_h"][...] = 5.0  # tanh(5 + small) > 0.99: nearly every unit saturated
    lines = []
    Trainer(cfg, data, tmp_path, model=model, log=lines.append).run()
    (row,) = _rows(tmp_path)
    assert row["saturation/layer0"] > 0.9
    (line,) = [line for line in lines if line.startswith("step 2: ")]
    assert "of layer 0's units saturated" in line and "clipped" not in line


def test_checkpoints_without_gradient_statistics_still_resume(tmp_path, corpus):
    cfg = small(steps=4, eval_every=2)
    data = prepare_data([corpus], cfg)
    tr = Trainer(cfg, data, tmp_path, log=lambda m: None)
    tr.should_stop = lambda: tr.state.step >= 3
    tr.run()
    rec = tr.state.record()
    assert rec["clipped_steps"] == tr.state.clipped_steps and rec["grad_norm_sum"] > 0
    old = {k: v for k, v in rec.items() if k not in ("grad_norm_max", "grad_norm_sum", "clipped_steps")}
    state = TrainState.from_record(old, tr.state.carried)
    assert (state.grad_norm_max, state.grad_norm_sum, state.clipped_steps) == (0.0, 0.0, 0)
    assert state.step == 3 and state.window_n == 1


# -- clipping by value, dropout -------------------------------------------------------------------

NEW_SETTINGS = ("clip_value", "dropout", "recurrent_dropout")


def test_new_settings_default_to_off_and_old_configs_load():
    d = TrainConfig()
    assert (d.clip_value, d.dropout, d.recurrent_dropout) == (None, 0.0, 0.0)
    old = {k: v for k, v in small(clip=2.0).to_json().items() if k not in NEW_SETTINGS}  # before these existed
    cfg = TrainConfig.from_json(old)
    assert cfg == small(clip=2.0)
    new = dict(clip_value=0.5, num_layers=2, dropout=0.25, recurrent_dropout=0.1)
    assert TrainConfig.from_json(small(**new).to_json()) == small(**new)


@pytest.mark.parametrize(
    "settings, pattern",
    [
        (dict(clip_value=0.0), r"clip_value must be a finite number > 0, got 0.0"),
        (dict(clip_value=-1), r"clip_value must be a finite number > 0, got -1"),
        (dict(clip_value=float("inf")), r"clip_value must be a finite number > 0, got inf"),
        (dict(dropout=1.0), r"dropout must be a finite number in \[0, 1\), got 1.0"),
        (dict(dropout=-0.1), r"dropout must be a finite number in \[0, 1\), got -0.1"),
        (dict(recurrent_dropout=1.5), r"recurrent_dropout must be a finite number in \[0, 1\), got 1.5"),
        (dict(recurrent_dropout=float("nan")), r"recurrent_dropout must be a finite number in \[0, 1\), got nan"),
    ],
)
def test_new_settings_are_validated(settings, pattern):
    with pytest.raises(ValueError, match=pattern):
        small(**settings)


def test_dropout_needs_stacked_layers():
    with pytest.raises(ValueError, match=r"dropout acts between stacked layers .* needs num_layers ≥ 2"):
        small(dropout=0.2)
    assert small(num_layers=2, dropout=0.2).dropout == 0.2
    assert small(recurrent_dropout=0.2).recurrent_dropout == 0.2  # one layer: recurrent dropout only


def test_clip_value_clamps_each_entry_after_the_norm_clip(corpus):
    cfg = small(cell="elman", dtype="float64", optimizer="sgd", lr=0.1, clip=0.2, clip_value=0.02, steps=1)
    data = prepare_data([corpus], cfg)
    tr = Trainer(cfg, data, corpus.parent / "run")
    m = tr.model.copy()
    x, y = tr.streams[:, :8].T, tr.streams[:, 1:9].T
    grads = m.loss_and_grad(x, y, loss_weights=np.full(x.shape, 1 / 8)).grads
    norm_first = {k: g.copy() for k, g in grads.items()}
    norm = clip_grad_norm(norm_first, 0.2, names=m.params)
    peak = clip_grad_value(norm_first, 0.02, names=m.params)
    value_first = {k: g.copy() for k, g in grads.items()}
    clip_grad_value(value_first, 0.02, names=m.params)
    clip_grad_norm(value_first, 0.2, names=m.params)
    assert norm > 0.2 and peak > 0.02  # both clips act on this step
    assert not all(np.allclose(norm_first[k], value_first[k]) for k in m.params)  # and their order matters

    out = tr.train_step()
    assert out["clipped"] == 1.0 and out["value_clipped"] == 1.0 and out["grad_norm"] == norm
    for k in m.params:
        np.testing.assert_allclose(tr.model.params[k], m.params[k] - 0.1 * norm_first[k], rtol=1e-13, atol=1e-15)


def test_clip_value_alone_and_off(corpus):
    base = dict(cell="elman", dtype="float64", optimizer="sgd", lr=0.1, clip=None, steps=1)
    data = prepare_data([corpus], small(**base))
    off = Trainer(small(**base), data, corpus.parent / "a")
    loose = Trainer(small(**base, clip_value=1e6), data, corpus.parent / "b")
    tight = Trainer(small(**base, clip_value=1e-3), data, corpus.parent / "c")
    start = {k: v.copy() for k, v in off.model.params.items()}
    outs = [tr.train_step() for tr in (off, loose, tight)]
    assert [o["value_clipped"] for o in outs] == [0.0, 0.0, 1.0]
    assert all(o["clipped"] == 0.0 for o in outs)
    for k in start:
        np.testing.assert_array_equal(off.model.params[k], loose.model.params[k])  # nothing above 1e6
        assert np.abs(tight.model.params[k] - start[k]).max() <= 0.1 * 1e-3 * (1 + 1e-12)  # each entry ≤ lr·v


def test_build_model_passes_dropout_only_when_set(monkeypatch):
    import bptt.train

    calls = []

    def fake(*args, **kwargs):
        calls.append(kwargs)

    monkeypatch.setitem(bptt.train.MODELS, "gru", fake)
    build_model(small(), 10)
    build_model(small(num_layers=2, dropout=0.3), 10)
    build_model(small(recurrent_dropout=0.2), 10)
    assert "dropout" not in calls[0] and "recurrent_dropout" not in calls[0]  # the same model as before dropout
    assert (calls[1]["dropout"], calls[1]["recurrent_dropout"]) == (0.3, 0.0)
    assert (calls[2]["dropout"], calls[2]["recurrent_dropout"]) == (0.0, 0.2)


def test_train_state_records_and_restores_the_dropout_generator():
    rng = np.random.default_rng(7)
    rng.random(5)  # somewhere in the stream
    state = TrainState(step=3, dropout_rng=rng)
    rec = json.loads(json.dumps(state.record()))  # as a checkpoint stores it
    again = TrainState.from_record(rec, {})
    assert again.step == 3
    assert np.array_equal(again.dropout_rng.random(100), rng.random(100))
    assert "dropout_rng" not in TrainState(step=3).record()  # runs without dropout: the record of before
    assert TrainState.from_record(TrainState(step=3).record(), {}).dropout_rng is None
    with pytest.raises(ValueError, match=r"dropout_rng must be a PCG64 state"):
        TrainState.from_record({**rec, "dropout_rng": {"bit_generator": "MT19937"}}, {})


def test_dropout_generator_is_seeded_by_the_run_seed_apart_from_the_sample_streams():
    from bptt.train import dropout_generator

    assert dropout_generator(small()) is None
    a, b, c = (dropout_generator(small(recurrent_dropout=0.1, seed=s)) for s in (0, 0, 1))
    assert a.bit_generator.state == b.bit_generator.state != c.bit_generator.state
    first = a.random(4)
    for step in range(3):  # Trainer.sample draws from default_rng([seed, step])
        assert not np.array_equal(np.random.default_rng([0, step]).random(4), first)


def test_resume_refuses_a_dropout_run_without_its_generator(tmp_path, corpus):
    import dataclasses

    cfg = small(steps=4, eval_every=2, recurrent_dropout=0.3)
    data = prepare_data([corpus], cfg)
    tr = Trainer(cfg, data, tmp_path, log=lambda m: None)
    tr.save("latest.safetensors")
    ckpt = load_checkpoint(tmp_path / "latest.safetensors")
    assert "dropout_rng" in ckpt.train
    stripped = dataclasses.replace(ckpt, train={k: v for k, v in ckpt.train.items() if k != "dropout_rng"})
    with pytest.raises(TrainingError, match=r"uses dropout but its checkpoint has no dropout RNG state"):
        Trainer.resume(tmp_path / "latest.safetensors", data, tmp_path, ckpt=stripped)
    broken = dataclasses.replace(ckpt, train={**ckpt.train, "dropout_rng": {"bit_generator": "PCG64"}})
    with pytest.raises(TrainingError, match=r"malformed training record"):
        Trainer.resume(tmp_path / "latest.safetensors", data, tmp_path, ckpt=broken)


def test_runs_without_dropout_never_pass_a_generator(tmp_path, corpus):
    cfg = small(steps=2, eval_every=2)
    data = prepare_data([corpus], cfg)
    tr = Trainer(cfg, data, tmp_path, log=lambda m: None)
    seen, loss_and_grad = [], tr.model.loss_and_grad

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return loss_and_grad(*args, **kwargs)

    tr.model.loss_and_grad = spy
    tr.run()
    assert len(seen) == 2 and all("dropout_rng" not in kw for kw in seen)


# These need the engine's dropout (bptt.Elman/LSTM/GRU(..., dropout=, recurrent_dropout=) and
# loss_and_grad(..., dropout_rng=)).


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_dropout_changes_training_but_never_evaluation(tmp_path, corpus, cell):
    kw = dict(cell=cell, dtype="float64", num_layers=2, steps=3, eval_every=3)
    data = prepare_data([corpus], small(**kw))
    plain = Trainer(small(**kw), data, tmp_path / "plain", log=lambda m: None)
    dropped = Trainer(small(**kw, dropout=0.4, recurrent_dropout=0.3), data, tmp_path / "drop", log=lambda m: None)
    for name in plain.model.params:  # the same initial weights: dropout adds no parameters
        np.testing.assert_array_equal(plain.model.params[name], dropped.model.params[name])
    # Evaluation runs the whole network: equal losses, and no mask drawn.
    before = dropped.state.dropout_rng.bit_generator.state
    assert dropped.evaluate() == plain.evaluate()
    assert dropped.evaluate() == plain.evaluate()
    assert dropped.state.dropout_rng.bit_generator.state == before
    assert evaluate_loss(dropped.model, data.val, 4, 8, 400) == evaluate_loss(plain.model, data.val, 4, 8, 400)
    # Training drops: the same windows give another loss, and the generator advances.
    a, b = plain.train_step(), dropped.train_step()
    assert a["loss"] != b["loss"]
    assert dropped.state.dropout_rng.bit_generator.state != before
    # The same run twice is the same run.
    again = Trainer(small(**kw, dropout=0.4, recurrent_dropout=0.3), data, tmp_path / "again", log=lambda m: None)
    assert again.train_step()["loss"] == b["loss"]


def test_dropout_run_draws_masks_from_the_state_generator(tmp_path, corpus):
    cfg = small(cell="gru", dtype="float64", num_layers=2, steps=2, eval_every=2, dropout=0.2, recurrent_dropout=0.1)
    data = prepare_data([corpus], cfg)
    tr = Trainer(cfg, data, tmp_path, log=lambda m: None)
    seen, loss_and_grad = [], tr.model.loss_and_grad

    def spy(*args, **kwargs):
        seen.append(kwargs.get("dropout_rng"))
        return loss_and_grad(*args, **kwargs)

    tr.model.loss_and_grad = spy
    tr.run()
    assert len(seen) == 2 and all(rng is tr.state.dropout_rng for rng in seen)


def test_cli_train_with_dropout_and_clip_value(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    extra = ("--steps", 4, "--eval-every", 2, "--layers", 2, "--dropout", 0.2, "--recurrent-dropout", 0.1)
    extra += ("--clip-value", 0.5)
    code, _, err = _train_cli(capsys, corpus, out, *extra)
    assert code == 0, err
    cfg = bptt.train.checkpoint_config(load_checkpoint(out / "latest.safetensors"))
    assert (cfg.dropout, cfg.recurrent_dropout, cfg.clip_value) == (0.2, 0.1, 0.5)
    code, _, err = run_cli(capsys, "train", corpus, "--resume", out / "latest.safetensors", "--steps", 6)
    assert code == 0, err


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (["--clip-value", "-1"], r"clip_value must be a finite number > 0, got -1.0"),
        (["--dropout", "1"], r"dropout must be a finite number in \[0, 1\), got 1.0"),
        (["--recurrent-dropout", "-0.5"], r"recurrent_dropout must be a finite number in \[0, 1\), got -0.5"),
    ],
)
def test_cli_refuses_bad_dropout_and_clip_value(tmp_path, corpus, capsys, extra, pattern):
    code, _, err = run_cli(capsys, "train", corpus, "--out", tmp_path / "run", *extra)
    assert code == 2 and re.search(pattern, err), err


def test_cli_clip_value_zero_is_off(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    code, _, err = _train_cli(capsys, corpus, out, "--steps", 2, "--eval-every", 2, "--clip-value", 0)
    assert code == 0, err
    cfg = bptt.train.checkpoint_config(load_checkpoint(out / "latest.safetensors"))
    assert cfg.clip_value is None and cfg.dropout == 0.0 and cfg.recurrent_dropout == 0.0
