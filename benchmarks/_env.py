"""Command-line options both benchmark scripts share that must take effect before NumPy is imported.

Imports nothing heavy: the scripts call :func:`apply` first, then import NumPy and torch.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["add_arguments", "apply"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--openblas-coretype``."""
    p.add_argument("--threads", type=int, default=1, help="BLAS / torch threads for both")
    p.add_argument(
        "--openblas-coretype",
        metavar="NAME",
        help="set OPENBLAS_CORETYPE for NumPy's OpenBLAS before it loads ('auto': remove it, so OpenBLAS picks "
        "the kernels for this CPU); default: the environment's setting. PyTorch ignores this variable.",
    )


def apply(args: argparse.Namespace) -> None:
    """Set the thread-count variables and ``OPENBLAS_CORETYPE`` as ``args`` asks (before NumPy loads)."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    if args.openblas_coretype == "auto":
        os.environ.pop("OPENBLAS_CORETYPE", None)
    elif args.openblas_coretype:
        os.environ["OPENBLAS_CORETYPE"] = args.openblas_coretype
