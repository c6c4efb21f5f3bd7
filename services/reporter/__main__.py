"""`python -m services.reporter`."""

from services.reporter.main import main

main()
