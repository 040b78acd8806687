# Settings of the SLURM driver (scripts/slurm/submit.sh). Copy this file, edit it,
# and pass it: scripts/slurm/submit.sh --config my_config.sh [--dry-run]
# Every path must be absolute and visible from the compute nodes.

# Where every step writes (one folder per step under it).
SM_OUT=/path/to/runs/speechmapper
# The checkout (its recipes/*/configs are the config files the steps name).
SM_REPO=/path/to/speechmapper-fairseq2
# Activated by every job (the `make setup` venv, or any env with the package).
SM_VENV=$SM_REPO/.venv

# Target LLM: llama3_1_8b (Llama-3.1-8B-Instruct) or eurollm_9b (EuroLLM-9B-Instruct).
SM_LLM=llama3_1_8b

# Converted corpora (`speechmapper convert ...`): the audio manifests to extract.
SM_TRAIN_MANIFEST=/data/manifests/librispeech_train_960.tsv
SM_DEV_MANIFEST=/data/manifests/librispeech_dev_clean.tsv

# Stage 2: a config of recipes/stage2/configs (task_agnostic, task_specific_st,
# task_specific_sqa). The driver builds ASR instruction files from the stores;
# list extra training instruction files (ST, SQA) here, space-separated.
SM_STAGE2_CONFIG=task_agnostic
SM_STAGE2_EXTRA_TRAIN=""

# Test sets, space-separated NAME=FILE: a manifest (.tsv) is scored as ASR, an
# instruction file (.jsonl, from `speechmapper convert`) by each example's task.
SM_TEST_SETS="librispeech_test_clean=/data/manifests/librispeech_test_clean.tsv librispeech_test_other=/data/manifests/librispeech_test_other.tsv"

# GPUs per step (one node each) and wall-clock limits; from BENCHMARKS.md,
# "Memory plan for the paper's runs" (80 GB GPUs).
SM_EXTRACT_GPUS=8
SM_EXTRACT_TIME=12:00:00
SM_STAGE1_GPUS=4
SM_STAGE1_TIME=24:00:00
SM_STAGE2_GPUS=1
SM_STAGE2_TIME=04:00:00
SM_EVAL_GPUS=8
SM_EVAL_TIME=04:00:00

# Extra `--config` overrides per step, space-separated NAME=VALUE (no spaces
# inside a value), e.g. SM_STAGE2_EXTRA="trainer.data_parallelism=fsdp" on
# several GPUs, or SM_STAGE1_EXTRA="dataset.max_num_frames=4000" on 8 GPUs to
# keep the paper's global batch of 4 x 8,000 frames.
SM_STAGE1_EXTRA=""
SM_STAGE2_EXTRA=""
SM_EVAL_EXTRA=""

# SLURM placement (left out when empty).
SM_PARTITION=""
SM_ACCOUNT=""
SM_QOS=""
SM_CPUS_PER_GPU=8

# Training logs: TensorBoard always (OUT/tb of each step). Set a project to
# also log to Weights & Biases (`wandb login` first, or WANDB_MODE=offline on
# nodes without internet access and `wandb sync` afterwards).
SM_WANDB_PROJECT=""
SM_WANDB_ENTITY=""
