"""Experiment configs: one `get_config()` per file; variants import `abaw3` and override."""
