"""OpenMP runtime controls for the Cython kernels (one OpenMP runtime per process)."""

cimport openmp


def set_num_threads(int n):
    """Set the number of OpenMP threads used by every `prange` in fastnn._kernels."""
    openmp.omp_set_num_threads(n)


def get_max_threads():
    """Return the number of OpenMP threads a parallel region would use now."""
    return openmp.omp_get_max_threads()
