"""Markdown table of RBM runs evaluated by dbn-eval (eval.json + results.json in each run directory).

Usage: python experiments/fashion_rbm_ais/table.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf


def main(dirs: list[str]) -> None:
    print("| run | training | updates | log Z (AIS) | train LL (nats) | test LL (nats) [±3σ band] | test pseudo-LL | test recon MSE |")
    print("|---|---|---|---|---|---|---|---|")
    for d in map(Path, dirs):
        ev = json.loads((d / "eval.json").read_text())["layer0"]
        res = json.loads((d / "results.json").read_text())
        cfg = OmegaConf.load(d / ".hydra" / "config.yaml").pretrain
        kind = f"{'PCD' if cfg['persistent'] else 'CD'}-{cfg['k']}"
        layer = res["pretrain"][0]
        n_train = res["data"]["n_train"]
        updates = layer["epochs"] * -(-n_train // cfg["batch_size"])
        print(f"| {d} | {kind} | {updates} | {ev['log_z_ais']:.2f} | {ev['train_ll']:.2f} | "
              f"{ev['test_ll']:.2f} [{ev['test_ll_low']:.2f}, {ev['test_ll_high']:.2f}] | {ev['test_pseudo_ll']:.2f} | "
              f"{ev['test_recon_error']:.4f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
