"""Text and generation: reading corpora, vocabularies, sampling, one-to-many generation."""
