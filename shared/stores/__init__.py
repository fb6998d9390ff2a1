"""Backends behind small interfaces, each with an embedded and an Azure implementation."""
