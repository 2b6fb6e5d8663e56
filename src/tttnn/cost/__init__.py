"""What a run costs before it runs (the plan) and this machine's rates (calibrate)."""
