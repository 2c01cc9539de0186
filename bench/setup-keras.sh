#!/usr/bin/env bash
# Creates bench/.venv with the Keras reference environment (bench/requirements-keras.txt).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install -q -r requirements-keras.txt
.venv/bin/python -c 'import keras, tensorflow as tf; print("keras", keras.__version__, "tf", tf.__version__)'
