"""Deep CNNs (the notes' section on deeper networks): an AlexNet-style network and a small
ResNet trained on Fashion-MNIST (MNIST when Fashion-MNIST is not on disk), test accuracy
against training time.

AlexNet-style: the notes' AlexNet shape (5 convolutions with max pooling after the 1st, 2nd
and 5th, then 3 dense layers with dropout), its widths cut to 28x28 grey images. Small ResNet:
a conv-BN-ReLU stem and three stages of two basic residual blocks (3x3 conv-BN-ReLU, 3x3
conv-BN, add, ReLU; a 1x1 strided projection where the shape changes), global average pooling
and the classifier. Both train with Adam (batch 128) for the same number of epochs; after each
epoch the test accuracy is measured outside the training clock. The figure shows which
reaches a given accuracy sooner, and where each ends.
"""
from __future__ import annotations

import time

import numpy as np

from fastnn.experiments import _common

# "full" is a 6000-image subset: the ResNet costs ~0.5 GFLOP per training image, and the figure is
# made on a shared 2-core machine; the plot's title states the sizes used
SIZES = {"full": {"n_train": 6000, "n_test": 2000, "epochs": 4, "batch": 128},
         "tiny": {"n_train": 256, "n_test": 128, "epochs": 2, "batch": 128}}


def load_images(n_train, n_test, seed=0):
    """(x_train, y_train, x_test, y_test, name): 28x28x1 float32 in [0, 1], integer labels."""
    from fastnn import datasets
    if datasets.fashion_mnist.find() is not None:
        name, mod = "Fashion-MNIST", datasets.fashion_mnist
    elif datasets.mnist.find() is not None:
        name, mod = "MNIST (Fashion-MNIST not found)", datasets.mnist
    else:
        raise FileNotFoundError("fastnn experiment deepcnn needs Fashion-MNIST or MNIST on disk: set FASTNN_DATA to "
                                "a folder with the *-idx?-ubyte.gz files.")
    (xtr, ytr), (xte, yte) = mod.load_data()
    rng = np.random.default_rng(seed)
    tr, te = rng.permutation(len(xtr))[:n_train], rng.permutation(len(xte))[:n_test]
    img = lambda x: (x.astype(np.float32) / np.float32(255.0))[..., None]  # noqa: E731
    return img(xtr[tr]), ytr[tr].astype(np.int64), img(xte[te]), yte[te].astype(np.int64), name


def alexnet_style(num_classes=10):
    """5 conv layers with max pooling after the 1st, 2nd and 5th, 3 dense layers with dropout."""
    from fastnn import Input, layers, models
    x = inp = Input((28, 28, 1))
    for i, (filters, k, pool) in enumerate(((48, 5, True), (96, 3, True), (144, 3, False), (144, 3, False),
                                            (96, 3, True)), start=1):
        x = layers.Conv2D(filters, k, padding="same", activation="relu", name=f"conv{i}")(x)
        if pool:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten()(x)
    for i in (6, 7):
        x = layers.Dropout(0.5, name=f"drop{i}")(layers.Dense(512, activation="relu", name=f"fc{i}")(x))
    return models.Model(inp, layers.Dense(num_classes, activation="softmax", name="predictions")(x),
                        name="alexnet_style")


def small_resnet(num_classes=10, widths=(32, 64, 128), blocks=2):
    """A conv-BN-ReLU stem, stages of basic residual blocks, global average pooling.

    The batch norms use momentum 0.9 (PyTorch's 0.1): with Keras's default 0.99 the moving
    statistics of 13 stacked batch norms still carried their initial (0, 1) after the ~200 steps
    of this experiment, and test accuracy stayed at 0.13 while the training loss fell to 0.04."""
    from fastnn import Input, layers, models

    def conv_bn(x, filters, strides, name, relu=True):
        x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x) if relu else x

    inp = Input((28, 28, 1))
    x = conv_bn(inp, widths[0], 1, "stem")
    for s, w in enumerate(widths):
        for b in range(blocks):
            name = f"stage{s + 1}_block{b + 1}"
            stride = 2 if s > 0 and b == 0 else 1
            shortcut = x
            if stride != 1 or x.shape[-1] != w:
                shortcut = layers.Conv2D(w, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
                shortcut = layers.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(shortcut)
            h = conv_bn(x, w, stride, f"{name}_1")
            h = conv_bn(h, w, 1, f"{name}_2", relu=False)
            x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, h]))
    x = layers.GlobalAveragePooling2D()(x)
    return models.Model(inp, layers.Dense(num_classes, activation="softmax", name="predictions")(x),
                        name="small_resnet")


def train(model, data, cfg):
    """Epochs of Adam; (training seconds, test accuracy) after each epoch, and the final loss."""
    from fastnn import optimizers
    xtr, ytr, xte, yte = data
    model.compile(optimizer=optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    clock, points, losses = 0.0, [], []
    for _ in range(cfg["epochs"]):
        t = time.perf_counter()
        h = model.fit(xtr, ytr, batch_size=cfg["batch"], epochs=1, shuffle=True, verbose=0)
        clock += time.perf_counter() - t
        acc = float(np.mean(model.predict(xte, batch_size=512, verbose=0).argmax(1) == yte))
        points.append((clock, acc))
        losses.append(float(h.history["loss"][-1]))
    return {"seconds": [p[0] for p in points], "test_accuracy": [p[1] for p in points], "train_loss": losses,
            "params": model.count_params()}


def run(size="full", out="fastnn-out"):
    from fastnn import utils
    _common.check_size(size)
    t0 = time.perf_counter()
    cfg = SIZES[size]
    xtr, ytr, xte, yte, name = load_images(cfg["n_train"], cfg["n_test"])
    results = {}
    for label, build in (("AlexNet-style", alexnet_style), ("small ResNet", small_resnet)):
        utils.set_random_seed(0)
        results[label] = train(build(), (xtr, ytr, xte, yte), cfg)
    fig = _common.figure(figsize=(8, 5))
    ax = fig.add_subplot(1, 1, 1)
    for label, r in results.items():
        ax.plot(r["seconds"], r["test_accuracy"], "o-", lw=2,
                label=f"{label} ({r['params'] / 1e6:.2f}M parameters): {r['test_accuracy'][-1]:.4f}")
    ax.set_xlabel("training time (s, fastnn on this machine's CPU)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax.set_title(f"Deep CNNs on {name}\n{cfg['n_train']} training images, {cfg['n_test']} test images, Adam, "
                 f"batch {cfg['batch']}, {cfg['epochs']} epochs (one point per epoch)", fontsize=10)
    fig.tight_layout()
    return _common.finish("deepcnn", out, fig, {"size": size, "dataset": name, **cfg, "results": results}, t0)
