"""Causal LMs: loading and preparing them (hub, local, GGUF), and fetching hub repositories on the submit host."""
