"""``python -m neuronmap`` runs the CLI."""

from neuronmap.cli import main

main()
