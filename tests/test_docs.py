"""The documentation site builds without a warning, and its configuration page names every key of conf/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["index", "getting-started", "concepts", "units", "tensorboard", "evaluation", "resume", "multi-device",
         "configuration", "sklearn", "results", "api"]
GROUPS = ("data", "model", "pretrain", "finetune", "trainer", "callbacks", "logger")
# every data set and both fine-tuning optimizers: their keys differ
VARIANTS = [[], ["data=fashion_mnist"], ["data=mnist"], ["data=arrays"], ["finetune/optimizer=lbfgs"],
            ["logger=csv"]]


def test_site_builds_strict_with_every_page(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in PAGES:
        built = site / "index.html" if page == "index" else site / page / "index.html"
        assert built.is_file(), f"{page}.md was not built"
    api = (site / "api" / "index.html").read_text()
    for name in ("dbn.RBM", "dbn.DBN", "dbn.sampling.contrastive_divergence", "dbn.eval.partition.ais_log_partition",
                 "dbn.training.RBMModule", "dbn.sklearn.DBNClassifier"):
        assert f'id="{name}"' in api, f"the API reference has no entry for {name}"


def leaf_keys(node, prefix: str) -> list[str]:
    """Dotted paths of the leaves under ``node`` (an empty mapping is a leaf), without ``_target_``/``_partial_``."""
    if not isinstance(node, DictConfig) or len(node) == 0:
        return [prefix]
    keys = []
    for key in node.keys():
        if key in ("_target_", "_partial_", "defaults"):
            continue
        keys += leaf_keys(node._get_node(key), f"{prefix}.{key}")
    return keys


def composed_keys(overrides: list[str]) -> set[str]:
    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return {key for group in GROUPS for key in leaf_keys(cfg[group], group)}


def test_composition_reaches_the_keys_the_test_relies_on():
    keys = composed_keys([])
    assert {"pretrain.lr", "trainer.collective_timeout_s", "callbacks.pretrain.likelihood.ais_betas"} <= keys
    assert not any(key.endswith(("_target_", "_partial_")) for key in keys)


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: o[0] if o else "default")
def test_configuration_page_names_every_key(overrides):
    page = (ROOT / "docs" / "configuration.md").read_text()
    missing = []
    for key in sorted(composed_keys(overrides)):
        parts = key.split(".")
        if parts[0] == "callbacks" and len(parts) > 3:
            # a callback's argument is named in its callback's row: `callbacks.<stage>.<name>` ... `argument`
            callback, argument = ".".join(parts[:3]), ".".join(parts[3:])
            rows = [line for line in page.splitlines() if line.startswith(f"| `{callback}`")]
            if not any(f"`{argument}`" in row for row in rows):
                missing.append(key)
        # a dotted key appears whole, not as the prefix of a longer one (pretrain.lr vs pretrain.lr_final)
        elif not re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", page):
            missing.append(key)
    assert not missing, f"docs/configuration.md does not name {missing}"
