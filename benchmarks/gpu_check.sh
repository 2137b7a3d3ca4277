#!/usr/bin/env bash
# The GPU checks of a session that is lent a device machine, as one prepared call: the CUDA tests and the GPU rows of
# the CD-1 benchmark at batch 1,000 and 10,000, fp32 and bf16, against the GPU's measured matrix-product rate (issue 14).
#
# The device machine reaches no package registry and holds no data; its image has torch, Lightning, torchmetrics,
# scikit-learn and pytest, but not Hydra. So first, on the CPU machine (writes .device/, which git ignores):
#   bash benchmarks/gpu_check.sh prepare
# then one device call (a few minutes; the limit leaves time to run it again):
#   run(command="bash benchmarks/gpu_check.sh run", carry=[".device"], timeout_s=540)
# What comes back ($OUT): nvidia-smi.txt, setup.txt, pytest_cuda.txt, cd1_gpu.md (the table), cd1_gpu.json, cd1_gpu.err.
# On a machine without CUDA `run` still runs (the CUDA tests skip, the benchmark says there is no GPU): a dry run.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}

case "${1:-}" in
prepare)
  mkdir -p .device/wheels .device/fashion-mnist
  touch .git/info/exclude
  grep -qx '/.device/' .git/info/exclude || echo '/.device/' >> .git/info/exclude
  # the Hydra, OmegaConf and parser runtime versions installed (and tested) here, as wheels: the parser comes as a
  # source archive, which pip could not build there without fetching setuptools
  pins=$("$py" -c "from importlib.metadata import version as v; \
print(*(f'{n}=={v(n)}' for n in ('hydra-core', 'omegaconf', 'antlr4-python3-runtime')))")
  rm -f .device/wheels/*
  # shellcheck disable=SC2086
  "$py" -m pip wheel --no-deps -w .device/wheels $pins
  cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .device/fashion-mnist/
  du -sh .device
  ;;
run)
  out=${OUT:-gpu_check_out}
  mkdir -p "$out"
  nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" > "$out/nvidia-smi.txt"
  {
    "$py" -m pip install --no-index --find-links .device/wheels .device/wheels/*.whl
    "$py" -m pip install --no-deps --no-build-isolation -e .
    "$py" -c "import torch, lightning, dbn; print('torch', torch.__version__, 'lightning', lightning.__version__, \
'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
  } > "$out/setup.txt" 2>&1
  # the tests with a CUDA path (each module imports only what the device image has)
  "$py" -m pytest -q -p no:cacheprovider -rs -k cuda tests/test_backprop.py tests/test_sklearn.py tests/test_sklearn_dropin.py \
    > "$out/pytest_cuda.txt" 2>&1 || true
  "$py" benchmarks/cd1_throughput.py --parts gpu --gpu-batches 1000 10000 --data-root .device/fashion-mnist \
    --json "$out/cd1_gpu.json" > "$out/cd1_gpu.md" 2> "$out/cd1_gpu.err" || true
  tail -n 5 "$out/pytest_cuda.txt" "$out/cd1_gpu.md"
  ;;
*)
  echo "usage: bash benchmarks/gpu_check.sh prepare|run   (see the comment at the top)" >&2
  exit 2
  ;;
esac
