"""`python -m services.approval`."""

from services.approval.main import main

main()
