"""Feedback events: their schema and the processing the Event Hub trigger runs."""
