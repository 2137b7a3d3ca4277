"""Lightning side of dbn: one-layer RBM training, greedy pretraining, fine-tuning, the dbn-train pipeline."""

from dbn.training.finetune import FineTuneModule
from dbn.training.pretrain import greedy_pretrain, hidden_probabilities, layer_schedules
from dbn.training.nvml import skip_failing_nvml_probe
from dbn.training.rbm_module import RBMModule

skip_failing_nvml_probe()  # after Lightning's import set the NVML check: see dbn.training.nvml

__all__ = ["FineTuneModule", "RBMModule", "greedy_pretrain", "hidden_probabilities", "layer_schedules"]
