"""Model loading, architecture adapters and neuron hooks."""
