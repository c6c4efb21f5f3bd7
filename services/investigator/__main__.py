"""`python -m services.investigator`."""

from services.investigator.main import main

main()
