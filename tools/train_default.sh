#!/usr/bin/env bash
# Reproduce the embedded default (bundle/models/mini) from scratch on this machine:
# generate the training corpus, train the four stages, draw the curves.
#   bash tools/train_default.sh            # the settings the committed weights were made with
#   VAE_ITERATIONS=5 ... bash tools/train_default.sh   # any knob below can be overridden
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
CORPUS=${CORPUS:-.cache/corpus_train}
LOGS=${LOGS:-bundle/logs}
MODELS=${MODELS:-bundle/models/mini}
CASES=${CASES:-12}
TEST_CASES=${TEST_CASES:-10}
VAE_ITERATIONS=${VAE_ITERATIONS:-600}
DIFFUSION_ITERATIONS=${DIFFUSION_ITERATIONS:-300}
AOVA_ITERATIONS=${AOVA_ITERATIONS:-1200}
REFINER_ITERATIONS=${REFINER_ITERATIONS:-400}
# Which stages to run, in order; later stages read the earlier stages' weights from $MODELS.
STAGES=${STAGES:-"vae diffusion aova refiner"}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

if [ ! -f "$CORPUS/corpus.json" ]; then
    $PY -m corpus --output "$CORPUS" --cases-per-category "$CASES" --test-cases "$TEST_CASES" --quiet
fi
configs() { local list="" c; for c in "$@"; do list="$list,'bundle/configs/$c.json'"; done; echo "[${list#,}]"; }
train() {
    local stage_configs=$1; shift
    echo "== $(date +%T) training with $stage_configs"
    $PY -m monai.bundle run --config_file "$stage_configs" --bundle_root bundle \
        --logging_file bundle/configs/logging.conf --log_dir "$LOGS" --models_dir "$MODELS" "$@"
}
# The committed weights must not derive from data whose licence forbids it: the InVesalius head
# CT (GPL-2) stays out of their training set.
FOUNDATION="$CORPUS/datalists/foundation_train_redistributable.json"
$PY - "$CORPUS/datalists/foundation_train.json" "$FOUNDATION" <<'PYTHON'
import json, sys
datalist = json.load(open(sys.argv[1]))
datalist["training"] = [e for e in datalist["training"] if e.get("source") != "invesalius-head-ct"]
json.dump(datalist, open(sys.argv[2], "w"), indent=2)
PYTHON
SEEN="$CORPUS/datalists/seen_train.json"
for stage in $STAGES; do
    case $stage in
    vae) train "$(configs train train_vae)" --datalist "$FOUNDATION" \
        --patch_size "[32,32,32]" --batch_size 8 --iterations "$VAE_ITERATIONS" --learning_rate 0.0003 ;;
    diffusion) train "$(configs train train_diffusion)" --datalist "$FOUNDATION" \
        --patch_size "[64,64,64]" --batch_size 4 --iterations "$DIFFUSION_ITERATIONS" --learning_rate 0.0005 ;;
    aova) train "$(configs train train_aova)" --datalist "$SEEN" --iterations "$AOVA_ITERATIONS" ;;
    refiner) train "$(configs train train_aova train_refiner)" --datalist "$SEEN" --iterations "$REFINER_ITERATIONS" ;;
    *) echo "unknown stage $stage: expected vae, diffusion, aova, refiner" >&2; exit 2 ;;
    esac
done
$PY -m tools.plot_training --logs "$LOGS" --output bundle/docs/training_curves.png
ls -l "$MODELS"
