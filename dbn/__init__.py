"""dbn: Restricted Boltzmann Machines and Deep Belief Networks on PyTorch and Lightning."""

from dbn.dbn import DBN
from dbn.rbm import RBM
from dbn.units import Bernoulli, Gaussian, ReLU, Softmax, Units, get_units

__version__ = "0.1.0"
__all__ = ["DBN", "RBM", "Bernoulli", "Gaussian", "ReLU", "Softmax", "Units", "get_units", "__version__"]
