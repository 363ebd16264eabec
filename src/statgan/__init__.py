"""statgan: train and audit GANs as statistical models."""

__version__ = "0.1.0"
