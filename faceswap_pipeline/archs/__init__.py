"""Network architectures (``nn.Module`` only: no I/O, no weights loading).

Importing this package registers every architecture in ``faceswap_pipeline.registry.ARCHS``.
"""

from faceswap_pipeline.archs import attributes, cascade, cyclegan, facecheck, judge, landmarks, srresnet  # noqa: F401

__all__ = ["attributes", "cascade", "cyclegan", "facecheck", "judge", "landmarks", "srresnet"]
