"""bptt: recurrent neural networks with exact, inspectable backpropagation through time.

The public API::

    import bptt
    m = bptt.Elman(input_size=D, hidden_size=H, output_size=O, seed=0)
    r = m.loss_and_grad(x, y)          # r.loss, r.grads["V"], r.grads["h0"], r.grads["x"]

The code lives in sub-packages by role: ``bptt.engine`` (cells, the network, the named
models), ``bptt.diagnostics``, ``bptt.training``, ``bptt.text``, ``bptt.files`` and
``bptt.interop`` (PyTorch modules in and out, ONNX out). The
module paths from before them keep working: ``bptt.train`` is ``bptt.training.train``,
``bptt.layers.lstm`` is ``bptt.engine.layers.lstm`` (see ``bptt/_paths.py``).
"""

import importlib as _importlib

from . import _paths
from .diagnostics.decompose import GapDecomposition as GapDecomposition
from .diagnostics.decompose import gradient_by_gap as gradient_by_gap
from .diagnostics.dependence import Dependence as Dependence
from .diagnostics.dependence import gradient_dependence as gradient_dependence
from .diagnostics.gradcheck import GradcheckReport as GradcheckReport
from .diagnostics.gradcheck import gradcheck as gradcheck
from .diagnostics.jacobians import JacobianMap as JacobianMap
from .diagnostics.jacobians import jacobian_map as jacobian_map
from .diagnostics.sensitivity import InputSensitivity as InputSensitivity
from .diagnostics.sensitivity import input_sensitivity as input_sensitivity
from .diagnostics.sensitivity import robust_z_scores as robust_z_scores
from .engine.activations import HIDDEN_ACTIVATIONS as HIDDEN_ACTIVATIONS
from .engine.losses import OUTPUTS as OUTPUTS
from .engine.models import GRU as GRU
from .engine.models import LSTM as LSTM
from .engine.models import Elman as Elman
from .engine.network import RNN as RNN
from .engine.network import Forward as Forward
from .engine.network import LayerSpec as LayerSpec
from .engine.network import LossAndGrad as LossAndGrad
from .engine.network import Trace as Trace
from .engine.stack import DropoutMasks as DropoutMasks
from .engine.stepper import Stepper as Stepper
from .interop.onnx_export import export_onnx as export_onnx
from .interop.pytorch import from_torch as from_torch
from .interop.pytorch import to_torch as to_torch
from .text.generate import Generation as Generation
from .text.generate import generate as generate
from .training.allocator import retain_freed_memory as retain_freed_memory

__version__ = "0.1.0"

_paths.install()


def __getattr__(name: str):
    """``bptt.train``, ``bptt.network``, … (the old module paths) on first use."""
    new = _paths.new_name(f"bptt.{name}")
    if new is None:
        raise AttributeError(f"module 'bptt' has no attribute {name!r}")
    return _importlib.import_module(f"bptt.{name}")
