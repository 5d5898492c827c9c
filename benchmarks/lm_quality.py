"""Language-model quality per wall-clock second, and generation latency: bptt vs PyTorch CPU.

Both sides train the same model (same architecture, same initial weights, same
optimizer and hyper-parameters, same data windows in the same order) for the
same wall-clock budget, then report validation bits per character on the same
held-out text. Then both generate tokens one at a time from the same model
and the per-token latency is compared.

Run (after `bash scripts/test.sh` has installed PyTorch into .venv)::

    .venv/bin/python benchmarks/lm_quality.py --budget 60 --cell gru --hidden-size 256 --threads 2

The thread count applies to both libraries (NumPy's BLAS and torch); it is set
before NumPy is imported.
"""

from __future__ import annotations

import argparse
import os
import sys

import _env  # benchmarks/ is on sys.path when run as a script


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=60.0, help="training seconds for each library")
    p.add_argument("--cell", choices=["elman", "lstm", "gru"], default="gru", help="default: bptt train's default")
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--eval-tokens", type=int, default=50_000)
    p.add_argument("--gen-tokens", type=int, default=500)
    _env.add_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


ARGS = parse()
_env.apply(ARGS)  # before NumPy is imported

import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _shared import TorchLM, latency_bptt, latency_torch, openblas_core  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

import bptt  # noqa: E402
from bptt.optim import Adam, clip_grad_norm  # noqa: E402
from bptt.train import TrainConfig, build_model, evaluate_loss, prepare_data  # noqa: E402
from bptt.training.evaluation import bits_per_token  # noqa: E402

torch.set_num_threads(ARGS.threads)


def detach(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def train_bptt(model, streams, cfg, budget):
    opt = Adam(model.params, cfg.lr)
    state, pos, steps, tokens = None, 0, 0, 0
    T, B = cfg.seq_len, streams.shape[0]
    w = np.full((T, B), 1.0 / T, model.dtype)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < budget:
        if pos + T + 1 > streams.shape[1]:
            pos, state = 0, None
        x, y = streams[:, pos : pos + T].T, streams[:, pos + 1 : pos + T + 1].T
        r = model.loss_and_grad(x, y, state, loss_weights=w)
        clip_grad_norm(r.grads, cfg.clip, names=model.params.keys())
        opt.step(r.grads)
        state, pos, steps, tokens = r.state, pos + T, steps + 1, tokens + T * B
    return steps, tokens, time.perf_counter() - t0


def train_torch(net, streams, cfg, budget):
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    data = torch.from_numpy(streams.astype(np.int64))
    state, pos, steps, tokens = None, 0, 0, 0
    T, B = cfg.seq_len, streams.shape[0]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < budget:
        if pos + T + 1 > streams.shape[1]:
            pos, state = 0, None
        x, y = data[:, pos : pos + T].T, data[:, pos + 1 : pos + T + 1].T
        logits, state = net(x, detach(state))
        loss = F.cross_entropy(logits.reshape(-1, net.vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
        opt.step()
        pos, steps, tokens = pos + T, steps + 1, tokens + T * B
    return steps, tokens, time.perf_counter() - t0


@torch.no_grad()
def eval_torch(net, ids, batch_size, seq_len):
    L = (len(ids) - 1) // seq_len
    B = max(1, min(batch_size, L))
    n = len(ids) // B
    streams = torch.from_numpy(ids[: B * n].astype(np.int64).reshape(B, n))
    state, total, count = None, 0.0, 0
    for start in range(0, n - 1, seq_len):
        end = min(start + seq_len, n - 1)
        x, y = streams[:, start:end].T, streams[:, start + 1 : end + 1].T
        logits, state = net(x, state)
        total += float(F.cross_entropy(logits.reshape(-1, net.vocab), y.reshape(-1), reduction="sum"))
        count += y.numel()
    return total / count


def main() -> int:
    a = ARGS
    bptt.retain_freed_memory()  # as `bptt train` does (see bptt.allocator)
    cfg = TrainConfig(
        cell=a.cell,
        hidden_size=a.hidden_size,
        batch_size=a.batch_size,
        seq_len=a.seq_len,
        lr=a.lr,
        clip=a.clip,
        eval_tokens=a.eval_tokens,
        seed=a.seed,
        dtype="float32",
    )
    data = prepare_data(None, cfg)
    n_train = len(data.train) // cfg.batch_size
    streams = np.ascontiguousarray(data.train[: cfg.batch_size * n_train].reshape(cfg.batch_size, n_train))
    val = data.val[: a.eval_tokens + 1]
    model = build_model(cfg, len(data.vocab))
    net = TorchLM(model, a.cell)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; threads {a.threads}")
    print(f"numpy {np.__version__}, torch {torch.__version__}, python {platform.python_version()}")
    forced = os.environ.get("OPENBLAS_CORETYPE")
    print(f"OpenBLAS kernels: {openblas_core()} ({f'OPENBLAS_CORETYPE={forced}' if forced else 'chosen by OpenBLAS'})")
    print(
        f"model: {a.cell} H={a.hidden_size}, vocabulary {len(data.vocab)}, one-hot input, float32; "
        f"B={a.batch_size} T={a.seq_len} Adam lr={a.lr} clip={a.clip}; budget {a.budget:.0f}s each"
    )

    steps_b, tok_b, sec_b = train_bptt(model, streams, cfg, a.budget)
    val_b = bits_per_token(evaluate_loss(model, val, cfg.batch_size, cfg.seq_len, None))
    steps_t, tok_t, sec_t = train_torch(net, streams, cfg, a.budget)
    val_t = bits_per_token(eval_torch(net, val, cfg.batch_size, cfg.seq_len))

    print(f"{'':8} {'steps':>7} {'tokens/s':>10} {'val bpc':>8}")
    print(f"{'bptt':8} {steps_b:>7} {tok_b / sec_b:>10,.0f} {val_b:>8.3f}")
    print(f"{'pytorch':8} {steps_t:>7} {tok_t / sec_t:>10,.0f} {val_t:>8.3f}")
    print(
        f"training throughput bptt / pytorch: {tok_b / sec_b / (tok_t / sec_t):.2f}x; "
        f"validation bpc difference (bptt − pytorch): {val_b - val_t:+.3f}"
    )

    lat_b = min(latency_bptt(model, a.gen_tokens) for _ in range(3))
    lat_t = min(latency_torch(net, a.gen_tokens) for _ in range(3))
    print(
        f"generation latency per token: bptt {lat_b * 1e6:.1f} µs, pytorch {lat_t * 1e6:.1f} µs, "
        f"pytorch / bptt = {lat_t / lat_b:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
