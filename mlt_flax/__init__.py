"""mlt_flax: facial Action Unit detection with a Multi-Label Transformer in JAX/Flax."""

__version__ = "0.1.0"
