"""``python -m servicepulse`` runs the console command."""

from servicepulse.cli import main

main()
