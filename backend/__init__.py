"""mraru-backend: a Label Studio ML backend with M-RARU sampling, an LLM teacher and a student."""

__version__ = "0.1.0"
