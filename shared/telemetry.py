"""Application Insights through OpenTelemetry, switched on only by its connection string."""

from __future__ import annotations

import logging

from shared.settings import get_settings

log = logging.getLogger(__name__)
_configured = False


def configure_telemetry() -> bool:
    """Sends traces, requests and logs to Application Insights when the setting is present."""
    global _configured
    settings = get_settings()
    if _configured or not settings.appinsights_connection_string:
        return _configured
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(connection_string=settings.appinsights_connection_string)
    _configured = True
    log.info("telemetry: Application Insights enabled")
    return True
