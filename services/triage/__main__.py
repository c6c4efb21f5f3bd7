"""`python -m services.triage`."""

from services.triage.main import main

main()
