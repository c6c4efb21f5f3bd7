"""`python -m services.escalation`."""

from services.escalation.main import main

main()
