"""`python -m services.gateway`: run the alert gateway."""

from services.gateway.main import main

main()
