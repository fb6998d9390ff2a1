"""Re-ranking: features shared by offline training and request-time scoring."""
