"""Print a Markdown table of dbn-train runs from their results.json files.

Usage: python experiments/summarize.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(run_dir: Path, accs: dict) -> str:
    r = json.loads((run_dir / "results.json").read_text())
    ft = r.get("finetune") or {}
    pre = r.get("pretrain")
    pre_s = sum(layer["seconds"] for layer in pre) if pre else 0.0
    kind = "pretrained DBN" if (pre or r.get("pretrained_from")) else "random init (pretrain=none)"
    acc = f"{100 * ft['test_acc']:.2f}%" if "test_acc" in ft else "-"
    if "test_acc" in ft:
        accs.setdefault(kind, []).append(100 * ft["test_acc"])
    return (f"| {run_dir} | {kind} | {'-'.join(map(str, r['model']['sizes']))} | {acc} | "
            f"{ft.get('epochs', '-')} | {pre_s:.0f} | {ft.get('seconds', 0):.0f} | {r['wall_time_s']:.0f} |")


def main(argv: list[str]) -> None:
    print("| run | init | sizes | test acc | fine-tune epochs | pretrain s | fine-tune s | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    accs: dict[str, list[float]] = {}
    for d in argv:
        print(row(Path(d), accs))
    for kind, values in accs.items():
        if len(values) > 1:
            mean = sum(values) / len(values)
            std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
            print(f"| mean of {len(values)} | {kind} | | {mean:.2f}% ± {std:.2f} | | | | |")


if __name__ == "__main__":
    main(sys.argv[1:])
