"""Recurrent layers: each maps a sequence of inputs to a sequence of hidden states."""

from .base import Layer as Layer
from .elman import ELMAN_NOTATIONS as ELMAN_NOTATIONS
from .elman import ElmanCache as ElmanCache
from .elman import ElmanLayer as ElmanLayer
from .gru import GRUCache as GRUCache
from .gru import GRULayer as GRULayer
from .lstm import LSTMCache as LSTMCache
from .lstm import LSTMLayer as LSTMLayer
