"""Training-step speed, matrix-multiply efficiency, peak memory and generation latency: bptt vs PyTorch CPU.

Both sides run the same model on the same weights in float32: a one-layer Elman
(tanh), LSTM or GRU over a vocabulary of V tokens, one-hot input → recurrent
layer → Linear → softmax cross-entropy. bptt reads token ids (``V onehot(i)`` is
column i of V, a gather); PyTorch's ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` read
one-hot float vectors, weights copied from bptt as in ``lm_quality.py``.

A training step is: forward over a (T, B) window from the carried state (detached),
mean cross-entropy per token, backward, Adam update (lr 1e-3, no clipping). Before
timing, each configuration checks that both sides give the same loss and gradients
on the same weights and window (printed as the largest differences).

Timing: two warm-up steps per side, then ``--reps`` repetitions alternating bptt and
PyTorch (A B A B …), each repetition as many consecutive steps as fit in about
``--rep-seconds`` (at least 1: configurations whose step is longer get one step per
repetition, which keeps the default grid to about 10 minutes on 2 cores). The per-step
time is the median over repetitions, and tokens/s = T·B / that time. Between blocks the
process idles ``--cooldown`` seconds: OpenBLAS's worker threads keep spinning for about
0.1 s after NumPy's last product, and a PyTorch block started meanwhile shares the cores
with them (measured here without the pause: PyTorch up to 1.9× slower).

FLOPs of a training step (both sides are scored with the same count; 2 FLOPs per
multiply-add; N = T·B rows, G = 1 / 4 / 3 gate blocks for Elman / LSTM / GRU)::

    recurrent product, forward   h_{t-1} Wᵀ           N · H · GH
    recurrent product, backward  dz_t W               N · GH · H
    ∂J/∂W = Σ_t dz_tᵀ h_{t-1}                         N · GH · H
    input projection  V x_t and ∂J/∂V  (one-hot x)    0   (a column gather / scatter-add;
                                                           PyTorch multiplies the one-hot
                                                           matrix, 2 · N · V · GH, not credited)
    output layer  h_t Uᵀ, dz2_t U, ∂J/∂U              3 · N · H · V
    ------------------------------------------------------------------------
    FLOPs = 2 · N · (3 · G · H² + 3 · H · V)

Element-wise work (gates, softmax, Adam) is not counted. The achieved GFLOP/s of
each side is FLOPs / median step time, also shown as a fraction of this machine's
single-precision matrix-multiply rate: NumPy (OpenBLAS) float32 1024×1024 @
1024×1024, median of 20, measured at the start of the same run (and again after the
timing, as a check). That is OpenBLAS's rate, not the hardware's peak: code with faster
kernels can exceed 100%.

Peak memory of one training step, beyond weights, optimizer state and the carried state
(both sides hold the same), measured after two warm-up steps in a subprocess per side:

* allocated (the table's figure and the target): the peak of the running total of the
  step's allocations minus its frees — for bptt NumPy's allocations as ``tracemalloc``
  sees them (NumPy registers its buffers with it; Python objects are included), for
  PyTorch its CPU allocator's events from ``torch.profiler`` (``profile_memory=True``);
* resident (in brackets): the growth of the resident set, ``VmHWM`` after the step minus
  ``VmRSS`` before it, with the peak reset through ``/proc/self/clear_refs``, under glibc's
  ``MALLOC_MMAP_THRESHOLD_=4096`` (each allocation of 4 KiB or more is its own mapping,
  returned to the system when freed). Pages never written are not counted; resolution
  is a few hundred KiB.

Generation latency: batch 1, one token at a time including sampling (bptt:
``bptt.stepper.Stepper.step`` + ``bptt.sampling.next_token``; PyTorch: module call + softmax +
``torch.multinomial``), alternating, best of 3 runs of ``--gen-tokens`` tokens.

Sequence rows (``benchmarks/_sequences.py``, whose docstring has the details): a one-layer
bidirectional model, and a unidirectional one on a batch whose sequence lengths are drawn
uniformly from [T/4, T], against PyTorch's ``pack_padded_sequence`` — training tokens/s (real
tokens only), the ratio to PyTorch, and bptt's real tokens/s with padding over its tokens/s on
the same windows at full length (1.00: padding is free). Per cell, H = 128 and 512, B = 32,
T = 64, every step from the zero state. ``--sequences`` runs these rows only (no grid, generation
or memory; ``--cells``, ``--hidden``, ``--batch``, ``--window`` choose them); the default grid
leaves them out, and ``--quick`` adds one of each (LSTM, H = 128).

Run (after `bash scripts/test.sh` has installed PyTorch into .venv)::

    .venv/bin/python benchmarks/speed.py --threads 2              # the full grid (54), ~10 minutes on 2 cores
    .venv/bin/python benchmarks/speed.py --threads 2 --quick      # 12 configurations + 2 sequence rows, ~2 minutes
    .venv/bin/python benchmarks/speed.py --threads 2 --sequences  # the 12 sequence rows, ~3 minutes

The thread count applies to both libraries (NumPy's BLAS and torch); it is set
before NumPy is imported. So is ``--openblas-coretype``: the environment may force
OpenBLAS's kernel set (this machine's sets ``OPENBLAS_CORETYPE=Haswell``, AVX2 kernels,
on a CPU with AVX-512), which PyTorch's oneDNN and MKL do not read. The header prints
the kernels NumPy runs; ``--openblas-coretype auto`` lets OpenBLAS choose for the CPU.
"""

from __future__ import annotations

import argparse
import os
import sys

import _env  # benchmarks/ is on sys.path when run as a script

QUICK = {"cells": ["elman", "lstm", "gru"], "hidden": [128, 512], "batch": [1, 32], "window": [25]}
GRID = {"hidden": [128, 512, 1024], "batch": [1, 32, 64], "window": [25, 64]}
SEQUENCES = {"hidden": [128, 512], "batch": [32], "window": [64]}
QUICK_SEQUENCES = {"cells": ["lstm"], "hidden": [128]}  # one bidirectional and one variable-length row


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", choices=["elman", "lstm", "gru"], default=["elman", "lstm", "gru"])
    for k, what in (("hidden", "H"), ("batch", "B"), ("window", "T, steps per training window")):
        p.add_argument(f"--{k}", nargs="+", type=int, help=f"{what}; default {GRID[k]} (--sequences: {SEQUENCES[k]})")
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per side (median)")
    p.add_argument("--rep-seconds", type=float, default=0.25, help="approximate length of one repetition")
    p.add_argument("--cooldown", type=float, default=0.2, help="idle seconds between bptt and PyTorch blocks")
    p.add_argument("--gen-tokens", type=int, default=300)
    _env.add_arguments(p)
    p.add_argument("--quick", action="store_true", help=f"a subset: {QUICK}, and sequence rows {QUICK_SEQUENCES}")
    p.add_argument("--sequences", action="store_true", help="only the bidirectional and variable-length rows")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--memory-worker", choices=["bptt", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--configs", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.quick:
        for k, v in (QUICK_SEQUENCES if a.sequences else QUICK).items():
            setattr(a, k, v)
    for k in GRID:
        if getattr(a, k) is None:
            setattr(a, k, (SEQUENCES if a.sequences else GRID)[k])
    return a


ARGS = parse()
_env.apply(ARGS)  # before NumPy is imported

import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import _sequences  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _shared import TorchLM, idle, latency_bptt, latency_torch, openblas_core, time_alternating  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

import bptt  # noqa: E402
from bptt.optim import Adam  # noqa: E402

torch.set_num_threads(ARGS.threads)
LR = 1e-3
GATES = {"elman": 1, "lstm": 4, "gru": 3}
MODELS = {"elman": bptt.Elman, "lstm": bptt.LSTM, "gru": bptt.GRU}
# Targets of the issue: training tokens/s ratio bptt / PyTorch.
ELMAN_BATCH1, ELMAN_BATCHED, GATED = 5.0, 2.5, 2.0
MATMUL_FRACTION = 0.75  # at H = 1024, B = 64
GEN_RATIO = 5.0
MEMORY_TARGET = "training-step peak memory ≤ PyTorch's"
MIB = 2.0**20


def detach(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def flops_per_step(cell: str, H: int, V: int, B: int, T: int) -> float:
    """Matrix-multiply FLOPs of one training step; see the module docstring."""
    G = GATES[cell]
    return 2.0 * T * B * (3 * G * H * H + 3 * H * V)


def _median_rate(product, n: int, reps: int) -> float:
    """GFLOP/s of ``product()``, an ``(n, n) @ (n, n)`` product: median of ``reps`` after 3 warm-ups."""
    for _ in range(3):
        product()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        product()
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times) / 1e9


def matmul_rate(n: int = 1024, reps: int = 20) -> float:
    """NumPy float32 ``(n, n) @ (n, n)`` GFLOP/s, median of ``reps``."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    return _median_rate(lambda: a @ b, n, reps)


def torch_matmul_rate(n: int = 1024, reps: int = 20) -> float:
    """``torch.mm`` float32 ``(n, n) @ (n, n)`` GFLOP/s, median of ``reps``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return _median_rate(lambda: a @ b, n, reps)


class Config:
    """One configuration: both sides built on the same weights, with their step functions."""

    def __init__(self, cell: str, H: int, B: int, T: int, V: int, seed: int = 0) -> None:
        self.cell, self.H, self.B, self.T, self.V = cell, H, B, T, V
        self.model = MODELS[cell](V, H, V, dtype="float32", seed=seed)
        self.net = TorchLM(self.model, cell)
        rng = np.random.default_rng(seed + 1)
        self.windows = 8
        self.stream = rng.integers(0, V, size=(self.windows * T + 1, B)).astype(np.intp)  # (time, batch)
        self.stream_t = torch.from_numpy(self.stream.astype(np.int64))
        self.w = np.full((T, B), 1.0 / T, np.float32)  # J = (1/B) Σ_b Σ_t (1/T) Loss = mean over T·B tokens
        self.opt_b = Adam(self.model.params, LR)
        self.opt_t = torch.optim.Adam(self.net.parameters(), lr=LR)
        self.state_b = None
        self.state_t = None
        self.pos_b = self.pos_t = 0

    def window(self, k: int):
        s = (k % self.windows) * self.T
        return self.stream[s : s + self.T], self.stream[s + 1 : s + self.T + 1]

    def window_t(self, k: int):
        s = (k % self.windows) * self.T
        return self.stream_t[s : s + self.T], self.stream_t[s + 1 : s + self.T + 1]

    def check(self) -> tuple[float, float]:
        """Largest |loss difference| and |gradient difference| on the initial weights and state."""
        x, y = self.window(0)
        r = self.model.loss_and_grad(x, y, None, loss_weights=self.w)
        xt, yt = self.window_t(0)
        logits, _ = self.net(xt, None)
        loss = F.cross_entropy(logits.reshape(-1, self.V), yt.reshape(-1))
        self.net.zero_grad(set_to_none=True)
        loss.backward()
        g_t = self.net.named_grads()
        d_grad = max(float(np.abs(r.grads[k] - g_t[k]).max()) for k in self.model.params)
        self.net.zero_grad(set_to_none=True)
        return abs(r.loss - float(loss.detach())), d_grad

    def step_bptt(self) -> None:
        x, y = self.window(self.pos_b)
        r = self.model.loss_and_grad(x, y, self.state_b, loss_weights=self.w)
        self.opt_b.step(r.grads)
        self.state_b, self.pos_b = r.state, self.pos_b + 1

    def step_torch(self) -> None:
        x, y = self.window_t(self.pos_t)
        logits, state = self.net(x, detach(self.state_t))
        loss = F.cross_entropy(logits.reshape(-1, self.V), y.reshape(-1))
        loss.backward()
        self.opt_t.step()
        self.opt_t.zero_grad(set_to_none=True)  # gradients do not outlive the step (as on the bptt side)
        self.state_t, self.pos_t = detach(state), self.pos_t + 1


def time_config(c: Config, reps: int, rep_seconds: float, cooldown: float) -> tuple[float, float, int, int]:
    """Median seconds per step of bptt and PyTorch, alternating; and the steps per repetition used."""
    (tb, tt), (n_b, n_t) = time_alternating([c.step_bptt, c.step_torch], reps, rep_seconds, cooldown)
    return tb, tt, n_b, n_t


# -- peak memory (subprocess) -------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _step_peak_rss(step) -> float:
    """Extra resident bytes at the peak of one call of ``step``."""
    gc.collect()
    base = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    step()
    return (_status_kib("VmHWM") - base) * 1024.0


def _step_peak_traced(step) -> float:
    """Peak bytes NumPy (and Python) allocated during one call of ``step`` (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return float(peak)


def _step_peak_torch_profiler(step) -> float:
    """Peak of the running sum of PyTorch's CPU allocations and frees during one call of ``step``."""
    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:  # frees of blocks allocated before the step are not reported (as with tracemalloc)
        current += e.nbytes()
        peak = max(peak, current)
    return float(peak)


def memory_worker(side: str, configs: list[list]) -> None:
    """Print one JSON line per configuration: a training step's peak extra memory, two ways."""
    for cell, H, B, T, V in configs:
        c = Config(cell, H, B, T, V)
        step = c.step_bptt if side == "bptt" else c.step_torch
        for _ in range(2):
            step()
        rss = _step_peak_rss(step)
        alloc = _step_peak_traced(step) if side == "bptt" else _step_peak_torch_profiler(step)
        print(json.dumps({"key": [cell, H, B, T], "rss": rss, "alloc": alloc}), flush=True)
        del c, step
        gc.collect()


def measure_memory(configs: list[tuple], threads: int) -> dict:
    """Run the memory workers (one subprocess per side) and collect their results by configuration."""
    # Allocations of 4 KiB or more get their own mapping, unmapped when freed; the heap top is trimmed.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="4096", MALLOC_TRIM_THRESHOLD_="0", MALLOC_TOP_PAD_="0")
    results: dict = {}
    for side in ("bptt", "torch"):
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-worker", side, "--threads", str(threads)]
        cmd += ["--configs", json.dumps([list(c) for c in configs])]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            d = json.loads(line)
            results.setdefault(tuple(d["key"]), {})[side] = d
    return results


# -- report ------------------------------------------------------------------------------------
def target_ratio(cell: str, B: int) -> float:
    if cell == "elman":
        return ELMAN_BATCH1 if B == 1 else ELMAN_BATCHED
    return GATED


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**MISS**"


def main() -> int:
    a = ARGS
    if a.memory_worker:
        memory_worker(a.memory_worker, json.loads(a.configs))
        return 0
    # As `bptt train` does: freed step temporaries stay in the process (see bptt.allocator).
    # The memory workers above run without it.
    retained = bptt.retain_freed_memory()
    V = a.vocab
    configs = [(c, H, B, T, V) for c in a.cells for H in a.hidden for B in a.batch for T in a.window]
    if a.sequences:  # (cells, hidden sizes, B, T) of the sequence rows
        sequences, configs = [(a.cells, a.hidden, B, T) for B in a.batch for T in a.window], []
    else:
        sequences = [(QUICK_SEQUENCES["cells"], QUICK_SEQUENCES["hidden"], 32, 64)] if a.quick else []
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"machine: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}; threads {a.threads}")
    print(f"numpy {np.__version__}, torch {torch.__version__}, python {platform.python_version()}")
    forced = os.environ.get("OPENBLAS_CORETYPE")
    print(f"OpenBLAS kernels: {openblas_core()} ({f'OPENBLAS_CORETYPE={forced}' if forced else 'chosen by OpenBLAS'})")
    print(f"command: {' '.join(['.venv/bin/python', 'benchmarks/speed.py', *sys.argv[1:]])}")
    print(f"bptt.retain_freed_memory(): {retained}")
    t_start = time.perf_counter()
    peak = matmul_rate()
    print(f"NumPy float32 1024³ matmul: {peak:.1f} GFLOP/s (median of 20); torch.mm: {torch_matmul_rate():.1f}")
    n_seq = sum(2 * len(cells) * len(hidden) for cells, hidden, _, _ in sequences)
    print(
        f"{len(configs)} configurations and {n_seq} sequence rows, vocabulary {V}, median of {a.reps} alternating "
        f"repetitions of ~{a.rep_seconds} s, {a.cooldown} s idle between blocks; Adam lr {LR}, no clipping"
    )

    rows = []
    for cell, H, B, T, _ in configs:
        c = Config(cell, H, B, T, V)
        d_loss, d_grad = c.check()
        idle(a.cooldown)
        tb, tt, n_b, n_t = time_config(c, a.reps, a.rep_seconds, a.cooldown)
        fl = flops_per_step(cell, H, V, B, T)
        rows.append(dict(cell=cell, H=H, B=B, T=T, tb=tb, tt=tt, flops=fl, d_loss=d_loss, d_grad=d_grad))
        print(
            f"  {cell:5} H={H:<4} B={B:<2} T={T:<2}: bptt {T * B / tb:>10,.0f} tok/s, torch {T * B / tt:>10,.0f} "
            f"tok/s, ratio {tt / tb:5.2f}x; bptt {fl / tb / 1e9:6.1f} GFLOP/s; "
            f"|Δloss| {d_loss:.1e}, max |Δgrad| {d_grad:.1e}; steps/rep {n_b}/{n_t}",
            flush=True,
        )
        del c
        gc.collect()
    timing = dict(reps=a.reps, rep_seconds=a.rep_seconds, cooldown=a.cooldown)
    seq_rows = [_sequences.run(cells, hidden, B, T, V, timing) for cells, hidden, B, T in sequences]
    peak_end = matmul_rate()
    print(f"NumPy float32 1024³ matmul at the end of the timing: {peak_end:.1f} GFLOP/s")
    if a.sequences:
        for r in seq_rows:
            _sequences.report(r)
        print(f"\ntotal time {time.perf_counter() - t_start:.0f} s")
        return 0

    gens = []
    for cell in a.cells:
        for H in a.hidden:
            model = MODELS[cell](V, H, V, dtype="float32", seed=0)
            net = TorchLM(model, cell)
            latency_bptt(model, 20)
            idle(a.cooldown)
            latency_torch(net, 20)
            idle(a.cooldown)
            lb, lt = [], []
            for _ in range(3):
                lb.append(latency_bptt(model, a.gen_tokens))
                idle(a.cooldown)
                lt.append(latency_torch(net, a.gen_tokens))
                idle(a.cooldown)
            gens.append(dict(cell=cell, H=H, lb=min(lb), lt=min(lt)))

    mem = {}
    if not a.no_memory:
        t0 = time.perf_counter()
        mem = measure_memory(configs, a.threads)
        print(f"peak memory measured in {time.perf_counter() - t0:.0f} s")

    checks: dict[str, list[tuple[float, float]]] = {}  # target → (achieved, required) per configuration

    def check(target: str, achieved: float, required: float) -> None:
        checks.setdefault(target, []).append((achieved, required))

    def training_target(cell: str, B: int, want: float) -> str:
        if cell == "elman":
            return f"Elman training tokens/s ≥ {want:g}× PyTorch, B {'= 1' if B == 1 else '≥ 32'}"
        return f"{cell.upper()} training tokens/s ≥ {want:g}× PyTorch"

    print()
    print(
        f"Training step. GFLOP/s in brackets: fraction of the NumPy float32 matmul rate ({peak:.0f} GFLOP/s). "
        "Ceiling: the ratio a step made of nothing but the counted products at that rate would reach. "
        "Memory: peak allocated MiB of one step beyond weights and optimizer state "
        "(bptt: tracemalloc; PyTorch: profiler), resident-set growth in brackets."
    )
    print()
    print(
        "| cell | H | B | T | bptt tokens/s | PyTorch tokens/s | bptt / PyTorch | target | | ceiling | bptt GFLOP/s | "
        "PyTorch GFLOP/s | ≥ 75% | bptt MiB | PyTorch MiB | ≤ PyTorch |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---|")
    for r in rows:
        cell, H, B, T, tb, tt = r["cell"], r["H"], r["B"], r["T"], r["tb"], r["tt"]
        ratio, want = tt / tb, target_ratio(cell, B)
        check(training_target(cell, B, want), ratio, want)
        gb, gt = r["flops"] / tb / 1e9, r["flops"] / tt / 1e9
        ceiling = tt / (r["flops"] / (peak * 1e9))  # PyTorch's time over the products' time at the matmul rate
        eff = "—"
        if H == 1024 and B == 64:
            eff = verdict(gb / peak >= MATMUL_FRACTION)
            check("H = 1024, B = 64: ≥ 75% of the matmul rate", gb / peak, MATMUL_FRACTION)
        m = mem.get((cell, H, B, T))
        if m:
            mb, mt = m["bptt"]["alloc"] / MIB, m["torch"]["alloc"] / MIB
            rb, rt = m["bptt"]["rss"] / MIB, m["torch"]["rss"] / MIB
            mem_cols = f"{mb:.1f} ({rb:.1f}) | {mt:.1f} ({rt:.1f}) | {verdict(mb <= mt)}"
            check(MEMORY_TARGET, mb / mt if mt else math.inf, 1.0)  # lower is better
        else:
            mem_cols = "— | — | —"
        print(
            f"| {cell} | {H} | {B} | {T} | {T * B / tb:,.0f} | {T * B / tt:,.0f} | {ratio:.2f}× | ≥ {want:g}× | "
            f"{verdict(ratio >= want)} | {ceiling:.2f}× | {gb:.1f} ({gb / peak:.0%}) | "
            f"{gt:.1f} ({gt / peak:.0%}) | {eff} | "
            f"{mem_cols} |"
        )
    print()
    print(f"Generation, batch 1, µs per token (best of 3 × {a.gen_tokens} tokens):")
    print()
    print("| cell | H | bptt µs/token | PyTorch µs/token | PyTorch / bptt | ≥ 5× |")
    print("|---|---:|---:|---:|---:|---|")
    for g in gens:
        ratio = g["lt"] / g["lb"]
        check("generation latency ≥ 5× lower", ratio, GEN_RATIO)
        print(
            f"| {g['cell']} | {g['H']} | {g['lb'] * 1e6:.1f} | {g['lt'] * 1e6:.1f} | {ratio:.2f}× | "
            f"{verdict(ratio >= GEN_RATIO)} |"
        )
    for r in seq_rows:
        _sequences.report(r)
    print()
    print(
        f"Same computation: max |Δloss| {max(r['d_loss'] for r in rows):.1e}, "
        f"max |Δgrad| {max(r['d_grad'] for r in rows):.1e} (float32, initial weights, one window)"
    )
    print()
    print("Targets. Where missed: the achieved values, and how far short (1 − achieved / required; for")
    print("memory, how much more than PyTorch bptt allocates: bptt / PyTorch − 1).")
    print()
    print("| target | met | missed | achieved where missed | short by |")
    print("|---|---:|---:|---|---|")
    order = ("Elman training tokens/s ≥ 5", "Elman", "LSTM", "GRU", "H = 1024", "generation", "training-step")
    for target, results in sorted(
        checks.items(), key=lambda kv: next(i for i, o in enumerate(order) if kv[0].startswith(o))
    ):
        memory = target == MEMORY_TARGET
        missed = sorted((x, req) for x, req in results if (x > req if memory else x < req))
        if missed:
            fmt = (lambda v: f"{v:.0%}") if "matmul" in target else (lambda v: f"{v:.2f}×")
            gaps = sorted((x / req - 1) if memory else (1 - x / req) for x, req in missed)
            sign = "+" if memory else ""
            span = fmt(missed[0][0]) + (f" – {fmt(missed[-1][0])}" if len(missed) > 1 else "")
            span += " PyTorch's" if memory else ""
            gap = f"{sign}{gaps[0]:.0%}" + (f" – {sign}{gaps[-1]:.0%}" if len(missed) > 1 else "")
        else:
            span = gap = "—"
        print(f"| {target} | {len(results) - len(missed)} / {len(results)} | {len(missed)} | {span} | {gap} |")
    print(f"\ntotal time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
