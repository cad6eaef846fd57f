"""``python -m labelcon`` runs the command line (``torchrun -m labelcon train ...`` too)."""

from labelcon.cli import main

main()
