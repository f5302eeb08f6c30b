#!/usr/bin/env bash
# Train every stage of the embedded default on one CUDA GPU within about 10 minutes, with the
# same configs and resumable checkpoints as the CPU campaign (tools/train_default.sh); only the
# batch sizes and per-stage minutes differ. The weights it makes are evaluated on CPU like any
# others. Prepared for a lent GPU (the device tool): copy the corpus with the working tree or let
# the script build it there (about 12 minutes on 16 cores, so bring it along when you can).
#   bash tools/train_gpu.sh                     # all stages, 9 minutes of training in all
#   CORPUS=.cache/corpus_v2 LOGS=$OUT/logs MODELS=$OUT/mini bash tools/train_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "train_gpu: no CUDA GPU visible to torch; use tools/train_default.sh on CPU" >&2
    exit 2
fi
export VAE_BATCH=${VAE_BATCH:-32} VAE_PATCH=${VAE_PATCH:-"[64,64,64]"}
export DIFFUSION_BATCH=${DIFFUSION_BATCH:-16}
export VAE_MINUTES=${VAE_MINUTES:-3} DIFFUSION_MINUTES=${DIFFUSION_MINUTES:-3}
export AOVA_MINUTES=${AOVA_MINUTES:-2} REFINER_MINUTES=${REFINER_MINUTES:-1}
exec bash tools/train_default.sh
