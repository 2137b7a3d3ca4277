"""Evaluation of RBMs and DBNs: exact log Z for small models, AIS, RAISE, average log-likelihood."""

from dbn.eval.bound import dbn_lower_bound
from dbn.eval.likelihood import average_log_likelihood, free_energies, pseudo_log_likelihood
from dbn.eval.partition import AISResult, ais_log_partition, exact_log_partition, paper_betas
from dbn.eval.reverse import RAISEResult, raise_log_likelihood

__all__ = ["dbn_lower_bound", "average_log_likelihood", "free_energies", "pseudo_log_likelihood", "AISResult", "ais_log_partition", "exact_log_partition", "paper_betas",
           "RAISEResult", "raise_log_likelihood"]
