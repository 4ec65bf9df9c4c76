"""gradproof for PyTorch: check autograd's gradients of modules and custom Functions.

Installed with ``pip install 'gradproof[torch]'``; ``import gradproof`` alone
never imports torch.

- :func:`check_module`: every parameter of a ``torch.nn.Module``, named as in
  ``named_parameters()`` (``layer2.weight[3, 1]``).
- :func:`gradcheck`: a drop-in for ``torch.autograd.gradcheck`` whose failure
  message is gradproof's report; every option of torch's runs its check.
- :func:`gradgradcheck`: the same for ``torch.autograd.gradgradcheck``: the
  second derivative, as the derivative of the backward.

>>> import torch, gradproof.torch
>>> x = torch.randn(4, dtype=torch.float64, requires_grad=True)
>>> gradproof.torch.gradcheck(torch.sin, (x,))
True
"""

from gradproof._extras import require

require("torch")  # ImportError with the install command where torch is missing

from gradproof.torch._gradcheck import gradcheck
from gradproof.torch._gradgradcheck import gradgradcheck
from gradproof.torch._module import TrainingModeWarning, check_module
from gradproof.torch._verdict import GradcheckError

__all__ = ["GradcheckError", "TrainingModeWarning", "check_module", "gradcheck", "gradgradcheck"]
