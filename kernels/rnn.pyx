# Recurrent time loops (SimpleRNN, LSTM, GRU) over a share of the batch rows, forward and
# backward through time, float32.
#
# Design note. fastnn.kernels.rnn computes the input projection of every time step as ONE GEMM
# beforehand (z = x @ W + b, (N, T, G*U), G gates) and the weight gradients as ONE GEMM each
# afterwards (dW = x^T dz, dU = h_prev^T dz_rec over all steps). What is left, and lives here,
# is the sequential part: per step, one recurrent GEMM h_{t-1} @ U (rn_gemm, U packed once per
# call into NR-wide panels per gate, kept in L2) accumulated into the step's rows of z, then
# one pass per row over the gates (activations from activation.pxd's vectorised loops, the
# cell update, the mask select, the output write). Backward walks the steps in reverse with
# the gates kept from the forward pass: the gate gradients of a step, then one GEMM
# dz_rec @ U^T for the gradient of h_{t-1}.
#  - Layout: z, a (activated gates), the per-step caches and dz are (N, T, .) indexed by the
#    real time t (so dW, dx and dU are plain GEMMs over N*T rows); outputs y are (N, T, U) in
#    step order (reversed time with go_backwards, as Keras returns them).
#  - Masks (N, T) uint8: at a masked step the states keep their values and the output is the
#    previous output (zeros before the first valid step, or always with zero_output): Keras's
#    rnn(). Every row is computed (caches stay defined) and then selected.
#  - Rows are independent through the whole sequence, so a thread takes a contiguous share of
#    rows and runs every step without synchronising; rn_gemm computes each row with the same
#    operation sequence whatever its position, so results do not depend on the thread count.
#  - Recurrent dropout masks (N, G, U): h_{t-1} * m_g feeds gate g's GEMM (Keras's
#    implementation=1 with one mask per gate; a single-mask cell passes G equal masks).
#  - kinds: 0 SimpleRNN, 1 LSTM (gates i f c o), 2 GRU reset_after (z r h; recurrent bias
#    brec), 3 GRU reset_after=False (the h gate's GEMM on r * h_{t-1} after z and r).
# No checks here: fastnn.kernels.rnn validates every argument and sizes every buffer.

from libc.string cimport memcpy, memset
from .activation cimport fnn_act_forward, fnn_act_backward

cdef extern from "rnn.h" nogil:
    int rn_isa_ok(int isa)
    Py_ssize_t rn_nr(int isa)
    Py_ssize_t rn_packed_size(int isa, Py_ssize_t k, Py_ssize_t n)
    void rn_pack(int isa, Py_ssize_t k, Py_ssize_t n, const float* b, Py_ssize_t rsb,
                 Py_ssize_t csb, float* bp)
    void rn_gemm(int isa, Py_ssize_t m, Py_ssize_t k, Py_ssize_t n, const float* a,
                 Py_ssize_t lda, const float* bp, float* c, Py_ssize_t ldc, int accumulate)
    void rn_add(const float* a, const float* b, float* y, Py_ssize_t u)
    void rn_mul(const float* a, const float* b, float* y, Py_ssize_t u)
    void rn_addmul(const float* a, const float* b, float* y, Py_ssize_t u)
    void rn_lstm_c(const float* a, const float* cp, float* c, Py_ssize_t u)
    void rn_lstm_b1(const float* a, const float* hc, const float* dh, float* dhc, float* da,
                    Py_ssize_t u)
    void rn_lstm_b2(const float* a, const float* cp, const float* dct, float* da, float* dcp,
                    Py_ssize_t u)
    void rn_lstm_row(int isa, const float* z, const float* cp, float* a, float* c, float* hc,
                     float* h, Py_ssize_t u)
    void rn_lstm_brow(const float* a, const float* hc, const float* cp, const float* dh,
                      float* dc, float* da, Py_ssize_t u)
    void rn_gru_h(const float* z, const float* hp, const float* hh, float* h, Py_ssize_t u)
    void rn_gru_b(const float* z, const float* hp, const float* hh, const float* dh, float* dz,
                  float* dhh, float* dhp, Py_ssize_t u)

cdef enum:
    SIMPLE = 0
    LSTM = 1
    GRU_AFTER = 2
    GRU_BEFORE = 3


cdef void _apply_isa(int isa) noexcept nogil:
    pass                  # the flavour is passed to every call (fastnn.kernels.rnn reads get_isa)

include "isa.pxi"     # _isa, isa_supported, get_isa, set_isa (FASTNN_ISA via fastnn.kernels.isa)


def isa_ok(int isa):
    """True if this CPU runs flavour isa (0 portable, 1 AVX2+FMA, 2 AVX-512)."""
    return bool(rn_isa_ok(isa)) and bool(fnn_isa_supported(isa))


def packed_size(int isa, Py_ssize_t k, Py_ssize_t n):
    """Floats of one packed k x n block (per gate) for flavour isa."""
    return rn_packed_size(isa, k, n)


def gemm(int isa, const float[:, ::1] a, const float[:, :] b, float[:, ::1] c, bint accumulate,
         float[::1] bp):
    """c (+)= a @ b through the packed recurrent GEMM (tests and benchmarks)."""
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = b.shape[1]
    with nogil:
        rn_pack(isa, k, n, &b[0, 0], b.strides[0] // 4, b.strides[1] // 4, &bp[0])
        rn_gemm(isa, m, k, n, &a[0, 0], k, &bp[0], &c[0, 0], n, accumulate)


cdef struct Spec:
    int kind, isa, G, act, rec, go_back, zero_out
    Py_ssize_t N, T, U
    float pa[4]
    float pr[4]


cdef void _params(object p, float* out):
    cdef int i
    for i in range(4):
        out[i] = p[i] if i < len(p) else 0.0


cdef void _pack_forward(const Spec* s, const float* u, float* pk) noexcept nogil:
    """gate g's U block (U x U, columns g*U.. of u (U, G*U)) at pk + g*ps"""
    cdef Py_ssize_t ps = rn_packed_size(s.isa, s.U, s.U), g
    for g in range(s.G):
        rn_pack(s.isa, s.U, s.U, u + g * s.U, s.G * s.U, 1, pk + g * ps)


cdef void _pack_backward(const Spec* s, const float* u, float* pk) noexcept nogil:
    """gate g's U block transposed (rows of the gate's columns): dh = dz_g @ U_g^T"""
    cdef Py_ssize_t ps = rn_packed_size(s.isa, s.U, s.U), g
    for g in range(s.G):
        rn_pack(s.isa, s.U, s.U, u + g * s.U, 1, s.G * s.U, pk + g * ps)


cdef void _rec_gemm(const Spec* s, Py_ssize_t g, Py_ssize_t R, const float* hs, const float* rm,
                    float* ah, const float* pk, float* c, Py_ssize_t ldc, int acc) noexcept nogil:
    """c (+)= (hs * rm_g) @ U_g for the R rows of the share (rm NULL: no dropout mask)"""
    cdef Py_ssize_t ps = rn_packed_size(s.isa, s.U, s.U), U = s.U, r
    cdef const float* a = hs
    if rm != NULL:
        for r in range(R):
            rn_mul(hs + r * U, rm + (r * s.G + g) * U, ah + r * U, U)
        a = ah
    rn_gemm(s.isa, R, U, U, a, U, pk + g * ps, c, ldc, acc)


cdef void _forward_rows(const Spec* s, Py_ssize_t n0, Py_ssize_t n1,
                        float* z, const float* u, const float* brec, const float* h0,
                        const float* c0, const unsigned char* mask, const float* rmask,
                        float* y, float* hT, float* cT,
                        float* ca, float* chp, float* ccp, float* ccc, float* chc, float* crh,
                        float* ws) noexcept nogil:
    cdef Py_ssize_t T = s.T, U = s.U, G = s.G, GU = s.G * s.U, R = n1 - n0
    cdef Py_ssize_t ps = rn_packed_size(s.isa, U, U)
    cdef Py_ssize_t st, t, r, n, row, g
    cdef float* pk = ws
    cdef float* hs = pk + G * ps            # (R, U) state h
    cdef float* cs = hs + R * U             # (R, U) state c (LSTM)
    cdef float* ah = cs + R * U             # (R, U) masked h / r * h
    cdef float* rr = ah + R * U             # (R, GU) recurrent GEMM (GRU reset_after)
    cdef float* sa = rr + R * GU            # (R, GU) gates when not kept
    cdef float* shn = sa + R * GU           # (R, U) candidate h
    cdef float* scc = shn + R * U           # (R, U) candidate c when not kept
    cdef float* shc = scc + R * U           # (R, U) act(c) when not kept
    cdef float* srh = shc + R * U           # (R, U) r-side of the h gate when not kept
    cdef const float* rm = NULL
    cdef float *zr, *ar, *hn, *ccr, *hcr, *rhr, *yr
    cdef int valid
    # without dropout masks and with gates whole panels wide, the per-gate packs side by side
    # are the pack of all of U: one GEMM call per step (measured 1.3x faster loops at M5)
    cdef bint whole = rmask == NULL and U % rn_nr(s.isa) == 0
    # LSTM with Keras's default activations: one fused pass per row (rn_lstm_row: the gates'
    # sigmoids and tanhs as one rational tanh each, the cell update, act(c), h), measured
    # ~2x faster than five activation passes; other activations take the generic passes
    cdef bint fused = s.kind == LSTM and s.act == 9 and s.rec == 6 and s.pa[0] == 0
    _pack_forward(s, u, pk)
    memcpy(hs, h0 + n0 * U, R * U * sizeof(float))
    if s.kind == LSTM:
        memcpy(cs, c0 + n0 * U, R * U * sizeof(float))
    if rmask != NULL:
        rm = rmask + n0 * G * U
    for st in range(T):
        t = T - 1 - st if s.go_back else st
        if chp != NULL:
            for r in range(R):
                memcpy(chp + ((n0 + r) * T + t) * U, hs + r * U, U * sizeof(float))
                if s.kind == LSTM:
                    memcpy(ccp + ((n0 + r) * T + t) * U, cs + r * U, U * sizeof(float))
        zr = z + (n0 * T + t) * GU
        if (s.kind == SIMPLE or s.kind == LSTM) and whole:
            rn_gemm(s.isa, R, U, GU, hs, U, pk, zr, T * GU, 1)
        elif s.kind == GRU_AFTER and whole:
            rn_gemm(s.isa, R, U, GU, hs, U, pk, rr, GU, 0)
        elif s.kind == SIMPLE or s.kind == LSTM:
            for g in range(G):
                _rec_gemm(s, g, R, hs, rm, ah, pk, zr + g * U, T * GU, 1)
        elif s.kind == GRU_AFTER:
            for g in range(G):
                _rec_gemm(s, g, R, hs, rm, ah, pk, rr + g * U, GU, 0)
        else:
            for g in range(2):
                _rec_gemm(s, g, R, hs, rm, ah, pk, zr + g * U, T * GU, 1)
        # gates, candidate states
        for r in range(R):
            n = n0 + r
            row = n * T + t
            zr = z + row * GU
            ar = ca + row * GU if ca != NULL else sa + r * GU
            hn = shn + r * U
            if s.kind == SIMPLE:
                fnn_act_forward(s.act, zr, ar, U, s.pa)
                memcpy(hn, ar, U * sizeof(float))
            elif s.kind == LSTM and fused:
                ccr = ccc + row * U if ccc != NULL else scc + r * U
                hcr = chc + row * U if chc != NULL else shc + r * U
                rn_lstm_row(s.isa, zr, cs + r * U, ar, ccr, hcr, hn, U)
            elif s.kind == LSTM:
                ccr = ccc + row * U if ccc != NULL else scc + r * U
                hcr = chc + row * U if chc != NULL else shc + r * U
                fnn_act_forward(s.rec, zr, ar, 2 * U, s.pr)
                fnn_act_forward(s.act, zr + 2 * U, ar + 2 * U, U, s.pa)
                fnn_act_forward(s.rec, zr + 3 * U, ar + 3 * U, U, s.pr)
                rn_lstm_c(ar, cs + r * U, ccr, U)
                fnn_act_forward(s.act, ccr, hcr, U, s.pa)
                rn_mul(ar + 3 * U, hcr, hn, U)
            elif s.kind == GRU_AFTER:
                rhr = crh + row * U if crh != NULL else srh + r * U
                rn_add(rr + r * GU, brec, rr + r * GU, GU)
                rn_add(zr, rr + r * GU, zr, 2 * U)
                fnn_act_forward(s.rec, zr, ar, 2 * U, s.pr)
                memcpy(rhr, rr + r * GU + 2 * U, U * sizeof(float))
                rn_addmul(ar + U, rhr, zr + 2 * U, U)
                fnn_act_forward(s.act, zr + 2 * U, ar + 2 * U, U, s.pa)
                rn_gru_h(ar, hs + r * U, ar + 2 * U, hn, U)
            else:   # GRU_BEFORE, first half: z, r and the h gate's GEMM operand r * h (* m_h)
                rhr = crh + row * U if crh != NULL else srh + r * U
                fnn_act_forward(s.rec, zr, ar, 2 * U, s.pr)
                rn_mul(ar + U, hs + r * U, rhr, U)
                if rm != NULL:
                    rn_mul(rhr, rm + (r * G + 2) * U, rhr, U)
                memcpy(ah + r * U, rhr, U * sizeof(float))
        if s.kind == GRU_BEFORE:
            rn_gemm(s.isa, R, U, U, ah, U, pk + 2 * ps, z + (n0 * T + t) * GU + 2 * U, T * GU, 1)
            for r in range(R):
                row = (n0 + r) * T + t
                zr = z + row * GU
                ar = ca + row * GU if ca != NULL else sa + r * GU
                fnn_act_forward(s.act, zr + 2 * U, ar + 2 * U, U, s.pa)
                rn_gru_h(ar, hs + r * U, ar + 2 * U, shn + r * U, U)
        # mask select, states, outputs
        for r in range(R):
            n = n0 + r
            valid = mask == NULL or mask[n * T + t] != 0
            yr = y + (n * T + st) * U
            if valid:
                memcpy(hs + r * U, shn + r * U, U * sizeof(float))
                if s.kind == LSTM:
                    ccr = ccc + (n * T + t) * U if ccc != NULL else scc + r * U
                    memcpy(cs + r * U, ccr, U * sizeof(float))
                memcpy(yr, shn + r * U, U * sizeof(float))
            elif s.zero_out or st == 0:
                memset(yr, 0, U * sizeof(float))
            else:
                memcpy(yr, yr - U, U * sizeof(float))
    memcpy(hT + n0 * U, hs, R * U * sizeof(float))
    if s.kind == LSTM:
        memcpy(cT + n0 * U, cs, R * U * sizeof(float))


cdef void _backward_rows(const Spec* s, Py_ssize_t n0, Py_ssize_t n1,
                         const float* z, const float* u, const unsigned char* mask,
                         const float* rmask, const float* dy, const float* dyl,
                         const float* dhT, const float* dcT,
                         const float* ca, const float* chp, const float* ccp, const float* ccc,
                         const float* chc, const float* crh,
                         float* dz, float* drec, float* dh0, float* dc0, float* ws) noexcept nogil:
    cdef Py_ssize_t T = s.T, U = s.U, G = s.G, GU = s.G * s.U, R = n1 - n0
    cdef Py_ssize_t ps = rn_packed_size(s.isa, U, U)
    cdef Py_ssize_t st, t, r, n, row, g, gates
    cdef float* pk = ws
    cdef float* dhs = pk + G * ps           # (R, U) gradient of the state h
    cdef float* dcs = dhs + R * U           # (R, U) gradient of the state c (LSTM)
    cdef float* doc = dcs + R * U           # (R, U) gradient of the output carried back
    cdef float* gh = doc + R * U            # (R, U) gradient of the candidate h
    cdef float* tmp = gh + R * U            # (R, U) scratch (GEMM out, dhh, dhc)
    cdef unsigned char* val = <unsigned char*>(tmp + R * U)   # (R,) valid rows of the step
    cdef const float* rm = NULL
    cdef const float *zr, *ar, *hpr
    cdef float *dzr, *drr
    cdef float* dwork
    cdef int valid
    cdef float* pkf = <float*>(val + R + 64 - (R % 64))     # (GU x U) packed U^T, one panel set
    cdef bint whole = rmask == NULL
    # LSTM with Keras's default activations: one fused pass per row (rn_lstm_brow), as forward
    cdef bint fused = s.kind == LSTM and s.act == 9 and s.rec == 6 and s.pa[0] == 0
    _pack_backward(s, u, pk)
    if whole and s.kind != GRU_BEFORE:
        rn_pack(s.isa, GU, U, u, 1, GU, pkf)
    if dhT != NULL:
        memcpy(dhs, dhT + n0 * U, R * U * sizeof(float))
    else:
        memset(dhs, 0, R * U * sizeof(float))
    if s.kind == LSTM:
        if dcT != NULL:
            memcpy(dcs, dcT + n0 * U, R * U * sizeof(float))
        else:
            memset(dcs, 0, R * U * sizeof(float))
    memset(doc, 0, R * U * sizeof(float))
    if rmask != NULL:
        rm = rmask + n0 * G * U
    for st in range(T - 1, -1, -1):
        t = T - 1 - st if s.go_back else st
        for r in range(R):
            n = n0 + r
            row = n * T + t
            valid = mask == NULL or mask[row] != 0
            val[r] = valid
            # gradient reaching this step's output
            memcpy(gh + r * U, doc + r * U, U * sizeof(float))
            if dy != NULL:
                rn_add(gh + r * U, dy + (n * T + st) * U, gh + r * U, U)
            if dyl != NULL and st == T - 1:
                rn_add(gh + r * U, dyl + n * U, gh + r * U, U)
            dzr = dz + row * GU
            drr = drec + row * GU if drec != NULL else dzr
            if not valid:
                if s.zero_out:
                    memset(doc + r * U, 0, U * sizeof(float))
                else:
                    memcpy(doc + r * U, gh + r * U, U * sizeof(float))
                memset(dzr, 0, GU * sizeof(float))
                if drec != NULL:
                    memset(drr, 0, GU * sizeof(float))
                continue
            memset(doc + r * U, 0, U * sizeof(float))
            rn_add(gh + r * U, dhs + r * U, gh + r * U, U)      # dL/d(candidate h)
            zr = z + row * GU
            ar = ca + row * GU
            if s.kind == SIMPLE:
                fnn_act_backward(s.act, zr, ar, gh + r * U, dzr, U, s.pa)
                memset(dhs + r * U, 0, U * sizeof(float))
            elif s.kind == LSTM and fused:
                rn_lstm_brow(ar, chc + row * U, ccp + row * U, gh + r * U, dcs + r * U, dzr, U)
                memset(dhs + r * U, 0, U * sizeof(float))
            elif s.kind == LSTM:
                dwork = tmp + r * U
                rn_lstm_b1(ar, chc + row * U, gh + r * U, dwork, dzr, U)
                fnn_act_backward(s.act, ccc + row * U, chc + row * U, dwork, dwork, U, s.pa)
                rn_add(dwork, dcs + r * U, dwork, U)
                rn_lstm_b2(ar, ccp + row * U, dwork, dzr, dcs + r * U, U)
                fnn_act_backward(s.rec, zr, ar, dzr, dzr, 2 * U, s.pr)
                fnn_act_backward(s.act, zr + 2 * U, ar + 2 * U, dzr + 2 * U, dzr + 2 * U, U, s.pa)
                fnn_act_backward(s.rec, zr + 3 * U, ar + 3 * U, dzr + 3 * U, dzr + 3 * U, U, s.pr)
                memset(dhs + r * U, 0, U * sizeof(float))
            else:
                hpr = chp + row * U
                dwork = tmp + r * U
                # dz_a -> dzr[0:U], dhh -> dwork, direct dh_{t-1} = dh * z -> dhs
                rn_gru_b(ar, hpr, ar + 2 * U, gh + r * U, dzr, dwork, dhs + r * U, U)
                fnn_act_backward(s.act, zr + 2 * U, ar + 2 * U, dwork, dzr + 2 * U, U, s.pa)
                if s.kind == GRU_AFTER:
                    rn_mul(dzr + 2 * U, crh + row * U, dzr + U, U)          # dr
                    fnn_act_backward(s.rec, zr, ar, dzr, dzr, 2 * U, s.pr)
                    memcpy(drr, dzr, 2 * U * sizeof(float))
                    rn_mul(dzr + 2 * U, ar + U, drr + 2 * U, U)
        if s.kind == GRU_BEFORE:
            # d(r * h_{t-1} * m_h) = dz_h @ U_h^T, then dr and the direct dh_{t-1} term
            rn_gemm(s.isa, R, U, U, dz + (n0 * T + t) * GU + 2 * U, T * GU, pk + 2 * ps, tmp, U, 0)
            for r in range(R):
                if not val[r]:
                    continue
                row = (n0 + r) * T + t
                dzr = dz + row * GU
                ar = ca + row * GU
                hpr = chp + row * U
                if rm != NULL:
                    rn_mul(tmp + r * U, rm + (r * G + 2) * U, tmp + r * U, U)
                rn_mul(tmp + r * U, hpr, dzr + U, U)                      # dr
                rn_addmul(tmp + r * U, ar + U, dhs + r * U, U)
                fnn_act_backward(s.rec, z + row * GU, ar, dzr, dzr, 2 * U, s.pr)
        # dh_{t-1} += sum over gates of dz_rec_g @ U_g^T (* m_g); masked rows have dz_rec = 0
        # and keep their carried dh (x + 0 = x), so every row goes through the GEMM
        gates = 2 if s.kind == GRU_BEFORE else G
        drr = (drec if drec != NULL else dz) + (n0 * T + t) * GU
        if whole and s.kind != GRU_BEFORE:      # the same sums in the same order, one call
            rn_gemm(s.isa, R, GU, U, drr, T * GU, pkf, dhs, U, 1)
        for g in range(gates):
            if whole and s.kind != GRU_BEFORE:
                break
            if rm == NULL:
                rn_gemm(s.isa, R, U, U, drr + g * U, T * GU, pk + g * ps, dhs, U, 1)
            else:
                rn_gemm(s.isa, R, U, U, drr + g * U, T * GU, pk + g * ps, tmp, U, 0)
                for r in range(R):
                    if val[r]:
                        rn_addmul(tmp + r * U, rm + (r * G + g) * U, dhs + r * U, U)
    memcpy(dh0 + n0 * U, dhs, R * U * sizeof(float))
    if s.kind == LSTM:
        memcpy(dc0 + n0 * U, dcs, R * U * sizeof(float))


def forward_ws(int isa, int G, Py_ssize_t U, Py_ssize_t R):
    """Floats of the per-thread workspace of forward_rows for R rows."""
    return G * rn_packed_size(isa, U, U) + 2 * R * G * U + 8 * R * U


def backward_ws(int isa, int G, Py_ssize_t U, Py_ssize_t R):
    """Floats of the per-thread workspace of backward_rows for R rows."""
    return G * rn_packed_size(isa, U, U) + 5 * R * U + R // 4 + 32 + rn_packed_size(isa, G * U, U)


cdef void _spec(Spec* s, int kind, int isa, int G, Py_ssize_t N, Py_ssize_t T, Py_ssize_t U,
                int act, object pa, int rec, object pr, bint go_back, bint zero_out):
    s.kind, s.isa, s.G, s.N, s.T, s.U = kind, isa, G, N, T, U
    s.act, s.rec, s.go_back, s.zero_out = act, rec, go_back, zero_out
    _params(pa, s.pa)
    _params(pr, s.pr)


def forward_rows(int kind, int isa, int G, int act, tuple pa, int rec, tuple pr,
                 bint go_back, bint zero_out, Py_ssize_t n0, Py_ssize_t n1,
                 float[:, :, ::1] z,                # IN x@W+b (N, T, GU) / OUT pre-activations
                 const float[:, ::1] u,             # IN (U, GU)
                 const float[::1] brec,             # IN (GU,) (GRU reset_after) or None
                 const float[:, ::1] h0,            # IN (N, U)
                 const float[:, ::1] c0,            # IN (N, U) (LSTM) or None
                 const unsigned char[:, ::1] mask,  # IN (N, T) or None
                 const float[:, :, ::1] rmask,      # IN (N, G, U) or None
                 float[:, :, ::1] y,                # OUT (N, T, U) step order
                 float[:, ::1] hT,                  # OUT (N, U)
                 float[:, ::1] cT,                  # OUT (N, U) (LSTM) or None
                 float[:, :, ::1] ca,               # OUT kept gates (N, T, GU) or None
                 float[:, :, ::1] chp,              # OUT kept h_{t-1} (N, T, U) or None
                 float[:, :, ::1] ccp,              # OUT kept c_{t-1} (LSTM) or None
                 float[:, :, ::1] ccc,              # OUT kept candidate c (LSTM) or None
                 float[:, :, ::1] chc,              # OUT kept act(c) (LSTM) or None
                 float[:, :, ::1] crh,              # OUT kept h-gate recurrent term (GRU) or None
                 float[::1] ws):                    # SCRATCH forward_ws(isa, G, U, n1 - n0)
    """The forward time loop of rows [n0, n1)."""
    cdef Spec s
    _spec(&s, kind, isa, G, z.shape[0], z.shape[1], u.shape[0], act, pa, rec, pr, go_back, zero_out)
    if n1 <= n0:
        return
    with nogil:
        _forward_rows(&s, n0, n1, &z[0, 0, 0], &u[0, 0], NULL if brec is None else &brec[0],
                      &h0[0, 0], NULL if c0 is None else &c0[0, 0],
                      NULL if mask is None else &mask[0, 0],
                      NULL if rmask is None else &rmask[0, 0, 0],
                      &y[0, 0, 0], &hT[0, 0], NULL if cT is None else &cT[0, 0],
                      NULL if ca is None else &ca[0, 0, 0], NULL if chp is None else &chp[0, 0, 0],
                      NULL if ccp is None else &ccp[0, 0, 0], NULL if ccc is None else &ccc[0, 0, 0],
                      NULL if chc is None else &chc[0, 0, 0], NULL if crh is None else &crh[0, 0, 0],
                      &ws[0])


def backward_rows(int kind, int isa, int G, int act, tuple pa, int rec, tuple pr,
                  bint go_back, bint zero_out, Py_ssize_t n0, Py_ssize_t n1,
                  const float[:, :, ::1] z,         # IN pre-activations (N, T, GU)
                  const float[:, ::1] u,            # IN (U, GU)
                  const unsigned char[:, ::1] mask, # IN (N, T) or None
                  const float[:, :, ::1] rmask,     # IN (N, G, U) or None
                  const float[:, :, ::1] dy,        # IN (N, T, U) step order, or None
                  const float[:, ::1] dyl,          # IN (N, U) gradient of the last output, or None
                  const float[:, ::1] dhT,          # IN (N, U) or None
                  const float[:, ::1] dcT,          # IN (N, U) or None
                  const float[:, :, ::1] ca,        # IN kept gates
                  const float[:, :, ::1] chp,       # IN kept h_{t-1}
                  const float[:, :, ::1] ccp,       # IN kept c_{t-1} (LSTM) or None
                  const float[:, :, ::1] ccc,       # IN kept candidate c (LSTM) or None
                  const float[:, :, ::1] chc,       # IN kept act(c) (LSTM) or None
                  const float[:, :, ::1] crh,       # IN kept h-gate term (GRU) or None
                  float[:, :, ::1] dz,              # OUT (N, T, GU) d(x@W+b)
                  float[:, :, ::1] drec,            # OUT (N, T, GU) d(h@U) (GRU reset_after) or None
                  float[:, ::1] dh0,                # OUT (N, U)
                  float[:, ::1] dc0,                # OUT (N, U) (LSTM) or None
                  float[::1] ws):                   # SCRATCH backward_ws(isa, G, U, n1 - n0)
    """The backward time loop of rows [n0, n1)."""
    cdef Spec s
    _spec(&s, kind, isa, G, z.shape[0], z.shape[1], u.shape[0], act, pa, rec, pr, go_back, zero_out)
    if n1 <= n0:
        return
    with nogil:
        _backward_rows(&s, n0, n1, &z[0, 0, 0], &u[0, 0], NULL if mask is None else &mask[0, 0],
                       NULL if rmask is None else &rmask[0, 0, 0],
                       NULL if dy is None else &dy[0, 0, 0], NULL if dyl is None else &dyl[0, 0],
                       NULL if dhT is None else &dhT[0, 0], NULL if dcT is None else &dcT[0, 0],
                       &ca[0, 0, 0], &chp[0, 0, 0],
                       NULL if ccp is None else &ccp[0, 0, 0], NULL if ccc is None else &ccc[0, 0, 0],
                       NULL if chc is None else &chc[0, 0, 0], NULL if crh is None else &crh[0, 0, 0],
                       &dz[0, 0, 0], NULL if drec is None else &drec[0, 0, 0],
                       &dh0[0, 0], NULL if dc0 is None else &dc0[0, 0], &ws[0])


ctypedef fused index_t:
    int
    long long


cdef Py_ssize_t _first_bad(const index_t[::1] ids, Py_ssize_t V) noexcept nogil:
    """The position of the first id outside [0, V), or -1."""
    cdef Py_ssize_t m
    cdef long long i
    for m in range(ids.shape[0]):
        i = ids[m]
        if i < 0 or i >= V:
            return m
    return -1


def embedding_forward(const index_t[::1] ids,     # IN (M,) int32 or int64
                      const float[:, ::1] table,  # IN (V, D)
                      float[:, ::1] out):          # OUT (M, D)
    """out[m] = table[ids[m]]; returns the position of the first id outside [0, V), or -1
    (nothing is read out of bounds: the caller raises)."""
    cdef Py_ssize_t m, D = table.shape[1], bad
    with nogil:
        bad = _first_bad(ids, table.shape[0])
        if bad < 0 and D > 0:         # (D == 0: nothing to copy, and no element to address)
            for m in range(ids.shape[0]):
                memcpy(&out[m, 0], &table[ids[m], 0], D * sizeof(float))
    return bad


def embedding_backward(const index_t[::1] ids,    # IN (M,) int32 or int64, in [0, V)
                       const float[:, ::1] dout,   # IN (M, D)
                       float[:, ::1] dtable):      # OUT (V, D), zeroed here
    """dtable = scatter-add of dout's rows at ids (in row order: deterministic); returns the
    position of the first id outside [0, V) (then nothing is written), or -1."""
    cdef Py_ssize_t m, V = dtable.shape[0], D = dtable.shape[1], bad
    with nogil:
        bad = _first_bad(ids, V)
        if bad < 0 and D > 0:
            memset(&dtable[0, 0], 0, V * D * sizeof(float))
            for m in range(ids.shape[0]):
                rn_add(&dtable[ids[m], 0], &dout[m, 0], &dtable[ids[m], 0], D)
    return bad
