"""Neuron importance: the methods and the batch runner (the run directory they write is ``neuronmap.rundir``).

Kept free of eager imports: importing a torch-free part of neuronmap never imports torch through this package.
"""
