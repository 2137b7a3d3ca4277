"""``python -m dbn.train``: the same entry point as ``dbn-train`` (:mod:`dbn.cli.train`), kept for the documented command."""

from dbn.cli.train import main

if __name__ == "__main__":
    main()
