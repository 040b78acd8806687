#!/bin/bash
# Submits the SpeechMapper chain to SLURM, each step after the previous one
# succeeded (--dependency=afterok):
#
#   extract -> stage1 -> instructions -> stage2 -> evaluate -> tables
#
# from converted corpora (audio manifests) to OUT/paper_tables.md.
#
#   scripts/slurm/submit.sh --config my_config.sh [--from STEP] [--dry-run]
#
# --from STEP   start the chain at STEP (the earlier steps' outputs must exist);
#               a step that ran out of time resumes in its folder.
# --dry-run     print the sbatch commands and each step's speechmapper commands;
#               submit nothing.
# Settings: scripts/slurm/config.example.sh. GPU counts and time limits come
# from BENCHMARKS.md, "Memory plan for the paper's runs".
set -euo pipefail

STEPS=(extract stage1 instructions stage2 evaluate tables)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
config=""
from=extract
dry_run=0

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --config) config=$2; shift 2 ;;
        --from) from=$2; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "Unknown argument '$1'." >&2; usage >&2; exit 2 ;;
    esac
done

if [[ -z $config || ! -f $config ]]; then
    echo "--config must name a settings file (copy scripts/slurm/config.example.sh)." >&2
    exit 2
fi
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
# shellcheck source=/dev/null
source "$config"

start=-1
for i in "${!STEPS[@]}"; do
    if [[ ${STEPS[$i]} == "$from" ]]; then start=$i; fi
done
if [[ $start -lt 0 ]]; then
    echo "--from must be one of: ${STEPS[*]}." >&2
    exit 2
fi

# sbatch options of a step: GPUs (one process per GPU), CPUs and time.
step_options() {
    local gpus=0 time=01:00:00
    case "$1" in
        extract) gpus=$SM_EXTRACT_GPUS; time=$SM_EXTRACT_TIME ;;
        stage1) gpus=$SM_STAGE1_GPUS; time=$SM_STAGE1_TIME ;;
        stage2) gpus=$SM_STAGE2_GPUS; time=$SM_STAGE2_TIME ;;
        evaluate) gpus=$SM_EVAL_GPUS; time=$SM_EVAL_TIME ;;
    esac
    local options=(--time="$time")
    if [[ $gpus -gt 0 ]]; then
        options+=(--gpus-per-node="$gpus" --ntasks-per-node="$gpus" --cpus-per-task="${SM_CPUS_PER_GPU:-8}")
    else
        options+=(--cpus-per-task=4)
    fi
    [[ -n ${SM_PARTITION:-} ]] && options+=(--partition="$SM_PARTITION")
    [[ -n ${SM_ACCOUNT:-} ]] && options+=(--account="$SM_ACCOUNT")
    [[ -n ${SM_QOS:-} ]] && options+=(--qos="$SM_QOS")
    printf '%s\n' "${options[@]}"
}

# Every step prints its commands first: a bad setting (a test set that is
# neither a manifest nor an instruction file, an unknown LLM) stops the chain
# here, not hours later in the job that reads it.
for step in "${STEPS[@]:$start}"; do
    if ! SM_DRY_RUN=1 SM_CONFIG=$config SM_REPO=$SM_REPO bash "$here/$step.sbatch" > /dev/null; then
        echo "$step: the settings in $config are not usable; nothing submitted." >&2
        exit 2
    fi
done

previous=""
for step in "${STEPS[@]:$start}"; do
    mapfile -t options < <(step_options "$step")
    if [[ -n $previous ]]; then
        options+=(--dependency="afterok:$previous" --kill-on-invalid-dep=yes)
    fi
    command=(sbatch --parsable "${options[@]}"
        --export="ALL,SM_CONFIG=$config,SM_REPO=$SM_REPO"
        --chdir="$SM_OUT/logs" "$here/$step.sbatch")
    if [[ $dry_run == 1 ]]; then
        job="<$step>"
        echo "# $step"
        printf '%q ' "${command[@]}"
        echo
        SM_DRY_RUN=1 SM_CONFIG=$config SM_REPO=$SM_REPO bash "$here/$step.sbatch" | sed 's/^/    /'
    else
        mkdir -p "$SM_OUT/logs"
        job=$("${command[@]}")
        echo "$step: job $job"
    fi
    previous=$job
done
