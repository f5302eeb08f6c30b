#!/usr/bin/env bash
# Set up a fresh machine: Debian packages (tools/apt-packages.txt) and a virtual environment at
# .venv with every Python package pinned in requirements.txt (the MONAI Deploy App SDK, pinned in
# requirements-app-sdk.txt, in .venv/app-sdk). Safe to run again: it only installs
# what is missing. Honours PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r package; do
    [ -n "$package" ] || continue
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done < <(sed -e 's/#.*//' -e '/^\s*$/d' tools/apt-packages.txt)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "${PYTHON:-python3}" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing Python packages from requirements.txt (pinned)"
    .venv/bin/python -m pip install -q --upgrade pip==26.3
    .venv/bin/python -m pip install -q -r requirements.txt
    echo "$want" > "$stamp"
fi
# The MONAI Deploy App SDK in a folder of its own (requirements-app-sdk.txt, operators/app_sdk.py):
# inside MONAI's package folder, `import monai` would import it and Holoscan on every bundle command.
if compgen -G ".venv/lib/python3*/site-packages/monai/deploy" >/dev/null; then
    echo "setup: moving the MONAI Deploy App SDK out of MONAI's package folder"
    .venv/bin/python -m pip uninstall -q -y monai-deploy-app-sdk
fi
sdk_stamp=.venv/app-sdk/.requirements.sha256
sdk_want=$(sha256sum requirements-app-sdk.txt | cut -d' ' -f1)
if [ ! -f "$sdk_stamp" ] || [ "$(cat "$sdk_stamp")" != "$sdk_want" ]; then
    echo "setup: installing the MONAI Deploy App SDK into .venv/app-sdk (pinned)"
    rm -rf .venv/app-sdk
    .venv/bin/python -m pip install -q --no-deps --target .venv/app-sdk -r requirements-app-sdk.txt
    echo "$sdk_want" > "$sdk_stamp"
fi
# OHIF v3's SEG loader for the viewer test, pinned in tools/npm-packages.txt, into .cache/npm.
npm_stamp=.cache/npm/.packages.sha256
npm_want=$(sha256sum tools/npm-packages.txt | cut -d' ' -f1)
if command -v npm >/dev/null && { [ ! -f "$npm_stamp" ] || [ "$(cat "$npm_stamp")" != "$npm_want" ]; }; then
    echo "setup: installing npm packages from tools/npm-packages.txt (pinned)"
    mkdir -p .cache/npm
    # Not fatal: without them only the OHIF loader test skips.
    if npm install --silent --no-audit --no-fund --prefix .cache/npm $(sed -e 's/#.*//' tools/npm-packages.txt); then
        echo "$npm_want" > "$npm_stamp"
    else
        echo "setup: npm packages not installed; the OHIF SEG loader test will skip"
    fi
fi
echo "setup: ready (.venv)"
