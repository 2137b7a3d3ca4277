"""One RBM layer trained with CD-k or persistent CD as a LightningModule."""

from __future__ import annotations

from functools import partial

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from dbn.centering import Offsets, check_centerable, start_centering
from dbn.errors import DivergenceError
from dbn.rbm import RBM
from dbn.sampling import geometric_betas, parallel_tempering, sparsity_coefficients
from dbn.training.distributed import all_ranks_sum, log_synced
from dbn.training.schedules import LR_SCHEDULES, lr_factor, momentum_at
from dbn.update import cd_update, compiled_cd_update


class RBMModule(L.LightningModule):
    """Train an :class:`~dbn.rbm.RBM` by SGD on the CD (or PCD) gradient.

    The update is explicit (:func:`~dbn.update.cd_update`): the closed-form CD gradient
    (:func:`~dbn.sampling.cd_gradients`, equal to autograd of ``cd_loss``, the free-energy
    surrogate, for every unit type) is written straight into SGD's momentum buffers and applied
    with torch SGD's arithmetic: momentum, and weight decay on the weights only (a learned
    ``log_variance`` trains with the biases). No autograd graph is built, and Lightning's manual
    optimisation lets one loader batch carry several updates: with ``batch_size`` set, a loader
    batch of ``steps_per_batch × batch_size`` rows is split into minibatches of ``batch_size``, one
    SGD update each, so Lightning's per-batch bookkeeping (hooks, optimizer-step wrapper, progress,
    the SIGTERM check) is paid once per ``steps_per_batch`` updates. ``global_step`` counts loader
    batches, as every other Lightning step count does. Under DDP the gradient of every update is
    averaged across ranks before it enters the momentum (one all-reduce of one flat tensor); the
    PCD chains stay per rank.

    Under ``Trainer(precision="bf16-mixed")`` (any autocast in force) each update runs on a
    bfloat16 working copy of the parameters, cast once per update, so its products run in
    bfloat16; the gradient is added to the float32 momentum and master weights.

    Batches are ``(v,)`` or ``(v, mask)``: a mask of v's shape (1 = observed, v zero-filled
    where 0) trains on the observed entries only (see :func:`~dbn.sampling.contrastive_divergence`)
    and the reconstruction error is then measured on the observed entries.

    Args:
        rbm: the layer to train (updated in place).
        k: Gibbs sweeps per update (CD-k / PCD-k).
        persistent: keep ``n_chains`` persistent chains across batches (PCD); they are a buffer, one set per device.
        n_chains: number of persistent chains.
        lr: base learning rate.
        momentum, final_momentum, momentum_switch_epoch: momentum schedule: ``momentum`` until
            ``momentum_switch_epoch``, then ``final_momentum``. ``final_momentum=None`` (the default) takes
            :func:`default_final_momentum`: 0.9 for CD (Hinton 2010), no switch for PCD.
        weight_decay: L2 cost on the weights.
        sparsity_target, sparsity_cost: optional sparsity target for the mean hidden activation.
        lr_schedule, lr_final: learning-rate schedule over ``epochs`` (``lr_final`` is a multiplier).
        epochs: number of epochs the schedules span.
        sample_visible: use a sampled rather than mean final visible state in CD.
        batch_size: rows of one SGD update; None: one update per loader batch, whatever its size.
        steps_per_batch: updates per loader batch; the data module serves ``batch_size × steps_per_batch``
            rows a batch (:attr:`loader_batch_size`). Needs ``batch_size``.
        sampler: ``"gibbs"`` (CD, or PCD with ``persistent``) or ``"pt"``: parallel tempering of the persistent
            chains, ``n_chains`` at each of ``n_temperatures`` inverse temperatures geometric from 1 to ``beta_min``
            (:func:`~dbn.sampling.parallel_tempering`, one sweep and swap pass per update; the β = 1 chains give the
            gradient, each rank keeps its own ladder; swap rates logged per pair as ``pt/swap_rate_{t}_{t+1}``).
        n_temperatures, beta_min: the tempering ladder (``sampler="pt"``).
        centering: train the centered RBM (:mod:`dbn.centering`; Melchior, Fischer & Wiskott 2016): offsets μ and
            λ, running means of the data and of p(h | data), are subtracted from the states in the energy, and SGD
            moves the centered parameters. ``rbm`` holds the equivalent plain parameters throughout, so the
            trained layer is an ordinary RBM. The offsets start at the data's mean (:meth:`start_centering`, or
            the first batch's) and 0.5, and are buffers: checkpointed, identical on every rank.
        centering_rate: ν, the sliding-average rate of the offsets (1: each batch's own means).
        compile: run the update through ``torch.compile`` (inductor fuses its elementwise work; needs a C++
            compiler on CPU and costs seconds to a minute of compilation at the first update). On a 2-core CPU it
            pays in bfloat16 (about 1.15x) and not in float32 (``benchmarks/cd1_throughput.py``).
        log_prefix: prefix of every logged name; by default ``pretrain/layer{layer_index}``, else ``rbm``.
        layer_index: which layer of a stack this RBM is (0 = the data layer), or None for a lone RBM.

    References:
        Hinton (2002) CD; Tieleman (2008) PCD; Hinton (2010) practical guide.
    """

    def __init__(
        self,
        rbm: RBM,
        k: int = 1,
        persistent: bool = False,
        n_chains: int = 100,
        lr: float = 0.05,
        momentum: float = 0.5,
        final_momentum: float | None = None,
        momentum_switch_epoch: int = 5,
        weight_decay: float = 2e-4,
        sparsity_target: float | None = None,
        sparsity_cost: float = 0.0,
        lr_schedule: str = "constant",
        lr_final: float = 0.1,
        epochs: int = 10,
        sample_visible: bool = False,
        batch_size: int | None = None,
        steps_per_batch: int = 1,
        compile: bool = False,
        sampler: str = "gibbs",
        n_temperatures: int = 10,
        beta_min: float = 0.1,
        centering: bool = False,
        centering_rate: float = 0.01,
        log_prefix: str | None = None,
        layer_index: int | None = None,
    ) -> None:
        super().__init__()
        final_momentum = default_final_momentum(persistent, momentum) if final_momentum is None else final_momentum
        check_schedule(k=k, n_chains=n_chains, lr=lr, momentum=momentum, final_momentum=final_momentum,
                       weight_decay=weight_decay, sparsity_target=sparsity_target, sparsity_cost=sparsity_cost,
                       lr_schedule=lr_schedule, lr_final=lr_final, epochs=epochs, batch_size=batch_size,
                       steps_per_batch=steps_per_batch, sampler=sampler, persistent=persistent,
                       n_temperatures=n_temperatures, beta_min=beta_min, centering_rate=centering_rate)
        if centering:
            check_centerable(rbm)
        if sampler == "pt" and (rbm.visible.name != "bernoulli" or rbm.hidden.name != "bernoulli" or rbm.convolutional):
            raise ValueError(f"sampler=pt needs a dense layer of Bernoulli visible and hidden units, this layer has "
                             f"{rbm.visible.name} and {rbm.hidden.name}{' (convolutional)' if rbm.convolutional else ''}; "
                             "use sampler=gibbs")
        self.save_hyperparameters(ignore=["rbm"])
        self.automatic_optimization = False  # the update is explicit: see the class docstring
        self.rbm = rbm
        self.layer_index = layer_index
        self.prefix = log_prefix or ("rbm" if layer_index is None else f"pretrain/layer{layer_index}")
        self._sums: Tensor | None = None  # on-device sums of this epoch's monitors, see _accumulate
        self._own_optimizer: torch.optim.Optimizer | None = None  # steps called by hand, without a trainer
        n_rows = n_chains * (n_temperatures if sampler == "pt" else 1) if persistent else 0
        self.register_buffer("chains", torch.zeros(n_rows, rbm.n_visible))  # PT: the ladder, β = 1 first
        self._swaps: Tensor | None = None  # PT: this epoch's summed swap acceptance per pair, and the count
        self.register_buffer("chains_ready", torch.tensor(False))
        self.register_buffer("q_running", torch.zeros(rbm.n_hidden))
        if centering:  # only then, so that plain layers' checkpoints keep their keys
            self.register_buffer("visible_offset", torch.zeros(rbm.n_visible))
            self.register_buffer("hidden_offset", torch.zeros(rbm.n_hidden))
            self.register_buffer("offsets_ready", torch.tensor(False))
        self.fe_val, self.fe_train, self.recon_val = MeanMetric(), MeanMetric(), MeanMetric()

    @property
    def loader_batch_size(self) -> int | None:
        """Rows of one loader batch: ``batch_size × steps_per_batch`` (None without a batch size)."""
        hp = self.hparams
        return None if hp.batch_size is None else int(hp.batch_size) * int(hp.steps_per_batch)

    # --- training -------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        """The batch's updates, inside one step of the trainer's optimizer (one ``global_step`` a batch).

        The SGD object holds the hyper-parameters and the momentum buffers; :func:`~dbn.update.cd_update`
        applies each update itself and leaves ``.grad`` unset, so the optimizer's own ``step`` (which
        runs this closure, then Lightning's ``on_before_optimizer_step`` hooks) has nothing left to do.
        """
        self._optimizer().step(closure=lambda: self._updates(batch))

    def _updates(self, batch: tuple[Tensor, ...]) -> None:
        v_all, mask_all = split_batch(batch)
        size = int(self.hparams.batch_size or len(v_all))
        values = None
        for start in range(0, len(v_all), size):  # the monitors come from the batch's first update
            mask = None if mask_all is None else mask_all[start:start + size]
            out = self._update(v_all[start:start + size], mask, monitor=values is None)
            values = out if values is None else values
        self._accumulate(values)

    def _update(self, v: Tensor, mask: Tensor | None, monitor: bool = True) -> Tensor | None:
        """One SGD step on minibatch ``v``; with ``monitor``, returns (free-energy difference, recon error, 1)."""
        hp, dev = self.hparams, v.device.type
        # Trainer(precision="bf16-mixed") runs this under autocast: its dtype becomes the update's compute dtype
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        sparsity = None
        if hp.sparsity_target is not None and hp.sparsity_cost > 0:
            sparsity = partial(sparsity_coefficients, q_running=self.q_running, target=hp.sparsity_target,
                               cost=hp.sparsity_cost)
        update = self._compiled() if hp.compile else cd_update
        optimizer = self._optimizer()
        with torch.autocast(dev, enabled=False):
            chains = self._persistent_chains(v) if hp.persistent else None
            if hp.sampler == "pt":
                chains = self._tempering_sweep(chains)
            step, fe_diff = update(self.rbm, v, getattr(optimizer, "optimizer", optimizer), k=hp.k,
                                   sample_visible=hp.sample_visible, chains=chains, mask=mask,
                                   sparsity=sparsity, dtype=dtype, average=self._average(), monitor=monitor,
                                   offsets=self._offsets(v))
            if not monitor:
                return None
            recon = None if step.recon is None else squared_error(v, step.recon, mask).mean()
        self._has_recon = recon is not None
        fe_diff = fe_diff.float()
        return torch.stack([fe_diff, fe_diff.new_zeros(()) if recon is None else recon.float(), fe_diff.new_ones(())])

    @property
    def offsets(self) -> Offsets | None:
        """The centering offsets (views of this module's buffers), or None for a plain RBM."""
        if not self.hparams.centering:
            return None
        return Offsets(self.visible_offset, self.hidden_offset, float(self.hparams.centering_rate))

    @torch.no_grad()
    def start_centering(self, visible_mean: Tensor) -> None:
        """Start the centered model at μ = ``visible_mean`` (the training data's), λ = 0.5, b_c = b, c_c = c."""
        start_centering(self.rbm, self.offsets, visible_mean.to(self.visible_offset))
        self.offsets_ready.fill_(True)
        self._offsets_checked = True

    def _offsets(self, v: Tensor) -> Offsets | None:
        """The offsets of this update; without :meth:`start_centering`, the first batch's mean (over ranks) starts them."""
        if not self.hparams.centering:
            return None
        if not getattr(self, "_offsets_checked", False):
            if not bool(self.offsets_ready):  # one host sync per fit
                average = self._average()
                mean = v.mean(0)
                self.start_centering(mean if average is None else average(mean))
            self._offsets_checked = True
        return self.offsets

    def _tempering_sweep(self, chains: Tensor) -> Tensor:
        """One parallel-tempering sweep of the ladder (swap rates summed for the epoch); returns the β = 1 chains."""
        hp = self.hparams
        ladder = chains.view(hp.n_temperatures, hp.n_chains, -1)
        betas = geometric_betas(hp.n_temperatures, hp.beta_min).to(chains)
        rates = parallel_tempering(self.rbm, ladder, betas)
        step = torch.cat([rates, rates.new_ones(1)])
        self._swaps = step if self._swaps is None else self._swaps + step
        return ladder[0]

    def _log_swap_rates(self) -> None:
        """PT: each neighbouring pair's swap acceptance over the epoch, averaged over ranks (each rank has its ladder)."""
        if self._swaps is None:
            return
        sums = all_ranks_sum(self._trainer, self._swaps)  # every rank, at the same point
        for t, rate in enumerate(sums[:-1] / sums[-1]):
            log_synced(self, f"{self.prefix}/pt/swap_rate_{t}_{t + 1}", rate)
        self._swaps = None

    def _compiled(self):
        """:func:`~dbn.update.compiled_cd_update`, made once per module (the raw torch optimizer is passed to it)."""
        if getattr(self, "_compiled_update", None) is None:
            self._compiled_update = compiled_cd_update()
        return self._compiled_update

    def _average(self):
        """Under DDP: the mean over ranks of a flat gradient tensor (one all-reduce per update); None in one process."""
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return None
        return partial(trainer.strategy.reduce, reduce_op="mean")

    def _optimizer(self):
        """The trainer's optimizer, or this module's own when steps are called by hand (no trainer)."""
        if self._trainer is not None:
            return self.optimizers()
        if self._own_optimizer is None:
            self._own_optimizer = self.configure_optimizers()
        return self._own_optimizer

    def _accumulate(self, values: Tensor) -> None:
        """Sum the monitors on the device; hand them to the logger only on Lightning's logging batches.

        The monitors (free-energy difference and reconstruction error) are measured on the first
        update of every loader batch: computing them costs about as much as the rest of the update's
        elementwise work, so with ``steps_per_batch`` updates a batch they are a 1-in-``steps_per_batch``
        sample of the updates (every update when it is 1). ``self.log`` costs about a millisecond a
        call on CPU, as much as a CD-1 update's maths, so the per-batch values go out only on the
        batches Lightning writes (every ``log_every_n_steps`` loader batches), and the epoch means,
        summed over ranks, at the epoch's end.
        """
        self._sums = values if self._sums is None else self._sums + values
        trainer = self._trainer  # None when a step is called by hand: nothing to log to
        if trainer is not None and (trainer.fit_loop.total_batch_idx + 1) % trainer.log_every_n_steps == 0:
            self.log(f"{self.prefix}/train/free_energy_diff_step", values[0], on_step=True, on_epoch=False)
            if self._has_recon:
                self.log(f"{self.prefix}/train/recon_error_step", values[1], on_step=True, on_epoch=False, prog_bar=True)

    def on_train_epoch_end(self) -> None:
        self._log_swap_rates()
        if self._sums is None:
            return
        fe_diff, recon, n = all_ranks_sum(self._trainer, self._sums)  # every rank, here: see dbn.training.distributed
        log_synced(self, f"{self.prefix}/train/free_energy_diff", fe_diff / n)
        if self._has_recon:
            log_synced(self, f"{self.prefix}/train/recon_error", recon / n)
        finite = torch.isfinite(self._sums).all() & self.rbm.is_finite()
        self._sums = None
        if not bool(finite):  # one host sync per epoch
            raise DivergenceError(
                f"{self.prefix}: weights or free energies became NaN or infinite in epoch {self.current_epoch}; "
                f"lower the learning rate (pretrain.lr, now {self.hparams.lr}) or the momentum; Gaussian visible "
                f"units also need standardised data (data=arrays with data.scale=standard; the image data sets come in "
                f"[0, 1]){_real_valued_hint(self.rbm)}"
            )

    def _persistent_chains(self, v: Tensor) -> Tensor:
        """PCD chains; the first batch seeds them with samples of the data (repeated if needed)."""
        if not getattr(self, "_chains_checked", False):
            if not bool(self.chains_ready):  # one host sync per fit, not per step
                idx = torch.arange(len(self.chains), device=v.device) % len(v)
                self.chains.copy_(self.rbm.visible.sample(v[idx], log_var=self.rbm.log_variance))
                self.chains_ready.fill_(True)
            self._chains_checked = True
        return self.chains

    def on_fit_start(self) -> None:
        # DDP copies rank 0's buffers to every rank before each forward by default; PCD chains
        # are per-rank state (each rank's own fantasy particles), so they must not be overwritten
        wrapped = self.trainer.strategy.model
        if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
            wrapped.broadcast_buffers = False

    def on_train_epoch_start(self) -> None:
        """The epoch's momentum and learning rate, pure functions of the epoch (so a resumed run gets them too)."""
        hp, epoch = self.hparams, self.current_epoch
        m = momentum_at(epoch, hp.momentum, hp.final_momentum, hp.momentum_switch_epoch)
        lr = hp.lr * lr_factor(hp.lr_schedule, epoch, hp.epochs, hp.lr_final)
        for group in self._optimizer().param_groups:
            group["momentum"], group["lr"] = m, lr
        log_synced(self, f"{self.prefix}/momentum", m, on_step=False, on_epoch=True)  # the same on every rank
        log_synced(self, f"{self.prefix}/lr", lr, on_step=False, on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp, rbm = self.hparams, self.rbm
        groups = [
            {"params": [rbm.weight], "weight_decay": hp.weight_decay},
            {"params": [p for p in (rbm.visible_bias, rbm.hidden_bias, rbm.log_variance) if p is not None],
             "weight_decay": 0.0},
        ]
        # the hyper-parameters and momentum buffers of dbn.update.cd_update, which applies torch SGD's arithmetic
        return torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum)

    # --- monitoring -------------------------------------------------------------------------------------
    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> None:
        v, mask = split_batch(batch)
        pre = self.rbm.hidden_pre(v)
        fe = self.rbm.free_energy(v, hidden_pre=pre, mask=mask)
        if dataloader_idx == 0:
            self.fe_val.update(fe)
            recon = self.rbm.visible_mean(self.rbm.hidden.mean(pre))
            self.recon_val.update(squared_error(v, recon, mask))
        else:
            self.fe_train.update(fe)

    def on_validation_epoch_end(self) -> None:
        if self.fe_val.update_count == 0:  # every rank has rows of the monitor sets (UnrepeatedDistributedSampler)
            return
        # MeanMetric.compute() gathers every rank's sums: called here, on every rank at the same point
        fe_val, fe_train, recon = self.fe_val.compute(), self.fe_train.compute(), self.recon_val.compute()
        log_synced(self, f"{self.prefix}/val/recon_error", recon)
        log_synced(self, f"{self.prefix}/val/free_energy", fe_val)
        log_synced(self, f"{self.prefix}/train_subset/free_energy", fe_train)
        # Hinton's overfitting monitor: held-out data gets higher free energy than training data
        log_synced(self, f"{self.prefix}/free_energy_gap", fe_val - fe_train)
        for metric in (self.fe_val, self.fe_train, self.recon_val):
            metric.reset()


def _real_valued_hint(rbm: RBM) -> str:
    """Gaussian visible units under ReLU hidden units feed each other unbounded values (Hinton 2010, section 13.2)."""
    if rbm.hidden.name == "relu" and rbm.visible.name.startswith("gaussian"):
        return " and, under relu hidden units, a learning rate of about 0.01 or less"
    return ""


def split_batch(batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor | None]:
    """``(v,)`` or ``(v, mask)`` -> (v, mask or None); a second element of another shape (labels) is not a mask."""
    v = batch[0]
    mask = batch[1] if len(batch) > 1 and batch[1].shape == v.shape else None
    return v, mask


def squared_error(v: Tensor, recon: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error per row, over the observed entries when there is a mask.  (batch, n) -> (batch,)"""
    err = (v - recon).square()
    if mask is None:
        return err.mean(1)
    return (err * mask).sum(1) / mask.sum(1).clamp_min(1.0)


#: negative-phase samplers: plain Gibbs chains (CD or PCD), parallel tempering of the persistent chains
SAMPLERS = ("gibbs", "pt")

#: the momentum CD switches to at ``momentum_switch_epoch`` by default (Hinton 2010, section 9)
CD_FINAL_MOMENTUM = 0.9


def default_final_momentum(persistent: bool, momentum: float) -> float:
    """The momentum after the switch when none is given: 0.9 for CD; for PCD, ``momentum`` (no switch).

    Persistent chains are a sample of the model only while the weights move slowly compared with the chains'
    mixing (Tieleman 2008). Momentum 0.9 makes each step ten times the gradient's, and PCD-1 then collapses:
    on binarised Fashion-MNIST, 784 x 500, lr 0.05, 5,500 updates, PCD-1 scored -426 ± 42 nats (AIS, 2 seeds)
    with the switch to 0.9 and -300 ± 13 (3 seeds) without it, against -334 for CD-1 (docs/results.md,
    "Generative RBMs side by side").
    """
    return float(momentum) if persistent else CD_FINAL_MOMENTUM


def check_schedule(*, k=1, n_chains=100, lr=0.05, momentum=0.5, final_momentum=None, weight_decay=0.0,
                   sparsity_target=None, sparsity_cost=0.0, lr_schedule="constant", lr_final=0.1, epochs=10,
                   batch_size=None, steps_per_batch=1, sampler="gibbs", persistent=False, n_temperatures=10,
                   beta_min=0.1, centering_rate=0.01, **_) -> None:
    """Reject an impossible layer schedule with a message naming the key and the fix (other keys are ignored)."""
    problems = []
    if sampler not in SAMPLERS:
        problems.append(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    elif sampler == "pt":
        if not persistent:
            problems.append("sampler=pt tempers persistent chains: set persistent=true")
        if int(n_temperatures) < 2:
            problems.append(f"n_temperatures must be >= 2 for sampler=pt, got {n_temperatures}")
        if not 0 < beta_min < 1:
            problems.append(f"beta_min must be in (0, 1), got {beta_min}")
    if not 0 < centering_rate <= 1:
        problems.append(f"centering_rate must be in (0, 1] (the offsets' sliding-average rate), got {centering_rate}")
    if batch_size is not None and int(batch_size) < 1:
        problems.append(f"batch_size must be >= 1, got {batch_size}")
    if int(steps_per_batch) < 1:
        problems.append(f"steps_per_batch must be >= 1 (SGD updates per loader batch), got {steps_per_batch}")
    elif int(steps_per_batch) > 1 and batch_size is None:
        problems.append(f"steps_per_batch={steps_per_batch} needs a batch_size to split the loader batches by")
    if int(k) < 1:
        problems.append(f"k must be >= 1 (Gibbs sweeps per update), got {k}")
    if int(n_chains) < 1:
        problems.append(f"n_chains must be >= 1, got {n_chains}")
    if not lr > 0:
        problems.append(f"lr must be > 0, got {lr}")
    for name, m in (("momentum", momentum), ("final_momentum", final_momentum)):
        if m is not None and not 0 <= m < 1:  # final_momentum None: default_final_momentum
            problems.append(f"{name} must be in [0, 1), got {m}")
    if weight_decay < 0:
        problems.append(f"weight_decay must be >= 0, got {weight_decay}")
    if sparsity_target is not None and not 0 < sparsity_target < 1:
        problems.append(f"sparsity_target must be in (0, 1) or null, got {sparsity_target}")
    if sparsity_cost < 0:
        problems.append(f"sparsity_cost must be >= 0, got {sparsity_cost}")
    if lr_schedule not in LR_SCHEDULES:
        problems.append(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    if not lr_final > 0:
        problems.append(f"lr_final must be > 0 (a multiplier of lr), got {lr_final}")
    if int(epochs) < 1:
        problems.append(f"epochs must be >= 1, got {epochs}")
    if problems:
        raise ValueError("; ".join(problems))
