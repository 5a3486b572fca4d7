"""Making a job faster without changing what it makes much: step caches, compiled blocks, attention backends."""
