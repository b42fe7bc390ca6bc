#!/bin/bash
# promptbatch as a Slurm job array: 4 tasks, each one shard of samples/sharded.toml.
# README, "Sharding across machines", sets this up. From the repository root (or a
# folder holding samples/sharded.toml and samples/questions.csv):
#
#   export AIMLAPI_API_KEY=...        # sbatch passes the environment on to the tasks
#   sbatch samples/slurm/promptbatch-array.sh
#
# promptbatch takes its shard from Slurm's own variables: K = (SLURM_ARRAY_TASK_ID -
# SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP of N = SLURM_ARRAY_TASK_COUNT, so
# --array=0-3, --array=1-4 and --array=0-15:4 all make shards 0/4 ... 3/4. Each task
# writes samples/out/sharded-K-of-4.jsonl; a task that fails can be rerun on its own
# (sbatch --array=2 ...) and resumes its output. Extra arguments go to promptbatch.
#
#SBATCH --job-name=promptbatch
#SBATCH --array=0-3
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --mem=1G
#SBATCH --time=04:00:00
#SBATCH --output=promptbatch-%A_%a.log

set -euo pipefail

# Exit 2 (the job, its input, the key variable) stops this task with nothing sent;
# 1 and 130 are worth a rerun, which resumes.
srun promptbatch run samples/sharded.toml --progress log "$@"
