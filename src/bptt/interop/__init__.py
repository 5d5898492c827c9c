"""bptt and the engines built for scale: PyTorch modules in and out, ONNX out.

``bptt.from_torch`` / ``bptt.to_torch`` (:mod:`bptt.interop.pytorch`) convert ``torch.nn.RNN``,
``LSTM`` and ``GRU`` modules (with their ``nn.Linear`` readout and an optional ``nn.Embedding``)
to a bptt network and back; ``bptt.export_onnx`` (:mod:`bptt.interop.onnx_export`) writes a
network as an ONNX graph of the standard ``RNN`` / ``LSTM`` / ``GRU`` operators. torch, onnx and
onnxruntime are optional extras: these modules import them only inside the calls that need them.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, where: str) -> ModuleType:
    """Import ``module`` for ``where``, or fail in one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{where} needs {module}: pip install 'bptt[{extra}]'") from None
