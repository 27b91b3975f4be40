"""The founding study notes' experiments ("Deep Learning from Scratch", chapter 6), rebuilt on
fastnn's own model API. Each module has `run(size="full"|"tiny", out=DIR)`, which writes
`<name>.png` and `<name>.json` into DIR and returns {"png", "json", "data"}.

    optimizers   SGD ... Nadam training-loss curves on a 5-layer MLP
    init         activation histograms for std 1 / 0.01 / Xavier / He; MNIST loss per init
    vanishing    sigmoid vs ReLU deep MLP: per-layer gradient norms and loss curves
    batchnorm    training accuracy with and without BatchNormalization over 16 weight scales
    overfitting  300 samples, 7-layer MLP: no cure vs L2 weight decay vs Dropout
    search       grid vs random vs Bayesian search of learning rate and weight decay (fastnn.tuner)
    deepcnn      an AlexNet-style network vs a small ResNet on Fashion-MNIST (or MNIST): accuracy vs time
    memory       SimpleRNN vs LSTM vs GRU remembering a token L steps back; RMSprop vs Adam

Run one with `fastnn experiment NAME [--tiny] [--out DIR]`.
"""
NAMES = ("optimizers", "init", "vanishing", "batchnorm", "overfitting", "search", "deepcnn", "memory")
