"""The paper's baselines and ablations beside TTT (in-context, interpolation, dynamic evaluation, neighbour order) and the learning-rate choice; each shares the core's metric code."""
