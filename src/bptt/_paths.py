"""The module paths of bptt before its sub-packages, kept working (``bptt.train``, ``bptt.layers.elman``, …).

``import bptt.train`` returns the module object ``bptt.training.train`` itself (not a copy or
a re-exporting shim), so attributes set on one are seen through the other; modules are
imported only when first asked for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

# Old top-level module → the sub-package that holds it now.
MOVED = {
    **dict.fromkeys(("activations", "inputs", "losses", "readout", "layers", "network", "models", "stepper"), "engine"),
    **dict.fromkeys(
        ("jacobians", "decompose", "sensitivity", "dependence", "gradcheck", "explain", "plots", "report"),
        "diagnostics",
    ),
    **dict.fromkeys(("optim", "schedules", "train", "allocator"), "training"),
    **dict.fromkeys(("corpus", "vocab", "sampling", "generate"), "text"),
    **dict.fromkeys(("checkpoint", "atomic"), "files"),
}


def new_name(fullname: str) -> str | None:
    """``"bptt.layers.elman"`` → ``"bptt.engine.layers.elman"``; ``None`` for names that did not move."""
    parts = fullname.split(".")
    if len(parts) < 2 or parts[0] != "bptt" or parts[1] not in MOVED:
        return None
    return ".".join(["bptt", MOVED[parts[1]], *parts[1:]])


class OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and hands back the module at its new name."""

    def find_spec(self, fullname, path=None, target=None):
        new = new_name(fullname)
        if new is None or importlib.util.find_spec(new) is None:
            return None  # not an old path, or no such module under the new one either
        return importlib.util.spec_from_loader(fullname, self)

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def create_module(self, spec) -> ModuleType:
        module = importlib.import_module(new_name(spec.name))
        self._specs[module.__name__] = module.__spec__  # the import system sets the alias spec on it next
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed under its new name; give it back its own spec, so that
        # importlib.reload re-runs the real file under either name.
        module.__spec__ = self._specs.pop(module.__name__, module.__spec__)


def install() -> None:
    if not any(isinstance(f, OldPaths) for f in sys.meta_path):
        sys.meta_path.insert(0, OldPaths())
