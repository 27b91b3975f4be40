"""fastnn._kernels: the compiled (Cython) and JIT (Numba) loops behind fastnn.kernels.

Raw loops on contiguous float32 buffers; they validate nothing. Call them through
fastnn.kernels, which checks shapes, dtypes and strides first.
"""
