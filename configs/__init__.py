"""pes_rl's Hydra configs, shipped inside the package (``pes_rl.configs``) for ``pes-rl train``."""
