"""What steps the particles' envs: the JAX engine, the host engine, populations, device
sharding, many processes, the evaluation rollouts and memory estimates."""
