# C-level API of fastnn._kernels.norm: batch normalization over the last (channel) axis of a
# C-contiguous float32 array viewed as (M, C). Standalone functions (adding one later breaks no
# one who cimports these). No checks: the caller guarantees sizes, M >= 1 for training, and
# buffers of the stated lengths. gamma/beta may be NULL (scale=False / center=False).
# Each returns 0, or -1 when a workspace allocation failed. Backward uses mean__c (float32, from
# training forward) as a shift and refines it to the exact batch mean of x in float64.

cdef int batch_norm_train_mc(const float* x__mc, Py_ssize_t m, Py_ssize_t c,
                             const float* gamma__c, const float* beta__c,
                             float* moving_mean__c, float* moving_var__c,
                             double momentum, double epsilon,
                             float* y__mc, float* mean__c, float* invstd__c) noexcept nogil

cdef int batch_norm_inference_mc(const float* x__mc, Py_ssize_t m, Py_ssize_t c,
                                 const float* gamma__c, const float* beta__c,
                                 const float* moving_mean__c, const float* moving_var__c,
                                 double epsilon, float* y__mc) noexcept nogil

cdef int batch_norm_backward_mc(const float* dy__mc, const float* x__mc, Py_ssize_t m,
                                Py_ssize_t c, const float* gamma__c, const float* mean__c,
                                const float* invstd__c, float* dx__mc, float* dgamma__c,
                                float* dbeta__c) noexcept nogil
