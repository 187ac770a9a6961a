"""A small Keras model trained on a dataset straight from the store, through tf.data.

    python examples/train_tf.py --host http://127.0.0.1:8085 --project coco-dataset --epochs 2

The task is multi-label classification (which labels appear in the image), built from the
per-file ``labels`` of the pipeline; images are resized in the graph. Needs tensorflow.
"""

from __future__ import annotations

import argparse
import os
import sys

from annostream import Project

try:
    import tensorflow as tf
except ImportError:
    sys.exit("this example needs TensorFlow: pip install tensorflow-cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("ANNOSTREAM_HOST", "http://127.0.0.1:8085"))
    parser.add_argument("--project", default="coco-dataset")
    parser.add_argument("--dataset", default="Default")
    parser.add_argument("--query", default=None)
    parser.add_argument("--client-id", default=os.environ.get("ANNOSTREAM_CLIENT_ID"))
    parser.add_argument("--client-secret", default=os.environ.get("ANNOSTREAM_CLIENT_SECRET"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    project = Project(args.project, args.client_id, args.client_secret, host=args.host)
    view = project.dataset(args.dataset)
    if args.query:
        view = view.slice(args.query)
    num_classes = view.labels.num_classes

    def to_example(element: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.image.resize(tf.cast(element["image"], tf.float32) / 255.0, (args.size, args.size))
        # A sum, not a max: a file without instances has no rows to take the max of.
        present = tf.minimum(tf.reduce_sum(tf.one_hot(element["labels"], num_classes), axis=0), 1.0)
        return image, tf.ensure_shape(present, [num_classes])

    data = (
        view.to_tensorflow(shuffle=True, seed=0)
        .map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(8)
        .prefetch(tf.data.AUTOTUNE)
    )
    model = tf.keras.Sequential(
        [
            tf.keras.Input((args.size, args.size, 3)),
            tf.keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            tf.keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
            tf.keras.layers.GlobalAveragePooling2D(),
            tf.keras.layers.Dense(num_classes, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(data, epochs=args.epochs)


if __name__ == "__main__":
    main()
