#!/usr/bin/env bash
# Fetch, on a machine with a package index, the wheels the GPU image lacks into .whl/ (git-ignored), for
# `benchmarks/gpu/env.sh` to install there without one. The image holds torch, Triton, transformers, einops, pandas,
# httpx and the rest; it lacks websockets (which the data layer and the tests import) and reformer-pytorch with its
# dependencies (a `bench compare` peer). Its Python is 3.12 on x86-64.
#   bash benchmarks/gpu/wheels.sh        (from the repository root)
set -eu
mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux1_x86_64 -d .whl \
  "websockets>=13" reformer-pytorch==1.4.4 axial-positional-embedding local-attention product-key-memory \
  colt5-attention hyper-connections torch-einops-utils
ls .whl
