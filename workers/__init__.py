"""The Ray execution side: data-parallel training, reward scoring, rounds, reporting."""
