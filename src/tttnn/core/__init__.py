"""The method itself: TTT-NN's settings, loop (one document at a time or in lock-step), number formats, bits-per-byte metrics, and resumable per-document results."""
