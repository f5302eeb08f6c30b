#!/usr/bin/env bash
# Train the embedded default (bundle/models/mini) on this machine, resumably:
# generate the corpus if missing, then train the stages in order. Every stage checkpoints after
# each epoch (200 iterations) into $LOGS/checkpoints and resumes from there when run again, so
# the same command continues a campaign cut off at any moment, on a fresh machine too once the
# checkpoints and curves are committed. A stage ends at its iteration cap or when its minutes for
# this sitting are spent; run the command again to continue it.
#   bash tools/train_default.sh                       # every stage, default caps and budgets
#   STAGES="vae" VAE_MINUTES=100 bash tools/train_default.sh
#   nohup bash tools/train_default.sh > train.log 2>&1 &   # in the background
#   DEVICE_BATCH=... see tools/train_gpu.sh for the GPU settings (same configs)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CORPUS=${CORPUS:-.cache/corpus_v2}
LOGS=${LOGS:-bundle/logs}
MODELS=${MODELS:-bundle/models/mini}
CASES=${CASES:-16}
TEST_CASES=${TEST_CASES:-10}
# Iteration caps (a stage stops earlier at its gate or budget) and minutes per sitting (0: no limit).
VAE_ITERATIONS=${VAE_ITERATIONS:-40000};             VAE_MINUTES=${VAE_MINUTES:-0}
DIFFUSION_ITERATIONS=${DIFFUSION_ITERATIONS:-40000}; DIFFUSION_MINUTES=${DIFFUSION_MINUTES:-0}
AOVA_ITERATIONS=${AOVA_ITERATIONS:-20000};           AOVA_MINUTES=${AOVA_MINUTES:-0}
REFINER_ITERATIONS=${REFINER_ITERATIONS:-8000};      REFINER_MINUTES=${REFINER_MINUTES:-0}
VAE_BATCH=${VAE_BATCH:-8}; VAE_PATCH=${VAE_PATCH:-"[32,32,32]"}
DIFFUSION_BATCH=${DIFFUSION_BATCH:-4}; DIFFUSION_PATCH=${DIFFUSION_PATCH:-"[64,64,64]"}
# The heads train one prompt per batch; 48^3 patches (the learnability baseline's) hold a larger
# tumor share than 64^3 and cost half as much per step.
AOVA_PATCH=${AOVA_PATCH:-"[48,48,48]"}
# Which stages to run, in order; later stages read the earlier stages' weights from $MODELS.
STAGES=${STAGES:-"vae diffusion aova refiner"}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

if [ ! -f "$CORPUS/corpus.json" ]; then
    $PY -m corpus --output "$CORPUS" --cases-per-category "$CASES" --val-cases 8 --test-cases "$TEST_CASES" --quiet
fi
configs() { local list="" c; for c in "$@"; do list="$list,'bundle/configs/$c.json'"; done; echo "[${list#,}]"; }
train() {
    local stage_configs=$1 minutes=$2; shift 2
    echo "== $(date +%T) training with $stage_configs (budget ${minutes} min, resumes from $LOGS/checkpoints)"
    $PY -m monai.bundle run --config_file "$stage_configs" --bundle_root bundle \
        --logging_file bundle/configs/logging.conf --log_dir "$LOGS" --models_dir "$MODELS" \
        --max_seconds "$((minutes * 60))" "$@"
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
    vae) train "$(configs train train_vae)" "$VAE_MINUTES" --datalist "$FOUNDATION" \
        --patch_size "$VAE_PATCH" --batch_size "$VAE_BATCH" --iterations "$VAE_ITERATIONS" --learning_rate 0.0003 ;;
    diffusion) train "$(configs train train_diffusion)" "$DIFFUSION_MINUTES" --datalist "$FOUNDATION" \
        --patch_size "$DIFFUSION_PATCH" --batch_size "$DIFFUSION_BATCH" --iterations "$DIFFUSION_ITERATIONS" --learning_rate 0.0005 ;;
    aova) train "$(configs train train_aova)" "$AOVA_MINUTES" --datalist "$SEEN" --patch_size "$AOVA_PATCH" --iterations "$AOVA_ITERATIONS" ;;
    refiner) train "$(configs train train_aova train_refiner)" "$REFINER_MINUTES" --datalist "$SEEN" --iterations "$REFINER_ITERATIONS" ;;
    *) echo "unknown stage $stage: expected vae, diffusion, aova, refiner" >&2; exit 2 ;;
    esac
done
# The model card's figure shows the shipped weights' run; any other run keeps its curves beside its logs.
if [ "$LOGS" = bundle/logs ]; then CURVES=bundle/docs/training_curves.png; else CURVES="$LOGS/training_curves.png"; fi
$PY -m tools.plot_training --logs "$LOGS" --output "$CURVES"
ls -l "$MODELS"
