"""What runs a training run: the trainer's loop, configs, building the env and policy, run
dirs, metrics logs and checkpoints."""
