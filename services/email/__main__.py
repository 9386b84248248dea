"""`python -m services.email`: the email_service program."""

from services.email.handler import EmailService
from services.order_service import main

main("email", EmailService.build)
