"""Peak memory of reading and encoding a corpus grows by at most ~2.5 bytes per corpus byte (issue 17.6).

Before chunked reading and compact ids it grew by 17 bytes per byte: the whole text as a
string, a list of its characters, and int32 ids. Each size is measured in a fresh process
(peak RSS, ``ru_maxrss``), so the difference between two sizes is what the corpus costs.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

MB = 1_000_000
GROWTH_LIMIT = 2.5  # bytes of peak RSS per corpus byte

PREPARE = """
import resource, sys
from bptt.train import TrainConfig, prepare_data
data = prepare_data([sys.argv[1]], TrainConfig(level=sys.argv[2]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, len(data.train) + len(data.val))
"""

WORDS = "the of and to in is was he for it with as his on be at by had are but from or have an they".split()


def _block(level: str, rng: np.random.Generator) -> bytes:
    """About 1 MB of random text: characters of a small alphabet, or words of a short list."""
    if level == "char":
        alphabet = np.frombuffer(b"abcdefghij klmnop qrstu vwxyz,.\n", np.uint8)
        return alphabet[rng.integers(0, alphabet.size, MB)].tobytes()
    seps = rng.choice([" ", " ", " ", ", ", ".\n"], MB // 4)
    words = rng.choice(WORDS, MB // 4)
    return "".join(w + s for w, s in zip(words.tolist(), seps.tolist(), strict=True)).encode()


def _peak_rss(path, level: str) -> tuple[int, int]:
    run = subprocess.run(
        [sys.executable, "-c", PREPARE, str(path), level], capture_output=True, text=True, check=False, timeout=120
    )
    assert run.returncode == 0, run.stderr
    peak, tokens = map(int, run.stdout.split())
    return peak, tokens


@pytest.mark.parametrize("level, small, large", [("char", 10, 40), ("word", 6, 24)])
def test_peak_memory_grows_at_most_2_5_bytes_per_corpus_byte(tmp_path, level, small, large):
    block = _block(level, np.random.default_rng(0))
    sizes, peaks = [], []
    for n in (small, large):
        path = tmp_path / f"{level}{n}.txt"
        path.write_bytes(block * (n * MB // len(block)))
        peak, tokens = _peak_rss(path, level)
        assert tokens > 0
        sizes.append(path.stat().st_size)
        peaks.append(peak)
        path.unlink()
    growth = (peaks[1] - peaks[0]) / (sizes[1] - sizes[0])
    assert growth < GROWTH_LIMIT, (
        f"{level} level: peak RSS {peaks[0] / 2**20:.0f} MiB at {sizes[0] / MB:.0f} MB of text, "
        f"{peaks[1] / 2**20:.0f} MiB at {sizes[1] / MB:.0f} MB: {growth:.2f} bytes per corpus byte "
        f"(limit {GROWTH_LIMIT})"
    )
