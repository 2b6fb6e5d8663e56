"""Nearest neighbours: embedding texts, building faiss indexes, searching shards and merging their lists."""
