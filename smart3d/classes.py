"""The benchmark's shape classes (one procedural family each, see ``smart3d.shapes``).

The order is the class id: the transformer's class embedding, the classifier's outputs and the
image encoder's class head all index this tuple; appending or reordering classes invalidates the
shipped weights.
"""

CLASSES: tuple[str, ...] = ("airplane", "bed", "bench", "bookshelf", "bottle", "car", "chair", "lamp", "mug", "sofa",
                            "table", "vase")
