"""OmaData: a MyData consent and personal data broker."""

__version__ = "0.1.0"
