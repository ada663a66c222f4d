"""The class names of the built-in datasets that have them (tfds' label names, written
as folder names): export_images names its class folders with them, the report its
per-class columns."""

CLASS_NAMES = {
    "fashion_mnist": ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal",
                      "shirt", "sneaker", "bag", "ankle_boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                "ship", "truck"),
}
