"""`python -m services.analytics`: the analytics_service program."""

from services.analytics.handler import AnalyticsService
from services.order_service import main

main("analytics", AnalyticsService.build)
