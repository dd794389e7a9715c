"""Translation providers, masking and language detection (spec §6)."""
