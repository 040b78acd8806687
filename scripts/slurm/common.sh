# Sourced by every scripts/slurm/*.sbatch: reads the driver's settings and
# runs `speechmapper` one process per GPU through srun, where fairseq2's own
# cluster support (common.cluster: auto) reads the rank, world size and master
# address from SLURM. With SM_DRY_RUN=1 it prints each command instead.
set -euo pipefail

: "${SM_CONFIG:?SM_CONFIG must name the driver settings file (see scripts/slurm/config.example.sh)}"
# shellcheck source=/dev/null
source "$SM_CONFIG"
: "${SM_OUT:?set SM_OUT in $SM_CONFIG}"
: "${SM_REPO:?set SM_REPO in $SM_CONFIG}"

if [[ ${SM_DRY_RUN:-0} != 1 && -n ${SM_VENV:-} ]]; then
    # shellcheck source=/dev/null
    source "$SM_VENV/bin/activate"
fi
export FAIRSEQ2_NO_PROGRESS=1
# srun of Slurm 22.05 and later does not inherit the job's --cpus-per-task.
if [[ -n ${SLURM_CPUS_PER_TASK:-} ]]; then
    export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK
fi

case "$SM_LLM" in
    llama3_1_8b) SM_LLM_CARD=speechmapper_llama3_1_8b_instruct ;;
    eurollm_9b) SM_LLM_CARD=speechmapper_eurollm_9b_instruct ;;
    *) echo "SM_LLM must be llama3_1_8b or eurollm_9b, not '$SM_LLM'." >&2; exit 2 ;;
esac

# Where each step writes; the later steps read from there.
SM_TRAIN_FEATS=$SM_OUT/extract_train/features
SM_DEV_FEATS=$SM_OUT/extract_dev/features
SM_INSTRUCTIONS=$SM_OUT/instructions
SM_STAGE1=$SM_OUT/stage1
SM_STAGE2=$SM_OUT/stage2
SM_EVAL=$SM_OUT/eval

# Overrides that send a training run's metrics to Weights & Biases as well
# (fairseq2's common.metric_recorders; TensorBoard is on by default).
sm_recorders() {
    local step=$1
    if [[ -n ${SM_WANDB_PROJECT:-} ]]; then
        echo "common.metric_recorders.wandb.enabled=true"
        echo "common.metric_recorders.wandb.project=$SM_WANDB_PROJECT"
        echo "common.metric_recorders.wandb.run_name=$step"
        if [[ -n ${SM_WANDB_ENTITY:-} ]]; then
            echo "common.metric_recorders.wandb.entity=$SM_WANDB_ENTITY"
        fi
    fi
}

# One process per GPU of the job (srun), or the command printed.
sm() {
    if [[ ${SM_DRY_RUN:-0} == 1 ]]; then
        printf '%q ' speechmapper "$@"
        echo
    else
        srun --kill-on-bad-exit=1 speechmapper "$@"
    fi
}

# One process (CPU steps).
sm_local() {
    if [[ ${SM_DRY_RUN:-0} == 1 ]]; then
        printf '%q ' speechmapper "$@"
        echo
    else
        speechmapper "$@"
    fi
}
