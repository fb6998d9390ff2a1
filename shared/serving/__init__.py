"""The request path: from a user id to a ranked answer."""
