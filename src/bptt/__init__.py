"""bptt: recurrent neural networks with exact, inspectable backpropagation through time.

The public API::

    import bptt
    m = bptt.Elman(input_size=D, hidden_size=H, output_size=O, seed=0)
    r = m.loss_and_grad(x, y)          # r.loss, r.grads["V"], r.grads["h0"], r.grads["x"]
"""

from .activations import HIDDEN_ACTIVATIONS as HIDDEN_ACTIVATIONS
from .allocator import retain_freed_memory as retain_freed_memory
from .decompose import GapDecomposition as GapDecomposition
from .decompose import gradient_by_gap as gradient_by_gap
from .dependence import Dependence as Dependence
from .dependence import gradient_dependence as gradient_dependence
from .generate import Generation as Generation
from .generate import generate as generate
from .gradcheck import GradcheckReport as GradcheckReport
from .gradcheck import gradcheck as gradcheck
from .jacobians import JacobianMap as JacobianMap
from .jacobians import jacobian_map as jacobian_map
from .losses import OUTPUTS as OUTPUTS
from .models import GRU as GRU
from .models import LSTM as LSTM
from .models import Elman as Elman
from .network import RNN as RNN
from .network import Forward as Forward
from .network import LayerSpec as LayerSpec
from .network import LossAndGrad as LossAndGrad
from .network import Trace as Trace
from .sensitivity import InputSensitivity as InputSensitivity
from .sensitivity import input_sensitivity as input_sensitivity
from .sensitivity import robust_z_scores as robust_z_scores
from .stepper import Stepper as Stepper

__version__ = "0.1.0"
