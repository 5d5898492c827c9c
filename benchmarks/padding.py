"""What padding costs bptt: real tokens/s of a training step with and without padding, bptt alone.

Per cell and hidden size H: B sequences of T steps, vocabulary V, float32, token ids, the
zero initial state, one training step = ``loss_and_grad`` + Adam. Three batches of the same
windows:

* **full**: every sequence T steps (no ``lengths``);
* **padded**: sequence b has ``lengths[b]`` real steps, drawn once uniformly from the integers in
  [T/4, T] (seed 0, as ``speed.py --sequences``), in the batch's own (unsorted) order;
* **sorted**: the same lengths, longest first (nothing for the stack to reorder).

Real tokens/s counts only the real steps. **padded / full** is 1.00 if a padding step costs
nothing and N / (T·B) (N real tokens) if it costs as much as a real one. The three kinds of step
alternate in one process that imports no PyTorch, and each figure is the median of the
repetitions. Compare commits by running this file from each in its own process.

    python benchmarks/padding.py --threads 2 --reps 7
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=["elman", "lstm", "gru"])
    p.add_argument("--hidden", nargs="+", type=int, default=[128, 512])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=64, help="T")
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--reps", type=int, default=7, help="timed repetitions of each kind of step")
    p.add_argument("--seconds", type=float, default=0.4, help="length of one repetition")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def measure(m, opt, batches: dict, reps: int, seconds: float) -> dict[str, float]:
    """Median real tokens/s of a training step on each batch, the batches taking turns."""
    import numpy as np

    def step(x, y, w, lengths) -> None:
        opt.step(m.loss_and_grad(x, y, loss_weights=w, lengths=lengths).grads)

    for x, y, w, lengths, _ in batches.values():  # warm up
        step(x, y, w, lengths)
    rates: dict[str, list[float]] = {name: [] for name in batches}
    for _ in range(reps):
        for name, (x, y, w, lengths, tokens) in batches.items():
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                step(x, y, w, lengths)
                n += 1
            rates[name].append(n * tokens / (time.perf_counter() - start))
    return {name: float(np.median(r)) for name, r in rates.items()}


def main() -> int:
    args = parse()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np  # after the thread settings

    import bptt
    from bptt.optim import Adam

    T, B, V = args.steps, args.batch, args.vocab
    lengths = np.random.default_rng(0).integers(T // 4, T + 1, size=B)
    order = np.argsort(-lengths, kind="stable")
    N = int(lengths.sum())
    print(
        f"# {platform.machine()}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}, "
        f"threads {args.threads}, numpy {np.__version__}; T={T} B={B} V={V}; lengths {lengths.min()}–{lengths.max()}, "
        f"{N} real tokens of {T * B} ({N / (T * B):.2f})"
    )
    print("cell   H     full tok/s   padded tok/s   sorted tok/s   padded/full   sorted/full")
    rng = np.random.default_rng(1)
    x = rng.integers(0, V, (T, B))
    y = rng.integers(0, V, (T, B))
    batches = {  # name: (x, y, loss weights, lengths, real tokens)
        "full": (x, y, np.full((T, B), 1.0 / T, np.float32), None, T * B),
        "padded": (x, y, np.full((T, B), B / N, np.float32), lengths, N),
        "sorted": (x[:, order], y[:, order], np.full((T, B), B / N, np.float32), lengths[order], N),
    }
    for cell in args.cells:
        for H in args.hidden:
            m = {"elman": bptt.Elman, "lstm": bptt.LSTM, "gru": bptt.GRU}[cell](V, H, V, dtype="float32", seed=0)
            med = measure(m, Adam(m.params, lr=1e-3), batches, args.reps, args.seconds)
            print(
                f"{cell:<6} {H:<5} {med['full']:>10,.0f} {med['padded']:>14,.0f} {med['sorted']:>14,.0f} "
                f"{med['padded'] / med['full']:>13.2f} {med['sorted'] / med['full']:>13.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
