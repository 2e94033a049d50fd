#!/usr/bin/env bash
# Fetch, here (where PyPI is reachable), the wheels the lent GPU machine lacks, into .whl/ (git-ignored; about 35 MB,
# under the device tool's 64 MiB carry limit). That machine has no network: its python3 (3.12) holds a CUDA torch,
# accelerate, peft, safetensors, tokenizers, pandas and pyarrow, but not TransformerLens, this transformers, plotly
# or typer. Then, on the device: carry [".whl"] and run
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site; benchmarks/gpu_check.sh
# (gpu_check.sh does both itself when .whl/ is there). The embedded model package (90 MB) does not fit the carry
# limit: on the device the throughput benchmark runs random models of Llama-3.2-1B's and Llama-3.1-8B's shapes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
mkdir -p .whl
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d .whl \
    transformer-lens==4.3.0 transformers==5.24.0 peft==0.21.2 beartype fancy-einsum typeguard datasets==5.2.0 \
    'dill<0.4.2' 'multiprocess<0.70.20' plotly==7.1.0 typer==0.29.2 pydantic==2.14.4 pydantic-core==2.50.5 \
    platformdirs 2>&1 | grep -v "is ignored" || true
du -sh .whl
