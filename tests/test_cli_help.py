"""What the command line tells its user: every option's help and default, and the way out of a refusal."""

from __future__ import annotations

import argparse
import re

import pytest

from bptt.cli import _Parser, _parser, main
from bptt.train import TrainConfig, Trainer, prepare_data

TEXT = "".join(f"def f{i}(x):\n    return x * {i}\n\n" for i in range(200))


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _block(help_text: str, action: argparse.Action) -> str:
    """The lines --help prints for one argument, joined into one line."""
    first = action.option_strings[0] if action.option_strings else (action.metavar or action.dest)
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"  {re.escape(first)}(?=[ ,]|$)", line))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("   "):  # the next argument (two spaces), a group title or a blank line
            break
        block.append(line)
    return " ".join(" ".join(block).split())


def help_problems(parser: argparse.ArgumentParser) -> list[str]:
    """Every argument without a help text, or whose --help hides its default or prints a meaningless one."""
    problems = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.metavar or action.dest
        if not action.help or action.help == argparse.SUPPRESS:
            problems.append(f"{parser.prog} {name}: no help text")
            continue
        block = _block(parser.format_help(), action)
        if " ".join(action.help.split("%(")[0].split())[:20] not in block:
            problems.append(f"{parser.prog} {name}: help text not shown: {block!r}")
        takes_value = action.nargs != 0
        if action.default is not None and not isinstance(action.default, bool):
            if f"default: {action.default}" not in block:
                problems.append(f"{parser.prog} {name}: default {action.default!r} not shown: {block!r}")
        elif takes_value and (action.option_strings or action.nargs in ("?", "*")) and "default: " not in block:
            problems.append(f"{parser.prog} {name}: no default, and the help does not say what leaving it out does")
        if re.search(r"default: (None|False|True)\b", block):
            problems.append(f"{parser.prog} {name}: a meaningless default: {block!r}")
    return problems


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per argument where argparse allows it


@pytest.mark.parametrize("command", ["train", "sample", "info", "explain", "report"])
def test_every_option_says_what_it_does_and_its_default(command):
    parser = _subparsers(_parser())[command]
    assert help_problems(parser) == []


def test_every_command_is_described_and_none_is_missing():
    parser = _parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == {"train", "sample", "info", "explain", "report", "export", "import"}
    assert all(choice.help for choice in sub._choices_actions)
    assert help_problems(parser) == []


def test_help_prints_the_defaults_of_train_config(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    d = TrainConfig()
    assert f"--hidden-size H units per layer (default: {d.hidden_size})" in out
    assert f"--lr LR learning rate, the peak of a schedule (default: {d.lr})" in out
    assert "--patience N stop after N evaluations without improvement (default: never stop early)" in out


def test_the_checker_catches_a_missing_help_and_a_hidden_default():
    p = _Parser(prog="bptt demo", formatter_class=argparse.HelpFormatter)  # argparse's plain formatter
    p.add_argument("--no-help", type=int, default=3)
    p.add_argument("--hidden-default", type=int, default=7, help="a number")
    p.add_argument("--silent-none", default=None, help="a name")
    p.add_argument("--flag", action="store_true", help="turn it on")
    p.add_argument("--shown", type=int, default=None, help="a count (default: %(default)s)")
    problems = help_problems(p)
    assert [q.split(":")[0] for q in problems] == [
        "bptt demo --no-help",
        "bptt demo --hidden-default",
        "bptt demo --silent-none",
        "bptt demo --shown",  # "default: None" is noise, not a default
    ]
    assert "no help text" in problems[0] and "default 7 not shown" in problems[1]


# -- refusing to replace a run -----------------------------------------------------------------


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "code.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _stopped_before_first_checkpoint(corpus, out):
    """What a kill before the first save leaves behind: metrics.jsonl and no checkpoint."""
    cfg = TrainConfig(hidden_size=8, seq_len=8, batch_size=2, steps=4, eval_every=2, eval_tokens=100)
    trainer = Trainer(cfg, prepare_data([corpus], cfg), out, log=lambda m: None)
    trainer.should_stop = lambda: True
    trainer.run()


def test_a_run_without_a_checkpoint_is_not_offered_for_resuming(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    _stopped_before_first_checkpoint(corpus, out)
    assert (out / "metrics.jsonl").exists() and not (out / "latest.safetensors").exists()
    code = main(["train", str(corpus), "--out", str(out), "--steps", "4"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--resume" not in err, err
    assert "already holds a run (metrics.jsonl) but no latest.safetensors to resume from" in err, err
    assert "choose another --out, or pass --overwrite (or delete the folder)" in err, err


def test_a_run_with_a_checkpoint_is_offered_for_resuming(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    cfg = TrainConfig(hidden_size=8, seq_len=8, batch_size=2, steps=2, eval_every=2, eval_tokens=100)
    Trainer(cfg, prepare_data([corpus], cfg), out, log=lambda m: None).run()
    code = main(["train", str(corpus), "--out", str(out), "--steps", "4"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"resume it with --resume {out / 'latest.safetensors'}, choose another --out, or pass --overwrite" in err
    resumed = main(["train", str(corpus), "--resume", str(out / "latest.safetensors"), "--steps", "4"])
    assert resumed == 0, capsys.readouterr().err  # the suggested command works
