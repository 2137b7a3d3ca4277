"""CD-1 throughput on Fashion-MNIST (issue 5): Lightning vs a plain PyTorch loop vs scikit-learn vs the matmul ceiling.

One command, one process, every table:

  1. main: 60,000 images, 784 visible x 500 hidden, CD-1, batch 100, fp32:
     (a) dbn's RBMModule through Lightning's Trainer;
     (b) the same work in a plain PyTorch loop (contrastive_divergence + cd_loss + the recon-error monitor,
         SGD with momentum and weight decay on the weights, as RBMModule.configure_optimizers; checked at run time);
     (c) scikit-learn's BernoulliRBM in a subprocess with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset for it alone
         (threadpoolctl's BLAS report printed; note that it trains PCD-1, also 5 products a sample);
     (d) the ceiling: the measured matmul rate at these shapes / the FLOPs of one CD-1 sample (5 x 2*784*500).
     Goals: (a) >= 0.95 x (b); fp32 (a) >= 1.15 x (c).
  2. extra rows: bf16 (Trainer(precision="bf16-mixed"); the plain loop under torch.autocast("cpu", bfloat16);
     ceiling from bf16 matmuls), batch --extra-batch, --extra-hidden hidden units; then the reconstruction error
     after --bf16-epochs epochs of bf16 vs fp32 training (goal: within 2%).
  3. memory: peak (ru_maxrss) and current (/proc/self/statm) RSS after epoch 1 and the last epoch of a Lightning
     fit (benchmarks/memory.py; run first, so the process's peak is the fit's).
  4. scaling: seconds per epoch for 250/500/1000/2000 hidden and 1x/2x/4x data (benchmarks/scaling.py).
  5. GPU: (a) and (b) on CUDA at batches --gpu-batches, fp32 and bf16, as fractions of the GPU's measured matmul
     rates; "no GPU here" without one.

Throughput is the median of --repeats epoch periods after --warmup epochs of one fit (see harness.py);
scikit-learn's is the median of --repeats one-epoch fits.

Full run (final numbers: whole training set, no --limit):
  python benchmarks/cd1_throughput.py --json benchmarks/results/cd1_throughput.json
Smoke test (small sizes, numbers meaningless): python benchmarks/cd1_throughput.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

import harness
import memory
import scaling

PARTS = ("memory", "main", "extra", "recon", "finetune", "compile", "scaling", "gpu")
ROWS = {"a": "(a) dbn RBMModule + Lightning Trainer", "b": "(b) dbn maths, plain PyTorch loop",
        "e": "(e) autograd formulation (cd_loss + backward + torch SGD), plain loop",
        "c": "(c) scikit-learn BernoulliRBM (float32)", "d": "(d) ceiling: matmul rate / FLOPs of one CD-1 sample",
        "p": "(p) the step's four product calls alone, on the step's data"}
GOAL_AB, GOAL_AC, GOAL_RECON, GOAL_AD = 0.95, 1.15, 0.02, {100: 0.75, 1000: 0.9}
GOAL_BF16 = 1.6
QUICK = {"limit": 3000, "repeats": 1, "warmup": 1, "bf16_epochs": 2, "memory_size": 1000, "memory_epochs": 2,
         "scaling_base": 1000, "gpu_repeats": 1, "matmul_seconds": 0.2, "finetune_size": 1000, "compile_size": 1000}
SUBSET = " (a subset: trial numbers only)"


# --- 1 and 2: throughput ---------------------------------------------------------------------------------------
def measure(x: torch.Tensor, precision: str, batch: int, hidden: int, args, with_sklearn: bool,
            device: str = "cpu", compiled: bool = False) -> dict:
    """Rows (a), (b), (e), (c) (fp32 on the CPU only) and (d) of one configuration, with their ratios.

    ``compiled``: (a) with ``RBMModule(compile=True)`` and (b) with the update under ``torch.compile``; no (e), (c).
    """
    n, epochs = len(x), args.warmup + args.repeats
    name = (f"{precision}, batch {batch}, {hidden} hidden" + (f", {device}" if device != "cpu" else "")
            + (", pretrain.compile=true" if compiled else ""))
    harness.progress(f"throughput: {name}")
    rows = {}
    a_periods, b_periods, a_runs = harness.alternate(
        lambda: harness.lightning_run(x, hidden, batch, epochs, args.seed, precision, device, compile=compiled),
        lambda: harness.plain_run(x, hidden, batch, epochs, args.seed, precision, device, compiled=compiled),
        args.rounds, args.warmup)
    rows["a"] = {"samples_per_s": harness.steady_rate(n, a_periods, 0), "epoch_s": a_periods,
                 "fit_overhead_s": statistics.median(a["fit_overhead_s"] for a in a_runs)}
    rows["b"] = {"samples_per_s": harness.steady_rate(n, b_periods, 0), "epoch_s": b_periods}
    if not compiled:
        e = harness.plain_run(x, hidden, batch, epochs, args.seed, precision, device, autograd=True)
        rows["e"] = {"samples_per_s": harness.steady_rate(n, e["periods"], args.warmup), "epoch_s": e["periods"]}
    if with_sklearn and precision == "fp32" and device == "cpu" and not compiled:
        rows["c"] = harness.sklearn_run(x, hidden, batch, args.repeats)
    flops = harness.matmul_rate(x.shape[1], hidden, batch, harness.PRECISIONS[precision][1], device,
                                seconds=args.matmul_seconds, repeats=args.repeats)
    rows["d"] = {"samples_per_s": flops / harness.cd1_flops(x.shape[1], hidden), "matmul_flops": flops}
    if not compiled:
        rows["p"] = {"samples_per_s": harness.step_products_rate(x, hidden, batch, harness.PRECISIONS[precision][1],
                                                                 device, seconds=args.matmul_seconds,
                                                                 repeats=args.repeats)}
    ratios = {f"a/{k}": rows["a"]["samples_per_s"] / rows[k]["samples_per_s"] for k in ("b", "c", "d", "e") if k in rows}
    if "p" in rows:  # where the gap to (d) lies: products slower in the step than hot (p/d), the rest of the step (b/p)
        ratios["p/d"] = rows["p"]["samples_per_s"] / rows["d"]["samples_per_s"]
        ratios["b/p"] = rows["b"]["samples_per_s"] / rows["p"]["samples_per_s"]
    if "e" in rows:
        ratios["b/e"] = rows["b"]["samples_per_s"] / rows["e"]["samples_per_s"]
    goals = {f"a/b >= {GOAL_AB}": ratios["a/b"] >= GOAL_AB}
    if precision == "fp32" and batch in GOAL_AD:
        goals[f"a/d >= {GOAL_AD[batch]}"] = ratios["a/d"] >= GOAL_AD[batch]
    if "a/c" in ratios:
        goals[f"a/c >= {GOAL_AC}"] = ratios["a/c"] >= GOAL_AC
    return {"config": name, "precision": precision, "batch": batch, "hidden": hidden, "device": device,
            "compiled": compiled, "rows": rows, "ratios": ratios, "goals": goals}


def _note(key: str, row: dict, cfg: dict, n_visible: int) -> str:
    if key == "a":
        return f"Lightning fit set-up + tear-down {row['fit_overhead_s']:.2f} s, not in samples/s"
    if key == "c":
        return "BLAS: " + harness.blas_summary(row["blas"])
    if key == "p":
        return "no elementwise work, no sampling, no update: the products' own rate at the step's shapes and data"
    if key == "d":
        mflop = harness.cd1_flops(n_visible, cfg["hidden"]) / 1e6
        return f"{row['matmul_flops'] / 1e9:.1f} GFLOP/s {cfg['precision']} matmul / {mflop:.2f} MFLOP a sample"
    return ""


def _goal(ratio: float | None, target: float) -> str:
    return "-" if ratio is None else ("met" if ratio >= target else "MISSED")


def throughput_tables(results: list[dict], n: int, n_visible: int, args) -> str:
    """The samples/s of every row, then the ratios of (a) to the others next to the goals."""
    head = (f"### CD-1 throughput: Fashion-MNIST {n:,} x {n_visible}{SUBSET if args.limit else ''}, CD-1; "
            f"torch threads {torch.get_num_threads()}; median of {args.repeats} epochs after {args.warmup} warm-up "
            f"(scikit-learn: of {args.repeats} one-epoch fits)\n\n")
    rows = [[cfg["config"], ROWS[key], f"{row['samples_per_s']:,.0f}", f"{n / row['samples_per_s']:.2f}",
             _note(key, row, cfg, n_visible)] for cfg in results for key, row in cfg["rows"].items()]
    ratio_rows = []
    for cfg in results:
        ab, ac, ad = cfg["ratios"]["a/b"], cfg["ratios"].get("a/c"), cfg["ratios"]["a/d"]
        ad_goal = GOAL_AD.get(cfg["batch"]) if cfg["precision"] == "fp32" and not cfg["compiled"] else None
        ratio_rows.append([cfg["config"], f"{ab:.2f}", _goal(ab, GOAL_AB), "-" if ac is None else f"{ac:.2f}",
                           _goal(ac, GOAL_AC), f"{ad:.2f}", "-" if ad_goal is None else f">= {ad_goal}: "
                           + _goal(ad, ad_goal), f"{cfg['ratios']['b/e']:.2f}" if "b/e" in cfg["ratios"] else "-",
                           *(f"{cfg['ratios'][k]:.2f}" if k in cfg["ratios"] else "-" for k in ("p/d", "b/p"))])
    bf16 = "".join(f"\n\n{name} vs fp32 (eager): (a) Lightning {a:.2f}x (goal >= {GOAL_BF16}x: {_goal(a, GOAL_BF16)}); "
                   f"(b) plain loop {b:.2f}x" for name, a, b in _bf16_speedups(results))
    return (head + harness.markdown(["config", "setup", "samples/s", "s / epoch", "note"], rows) + "\n\n"
            + harness.markdown(["config", "(a)/(b)", f"goal (a)/(b) >= {GOAL_AB}", "(a)/(c)",
                                f"goal fp32 (a)/(c) >= {GOAL_AC}", "(a)/(d)", "goal (a)/(d)",
                                "(b)/(e): explicit vs autograd", "(p)/(d): products in the step vs hot",
                                "(b)/(p): the step vs its products"], ratio_rows)
            + bf16)


def _bf16_speedups(results: list[dict]) -> list[tuple[str, float, float]]:
    """(bf16 config, its (a) / fp32 (a), its (b) / fp32 (b)) for each bf16 row with an eager fp32 row beside it."""
    fp32 = {(c["batch"], c["hidden"]): c["rows"] for c in results if c["precision"] == "fp32" and not c["compiled"]}
    out = []
    for c in results:
        ref = fp32.get((c["batch"], c["hidden"]))
        if c["precision"] == "bf16" and ref:
            out.append((c["config"], c["rows"]["a"]["samples_per_s"] / ref["a"]["samples_per_s"],
                        c["rows"]["b"]["samples_per_s"] / ref["b"]["samples_per_s"]))
    return out


# --- 2: bf16 accuracy --------------------------------------------------------------------------------------------
def bf16_recon(x: torch.Tensor, test_x: torch.Tensor, hidden: int, batch: int, epochs: int, seed: int) -> dict:
    """Reconstruction error after ``epochs`` epochs of fp32 and of bf16-mixed training from the same seed.

    Two measures: the training recon error RBMModule logs for the last epoch (mean over its batches,
    computed under the run's precision), and the test set's, evaluated in fp32 from the trained weights.
    """
    from dbn.training.rbm_module import squared_error

    out = {"epochs": epochs, "n": len(x), "hidden": hidden, "batch": batch}
    for precision in ("fp32", "bf16"):
        harness.progress(f"recon: {epochs} epochs {precision}")
        run = harness.lightning_run(x, hidden, batch, epochs, seed, precision)
        with torch.no_grad():
            rbm = run["module"].rbm.float().cpu()
            test = float(squared_error(test_x, rbm.reconstruct(test_x)).mean())
        out[precision] = {"train_recon_error": run["metrics"]["bench/train/recon_error"], "test_recon_error": test,
                          "epoch_s": run["periods"]}
    for key in ("train_recon_error", "test_recon_error"):
        out[f"bf16_vs_fp32_{key}"] = out["bf16"][key] / out["fp32"][key] - 1.0
    out["goal_within_2pct"] = all(abs(out[f"bf16_vs_fp32_{k}"]) <= GOAL_RECON
                                  for k in ("train_recon_error", "test_recon_error"))
    return out


def recon_table(r: dict, limited: bool) -> str:
    head = (f"### bf16 vs fp32 reconstruction error after {r['epochs']} epochs: Fashion-MNIST {r['n']:,} training "
            f"images{SUBSET if limited else ''}, {r['hidden']} hidden, batch {r['batch']}, Lightning, same seed "
            f"(goal: within {GOAL_RECON:.0%})\n\n")
    rows = []
    for p in ("fp32", "bf16"):
        rel = {k: f"{r[f'bf16_vs_fp32_{k}']:+.2%}" if p == "bf16" else "-"
               for k in ("train_recon_error", "test_recon_error")}
        goal = ("met" if r["goal_within_2pct"] else "MISSED") if p == "bf16" else "-"
        rows.append([p, f"{r[p]['train_recon_error']:.5f}", rel["train_recon_error"], f"{r[p]['test_recon_error']:.5f}",
                     rel["test_recon_error"], goal])
    return head + harness.markdown(["precision", f"train recon error, epoch {r['epochs']}", "vs fp32",
                                    "test recon error (fp32 eval)", "vs fp32", "goal within 2%"], rows)


# --- fine-tuning ----------------------------------------------------------------------------------------------------
def finetune_part(x: torch.Tensor, y: torch.Tensor, args) -> dict:
    """The 784-500-500-2000-10 net's fine-tuning step at batch 100: FineTuneModule + Trainer vs the plain loop."""
    epochs = args.warmup + args.repeats
    a_periods, b_periods, _ = harness.alternate(
        lambda: harness.finetune_lightning_run(x, y, args.batch, epochs, args.seed),
        lambda: harness.finetune_plain_run(x, y, args.batch, epochs, args.seed),
        args.rounds, args.warmup, label="fine-tuning: Lightning, then the plain loop")
    e_periods = [p for _ in range(max(args.rounds, 1))
                 for p in harness.finetune_plain_run(x, y, args.batch, epochs, args.seed, autograd=True)["periods"][
                     args.warmup:]]
    flops = harness.matmul_rate(784, 500, args.batch, seconds=args.matmul_seconds, repeats=args.repeats)
    out = {"n": len(x), "batch": args.batch, "a": harness.steady_rate(len(x), a_periods, 0),
           "b": harness.steady_rate(len(x), b_periods, 0), "e": harness.steady_rate(len(x), e_periods, 0),
           "matmul_flops": flops, "epoch_s": {"a": a_periods, "b": b_periods, "e": e_periods}}
    out["ceiling"] = flops / harness.finetune_flops()
    return out


def finetune_table(r: dict, limited: bool) -> str:
    head = (f"### Fine-tuning 784-500-500-2000-10 (fused Adam, dropout 0.2, cross-entropy), batch {r['batch']}: "
            f"Fashion-MNIST {r['n']:,} images{SUBSET if limited else ''}; median of the timed epochs of all rounds, "
            f"(a) and (b) alternating\n\n")
    rows = [["(a) dbn FineTuneModule + Lightning Trainer", f"{r['a']:,.0f}", f"{r['a'] / r['ceiling']:.2f}"],
            ["(b) the same net and work, plain PyTorch loop", f"{r['b']:,.0f}", f"{r['b'] / r['ceiling']:.2f}"],
            ["(e) the plain loop with autograd's backward (the same numbers)", f"{r['e']:,.0f}",
             f"{r['e'] / r['ceiling']:.2f}"],
            ["ceiling: matmul rate / FLOPs of one sample's step", f"{r['ceiling']:,.0f}", "1.00"]]
    ab = r["a"] / r["b"]
    return (head + harness.markdown(["setup", "samples/s", "/ ceiling"], rows)
            + f"\n\n(a)/(b) = {ab:.2f} (goal >= {GOAL_AB}: {_goal(ab, GOAL_AB)}); (b)/(e) = {r['b'] / r['e']:.2f} "
            "(the gradient by hand against autograd, dbn/backprop.py; (e) runs after the alternating rounds)")


# --- torch.compile --------------------------------------------------------------------------------------------------
def compile_part(x: torch.Tensor, args) -> dict:
    """The plain loop's update under torch.compile (inductor) against eager, fp32 and bf16: first-call cost, rate."""
    out = {}
    for precision in ("fp32", "bf16"):
        harness.progress(f"compile: {precision}")
        epochs = args.warmup + args.repeats
        eager = harness.plain_run(x, args.hidden, args.batch, epochs, args.seed, precision)
        comp = harness.plain_run(x, args.hidden, args.batch, epochs, args.seed, precision, compiled=True)
        out[precision] = {"eager": harness.steady_rate(len(x), eager["periods"], args.warmup),
                          "compiled": harness.steady_rate(len(x), comp["periods"], args.warmup),
                          "first_epoch_s": {"eager": eager["periods"][0], "compiled": comp["periods"][0]}}
    return out


def compile_table(r: dict, n: int, batch: int) -> str:
    head = (f"### torch.compile of the CD-1 update (plain loop, inductor on this CPU), batch {batch}, {n:,} images: "
            f"samples/s after the warm-up epoch; the first epoch includes compilation\n\n")
    rows = [[p, f"{v['eager']:,.0f}", f"{v['compiled']:,.0f}", f"{v['compiled'] / v['eager']:.2f}",
             f"{v['first_epoch_s']['eager']:.1f}", f"{v['first_epoch_s']['compiled']:.1f}"] for p, v in r.items()]
    return head + harness.markdown(["precision", "eager samples/s", "compiled samples/s", "compiled / eager",
                                    "first epoch s, eager", "first epoch s, compiled"], rows)


# --- 5: GPU ----------------------------------------------------------------------------------------------------------
def gpu_part(x: torch.Tensor, args, device: str = "cuda") -> dict:
    """(a) and (b) on the GPU at each batch size, fp32 and bf16, against that GPU's measured matmul rates."""
    gpu_args = argparse.Namespace(**{**vars(args), "repeats": args.gpu_repeats})
    results = [measure(x, precision, batch, args.hidden, gpu_args, with_sklearn=False, device=device)
               for batch in args.gpu_batches for precision in ("fp32", "bf16")]
    name = torch.cuda.get_device_name() if torch.device(device).type == "cuda" else device
    return {"device": name, "repeats": args.gpu_repeats, "results": results}


def gpu_table(g: dict, n: int, warmup: int) -> str:
    head = (f"### GPU: {g['device']}, Fashion-MNIST {n:,} images on the device, CD-1, "
            f"{g['results'][0]['hidden']} hidden; "
            f"fp32 is full fp32 (no TF32); fractions of the measured matmul rate of the same precision; "
            f"median of {g['repeats']} epochs after {warmup} warm-up\n\n")
    rows = []
    for cfg in g["results"]:
        a, b, d = (cfg["rows"][k]["samples_per_s"] for k in "abd")
        rows.append([cfg["config"], f"{a:,.0f}", f"{b:,.0f}", f"{d:,.0f}", f"{cfg['ratios']['a/b']:.2f}",
                     f"{a / d:.1%}", f"{b / d:.1%}", f"{cfg['rows']['d']['matmul_flops'] / 1e12:.1f}"])
    return head + harness.markdown(["config", "(a) samples/s", "(b) samples/s", "(d) ceiling samples/s", "(a)/(b)",
                                    "(a) / ceiling", "(b) / ceiling", "matmul TFLOP/s"], rows)


# --- command line ----------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = ap.add_argument
    add("--repeats", type=int, default=3,
        help="timed epochs (scikit-learn: one-epoch fits) per row; medians are reported (default 3)")
    add("--warmup", type=int, default=1, help="untimed epochs at the start of each fit (default 1)")
    add("--rounds", type=int, default=2,
        help="fits of (a) and of (b) per row, alternating a, b, a, b; the median is over all their timed epochs "
             "(default 2)")
    add("--hidden", type=int, default=500, help="hidden units of the main table (default 500)")
    add("--batch", type=int, default=100, help="batch size of the main table (default 100)")
    add("--limit", type=int, default=None,
        help="use the first N training images: trial runs only (default: all 60,000)")
    add("--extra-batch", type=int, default=1000, help="batch size of the extra fp32 row (default 1000)")
    add("--extra-hidden", type=int, default=2000, help="hidden units of the extra fp32 row (default 2000)")
    add("--bf16-epochs", type=int, default=5,
        help="epochs of the bf16-vs-fp32 reconstruction-error check, on the whole training set; 0 skips it (default 5)")
    memory.add_arguments(ap.add_argument_group("memory (benchmarks/memory.py)"), prefix="memory-")
    scaling.add_arguments(ap.add_argument_group("scaling (benchmarks/scaling.py)"), prefix="scaling-")
    add("--gpu-batches", type=int, nargs="+", default=[1000, 5000],
        help="batch sizes of the GPU rows (default 1000 5000)")
    add("--gpu-repeats", type=int, default=10, help="timed epochs per GPU row (default 10)")
    add("--matmul-seconds", type=float, default=1.0,
        help="seconds of each of --repeats windows timing the ceiling's matmul rate (default 1)")
    add("--finetune-size", type=int, default=20000, help="training images of the fine-tuning table (default 20000)")
    add("--compile-size", type=int, default=20000, help="training images of the torch.compile table (default 20000)")
    add("--no-sklearn", action="store_true", help="leave out row (c)")
    add("--parts", nargs="+", choices=PARTS, default=list(PARTS),
        help=f"tables to make (default all: {' '.join(PARTS)})")
    add("--seed", type=int, default=0, help="seed of every fit (default 0)")
    add("--data-root", default=None, help="folder of the Fashion-MNIST idx files (default: data=fashion_mnist's, "
                                          "/usr/share/datasets/fashion-mnist)")
    add("--json", metavar="PATH", help="also write every number (and each epoch's time) as JSON to PATH")
    add("--quick", action="store_true",
        help="smoke test: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()) + " (overriding those flags); "
             "the numbers mean nothing")
    args = ap.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    harness.quiet()
    report: dict = {"machine": harness.machine(), "argv": sys.argv[1:], "args": vars(args)}

    def emit(text: str) -> None:
        print(text + "\n", flush=True)

    if args.quick:
        emit("QUICK RUN (smoke test): small sizes, the numbers mean nothing")
    if "memory" in args.parts:  # first, before the full data set is loaded
        size = min(args.memory_size, args.limit or args.memory_size)
        harness.progress(f"memory: {args.memory_epochs} epochs on {size:,} images")
        x_mem = harness.load_fashion_mnist(size, root=args.data_root)[0]
        report["memory"] = memory.run_memory(x_mem, args.hidden, args.batch, args.memory_epochs, args.seed)
        emit(memory.table(report["memory"]))
    x, test_x = harness.load_fashion_mnist(args.limit, root=args.data_root)
    configs = [("fp32", args.batch, args.hidden)] if "main" in args.parts else []
    if "extra" in args.parts:
        configs += [("bf16", args.batch, args.hidden), ("bf16", args.batch, args.hidden, True),
                    ("fp32", args.extra_batch, args.hidden), ("fp32", args.batch, args.extra_hidden)]
    if configs:
        report["throughput"] = [measure(x, *c[:3], args, with_sklearn=not args.no_sklearn, compiled=c[3:] == (True,))
                                for c in configs]
        emit(throughput_tables(report["throughput"], len(x), x.shape[1], args))
    if "recon" in args.parts and args.bf16_epochs > 0:
        report["bf16_recon"] = bf16_recon(x, test_x, args.hidden, args.batch, args.bf16_epochs, args.seed)
        emit(recon_table(report["bf16_recon"], bool(args.limit)))
    if "finetune" in args.parts:
        x_ft, _, y_ft = harness.load_fashion_mnist(min(args.finetune_size, args.limit or args.finetune_size), labels=True,
                                                   root=args.data_root)
        report["finetune"] = finetune_part(x_ft, y_ft, args)
        emit(finetune_table(report["finetune"], bool(args.limit)))
    if "compile" in args.parts:
        report["compile"] = compile_part(x[: args.compile_size], args)
        emit(compile_table(report["compile"], min(args.compile_size, len(x)), args.batch))
    if "scaling" in args.parts:
        report["scaling"] = scaling.run_scaling(x, args.scaling_base, args.scaling_hidden_sizes,
                                                args.scaling_data_factors, args.hidden, args.batch, args.warmup,
                                                args.repeats, args.seed)
        emit(scaling.table(report["scaling"]))
    if "gpu" in args.parts:
        report["gpu"] = gpu_part(x, args) if torch.cuda.is_available() else None
        emit(gpu_table(report["gpu"], len(x), args.warmup) if report["gpu"]
             else "### GPU\n\nno GPU here (torch.cuda.is_available() is False)")
    harness.write_json(args.json, report)


if __name__ == "__main__":
    main()
