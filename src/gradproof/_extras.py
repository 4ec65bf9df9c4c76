"""Optional extras: import a backend, or say which extra installs it.

``import gradproof`` imports numpy and rich only. Each backend subpackage
(``gradproof.torch``, ``gradproof.jax``, ``gradproof.dask``, ``gradproof.plot``)
calls :func:`require` first, so that a missing backend fails with the command
that installs it rather than a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# subpackage -> (the module it needs, what that module is, the extra that installs it)
EXTRAS = {
    "torch": ("torch", "PyTorch", "torch"),
    "jax": ("jax", "JAX", "jax"),
    "dask": ("distributed", "Dask's distributed scheduler", "dask"),
    "plot": ("matplotlib", "matplotlib", "plot"),
}


def require(subpackage: str) -> ModuleType:
    """Import the backend ``gradproof.<subpackage>`` needs, or raise ImportError with the fix.

    >>> EXTRAS["dask"]  # gradproof.dask needs the module distributed, from the extra [dask]
    ('distributed', "Dask's distributed scheduler", 'dask')
    >>> require("nothing")
    Traceback (most recent call last):
    KeyError: 'nothing'
    """
    module, what, extra = EXTRAS[subpackage]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        # ModuleNotFoundError (an ImportError): what pytest.importorskip and readers expect
        raise ModuleNotFoundError(
            f"gradproof.{subpackage} needs {what}, which is not installed. "
            f"Fix: pip install 'gradproof[{extra}]'"
        ) from error
