"""Markdown table of the generative comparison: one row per method, mean ± std over the seeds evaluated.

Reads OUT/<method>/seed<S>/{eval.json,results.json} as written by run.sh.
Usage: python experiments/fashion_rbm_generative/table.py OUT [--json FILE] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

METHODS = {
    "cd1": "CD-1", "cd10": "CD-10", "pcd1": "PCD-1", "pcd1_pt": "PCD-1 + PT",
    "cd1_centered": "centered CD-1", "pcd1_centered": "centered PCD-1", "pcd1_pt_centered": "centered PCD-1 + PT",
    "cd10_slow": "CD-10, slow schedule", "pcd1_slow": "PCD-1, slow schedule", "pcd1_centered_slow": "centered PCD-1, slow schedule",
    "pcd1_decay": "PCD-1, lr decaying to a tenth", "pcd1_centered_decay": "centered PCD-1, lr decaying to a tenth",
    "pcd1_decay_lr0.1": "PCD-1, lr 0.1 decaying to a tenth",
    "pcd1_centered_decay_lr0.1": "centered PCD-1, lr 0.1 decaying to a tenth",
    "pcd1_decay_lr0.2": "PCD-1, lr 0.2 decaying to a tenth",
    "pcd1_centered_decay_lr0.2": "centered PCD-1, lr 0.2 decaying to a tenth",
    "pcd1_decay_flipped": "PCD-1, lr decaying to a tenth, flipped images",
    "pcd1_centered_decay_flipped": "centered PCD-1, lr decaying to a tenth, flipped images",
    "cd10_flipped": "CD-10, flipped images", "cd10_slow_flipped": "CD-10, slow schedule, flipped images",
    "pcd1_mom09": "PCD-1, momentum 0.9 (old default)", "pcd1_pt_mom09": "PCD-1 + PT, momentum 0.9 (old default)",
    "pcd1_centered_mom09": "centered PCD-1, momentum 0.9 (old default)",
    "pcd1_pt_centered_mom09": "centered PCD-1 + PT, momentum 0.9 (old default)",
}
#: (column, key in eval.json's layer0 or "seconds" from results.json, digits)
COLUMNS = [("test LL, AIS", "test_ll", 2), ("test LL, exact", "test_ll_exact", 2),
           ("first 100: AIS", "test_subset_ll_ais", 2), ("first 100: RAISE", "test_subset_ll_raise", 2),
           ("first 100: exact", "test_subset_ll_exact", 2),
           ("bracket width", "bracket", 2), ("test pseudo-LL", "test_pseudo_ll", 2),
           ("test recon MSE", "test_recon_error", 4), ("train time (s)", "seconds", 0)]


def row_values(run: Path) -> dict[str, float]:
    ev = json.loads((run / "eval.json").read_text())["layer0"]
    res = json.loads((run / "results.json").read_text())
    out = {key: ev[key] for _, key, _ in COLUMNS if key in ev}
    if "log_z_exact" in ev:
        out["test_ll_exact"] = ev["test_ll"] - ev["log_z_exact"] + ev["log_z_ais"] if "log_z_ais" in ev else ev["test_ll"]
    if "test_subset_ll_ais" in ev and "test_subset_ll_raise" in ev:
        out["bracket"] = ev["test_subset_ll_ais"] - ev["test_subset_ll_raise"]
    out["seconds"] = res["pretrain"][0]["seconds"]
    return out


def fmt(values: list[float], digits: int) -> str:
    if not values:
        return ""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--json", help="also write every run's numbers to this file")
    parser.add_argument("--seeds", type=int, nargs="*", help="only these seeds (default: every seed evaluated)")
    args = parser.parse_args()
    root, table = Path(args.out), {}
    for method in METHODS:
        runs = sorted(p for p in (root / method).glob("seed*") if (p / "eval.json").exists()
                      and (args.seeds is None or int(p.name.removeprefix("seed")) in args.seeds))
        if runs:
            table[method] = {r.name: row_values(r) for r in runs}
    used = [c for c in COLUMNS if any(c[1] in v for runs in table.values() for v in runs.values())]
    print("| method | seeds | " + " | ".join(c[0] for c in used) + " |")
    print("|---|---|" + "---|" * len(used))
    for method, runs in table.items():
        cells = [fmt([v[key] for v in runs.values() if key in v], digits) for _, key, digits in used]
        print(f"| {METHODS[method]} | {len(runs)} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
