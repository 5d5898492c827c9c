"""Recurrent layers: each maps a sequence of inputs to a sequence of hidden states.

One file per cell (``elman.py``, ``lstm.py``, ``gru.py``, and ``gru_classic.py`` for the GRU
with ``reset_after=False``) holds the whole cell: its equations, the reference step (forward
and backward) that defines it, and the fast kernels tested equal to it. :data:`CELLS` is the
one table of cell kinds (a ``LayerSpec("gru", H, reset_after=False)`` builds the classic GRU).
"""

from .base import KERNELS as KERNELS
from .base import Layer as Layer
from .base import StepGrads as StepGrads
from .base import TokenKernel as TokenKernel
from .elman import ELMAN_NOTATIONS as ELMAN_NOTATIONS
from .elman import ElmanCache as ElmanCache
from .elman import ElmanLayer as ElmanLayer
from .gru import GRUCache as GRUCache
from .gru import GRULayer as GRULayer
from .gru_classic import ClassicGRUCache as ClassicGRUCache
from .gru_classic import ClassicGRULayer as ClassicGRULayer
from .lstm import LSTMCache as LSTMCache
from .lstm import LSTMLayer as LSTMLayer

CELLS: dict[str, type[Layer]] = {"elman": ElmanLayer, "lstm": LSTMLayer, "gru": GRULayer}
