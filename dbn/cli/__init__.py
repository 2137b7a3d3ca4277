"""The command-line front ends, a few lines each: compose the Hydra config, hand off, report errors as one line.

``dbn-train`` (:mod:`dbn.cli.train`), ``dbn-eval`` (:mod:`dbn.cli.evaluate`), ``dbn-sample``
(:mod:`dbn.cli.sample`), ``dbn-features`` (:mod:`dbn.cli.features`); each also runs as
``python -m dbn.cli.<name>``.
"""
