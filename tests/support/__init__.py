"""Helpers the integration, fault and browser tiers share."""
