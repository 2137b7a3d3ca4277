"""lean_gc: a command imports its libraries, and exits, without the cyclic collector walking the whole heap."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import atexit, gc, json, sys
from dbn.cli import lean_gc

full = []
gc.callbacks.append(lambda phase, info: full.append(1) if phase == "start" and info["generation"] == 2 else None)
if sys.argv[1] == "off":
    gc.disable()
state = {}
# registered before the command runs, so it runs after the command's own exit handler (atexit is last in, first out)
atexit.register(lambda: print(json.dumps({**state, "frozen_at_exit": gc.get_freeze_count()})))

def run():
    if sys.argv[1] == "plain":
        import torchvision
    else:
        with lean_gc():
            import torchvision
    return "done"

assert run() == "done"
state.update(full_collections=len(full), torchvision="torchvision" in sys.modules, enabled=gc.isenabled(),
             frozen=gc.get_freeze_count())
keep = [[] for _ in range(200_000)]  # made after the block: only the exit handler can freeze these
"""


def _run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_command_imports_without_full_collections_and_exits_frozen():
    plain, lean = _run("plain"), _run("lean")
    # the control: importing torchvision (torch._dynamo with it) with the collector on runs full collections
    # (two here; Lightning's and the pipeline's imports in dbn-train run four)
    assert plain["full_collections"] > 0, plain
    assert plain["frozen"] == 0 and plain["frozen_at_exit"] == 0, plain
    assert lean["torchvision"] and lean["enabled"], lean
    assert lean["full_collections"] == 0, lean
    assert lean["frozen"] > 100_000, lean  # the libraries' objects: out of every later collection's walk
    assert lean["frozen_at_exit"] >= lean["frozen"] + 200_000, lean  # the exit handler froze what came after


def test_a_collector_the_caller_turned_off_stays_off():
    off = _run("off")
    assert off["torchvision"] and not off["enabled"], off


def test_dbn_train_imports_its_libraries_under_it_and_help_imports_none():
    # counted from main's call on: importing dbn.cli.train imports torch first (the dbn package), before any of it runs
    script = """
import gc, sys
from dbn.cli.train import main
full = []
gc.callbacks.append(lambda p, i: full.append(1) if p == "start" and i["generation"] == 2 else None)
sys.argv = ["dbn-train", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    print("exit", e.code)
print(len(full), "lightning.pytorch" in sys.modules, "dbn.training.pipeline" in sys.modules, gc.get_freeze_count() > 0)
"""

    def run(*args):
        out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
        return out.stdout.split()[-6:]

    # a real command (stopped by a config error, after the imports): Lightning and the pipeline, no full collection
    assert run("pretrain.epochs=-1") == ["exit", "2", "0", "True", "True", "True"]
    # --help is answered by Hydra before the command runs: no import, nothing frozen
    assert run("--help") == ["exit", "0", "0", "False", "False", "False"]
