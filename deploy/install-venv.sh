#!/bin/sh
# install-venv.sh PREFIX PACKAGE [PIP_ARG...]
#
# The one install of edge-app, shared by the Docker image build (deploy/docker/Dockerfile),
# the Greengrass component's install step (deploy/greengrass/recipe.yaml) and
# `edge-app install --systemd`:
#   1. PREFIX/.venv: a virtual environment of $PYTHON (default python3, 3.11 or newer);
#   2. PACKAGE installed into it with pip: a wheel file, optionally with extras
#      ("dist/edge_app-0.1.0-py3-none-any.whl[encryption]"), or a requirement
#      ("edge-app[aws]==0.1.0" from your index); further arguments go to pip as they are;
#   3. PREFIX/models: the default model (or $EDGE_APP_MODEL, a name from the manifest) pulled
#      by `edge-app models pull` and verified against the manifest's sha256 and size; a file
#      already there is checked, not fetched again.
# Idempotent: an existing venv is reused and pip skips what is installed already. Exits
# non-zero, saying why, at the first failure (set -e). Needs no compiler: every dependency
# ships wheels. pip's cache follows pip's own settings (PIP_NO_CACHE_DIR=1 in the image).
set -eu

if [ "$#" -lt 2 ]; then
    echo "usage: install-venv.sh PREFIX PACKAGE [PIP_ARG...]" >&2
    exit 2
fi
prefix=$1
shift
python=${PYTHON:-python3}
venv="$prefix/.venv"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "install-venv: edge-app needs Python 3.11 or newer; '$python' is not (set PYTHON=...)" >&2
    exit 2
fi
mkdir -p "$prefix"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet "$@"
# The pull prints the verified path; EDGE_APP_MODEL empty or unset: the manifest's default.
"$venv/bin/edge-app" models pull ${EDGE_APP_MODEL:+"$EDGE_APP_MODEL"} --model-dir "$prefix/models"
echo "install-venv: edge-app $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("edge-app"))') in $venv, models in $prefix/models"
