"""Code shared by the Function App and training: settings, stores, serving, feedback."""
