/* Instruction-set flavours of fastnn's compiled kernels (one definition for every module).

   The default build targets baseline x86-64 (SSE2) so that one wheel runs on any x86-64 CPU;
   the hot loops are compiled again for AVX2+FMA and for AVX-512 (target attributes, GCC vector
   extensions) and each module picks a body at run time from a module-level flavour:

       0  portable   the baseline build (SSE2 on x86-64; whatever the compiler targets elsewhere)
       1  avx2       x86-64-v3: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE (Haswell, Zen 1-3, every
                     Intel client chip since Alder Lake)
       2  avx512     x86-64-v4: AVX-512 F, BW, CD, DQ, VL on top of v3 (Skylake-X, Ice Lake,
                     Sapphire Rapids, Zen 4/5)

   A module starts on fnn_isa_best() and `set_isa(k)` (fastnn.kernels.isa, env FASTNN_ISA)
   moves it to any flavour fnn_isa_supported(k) allows, so every flavour is testable on a CPU
   that has it. Bodies of a flavour a module lacks fall back to the next lower one it has
   (e.g. the activation loops have no AVX-512 body: flavour 2 runs their AVX2 body). */
#ifndef FASTNN_ISA_H
#define FASTNN_ISA_H

#define FNN_ISA_PORTABLE 0
#define FNN_ISA_AVX2 1
#define FNN_ISA_AVX512 2

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FNN_X86 1
#else
#define FNN_X86 0
#endif

/* 1 if this CPU (and OS: __builtin_cpu_supports checks XCR0 for the AVX state) runs flavour
   isa */
static int fnn_isa_supported(int isa) {
    if (isa == FNN_ISA_PORTABLE)
        return 1;
#if FNN_X86
    __builtin_cpu_init();
    if (isa == FNN_ISA_AVX2)
        return __builtin_cpu_supports("x86-64-v3") != 0;
    if (isa == FNN_ISA_AVX512)
        return __builtin_cpu_supports("x86-64-v4") != 0;
#endif
    return 0;
}

/* the highest flavour this CPU runs */
static int fnn_isa_best(void) {
    return fnn_isa_supported(FNN_ISA_AVX512) ? FNN_ISA_AVX512
         : fnn_isa_supported(FNN_ISA_AVX2) ? FNN_ISA_AVX2 : FNN_ISA_PORTABLE;
}

#endif
