"""Training-framework faces of the SDK: PyTorch (``torch``) and TensorFlow (``tensorflow``).

Each framework module is imported only when ``Dataset.to_pytorch`` / ``to_tensorflow`` is
first called, so the core install needs neither. What both share (decoding, targets as
numpy arrays, the epoch plan that shards and shuffles ids) lives in ``common`` and needs
neither framework.
"""
