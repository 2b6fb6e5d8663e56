"""Corpora and tasks: the Pile and the offline mini-Pile, the per-task test samples, and chunking for the index."""
