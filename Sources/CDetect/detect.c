// The detector's kernel sets: detect_body.h compiled once per instruction set, the choice following the
// engine's (kernels.c), so FKP_KERNELS forces both.
#include "CDetect.h"
#include "CKernels.h"

#include <string.h>

// Eight windows per vector in every set. Unsigned integer vectors: the integral sums wrap by design.
typedef uint32_t dv8u __attribute__((vector_size(32)));
typedef uint32_t dv8uu __attribute__((vector_size(32), aligned(4)));  // an unaligned load
typedef uint64_t dv8ul __attribute__((vector_size(64)));
typedef uint64_t dv8ulu __attribute__((vector_size(64), aligned(8)));
typedef int32_t dv8i __attribute__((vector_size(32)));
typedef int64_t dv8l __attribute__((vector_size(64)));
typedef float dv8f __attribute__((vector_size(32)));
typedef double dv8d __attribute__((vector_size(64)));
#define FKP_SPLAT8(type, x) ((type){(x), (x), (x), (x), (x), (x), (x), (x)})

// Macros rather than functions (a vector return value would change the ABI between the sets): eight
// consecutive windows' integral entries at `off`, 8 consecutive entries or every second of 16.
#define FKP_LOADN(vt, base, off, step)                                                                   \
    ((step) == 2 ? __builtin_shufflevector(((const vt *)((base) + (off)))[0], ((const vt *)((base) + (off)))[1], \
                                           0, 2, 4, 6, 8, 10, 12, 14)                                    \
                 : ((const vt *)((base) + (off)))[0])
#define FKP_LOAD32(base, off, step) FKP_LOADN(dv8uu, base, off, step)
#define FKP_LOAD64(base, off, step) FKP_LOADN(dv8ulu, base, off, step)
// A rectangle's sum for 8 windows (wrapping 32-bit arithmetic, exact for any window-sized rectangle),
// as float.
#define FKP_RECT8(p, x, step, a, b, c, d)                                                                 \
    __builtin_convertvector((dv8i)(FKP_LOAD32(p, (x) + (a), step) - FKP_LOAD32(p, (x) + (b), step) -      \
                                   FKP_LOAD32(p, (x) + (c), step) + FKP_LOAD32(p, (x) + (d), step)),      \
                            dv8f)

#if defined(__x86_64__)

#define FKP_DSET sse2
#define FKP_DNAME "sse2"
#include "detect_body.h"

#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#define FKP_DSET avx2
#define FKP_DNAME "avx2"
#include "detect_body.h"
#pragma clang attribute pop

static const fkp_detect_kernels *const all_sets[] = {&fkp_detect_set_avx2, &fkp_detect_set_sse2};
static const char *const all_names[] = {"avx2", "sse2", NULL};

// Whether the CPU and OS run the set, asked of the engine's chooser (its AVX2 + FMA set needs a superset).
static int supported(const fkp_detect_kernels *k) {
    return k == &fkp_detect_set_sse2 || fkp_kernels_named("avx2+fma") != NULL;
}

static const fkp_detect_kernels *follow_engine(void) {
    // The engine's baseline gets the baseline; every engine set above it (AVX2 + FMA, its wide
    // variant, AVX-512) implies AVX2.
    return strcmp(fkp_kernels_get()->name, "sse2") == 0 ? &fkp_detect_set_sse2 : &fkp_detect_set_avx2;
}

#else  // arm64 (NEON is its baseline) and anything else: one set

#define FKP_DSET base
#define FKP_DNAME "base"
#include "detect_body.h"

static const fkp_detect_kernels *const all_sets[] = {&fkp_detect_set_base};
static const char *const all_names[] = {"base", NULL};
static int supported(const fkp_detect_kernels *k) { (void)k; return 1; }
static const fkp_detect_kernels *follow_engine(void) { return &fkp_detect_set_base; }

#endif

const char *const *fkp_detect_kernels_all_names(void) { return all_names; }

const fkp_detect_kernels *fkp_detect_kernels_named(const char *name) {
    for (size_t i = 0; i < sizeof all_sets / sizeof all_sets[0]; i++) {
        if (strcmp(all_sets[i]->name, name) == 0) return supported(all_sets[i]) ? all_sets[i] : NULL;
    }
    return NULL;
}

const fkp_detect_kernels *fkp_detect_kernels_get(void) {
    // Racing first calls compute the same answer; the pointer store is atomic.
    static const fkp_detect_kernels *_Atomic chosen;
    const fkp_detect_kernels *k = chosen;
    if (!k) { k = follow_engine(); chosen = k; }
    return k;
}
