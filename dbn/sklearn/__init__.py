"""scikit-learn estimators on dbn's torch code: ``RBMTransformer`` and ``DBNClassifier``.

``RBMTransformer`` is a drop-in for ``sklearn.neural_network.BernoulliRBM``: the same
parameters, attributes, accepted inputs and algorithm (persistent CD-1 with plain SGD on the
mean gradient), computed by :class:`dbn.rbm.RBM` on a selectable torch device; on the CPU it
draws BernoulliRBM's random numbers in BernoulliRBM's order, so an equal ``random_state`` gives
BernoulliRBM's fit to rounding in float64 (in float32 until a sampled bit falls between the two
libraries' roundings, typically after a few sweeps).
``DBNClassifier`` pretrains a DBN greedily with Lightning and fine-tunes it with a
softmax head by backprop, as ``dbn-train`` does, behind ``fit``/``predict``.

``DBNClassifier`` rejects values outside [0, 1] (its Bernoulli visible units model
probabilities; scale first, e.g. with ``MinMaxScaler(clip=True)``); ``RBMTransformer`` takes
any finite values, as BernoulliRBM does.

References:
    Tieleman (2008), "Training RBMs using approximations to the likelihood gradient" (PCD);
    Hinton, Osindero & Teh (2006), "A fast learning algorithm for deep belief nets".
"""

from dbn.sklearn.classifier import DBNClassifier
from dbn.sklearn.rbm import RBMTransformer

__all__ = ["DBNClassifier", "RBMTransformer"]
