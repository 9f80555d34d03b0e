#!/usr/bin/env bash
# The course where its users are: install tlkit, then tlkit[serve], then tlkit[course] into
# Colab's stack, check after each install that Colab's packages kept their versions and that
# `pip check` is clean, then run notebooks 01 and 06 there on the smoke profile.
#
# Colab's stack as assumed here (check with `pip list` in a Colab notebook and update COLAB):
# Python 3.12, tensorflow 2.19.0, keras 3.10.0, numpy 2.0.2, protobuf 5.29.5, and pandas 2.2.2
# (pinned by Colab's own google-colab package, so a tlkit that needs a newer one breaks Colab).
# tensorflow-cpu stands in for Colab's CUDA `tensorflow` wheel: the same code and requirements.
#
# The environment lives in .venv-colab (PYTHON312 picks the interpreter) and is reused while
# this script and pyproject.toml are unchanged; otherwise it is rebuilt, installs included.
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."
VENV=.venv-colab
export KERAS_BACKEND=tensorflow  # Colab's; make exports the backend it was asked for
COLAB=(tensorflow-cpu==2.19.0 keras==3.10.0 numpy==2.0.2 protobuf==5.29.5 pandas==2.2.2)

python312() {
    local c
    for c in ${PYTHON312:-} python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
        if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            echo "$c"
            return
        fi
    done
    echo "colab-like: no Python 3.12 found (Colab's version): set PYTHON312=/path/to/python3.12" >&2
    return 1
}

# Colab's packages at Colab's versions, and a clean `pip check`; $1 names the step.
check() {
    "$VENV/bin/python" - "$1" "${COLAB[@]}" <<'EOF'
import sys
from importlib.metadata import version
step, pins = sys.argv[1], [a.split("==") for a in sys.argv[2:]]
moved = [f"{name} {version(name)} (Colab has {want})" for name, want in pins if version(name) != want]
if moved:
    sys.exit(f"colab-like: after {step}, Colab's packages changed: {'; '.join(moved)}")
EOF
    "$VENV/bin/python" -m pip check
}

stamp=$(cat "$self" pyproject.toml | sha256sum | cut -c1-16)-$(pwd | sha256sum | cut -c1-8)
if [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp" ]; then
    if ! py=$(python312); then
        # CI must run it; elsewhere a machine without Python 3.12 skips it with the line above
        [ "${CI:-}" = "true" ] && exit 1
        echo "colab-like: skipped (install Python 3.12 or set PYTHON312 to run it)"
        exit 0
    fi
    rm -rf "$VENV"
    "$py" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q "${COLAB[@]}"
    check "Colab's stack alone"
    for target in . ".[serve]" ".[course]"; do
        "$VENV/bin/python" -m pip install -q -e "$target"
        check "pip install tlkit${target#.}"
    done
    echo "colab-like: ${COLAB[*]} kept through pip install tlkit, tlkit[serve], tlkit[course]"
    echo "$stamp" > "$VENV/.stamp"
else
    check "reusing $VENV"
fi

rm -rf runs/ci-colab
"$VENV/bin/tlkit" course run --profile smoke --only 01 06 --out runs/ci-colab
