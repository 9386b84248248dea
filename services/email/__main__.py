"""`python -m services.email`: the email_service program."""

from services.base import main
from services.email.handler import EmailService

main("email", EmailService.build)
