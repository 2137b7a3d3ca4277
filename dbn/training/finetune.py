"""Discriminative fine-tuning of a DBN stack with a softmax head, by backprop."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from dbn.backprop import closed_form_applies, cross_entropy_backward, smoothed_targets
from dbn.data.augment import augment_images, check_augment, image_side
from dbn.dbn import DBN
from dbn.training.distributed import log_synced


def check_optimizer(factory: Callable | None, centering: bool) -> None:
    """ValueError for an optimizer that fine-tuning cannot combine with ``centering``: L-BFGS, whose line search does
    not see the correction centering makes to each step. ``factory``: an optimizer class, a partial of one, or None."""
    cls = getattr(factory, "func", factory)
    if centering and isinstance(cls, type) and issubclass(cls, torch.optim.LBFGS):
        raise ValueError("finetune.centering corrects each optimizer step, which L-BFGS's line search does not "
                         "see; use a first-order optimizer (finetune/optimizer=adam) or finetune.centering=false")


#: how fine-tuning's batch normalisations start (``batch_norm``): as the identity on the first batch, or standard
BATCH_NORM_STARTS = ("identity", "standard")


def check_batch_norm(value) -> str | None:
    """``batch_norm`` as one of :data:`BATCH_NORM_STARTS` or None (off); ValueError naming the choices otherwise."""
    if value is None or value is False:
        return None
    if value not in BATCH_NORM_STARTS:
        raise ValueError(f"finetune.batch_norm must be null (off), identity or standard, got {value!r}: identity starts "
                         "each normalisation as the identity on the first batch, which keeps a pretrained stack's "
                         "function; standard starts with scale 1 and shift 0 (each pre-activation standardised from "
                         "the first step), the usual start for a net from random init")
    return value


def check_layer_lr(value, n_layers: int, optimizer=None) -> tuple[float, ...] | None:
    """``layer_lr`` as one learning-rate factor per stack layer (bottom first), or None (every factor 1).

    ``value``: None, one number for every layer, or a list of ``n_layers`` numbers, each >= 0 (0 freezes the
    layer). ``optimizer``: its class or a partial of one, to refuse factors that L-BFGS cannot take (it has one
    parameter group: freezing layers is all it allows). ValueError naming the fix otherwise."""
    if value is None:
        return None
    factors = [value] * n_layers if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        factors = tuple(float(f) for f in factors if not isinstance(f, bool))
    except (TypeError, ValueError):
        factors = ()
    if len(factors) != n_layers or not all(f >= 0 for f in factors):  # NaN fails f >= 0 too
        raise ValueError(f"finetune.layer_lr must be null, a number >= 0 or a list of {n_layers} numbers >= 0 (one "
                         f"learning-rate factor per stack layer, bottom first; 0 freezes a layer), got {value!r}")
    cls = getattr(optimizer, "func", optimizer)
    if isinstance(cls, type) and issubclass(cls, torch.optim.LBFGS) and set(factors) - {0.0, 1.0}:
        raise ValueError(f"L-BFGS takes one learning rate for all it trains, so finetune.layer_lr can only freeze "
                         f"layers (factors 0 or 1), got {value!r}; use finetune/optimizer=adam for other factors")
    return factors


class FineTuneModule(L.LightningModule):
    """Train a DBN with a head as a feed-forward classifier (cross-entropy).

    The feed-forward net is the DBN's own bottom-up pass, so fine-tuning updates
    the RBMs' weights and hidden biases in place and the DBN saved afterwards is
    the fine-tuned classifier.

    Args:
        dbn: a DBN with a head (see :meth:`DBN.add_head`).
        optimizer: a partial optimizer, ``optimizer(params) -> torch.optim.Optimizer``
            (from config: ``{_target_: torch.optim.Adam, _partial_: true, lr: 1e-3}``); default: fused Adam, lr 1e-3.
        scheduler: optional partial LR scheduler, ``scheduler(optimizer)``, stepped per epoch.
        dropout: dropout on each hidden layer's output during training.
        input_dropout: dropout on the input pixels/features during training (a dropped entry is 0,
            which for the first RBM is the same as a missing value).
        label_smoothing: cross-entropy against targets smoothed by this much (training loss only;
            validation and test losses are the plain cross-entropy, comparable across runs).
        log_prefix: prefix of the logged names.
        augment: training images only: ``{"hflip": bool, "shift": pixels, "erase": probability}``, random
            left-right flips, translations and erased rectangles of the (square) input images; see
            :func:`dbn.data.augment.augment_images`.
        batch_size: rows of one optimizer step; None: one step per loader batch, whatever its size.
        steps_per_batch: optimizer steps per loader batch; the data module serves ``batch_size × steps_per_batch``
            rows a batch (:attr:`loader_batch_size`) and each ``batch_size`` of them is one step. Lightning's
            per-batch bookkeeping is then paid once per ``steps_per_batch`` steps (manual optimisation: forward,
            ``manual_backward`` (gradients averaged across ranks under DDP), ``optimizer.step``). Where
            :meth:`_closed_form` holds (dense layers of binary or rectified units, one process, no autocast), the
            forward and backward passes are :func:`dbn.backprop.cross_entropy_backward` instead: the same
            gradients, bit for bit, without a graph.
        centering: train in the centered, scaled parametrization of every layer above the data (the centering
            trick for backprop: Montavon & Müller 2012; LeCun et al. 1998, "Efficient BackProp"). A layer whose
            inputs h (the outputs of the layer below: sigmoid values around 0.5, or pooled maps) have mean μ and
            standard deviation σ over the first training batch is trained as if it saw (h - μ)/σ: its weight
            gradient is taken on the centered inputs, ``Gᵀ(h - μ)``, its weight step is multiplied by 1/σ, and its
            bias moves by ``-ΔW μ`` on top of its own step, so that the centered bias is the one the optimizer
            moves. With Adam this is exactly Adam on the network with standardised layer inputs (up to Adam's ε);
            the network and its function are the plain ones throughout (nothing changes in what is saved). μ is
            per input for dense layers and the head, per map for convolutional layers; σ is one number a layer.
            With ``dropout``, a dropped unit takes its mean μ instead of 0 (dropout of the centered inputs, so the
            two compose: dropping to 0 would feed the layer -μ/σ, a large input of its own).
            The statistics are measured once, averaged over ranks, and kept in the checkpoint. Not with L-BFGS,
            whose line search evaluates points that this step correction does not produce. Measured on the
            Fashion-MNIST conv stack (docs/results.md, seed 0): from the pretrained stack 88.58% with dropout 0.2
            (to the mean), flips and shifts against 86.93% without centering, and 90.44% centered without dropout;
            from random init 88.15% centered without dropout against 86.57% (not centered, dropout, flips, shifts).
        batch_norm: None (off), ``"identity"`` or ``"standard"``: batch normalisation of every layer's hidden
            pre-activations (Ioffe & Szegedy 2015), per unit for dense layers and per map for convolutional ones, as
            a reparametrisation for training only. ``"identity"``: at the first training batch each normalisation
            is set to the identity on that batch (its scale and shift, and its running statistics, the standard
            deviation and mean of the pre-activations, averaged over ranks), so that fine-tuning starts from the
            stack's own function: the start for a pretrained stack. ``"standard"``: scale 1, shift 0 (PyTorch's
            start), each pre-activation standardised from the first step: the start for a net from random init,
            whose function is not worth keeping (on the Fashion-MNIST conv net from random init, the identity start
            left some scales tiny, and the net trained in batch statistics but not in running ones: 47% validation
            accuracy at epoch 7 against 89% on its training batches). At the end of the fit (:meth:`fold_batch_norm`, called
            in ``on_fit_end``) each one, with its running statistics, is folded into its layer's weights and hidden
            biases: W ← s·W, c ← s·c + t with s = γ/√(var + ε), t = β - s·mean. The saved DBN is then the plain
            bottom-up pass again and computes exactly what the normalised net computed in evaluation mode. Under
            DDP each rank normalises by its own batch's statistics (``trainer.sync_batchnorm=true``: all ranks'),
            and the running statistics are averaged over ranks before every validation and before folding.
        layer_lr: one factor on the optimizer's learning rate for every layer of the stack, or a list of one per
            layer, bottom first (each layer's weights, hidden biases and batch normalisation); the head keeps the
            full rate. 0 freezes a layer: its parameters take no gradient and stay out of the optimizer (batch
            normalisation still follows the batches' statistics). None: every layer at the full rate. (On the
            Fashion-MNIST conv stack with 100 labels, freezing or slowing its layers cost 1 to 5 points of validation
            accuracy: experiments/fashion_conv_dbn/README.md.)
    """

    def __init__(
        self,
        dbn: DBN,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., object] | None = None,
        dropout: float = 0.0,
        log_prefix: str = "finetune",
        augment: dict | None = None,
        input_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        batch_size: int | None = None,
        steps_per_batch: int = 1,
        centering: bool = False,
        batch_norm: str | None = None,
        layer_lr: float | list[float] | None = None,
    ) -> None:
        super().__init__()
        if dbn.head is None:
            raise ValueError("FineTuneModule needs a DBN with a classifier head; call dbn.add_head(n_classes)")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(steps_per_batch) < 1 or (int(steps_per_batch) > 1 and batch_size is None):
            raise ValueError(f"steps_per_batch must be >= 1, and needs a batch_size when > 1; got {steps_per_batch}")
        self.save_hyperparameters(ignore=["dbn", "optimizer", "scheduler"])
        self.automatic_optimization = False  # several steps a loader batch: see training_step
        self.dbn, self.optimizer_factory, self.scheduler_factory = dbn, optimizer, scheduler
        self._frozen: list[torch.nn.Parameter] = []
        self.dropout, self.prefix = float(dropout), log_prefix
        self.input_dropout, self.label_smoothing = float(input_dropout), float(label_smoothing)
        self.augment = check_augment(augment)
        self.side = image_side(dbn.sizes[0]) if self.augment else None
        n = dbn.n_classes
        # one pair of metric objects per stage, so epoch accumulation never mixes stages; they are
        # computed (and synced across ranks) in this module's epoch-end hooks, never lazily by Lightning
        self.train_acc, self.val_acc, self.test_acc = (MulticlassAccuracy(n, average="micro") for _ in range(3))
        self.train_loss, self.val_loss, self.test_loss = (MeanMetric() for _ in range(3))
        # state flags, each a buffer (what a checkpoint keeps) mirrored as a Python bool, which the steps read: a CUDA
        # buffer read on the host would synchronise the device at every step (set: _set_flag; after load_state_dict:
        # _read_flags_after_load)
        self._flags: dict[str, bool] = {}
        self.register_load_state_dict_post_hook(_read_flags_after_load)
        self.centering = bool(centering)
        check_optimizer(optimizer, self.centering)
        self.layer_lr = check_layer_lr(layer_lr, len(dbn.layers), optimizer)
        if self.centering:  # one (mean, scale) pair per layer above the data and for the head; set at the first batch
            for i, (weight, _, n_means) in enumerate(self._centered_layers()):
                self.register_buffer(f"center_mean_{i}", weight.new_zeros(n_means))
                self.register_buffer(f"center_scale_{i}", weight.new_ones(()))
            self.register_buffer("center_ready", torch.tensor(False))
        self.batch_norm = check_batch_norm(batch_norm)
        if self.batch_norm:  # per hidden unit (dense) or per map (conv); "identity": set at the first batch
            self.norms = torch.nn.ModuleList(PreactivationNorm(rbm.hidden_shape[0] if rbm.convolutional else rbm.n_hidden)
                                             for rbm in dbn.layers)
            self.register_buffer("norms_ready", torch.tensor(False))
            self.register_buffer("norms_folded", torch.tensor(False))

    def setup(self, stage: str) -> None:
        # the feed-forward net uses the weights and hidden biases only; the rest (visible biases,
        # variances) would get no gradient, which DDP refuses: frozen for the fit (before DDP wraps
        # the model), given back in teardown so the RBMs stay trainable afterwards
        if stage != "fit":
            return
        layers = self._layer_parameters()
        used = {id(p) for params in layers for p in params} | {id(p) for p in self.dbn.head.parameters()}
        self._frozen = [p for p in self.dbn.parameters() if p.requires_grad and id(p) not in used]
        self._frozen += [p for factor, params in zip(self.layer_lr or (), layers)
                         if factor == 0 for p in params if p.requires_grad]  # layer_lr 0: frozen layers
        for p in self._frozen:
            p.requires_grad_(False)

    def teardown(self, stage: str) -> None:
        for p in self._frozen:
            p.requires_grad_(True)
        self._frozen = []

    def forward(self, x: Tensor) -> Tensor:
        if self.input_dropout > 0:
            x = F.dropout(x, self.input_dropout, self.training)
        centers = None
        if self.centering and self.dropout > 0 and self._flag("center_ready"):  # drop to the mean, not to 0
            centers = []
            for i, rbm in enumerate(self.dbn.layers):  # a conv layer's means are per map: one per output value
                mean = self.get_buffer(f"center_mean_{i}")
                centers.append(mean.repeat_interleave(rbm.n_output // len(mean)) if len(mean) != rbm.n_output else mean)
        norms = self.norms if self.batch_norm and not self._flag("norms_folded") else None
        return self.dbn(x, dropout=self.dropout, centers=centers, norms=norms)

    def _loss(self, batch: tuple[Tensor, Tensor], stage: str) -> tuple[Tensor, Tensor]:
        """(cross-entropy, logits) of a batch; training batches are augmented and label-smoothed."""
        x, y = batch
        if stage == "train" and self.augment:
            x = self._augmented(x)
        logits = self(x)
        if stage == "train" and self.label_smoothing > 0:
            return F.cross_entropy(logits, smoothed_targets(y, logits, self.label_smoothing)), logits
        return F.cross_entropy(logits, y), logits

    def _augmented(self, x: Tensor) -> Tensor:
        return augment_images(x, self.side, hflip=bool(self.augment.get("hflip")), shift=int(self.augment.get("shift", 0)),
                              erase=float(self.augment.get("erase", 0.0)))

    def _closed_form_backward(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """(cross-entropy, logits) of a training batch, as :meth:`_loss` gives them, with every trained parameter's
        gradient set by :func:`~dbn.backprop.cross_entropy_backward`: autograd's, bit for bit, and the random
        draws (augmentation, input dropout, each layer's dropout) in :meth:`_loss`'s order."""
        x, y = batch
        if self.augment:
            x = self._augmented(x)
        if self.input_dropout > 0:
            x = F.dropout(x, self.input_dropout, self.training)
        return cross_entropy_backward(self.dbn, x, y, self.dropout if self.training else 0.0, self.label_smoothing)

    def _update_metrics(self, stage: str, logits: Tensor, y: Tensor, losses: Tensor, sizes: Tensor) -> None:
        getattr(self, f"{stage}_acc").update(logits.detach(), y)
        getattr(self, f"{stage}_loss").update(losses.detach(), weight=sizes)

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        loss, logits = self._loss(batch, stage)
        self._update_metrics(stage, logits, batch[1], loss.view(1), torch.full((1,), len(batch[1]), device=loss.device))
        return loss

    def _logging_batch(self) -> bool:
        """Whether Lightning writes this batch's logged values (every ``log_every_n_steps`` batches).

        ``self.log`` costs about a millisecond a call on CPU, a fifth of a fine-tuning step of the
        784-500-500-2000 net at batch 100, and Lightning keeps only the values of its logging batches.
        """
        trainer = self._trainer
        return trainer is not None and (trainer.fit_loop.total_batch_idx + 1) % trainer.log_every_n_steps == 0

    def _log_epoch(self, stage: str) -> None:
        """The stage's epoch loss and accuracy over every rank's batches, computed here on every rank."""
        acc, loss = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_loss")
        if loss.update_count == 0:
            return
        log_synced(self, f"{self.prefix}/{stage}/loss", loss.compute(), prog_bar=stage == "val")
        log_synced(self, f"{self.prefix}/{stage}/acc", acc.compute(), prog_bar=stage == "val")
        acc.reset()
        loss.reset()

    def on_train_start(self) -> None:
        # a fit resumed from resume.EpochCheckpoint's file: that checkpoint is written before this module's
        # epoch-end hook steps the scheduler, so it holds one step fewer than the epochs it finished; catch up here
        # (a SIGTERM checkpoint, written mid-epoch after that epoch's steps, needs none)
        scheduler = self.lr_schedulers()
        if scheduler is None or scheduler.last_epoch >= self.current_epoch:
            return
        with warnings.catch_warnings():  # this process has not stepped the (restored) optimizer yet: torch warns
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()` before")
            while scheduler.last_epoch < self.current_epoch:
                scheduler.step()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")
        # manual optimisation: the epoch's scheduler step is ours (Lightning steps schedulers only under automatic
        # optimisation)
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    @property
    def loader_batch_size(self) -> int | None:
        """Rows of one loader batch: ``batch_size × steps_per_batch`` (None without a batch size)."""
        hp = self.hparams
        return None if hp.batch_size is None else int(hp.batch_size) * int(hp.steps_per_batch)

    # --- centering (see the class docstring) ---------------------------------------------------------------
    def _centered_layers(self) -> list[tuple[Tensor, Tensor, int]]:
        """(weight, bias, number of means) of every layer above the data, then the head's."""
        layers = [(rbm.weight, rbm.hidden_bias, rbm.in_shape[0] if rbm.convolutional else rbm.n_visible)
                  for rbm in self.dbn.layers[1:]]
        head = self.dbn.head
        return layers + [(head.weight, head.bias, head.in_features)]

    @torch.no_grad()
    def _start_centering(self, x: Tensor) -> None:
        """Measure each centered layer's input mean and scale on ``x`` (no dropout, no augmentation), over all ranks."""
        stats, h = [], x
        for rbm in self.dbn.layers:
            h = rbm.output(h)
            maps = h.view(len(h), rbm.output_shape[0], -1) if rbm.convolutional else h.unsqueeze(-1)
            stats += [maps.mean((0, 2)), (h * h).mean().view(1)]
        parts = self._mean_over_ranks(stats)
        for i, (mean, square) in enumerate(zip(parts[::2], parts[1::2])):
            centered = self.get_buffer(f"center_mean_{i}")
            if len(mean) == len(centered):
                centered.copy_(mean)
            else:  # a conv layer's maps feed a dense layer or the head: the map means, one per flattened input
                centered.copy_(mean.repeat_interleave(len(centered) // len(mean)))
            overall = mean.mean()
            variance = (square - overall * overall).clamp_min(0.0)
            self.get_buffer(f"center_scale_{i}").copy_(torch.where(variance > 1e-12, variance.rsqrt(), 1.0).squeeze())
        self._set_flag("center_ready")

    def _flag(self, name: str) -> bool:
        return self._flags.get(name, False)

    def _set_flag(self, name: str) -> None:
        self.get_buffer(name).fill_(True)
        self._flags[name] = True

    def _several_ranks(self) -> bool:
        return self._trainer is not None and self.trainer.world_size > 1

    def _mean_over_ranks(self, tensors: list[Tensor]) -> list[Tensor]:
        """1-d ``tensors`` of one dtype, each averaged over the DDP ranks in one all-reduce of their concatenation
        (the tensors themselves on one process or outside a Trainer)."""
        if not self._several_ranks():
            return list(tensors)
        flat = self.trainer.strategy.reduce(torch.cat(tensors), reduce_op="mean")
        return list(flat.split([len(t) for t in tensors]))

    # --- batch normalisation (see the class docstring) -------------------------------------------------------
    @torch.no_grad()
    def _start_batch_norm(self, x: Tensor) -> None:
        """``"identity"``: set each normalisation to the identity on ``x``: scale and shift (and running statistics)
        the standard deviation and mean of its layer's pre-activations, measured through the un-normalised stack,
        over all ranks. ``"standard"``: PyTorch's start, kept."""
        if self.batch_norm == "standard":
            self._set_flag("norms_ready")
            return
        stats, h = [], x
        for rbm, norm in zip(self.dbn.layers, self._batch_norms()):
            pre = rbm.hidden_pre(h).view(len(h), norm.num_features, -1)
            pre = pre.to(torch.promote_types(pre.dtype, torch.float32))  # statistics in float32 at least
            stats += [pre.mean((0, 2)), pre.square().mean((0, 2))]
            h = rbm.output(h)
        parts = self._mean_over_ranks(stats)
        for norm, mean, square in zip(self._batch_norms(), parts[::2], parts[1::2]):
            variance = (square - mean * mean).clamp_min(0.0)
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(variance)
            norm.weight.copy_((variance + norm.eps).sqrt())
            norm.bias.copy_(mean)
        self._set_flag("norms_ready")

    @torch.no_grad()
    def fold_batch_norm(self) -> None:
        """Fold each normalisation, as evaluation mode applies it, into its layer: W ← s·W, c ← s·c + t (s, t per
        hidden unit or map). Afterwards the DBN alone computes what the normalised net did; a no-op without
        ``batch_norm``, once folded, or before the first batch set the normalisations."""
        if not self.batch_norm or self._flag("norms_folded") or not self._flag("norms_ready"):
            return
        self._average_running_statistics()
        for rbm, norm in zip(self.dbn.layers, self._batch_norms()):
            scale = norm.weight / (norm.running_var + norm.eps).sqrt()
            shift = norm.bias - scale * norm.running_mean
            rbm.weight.mul_(scale.to(rbm.weight.dtype).view(-1, *[1] * (rbm.weight.dim() - 1)))
            rbm.hidden_bias.mul_(scale.to(rbm.hidden_bias.dtype)).add_(shift.to(rbm.hidden_bias.dtype))
        self._set_flag("norms_folded")

    def _batch_norms(self) -> list[torch.nn.modules.batchnorm._BatchNorm]:
        return [norm.bn for norm in self.norms]

    @torch.no_grad()
    def _average_running_statistics(self) -> None:
        """Under DDP, every rank's running means and variances replaced by their average over ranks.

        Each rank updates them from its own batches, and DDP broadcasts buffers only at the first of a loader batch's
        ``steps_per_batch`` steps, so without this each rank would validate, and fold, its own statistics (the
        parameters would differ across ranks after folding). The averaged variance is the mean of the ranks'
        (their means' spread left out, as with DDP's own buffers); ``trainer.sync_batchnorm=true`` computes exact
        statistics over all ranks' batches instead, where the backend supports it.
        """
        if not self._several_ranks():
            return
        norms = self._batch_norms()
        parts = self._mean_over_ranks([t for norm in norms for t in (norm.running_mean, norm.running_var)])
        for norm, mean, var in zip(norms, parts[::2], parts[1::2]):
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)

    def on_validation_epoch_start(self) -> None:
        if self.batch_norm and not self._flag("norms_folded"):
            self._average_running_statistics()  # every rank validates (and checkpoints) the same net

    def on_fit_end(self) -> None:
        self.fold_batch_norm()

    def _center_gradients(self) -> None:
        """Each centered weight's gradient taken on the centered inputs: G - ∂L/∂c ⊗ μ."""
        for i, (weight, bias, _) in enumerate(self._centered_layers()):
            if weight.grad is None or bias.grad is None:
                continue
            mean = self.get_buffer(f"center_mean_{i}")
            if weight.dim() == 4:  # conv filters (K, C, k, k): μ per input map
                weight.grad.sub_(bias.grad.view(-1, 1, 1, 1) * mean.view(1, -1, 1, 1))
            else:
                weight.grad.sub_(torch.outer(bias.grad, mean))

    def _closed_form(self) -> bool:
        """Whether training steps take the hand-derived gradient of :func:`~dbn.backprop.cross_entropy_backward`
        (autograd's numbers at less cost per step): dense layers of binary or rectified units, no centering or
        batch normalisation, one process (under DDP autograd's hooks average the gradients), and no mixed precision
        (autocast would change the kernels)."""
        return (self._trainer is not None and not self.centering and not self.batch_norm
                and closed_form_applies(self.dbn) and not self._several_ranks()
                and self.trainer.precision in ("32-true", "64-true"))

    def _optimizer_step(self, opt, closure: Callable[[], Tensor]) -> Tensor:
        """``opt.step(closure)``, where ``closure`` zeroes the gradients, evaluates the loss and back-propagates it;
        with centering, the weight gradients are centered after the closure and the step corrected after it."""
        if not self.centering:
            return opt.step(closure=closure)

        def centered_closure() -> Tensor:
            loss = closure()
            self._center_gradients()
            return loss

        before = [weight.detach().clone() for weight, _, _ in self._centered_layers()]
        loss = opt.step(closure=centered_closure)
        with torch.no_grad():  # scale each weight's step by 1/σ and move its bias by -ΔW μ
            for i, ((weight, bias, _), old) in enumerate(zip(self._centered_layers(), before)):
                mean = self.get_buffer(f"center_mean_{i}")
                step = weight.sub_(old).mul_(self.get_buffer(f"center_scale_{i}"))  # the scaled step, in place
                bias.sub_(step.sum((2, 3)) @ mean if step.dim() == 4 else step @ mean)
                weight.add_(old)
        return loss

    def training_step(self, batch, batch_idx):
        """One optimizer step per ``batch_size`` rows of the loader batch (the closure form serves L-BFGS too)."""
        x_all, y_all = batch
        size = int(self.hparams.batch_size or len(x_all))
        opt = self.optimizers()
        if self.centering and not self._flag("center_ready"):
            self._start_centering(x_all)
        if self.batch_norm and not self._flag("norms_ready"):
            self._start_batch_norm(x_all)
        loss, seen = None, {}  # the last evaluation of each step, for the epoch metrics
        closed_form = self._closed_form()

        for start in range(0, len(x_all), size):
            minibatch = (x_all[start:start + size], y_all[start:start + size])

            def closure(minibatch=minibatch, start=start):
                opt.zero_grad(set_to_none=True)
                if closed_form:
                    loss, logits = self._closed_form_backward(minibatch)
                else:
                    loss, logits = self._loss(minibatch, "train")
                    self.manual_backward(loss)
                seen[start] = (loss.detach(), logits.detach())
                return loss

            loss = self._optimizer_step(opt, closure)
        # the train metrics updated once per loader batch: torchmetrics' two updates cost about a fifth of a
        # small net's step (0.4 of 2 ms for 64-256-256-10 at batch 64 on one thread)
        if seen:
            starts = sorted(seen)  # every step of the batch, in order: the logits cover y_all
            losses = torch.stack([seen[s][0] for s in starts])
            sizes = torch.full((len(starts),), size, device=losses.device)  # made on the device: no host copy
            sizes[-1] = len(y_all) - starts[-1]
            self._update_metrics("train", torch.cat([seen[s][1] for s in starts]), y_all, losses, sizes)
        if loss is not None and self._logging_batch():  # this rank's last step; epoch values (all ranks): _log_epoch
            self.log(f"{self.prefix}/train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, "test")

    def _layer_parameters(self) -> list[list[torch.nn.Parameter]]:
        """Each stack layer's trained parameters: weight, hidden bias and its batch normalisation's scale and shift."""
        norms = self.norms if self.batch_norm else [None] * len(self.dbn.layers)
        return [[rbm.weight, rbm.hidden_bias] + (list(norm.parameters()) if norm is not None else [])
                for rbm, norm in zip(self.dbn.layers, norms)]

    def configure_optimizers(self):
        factory = self.optimizer_factory or (lambda params: torch.optim.Adam(params, lr=1e-3, fused=True))
        trained = [p for p in self.parameters() if p.requires_grad]
        if self.layer_lr is None:
            opt = factory(trained)
        else:  # one parameter group per factor (the head's, 1, included); each group's rate scaled once made
            factor_of = {id(p): f for f, params in zip(self.layer_lr, self._layer_parameters()) for p in params}
            groups: dict[float, list] = {}
            for p in trained:
                groups.setdefault(factor_of.get(id(p), 1.0), []).append(p)
            opt = factory([{"params": params} for params in groups.values()])
            for group, factor in zip(opt.param_groups, groups):
                group["lr"] *= factor
        check_optimizer(type(opt), self.centering)  # a factory that is not a class or partial shows its class only here
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(opt), "interval": "epoch"}}


def _read_flags_after_load(module: FineTuneModule, incompatible_keys) -> None:
    """After ``load_state_dict`` (a resumed fit, a loaded checkpoint): the state flags' mirrors read from their
    buffers, once."""
    module._flags = {name: bool(buffer) for name, buffer in module._buffers.items()
                     if name in ("center_ready", "norms_ready", "norms_folded") and buffer is not None}


class PreactivationNorm(torch.nn.Module):
    """Batch normalisation of a layer's hidden pre-activations ``(batch, n_hidden)``, per unit of a dense layer or
    per map of a convolutional one (``n`` maps, each the same number of values, maps outermost): a ``BatchNorm1d``
    (``.bn``) on the ``(batch, n, positions)`` view, which Lightning's ``sync_batchnorm`` can convert as it is."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(n)

    def forward(self, pre: Tensor) -> Tensor:
        return self.bn(pre.view(len(pre), self.bn.num_features, -1)).view(pre.shape)
