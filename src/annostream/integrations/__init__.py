"""Training-framework faces of the SDK: PyTorch (``torch``) and TensorFlow (``tensorflow``).

Each framework module is imported only when ``Dataset.to_pytorch`` / ``to_tensorflow`` is
first called, so the core install needs neither. What both share needs neither
framework: decoding and targets as numpy arrays (``common``), the epoch plan that shards and
shuffles ids (``plan``), and the rank and worker a process reads as (``world``).
"""
