"""The run directory: the interface between training and everything after it.

``files`` (atomic writes), ``checkpoint`` (safetensors + JSON checkpoint files) and ``run``
(config.yaml and the generator of a run). Import the submodules directly; this package imports
nothing so that the low-level ``files``/``checkpoint`` modules stay usable from anywhere.
"""
