"""The fine-tuning gradient of a dense stack with a softmax head, by hand: autograd's numbers, bit for bit.

The feed-forward net of a DBN of dense layers is

    h_0 = x,   s_l = f_l(a_l),   a_l = c_l + W_l·(h_{l-1} / σ²),   h_l = s_l ⊙ m_l,   z = b + V·h_L,

(f_l: the mean of the layer's hidden units, sigmoid for binary units and softplus for rectified ones; m_l: the
inverted-dropout mask, 1[r ≥ p] / (1 - p); σ² only on the first layer, from its Gaussian visible units),
and its loss the mean cross-entropy against target probabilities t (one-hot or label-smoothed),
L = -Σ_i t_i·log_softmax(z_i) / B. Back-propagation is

    δ_z = ∂L/∂z = log_softmax's backward of -t / B,    ∂L/∂V = δ_zᵀ h_L,   ∂L/∂b = Σ_i δ_z,
    δ_l = f_l's backward of (δ_{l+1} W_{l+1}) ⊙ m_l,  ∂L/∂W_l = δ_lᵀ (h_{l-1} / σ²),   ∂L/∂c_l = Σ_i δ_l,

with δ_{L+1} W_{L+1} read as δ_z V. Each step calls the kernel autograd itself calls for it
(``_log_softmax_backward_data``, ``sigmoid_backward`` or ``softplus_backward``, ``mm``, ``sum``) in autograd's
order, and the forward pass is the one autograd records (``F.softplus``, not :func:`dbn.special.softplus`'s faster
form), so the gradients are autograd's to the last bit (``tests/test_backprop.py``) and a fine-tuning run is the
same run either way. What goes is the cost of recording and walking the graph: on one CPU thread a fine-tuning
step of the 13-128-128-3 net at batch 64 that ``DBNClassifier`` fits on wine fell from 0.80 to 0.63 ms, and on
two threads the 784-500-500-2000 net at batch 100 trains 1.13x faster (``benchmarks/cd1_throughput.py --parts
finetune``, rows (b) and (e)).

Other nets (convolutional layers, batch normalisation, centering) go through autograd.

The maths imports only torch (see STYLE.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dbn.dbn import DBN, keep_mask

#: hidden unit type -> (its mean as autograd records it, its backward: (gradient, pre-activation, mean) -> gradient)
ACTIVATIONS = {
    "bernoulli": (torch.sigmoid, lambda grad, pre, mean: torch.ops.aten.sigmoid_backward(grad, mean)),
    "relu": (F.softplus, lambda grad, pre, mean: torch.ops.aten.softplus_backward(grad, pre, 1.0, 20.0)),
}


def closed_form_applies(dbn: DBN) -> bool:
    """Whether :func:`cross_entropy_backward` covers ``dbn``: a head on dense layers of binary or rectified hidden
    units (:data:`ACTIVATIONS`)."""
    return dbn.head is not None and all(not rbm.convolutional and rbm.hidden.name in ACTIVATIONS for rbm in dbn.layers)


@torch.no_grad()
def cross_entropy_backward(dbn: DBN, x: Tensor, y: Tensor, dropout: float = 0.0,
                           label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
    """Training forward pass and backward pass of the mean cross-entropy; gradients added to each ``.grad``.

    x: (batch, n_visible) inputs; y: (batch,) class indices, against :func:`smoothed_targets` with
    ``label_smoothing`` > 0; dropout: on every hidden layer's output (the masks drawn in the order of
    ``dbn(x, dropout=dropout)``, layer by layer). Only parameters with ``requires_grad`` get a gradient, and the
    backward pass stops below the lowest of them, as autograd's does.

    Returns ``(loss, logits)``, detached: the loss is ``F.cross_entropy(logits, y)`` (against the smoothed targets).
    """
    if not closed_form_applies(dbn):
        raise ValueError(f"cross_entropy_backward covers a head on dense layers of {' or '.join(ACTIVATIONS)} hidden "
                         f"units only")
    lowest = next((i for i, rbm in enumerate(dbn.layers)
                   if rbm.weight.requires_grad or rbm.hidden_bias.requires_grad), len(dbn.layers))
    inputs, pres, outputs, masks = [], [], [], []
    h = x
    for i, rbm in enumerate(dbn.layers):
        h = h if rbm.log_variance is None else h * torch.exp(-rbm.log_variance)
        inputs.append(h)
        pre = torch.addmm(rbm.hidden_bias, h, rbm.weight.t())
        # below the lowest trained layer autograd records nothing, and the units' mean may take its faster form
        s = ACTIVATIONS[rbm.hidden.name][0](pre) if i >= lowest else rbm.hidden.mean(pre)
        mask = keep_mask(s, dropout) if dropout > 0 else None
        pres.append(pre)
        outputs.append(s)
        masks.append(mask)
        h = s if mask is None else s * mask
    head = dbn.head
    logits = torch.addmm(head.bias, h, head.weight.t())
    log_probs = torch.log_softmax(logits, 1)
    batch = len(x)
    # autograd's order: the mean's 1/B, negated, times the targets (nll_loss_backward: -1/B at each label)
    scale = -(torch.ones((), dtype=logits.dtype, device=logits.device) / batch)
    if label_smoothing == 0:
        loss = F.nll_loss(log_probs, y)
        upstream = torch.zeros_like(log_probs).scatter_(1, y.unsqueeze(1), scale.expand(batch, 1))
    else:  # F.cross_entropy against probabilities: -(log_probs · t).sum() / B
        targets = smoothed_targets(y, logits, label_smoothing)
        loss = -(log_probs * targets).sum() / batch
        upstream = targets * scale
    delta = torch._log_softmax_backward_data(upstream, log_probs, 1, log_probs.dtype)

    _add_gradients(head.weight, head.bias, h, delta)
    weight = head.weight
    for i in range(len(dbn.layers) - 1, lowest - 1, -1):
        rbm = dbn.layers[i]
        upstream = delta.mm(weight)
        if masks[i] is not None:
            upstream = upstream * masks[i]
        delta = ACTIVATIONS[rbm.hidden.name][1](upstream, pres[i], outputs[i])
        _add_gradients(rbm.weight, rbm.hidden_bias, inputs[i], delta)
        weight = rbm.weight
    return loss, logits


def smoothed_targets(y: Tensor, logits: Tensor, eps: float) -> Tensor:
    """(1 - ε) one_hot(y) + ε / K as class probabilities, like ``logits``: the cross-entropy against them equals
    ``F.cross_entropy(logits, y, label_smoothing=ε)``, at about two thirds of its cost on a small CPU batch (torch's
    label-smoothing path runs several more autograd nodes; 94 against 140 µs forward and backward at 64 x 10)."""
    k = logits.shape[-1]
    return torch.full_like(logits, eps / k).scatter_(1, y.unsqueeze(1), 1.0 - eps + eps / k)


def _add_gradients(weight: Tensor, bias: Tensor, below: Tensor, delta: Tensor) -> None:
    """A layer ``z = bias + below·weightᵀ`` with ``∂L/∂z = delta``: ``∂L/∂weight = deltaᵀ below`` (the product
    autograd's ``addmm`` backward takes for a transposed weight) and ``∂L/∂bias = Σ_i delta``, added to ``.grad``
    (set when None, as autograd's AccumulateGrad does) for the parameters that require a gradient."""
    for param, compute in ((weight, lambda: delta.t().mm(below)), (bias, lambda: delta.sum(0))):
        if not param.requires_grad:
            continue
        grad = compute()
        if param.grad is None:
            param.grad = grad
        else:
            param.grad.add_(grad)
