"""Peak and current resident memory across a Lightning fit of one RBM layer: does it grow from epoch to epoch?

Usage: python benchmarks/memory.py [--size 10000] [--epochs 20] [--hidden 500] [--batch 100] [--json PATH]
Prints a Markdown table of ``getrusage(RUSAGE_SELF).ru_maxrss`` (the process's peak) and the current
resident set (/proc/self/statm) before the fit and at the end of epoch 1 and of the last epoch.
ru_maxrss is the process's peak so far: it is reset to the current RSS just before the fit (writing 5 to
/proc/self/clear_refs, Linux), else imports and data loading would set a peak the fit might never reach
and hide growth; cd1_throughput.py also runs this part first.
"""

from __future__ import annotations

import argparse

import harness


def _rss_recorder():
    import lightning as L

    class RSSRecorder(L.Callback):
        """Peak and current RSS (MiB) at every epoch's end."""

        def __init__(self) -> None:
            self.rows: list[dict] = []

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.rows.append({"epoch": trainer.current_epoch + 1, "peak_rss_mib": harness.peak_rss_mib(),
                              "rss_mib": harness.current_rss_mib()})

    return RSSRecorder()


def run_memory(x, hidden: int = 500, batch: int = 100, epochs: int = 20, seed: int = 0) -> dict:
    """Fit RBMModule for ``epochs`` epochs on ``x``, recording RSS at each epoch's end."""
    reset = harness.reset_peak_rss()
    before = {"peak_rss_mib": harness.peak_rss_mib(), "rss_mib": harness.current_rss_mib()}
    recorder = _rss_recorder()
    harness.lightning_run(x, hidden, batch, epochs, seed, callbacks=(recorder,))
    first, last = recorder.rows[0], recorder.rows[-1]
    return {"n": len(x), "hidden": hidden, "batch": batch, "epochs": epochs, "peak_reset_before_fit": reset,
            "before_fit": before, "per_epoch": recorder.rows,
            "growth_peak_mib": last["peak_rss_mib"] - first["peak_rss_mib"],
            "growth_rss_mib": last["rss_mib"] - first["rss_mib"]}


def table(result: dict) -> str:
    first, last = result["per_epoch"][0], result["per_epoch"][-1]
    reset = "peak reset to the current RSS just before the fit (/proc/self/clear_refs)"
    if not result["peak_reset_before_fit"]:
        reset = "peak NOT reset: it includes everything the process did before the fit"
    head = (f"### Memory: Lightning fit, {result['epochs']} epochs on a subset of {result['n']:,} Fashion-MNIST "
            f"training images, {result['hidden']} hidden, batch {result['batch']}, CD-1, fp32 (goal: growth ~0); "
            f"{reset}\n\n")
    rows = [["before fit", f"{result['before_fit']['peak_rss_mib']:.1f}", f"{result['before_fit']['rss_mib']:.1f}"],
            [f"after epoch {first['epoch']}", f"{first['peak_rss_mib']:.1f}", f"{first['rss_mib']:.1f}"],
            [f"after epoch {last['epoch']}", f"{last['peak_rss_mib']:.1f}", f"{last['rss_mib']:.1f}"],
            [f"growth, epoch {first['epoch']} -> {last['epoch']}", f"{result['growth_peak_mib']:+.1f}",
             f"{result['growth_rss_mib']:+.1f}"]]
    header = ["when", "peak RSS (ru_maxrss), MiB", "current RSS (/proc/self/statm), MiB"]
    return head + harness.markdown(header, rows)


def add_arguments(ap: argparse.ArgumentParser, prefix: str = "") -> None:
    ap.add_argument(f"--{prefix}size", type=int, default=10000,
                    help="training images of the memory fit (default 10000)")
    ap.add_argument(f"--{prefix}epochs", type=int, default=20, help="epochs of the memory fit (default 20)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    ap.add_argument("--hidden", type=int, default=500, help="hidden units (default 500)")
    ap.add_argument("--batch", type=int, default=100, help="batch size (default 100)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = ap.parse_args()
    harness.quiet()
    x, _ = harness.load_fashion_mnist(args.size)
    result = run_memory(x, args.hidden, args.batch, args.epochs)
    print(table(result), flush=True)
    harness.write_json(args.json, {"machine": harness.machine(), "memory": result})


if __name__ == "__main__":
    main()
