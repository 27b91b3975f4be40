"""fastnn.reference: naive NumPy versions of every kernel in fastnn.kernels.

Written in the textbook style of "Deep Learning from Scratch" (im2col by Python loops over
filter offsets, pooling through im2col, per-parameter optimizer updates) for clarity, not
speed. Same function names and signatures as fastnn.kernels (without `out=` buffers). Tests use
it as the oracle; bench/ uses it as the baseline that the kernels must beat.
"""
