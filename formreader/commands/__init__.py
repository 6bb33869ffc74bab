"""Command implementations: progress, summaries and files around the library calls."""
