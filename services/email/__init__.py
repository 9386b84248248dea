"""The email service: sends each order's confirmation through SES, once."""
