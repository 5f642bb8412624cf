"""Neuron importance: methods, the batch runner and the run-directory store.

Kept free of eager imports: ``neuronmap.trace.store`` is read by torch-free stages.
"""
