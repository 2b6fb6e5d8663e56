"""Tables and figures from the per-document results: summaries, baselines, the paper's claims with paired intervals, plots. Imports no torch."""
