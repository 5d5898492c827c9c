"""Hostile and damaged files (issue 17): nested JSON, forged training records, kill -9 mid-save, messages, blow-ups.

A forger can edit any checkpoint and recompute its SHA-256 (``_forge`` below does exactly
that), so every check behind the checksum is exercised here with the checksum passing.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

import bptt
import bptt.files.atomic
import bptt.files.checkpoint
import bptt.training.train
from bptt.checkpoint import Checkpoint, CheckpointError, _digest, load_checkpoint, save_checkpoint
from bptt.cli import main
from bptt.files.atomic import STALE_AFTER, remove_stale_temps, write_atomic
from bptt.files.untrusted import MAX_DEPTH, elide, json_depth, parse_json
from bptt.optim import Adam, RMSprop
from bptt.train import TrainConfig, Trainer, TrainingError, TrainState, prepare_data
from bptt.training.evaluation import truncate_metrics

TEXT = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(60))
DROP = object()  # a record field to delete
MAX_LINE = 500  # an error line: the path (under 150 characters here) and at most ~300 of the file's content


def small(**kw) -> TrainConfig:
    base = dict(hidden_size=16, seq_len=8, batch_size=4, steps=6, eval_every=3, eval_tokens=200, lr=5e-3)
    return TrainConfig(**(base | kw))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 6-step run with recurrent dropout (so its record has every field): its corpus and latest checkpoint."""
    folder = tmp_path_factory.mktemp("run")
    corpus = folder / "code.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    cfg = small(recurrent_dropout=0.1)
    Trainer(cfg, prepare_data([corpus], cfg), folder, log=lambda m: None).run()
    latest = folder / "latest.safetensors"
    return SimpleNamespace(corpus=corpus, latest=latest, record=load_checkpoint(latest).train)


def _read(path: Path) -> tuple[dict, dict]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n])["__metadata__"], dict(st_load(data))


def _forge(src: Path, dst: Path, meta=None, record=None, tensors=None) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with edits, then recompute the checksum, as a forger would."""
    meta_, ts = _read(src)
    meta_.pop("sha256")
    meta_.update(meta or {})
    if record is not None:
        rec = json.loads(meta_["train"])
        rec.update(record)
        meta_["train"] = json.dumps({k: v for k, v in rec.items() if v is not DROP})
    if tensors is not None:
        tensors(ts)
    meta_["sha256"] = _digest(ts, meta_)
    dst.write_bytes(st_save(ts, metadata=meta_))
    return dst


def _no_training(monkeypatch) -> None:
    """Make a resumed run fail at once instead of training on a forged record (from step -10⁹: a hang)."""

    def refuse(self):
        raise AssertionError(f"trained from a forged record: step {self.state.step}, pos {self.state.pos}")

    monkeypatch.setattr(Trainer, "train_step", refuse)


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _one_line_error(code: int, err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("bptt: error: "), err[:1000]
    assert len(lines[0]) < MAX_LINE, lines[0][:1000]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- 1. deeply nested JSON ------------------------------------------------------------------

NESTINGS = {"list": "[", "object": '{"a":'}


@pytest.mark.parametrize("nesting", list(NESTINGS))
def test_a_deeply_nested_header_is_refused_in_one_line(tmp_path, capsys, run, nesting):
    path = tmp_path / "deep.safetensors"
    header = (NESTINGS[nesting] * 100_000).encode()  # no checksum needed: the header is read first
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match=r"deep\.safetensors: not a bptt checkpoint \(header: JSON nested 100000"):
        load_checkpoint(path)
    for argv in (["info", path], ["sample", path, "-n", 5], ["train", run.corpus, "--resume", path]):
        _one_line_error(*_cli(capsys, *argv), str(path), "nested 100000 levels deep")


@pytest.mark.parametrize("nesting", list(NESTINGS))
@pytest.mark.parametrize("field", ["model", "vocab", "train", "optim"])
def test_deeply_nested_metadata_is_refused_naming_the_field(tmp_path, capsys, run, field, nesting):
    path = _forge(run.latest, tmp_path / "latest.safetensors", meta={field: NESTINGS[nesting] * 100_000})
    with pytest.raises(CheckpointError, match=rf"malformed checkpoint metadata '{field}' \(JSON nested 100000"):
        load_checkpoint(path)
    for argv in (["info", path], ["sample", path, "-n", 5], ["train", run.corpus, "--resume", path, "--steps", 9]):
        _one_line_error(*_cli(capsys, *argv), str(path), f"'{field}'")


def test_json_depth_skips_strings_and_takes_linear_time():
    assert [json_depth(t) for t in ("1", "[]", "[[1]]", '{"a": [1, {"b": "[[[["}]}')] == [0, 1, 2, 3]
    assert json_depth(r'["\\", [2]]') == 2 and json_depth(r'{"a\"[": [[]]}') == 3  # escapes inside strings
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) == parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    with pytest.raises(ValueError, match=rf"JSON nested {MAX_DEPTH + 1} levels deep \(at most {MAX_DEPTH} allowed\)"):
        parse_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(ValueError, match=r"not valid JSON \(Exceeds the limit"):
        parse_json("1" * 5000)  # Python's own limit on integer digits, as a ValueError like every other
    t0 = time.perf_counter()
    assert json_depth('"' + '\\"' * 1_000_000) == 0  # a string that never closes: no backtracking over it
    assert json_depth("[]," * 1_000_000) == 1
    assert time.perf_counter() - t0 < 2.0


def test_an_oversized_header_is_refused_before_it_is_parsed(tmp_path, run, monkeypatch):
    monkeypatch.setattr(bptt.files.checkpoint, "MAX_HEADER", 1000)
    with pytest.raises(CheckpointError, match=r"not a bptt checkpoint \(header of [\d,]+ bytes; at most 1,000\)"):
        load_checkpoint(run.latest)


def test_a_deeply_nested_metrics_line_is_dropped_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n' + "[" * 100_000 + "\n" + '{"step": 2}\n{"step": 9}\n', encoding="utf-8")
    truncate_metrics(path, 2)
    assert path.read_text(encoding="utf-8") == '{"step": 1}\n{"step": 2}\n'


# -- 2. forged training records ---------------------------------------------------------------

RNG_FLOAT = {"bit_generator": "PCG64", "state": {"state": 1.5, "inc": 3}, "has_uint32": 0, "uinteger": 0}
FORGED_RECORDS = {
    "step-negative": ({"step": -1_000_000_000}, r"step must be an integer in [0, 2**62], got -1000000000"),
    "step-bool": ({"step": True}, r"step must be an integer in [0, 2**62], got True"),
    "step-float": ({"step": 6.0}, r"step must be an integer in [0, 2**62], got 6.0"),
    "step-later": ({"step": 7}, "tokens must be step × seq_len × batch_size = 224, got 192"),
    "step-later-all": ({"step": 7, "tokens": 224}, "pos must be 56 at step 7"),
    "window_n-negative": ({"window_n": -2}, r"window_n must be an integer in [0, 2**62], got -2"),
    "window_n-past-eval": ({"window_n": 5}, "window_n must be < eval_every = 3"),
    "pos-negative": ({"pos": -1000}, r"pos must be an integer in [0, 2**62], got -1000"),
    "pos-elsewhere": ({"pos": 16}, "pos must be 48 at step 6"),
    "epoch": ({"epoch": 2}, "epoch must be 0 at step 6"),
    "epoch-past-step": ({"epoch": 7}, "epoch must be ≤ step = 6"),
    "tokens-text": ({"tokens": "abc"}, "tokens must be an integer in [0, 2**62], got 'abc'"),
    "tokens-huge": ({"tokens": 2**70}, "tokens must be an integer in [0, 2**62]"),
    "tokens-wrong": ({"tokens": 10}, "tokens must be step × seq_len × batch_size = 192, got 10"),
    "window_loss-int": ({"window_loss": 0}, "window_loss must be a finite float ≥ 0, got 0"),
    "window_loss-inf": ({"window_loss": float("inf")}, "window_loss must be a finite float ≥ 0, got inf"),
    "window_loss-alone": ({"window_loss": 2.5}, "window_loss must be 0.0 when window_n is 0"),
    "clipped_steps": ({"clipped_steps": 1}, "clipped_steps must be ≤ window_n = 0"),
    "grad_norm_max": (
        {"window_n": 1, "window_loss": 1.0, "grad_norm_max": 2.0, "grad_norm_sum": 1.0},
        "grad_norm_max must be ≤ grad_norm_sum = 1.0",
    ),
    "best_val-nan": ({"best_val": float("nan")}, "best_val must be null or a finite float ≥ 0"),
    "best_val-text": ({"best_val": "low"}, "best_val must be null or a finite float ≥ 0"),
    "bad_evals-before-eval": ({"best_val": None, "bad_evals": 1}, "bad_evals must be 0 before the first evaluation"),
    "stopped-huge": ({"stopped": "x" * 1_000_000}, "stopped must be null or a one-line note of at most 300 characters"),
    "stopped-number": ({"stopped": 5}, "stopped must be null or a one-line note"),
    "stopped-escapes": ({"stopped": "done\n\x1b[2J"}, "stopped must be null or a one-line note"),
    "unknown-field": ({"foo": 1}, "unknown field 'foo'"),
    "missing-field": ({"pos": DROP}, "no 'pos' field"),
    "rng-float": ({"dropout_rng": RNG_FLOAT}, "dropout_rng must be a PCG64 state"),
    "rng-missing": ({"dropout_rng": DROP}, "the run uses dropout but its checkpoint has no dropout RNG state"),
    "data-extra": ({"data": "DATA+x"}, "data must be {'files': count"),
    "config-list": ({"config": "CONFIG+cell"}, "malformed training record: config: cell must be a string, got ['x'"),
    "config-model": ({"config": "CONFIG+hidden_size"}, "a model with a layer {'kind': 'gru', 'hidden_size': 32"),
    "config-layers": ({"config": "CONFIG+num_layers"}, "describes a model with layers (number of) 10000000000"),
    "config-missing": ({"config": DROP}, "no training settings"),
}


def _record_edit(run, edit: dict) -> dict:
    out = {}
    for k, v in edit.items():
        if v == "DATA+x":
            v = {**run.record["data"], "x": 1}
        elif v == "CONFIG+cell":
            v = {**run.record["config"], "cell": ["x"] * 100_000}
        elif v == "CONFIG+hidden_size":
            v = {**run.record["config"], "hidden_size": 32}
        elif v == "CONFIG+num_layers":
            v = {**run.record["config"], "num_layers": 10**10}
        out[k] = v
    return out


@pytest.mark.parametrize("case", list(FORGED_RECORDS))
def test_a_forged_training_record_is_refused_naming_file_and_field(tmp_path, capsys, monkeypatch, run, case):
    _no_training(monkeypatch)
    edit, expected = FORGED_RECORDS[case]
    path = _forge(run.latest, tmp_path / "latest.safetensors", record=_record_edit(run, edit))
    line = _one_line_error(*_cli(capsys, "train", run.corpus, "--resume", path, "--steps", 9), str(path), expected)
    assert "Traceback" not in line and not (tmp_path / "metrics.jsonl").exists()  # nothing trained


@pytest.mark.parametrize("case", ["step-negative", "tokens-text", "best_val-text", "stopped-huge", "step-bool"])
def test_info_refuses_a_forged_record_in_one_line(tmp_path, capsys, run, case):
    edit, expected = FORGED_RECORDS[case]
    path = _forge(run.latest, tmp_path / "latest.safetensors", record=edit)
    line = _one_line_error(*_cli(capsys, "info", path), str(path), expected)
    assert "Cannot specify" not in line and "format code" not in line  # never a raw Python message


FORGED_OPTIMIZERS = {
    "steps-infinite": ('{"name": "adam", "steps": Infinity}', "steps must be an integer in [0, 2**62], got inf"),
    "steps-bool": ('{"name": "adam", "steps": true}', "steps must be an integer in [0, 2**62], got True"),
    "steps-negative": ('{"name": "adam", "steps": -3}', "steps must be an integer in [0, 2**62], got -3"),
    "steps-other": ('{"name": "adam", "steps": 5}', "optimizer steps must be the training step 6"),
    "name-huge": (json.dumps({"name": "x" * 1_000_000, "steps": 6}), "state is for optimizer 'xxx"),
}


@pytest.mark.parametrize("case", list(FORGED_OPTIMIZERS))
def test_a_forged_optimizer_record_is_refused(tmp_path, capsys, monkeypatch, run, case):
    _no_training(monkeypatch)
    optim, expected = FORGED_OPTIMIZERS[case]
    path = _forge(run.latest, tmp_path / "latest.safetensors", meta={"optim": optim})
    _one_line_error(*_cli(capsys, "train", run.corpus, "--resume", path, "--steps", 9), str(path), expected)


def _set(name, fn):
    def edit(ts):
        ts[name] = fn(ts[name])

    return edit


FORGED_TENSORS = {
    "carried-shape": (_set("state/h0", lambda a: a[:2].copy()), "carried state 'h0' must be float32 (4, 16)"),
    "carried-dtype": (_set("state/h0", lambda a: a.astype(np.float64)), "carried state 'h0' must be float32"),
    "carried-extra": (lambda ts: ts.update({"state/zz": np.zeros(3, np.float32)}), "carried state must be the model's"),
    "optim-extra": (lambda ts: ts.update({"optim/m/Q": np.zeros(3, np.float32)}), "unexpected state array 'm/Q'"),
    "optim-dtype": (_set("optim/v/W", lambda a: a.astype(np.float64)), "v/W must have dtype float32 like its"),
    "optim-missing": (lambda ts: ts.pop("optim/m/b_y"), "m/b_y must have shape (25,), got nothing"),
    "optim-inf": (_set("optim/v/W", lambda a: a * np.inf), "tensor 'optim/v/W' holds NaN or Inf"),
}


@pytest.mark.parametrize("case", list(FORGED_TENSORS))
def test_forged_state_arrays_are_refused(tmp_path, capsys, monkeypatch, run, case):
    _no_training(monkeypatch)
    edit, expected = FORGED_TENSORS[case]
    path = _forge(run.latest, tmp_path / "latest.safetensors", tensors=edit)
    _one_line_error(*_cli(capsys, "train", run.corpus, "--resume", path, "--steps", 9), str(path), expected)


def test_train_state_from_record_names_the_field():
    rec = TrainState(step=3, pos=24, tokens=96).record()
    with pytest.raises(ValueError, match=r"run\.safetensors: malformed training record: window_n must be an integer"):
        TrainState.from_record({**rec, "window_n": -2}, {}, "run.safetensors")
    with pytest.raises(ValueError, match=r"training record: malformed training record: step must be an integer"):
        TrainState.from_record({**rec, "step": False}, {})
    assert TrainState.from_record(rec, {}).step == 3


def test_every_genuine_checkpoint_over_several_epochs_resumes(tmp_path):
    """No false refusal: real records pass at every step, across epochs, mid-interval, with dropout and clipping."""
    corpus = tmp_path / "short.txt"
    corpus.write_text(TEXT[:400], encoding="utf-8")  # 11 steps per epoch
    cfg = small(steps=26, eval_every=4, checkpoint_every=1, bptt_len=12, clip=1e-3, recurrent_dropout=0.1)
    data = prepare_data([corpus], cfg)
    straight = Trainer(cfg, data, tmp_path / "straight", log=lambda m: None)
    straight.run()
    tr = Trainer(cfg, data, tmp_path / "split", log=lambda m: None)
    for k in range(1, 27):  # stop after every step, resume from its checkpoint
        tr.should_stop = lambda t=tr, k=k: t.state.step >= k
        tr.run()
        tr = Trainer.resume(tmp_path / "split" / "latest.safetensors", data, tmp_path / "split", log=lambda m: None)
    assert (tr.state.step, tr.state.epoch, straight.state.epoch) == (26, 2, 2)
    assert all(np.array_equal(tr.model.params[k], straight.model.params[k]) for k in tr.model.params)


# -- 4. temporary files left by kill -9 -----------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _temps(folder: Path, name: str = "latest.safetensors") -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.startswith(f".{name}.") and f.endswith(".tmp"))


def test_a_save_removes_only_its_own_stale_temporary_files(tmp_path):
    target = tmp_path / "latest.safetensors"
    dead, live, me = _dead_pid(), os.getppid(), os.getpid()
    old = time.time() - STALE_AFTER - 60
    files = {
        f".latest.safetensors.{dead}-abcd1234.tmp": (None, False),  # its writer is gone
        f".latest.safetensors.{live}-abcd1234.tmp": (None, True),  # a save in progress (in a running process)
        f".latest.safetensors.{live}-old_1234.tmp": (old, False),  # untouched for over an hour: pid reused
        f".latest.safetensors.{me}-abcd1234.tmp": (None, False),  # this process's pid, not being written: reused
        ".latest.safetensors.k2j4_x9q.tmp": (None, True),  # an older bptt's, maybe still writing
        ".latest.safetensors.k2j4_x9z.tmp": (old, False),  # an older bptt's, long dead
        f".best.safetensors.{dead}-abcd1234.tmp": (None, True),  # another file's: not this save's business
        f".latest.safetensors.x.{dead}-abcd1234.tmp": (None, True),  # of the file "latest.safetensors.x"
        "notes.tmp": (None, True),
    }
    for name, (mtime, _) in files.items():
        (tmp_path / name).write_bytes(b"partial")
        if mtime is not None:
            os.utime(tmp_path / name, (mtime, mtime))
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == sorted(["latest.safetensors", *(n for n, (_, k) in files.items() if k)])
    assert remove_stale_temps(target) == []


def test_a_save_never_removes_the_file_another_save_of_this_process_is_writing(tmp_path, monkeypatch):
    target = tmp_path / "latest.safetensors"
    fsync, removed = os.fsync, []

    def fsync_while_another_save_starts(fd):
        if _temps(tmp_path):  # the file's fsync (not the folder's, after the rename)
            removed.extend(remove_stale_temps(target))  # what a second thread's write_atomic(target) does first
        fsync(fd)

    monkeypatch.setattr(bptt.files.atomic.os, "fsync", fsync_while_another_save_starts)
    write_atomic(target, b"whole")
    assert target.read_bytes() == b"whole" and removed == [] and _temps(tmp_path) == []


def test_resume_removes_the_stale_temporary_files_of_the_run(tmp_path, run):
    folder = tmp_path / "run"
    folder.mkdir()
    path = _forge(run.latest, folder / "latest.safetensors")
    dead = _dead_pid()
    for name in ("latest.safetensors", "best.safetensors", "metrics.jsonl"):
        (folder / f".{name}.{dead}-abcd1234.tmp").write_bytes(b"partial")
    cfg = TrainConfig.from_json(run.record["config"])
    Trainer.resume(path, prepare_data([run.corpus], cfg), folder, log=lambda m: None)
    assert sorted(os.listdir(folder)) == ["latest.safetensors"]


WORKER = """
import sys
import bptt
from bptt.checkpoint import Checkpoint, save_checkpoint
from bptt.optim import Adam

model = bptt.GRU(64, 192, 64, seed=0)  # a few MB a checkpoint: most of each loop is spent writing
optimizer = Adam(model.params, lr=1e-3)
print("ready", flush=True)
step = 0
while True:
    step += 1
    save_checkpoint(sys.argv[1], Checkpoint(model=model, train={"step": step}, optimizer=optimizer.state_dict()))
"""


def test_kill_9_during_saves_leaves_no_stale_temporary_file_after_the_next_save(tmp_path):
    path = tmp_path / "latest.safetensors"
    rng = np.random.default_rng(17)

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", WORKER, str(path)], stdout=subprocess.PIPE, text=True)

    workers = [start(), start()]  # two at once: neither may remove the file the other is writing
    kills = leftovers = 0
    deadline = time.monotonic() + 15.0
    while kills < 30 and time.monotonic() < deadline:
        w = workers[kills % 2]
        assert w.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.3))
        w.send_signal(signal.SIGKILL)
        assert w.wait() == -signal.SIGKILL, "a worker failed: its save in progress was disturbed"
        w.stdout.close()
        leftovers += any(f".{w.pid}-" in name for name in _temps(tmp_path))
        workers[kills % 2] = start()
        kills += 1
    for w in workers:
        w.kill()
        w.wait()
        w.stdout.close()
    assert kills >= 12 and leftovers >= 1, (kills, leftovers)  # the kills did hit saves mid-write
    load_checkpoint(path)  # whatever was killed, the checkpoint itself is whole
    save_checkpoint(path, Checkpoint(model=bptt.Elman(3, 4, 3, seed=0), train={"step": 0}))
    assert _temps(tmp_path) == []
    assert load_checkpoint(path).train == {"step": 0}


# -- 5. messages --------------------------------------------------------------------------------


def test_error_messages_quote_at_most_a_few_hundred_characters_of_a_file(tmp_path, capsys, run):
    huge = "ü" * 500_000
    cases = {
        "version": ({"version": huge}, "checkpoint version 'üüü"),
        "model": ({"model": json.dumps({"input_size": huge})}, "parameters do not match the model description"),
        "vocab": ({"vocab": json.dumps({"level": huge, "tokens": ["a"]})}, "malformed checkpoint metadata 'vocab'"),
        "settings": ({"train": json.dumps({**run.record, "config": {huge: 1}})}, "unknown training settings"),
        "lr": ({"train": json.dumps({**run.record, "config": {**run.record["config"], "lr": huge}})}, "lr must be"),
    }
    for name, (meta, expected) in cases.items():
        path = _forge(run.latest, tmp_path / f"{name}.safetensors", meta=meta)
        _one_line_error(*_cli(capsys, "train", run.corpus, "--resume", path), str(path), expected)
    assert elide("x" * 1000) == "x" * 259 + "…" + "x" * 40 and elide("a\nb") == "a b"


def test_a_full_disk_names_the_file_being_saved(tmp_path, monkeypatch, capsys, run):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(bptt.files.atomic.os, "fsync", full)
    target = tmp_path / "c.safetensors"
    with pytest.raises(OSError, match=rf"No space left on device: '{re.escape(str(target))}'") as info:
        save_checkpoint(target, Checkpoint(model=bptt.Elman(3, 4, 3, seed=0)))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert os.listdir(tmp_path) == []
    out = tmp_path / "run"
    small_run = ("--hidden-size", 8, "--seq-len", 8, "--batch-size", 4, "--steps", 2, "--eval-every", 2)
    code, err = _cli(capsys, "train", run.corpus, "--out", out, *small_run)
    last = err.strip().splitlines()[-1]  # after the lines that describe the run
    assert code == 2 and last == f"bptt: error: [Errno 28] No space left on device: '{out / 'latest.safetensors'}'"


# -- 6. non-finite stops say where ---------------------------------------------------------------

BLOW_UPS = {
    "elman-sgd": dict(cell="elman", activation="identity", optimizer="sgd", lr=1e30),
    "elman-sgd-slow": dict(cell="elman", activation="identity", optimizer="sgd", lr=1e3),
    "relu-adam": dict(cell="elman", activation="relu", optimizer="adam", lr=1e12),
    "adagrad": dict(cell="elman", activation="identity", optimizer="adagrad", lr=1e20),
    "momentum": dict(cell="elman", activation="relu", optimizer="sgd", lr=1e6, momentum=0.9),
}
WHERE = r"(loss is \S+ (after an update )?with lr|(parameter|gradient of|optimizer state) '[\w/]+'.* with lr)"


@pytest.mark.parametrize("case", list(BLOW_UPS))
def test_every_non_finite_stop_says_what_at_which_step_with_which_lr(tmp_path, run, case):
    cfg = small(steps=60, eval_every=5, clip=None, **BLOW_UPS[case])
    tr = Trainer(cfg, prepare_data([run.corpus], cfg), tmp_path, log=lambda m: None)
    with pytest.raises(TrainingError, match=rf"^step \d+: .*{WHERE} [\d.e+-]+"):
        tr.run()


def _scaled_gradients(tr, factor, name=None):
    """Make every training step's gradients huge (or one of them NaN), leaving the loss alone."""
    inner = tr.model.loss_and_grad

    def loss_and_grad(*args, **kw):
        r = inner(*args, **kw)
        for k in tr.model.params if name is None else [name]:
            r.grads[k] *= factor
        return r

    tr.model.loss_and_grad = loss_and_grad


def test_an_overflowing_optimizer_state_stops_the_step_it_happens(tmp_path, run):
    cfg = small(optimizer="rmsprop", clip=None, steps=5)
    tr = Trainer(cfg, prepare_data([run.corpus], cfg), tmp_path, log=lambda m: None)
    _scaled_gradients(tr, np.float32(1e25))  # g² overflows float32; the update g / √s is then 0: weights stay finite
    with pytest.raises(TrainingError, match=r"^step 1: optimizer state 'mean_sq/\w+' became non-finite with lr 0.005"):
        tr.train_step()
    assert all(np.isfinite(p).all() for p in tr.model.params.values())


def test_a_non_finite_gradient_and_validation_loss_name_the_lr(tmp_path, run, monkeypatch):
    cfg = small(clip=None, steps=5)
    tr = Trainer(cfg, prepare_data([run.corpus], cfg), tmp_path, log=lambda m: None)
    _scaled_gradients(tr, np.nan, name="W")
    with pytest.raises(TrainingError, match=r"^step 1: gradient of 'W' is not finite \(NaN or Inf\) with lr 0.005;"):
        tr.train_step()
    tr = Trainer(cfg, prepare_data([run.corpus], cfg), tmp_path, log=lambda m: None)
    tr.train_step()
    monkeypatch.setattr(bptt.training.train, "evaluate_loss", lambda *a: float("inf"))
    with pytest.raises(TrainingError, match=r"^step 1: validation loss is inf after an update with lr 0.005"):
        tr.evaluate()


def test_optimizer_reports_which_state_is_not_finite():
    params = {"W": np.ones((2, 3), np.float32), "b": np.ones(3, np.float32)}
    opt = RMSprop(params, lr=0.1)
    opt.step({"W": np.ones((2, 3), np.float32), "b": np.ones(3, np.float32)})
    assert opt.non_finite_state() is None
    with np.errstate(over="ignore"):
        opt.step({"W": np.zeros((2, 3), np.float32), "b": np.full(3, 1e25, np.float32)})
    assert opt.non_finite_state() == "mean_sq/b" and all(np.isfinite(p).all() for p in params.values())
    assert Adam({"W": np.ones(2)}, lr=0.1).non_finite_state() is None


def test_report_skips_a_deeply_nested_metrics_line(tmp_path):
    from bptt.diagnostics import report

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "val_loss": 2.0}\n' + "[" * 100_000 + "\n" + '{"step": 2}\n')
    assert [r["step"] for r in report._rows(path)] == [1, 2]  # the hostile line is skipped, not a RecursionError


def test_messages_stay_short_whatever_the_vocabulary_holds(tmp_path, capsys):
    from bptt.files.checkpoint import Checkpoint, save_checkpoint
    from bptt.text.sampling import default_prime
    from bptt.text.vocab import Vocabulary

    vocab = Vocabulary(("x" * 1_000_000, "yy"), "char")
    with pytest.raises(ValueError, match="pass a prime") as info:
        default_prime(vocab)
    assert len(str(info.value)) < 400
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, Checkpoint(model=bptt.GRU(2, 3, 2, seed=0), vocab=vocab))
    assert main(["sample", str(path), "-n", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 700
