// The kernel sets: kernels_body.h compiled once per instruction set, and the choice among them by what
// the CPU and the OS support (cpuid + xgetbv on x86-64), made once.
#include "CKernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));  // an unaligned 16-float load/store
// max(v, 0) lane-wise as a mask: negative lanes cleared, NaN kept (C has no vector ?:).
#define relu16(v) ((v16)((v16i)(v) & ~(v16i)((v) < 0)))

#if defined(__x86_64__)
#include <cpuid.h>

// Orders the non-temporal stores of a kernel before whatever the caller does next.
#define FKP_STORE_FENCE() __builtin_ia32_sfence()

#define FKP_SET sse2
#define FKP_NAME "sse2"
#define FKP_MR 4
#define FKP_VW 4
#include "kernels_body.h"

#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define FKP_SET avx2
#define FKP_NAME "avx2+fma"
#define FKP_MR 6
#define FKP_VW 8
#include "kernels_body.h"
// The AVX-512 set's tile shapes (MR 12, 16-float groups) on AVX2: never chosen by itself, it lets the
// tests run the shape logic of the AVX-512 set on a machine without AVX-512.
#define FKP_SET avx2w
#define FKP_NAME "avx2+fma-wide"
#define FKP_MR 12
#define FKP_VW 16
#include "kernels_body.h"
#pragma clang attribute pop

#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx2,fma"))), apply_to = function)
#define FKP_SET avx512
#define FKP_NAME "avx512"
#define FKP_MR 12
#define FKP_VW 16
#include "kernels_body.h"
#pragma clang attribute pop

static unsigned long long xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

/// 0 = baseline, 1 = AVX2 + FMA, 2 = AVX-512 (F + VL), each with the OS saving the registers.
static int x86_level(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!(fma && osxsave && avx)) return 0;
    unsigned long long xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return 0;  // XMM and YMM state
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512vl = (b >> 31) & 1;
    if (!avx2) return 0;
    if (avx512f && avx512vl && (xcr0 & 0xE6) == 0xE6) return 2;  // + opmask and ZMM state
    return 1;
}

static const fkp_kernels *const all_sets[] = {&fkp_set_avx512, &fkp_set_avx2, &fkp_set_avx2w, &fkp_set_sse2};
static const char *const all_names[] = {"avx512", "avx2+fma", "avx2+fma-wide", "sse2", NULL};

static int supported(const fkp_kernels *k) {
    int level = x86_level();
    if (k == &fkp_set_avx512) return level >= 2;
    if (k == &fkp_set_avx2 || k == &fkp_set_avx2w) return level >= 1;
    return 1;
}

#else  // arm64 (NEON and FMA are part of the baseline) and anything else: one set

#define FKP_STORE_FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)

#if defined(__aarch64__)
#define FKP_BASE_NAME "neon"
#else
#define FKP_BASE_NAME "generic"
#endif
#define FKP_SET base
#define FKP_NAME FKP_BASE_NAME
#define FKP_MR 6
#define FKP_VW 8
#include "kernels_body.h"

static const fkp_kernels *const all_sets[] = {&fkp_set_base};
static const char *const all_names[] = {FKP_BASE_NAME, NULL};
static int supported(const fkp_kernels *k) { (void)k; return 1; }

#endif

const char *const *fkp_kernels_all_names(void) { return all_names; }

const fkp_kernels *fkp_kernels_named(const char *name) {
    for (size_t i = 0; i < sizeof all_sets / sizeof all_sets[0]; i++) {
        if (strcmp(all_sets[i]->name, name) == 0) return supported(all_sets[i]) ? all_sets[i] : NULL;
    }
    return NULL;
}

static const fkp_kernels *choose(void) {
    const char *forced = getenv("FKP_KERNELS");
    if (forced && *forced) {
        const fkp_kernels *k = fkp_kernels_named(forced);
        if (k) return k;
        fprintf(stderr, "fkp-batch: warning: FKP_KERNELS=%s is not a kernel set this CPU supports; using the best\n", forced);
    }
    for (size_t i = 0; i < sizeof all_sets / sizeof all_sets[0]; i++) {
        if (supported(all_sets[i])) return all_sets[i];
    }
    return all_sets[sizeof all_sets / sizeof all_sets[0] - 1];
}

const fkp_kernels *fkp_kernels_get(void) {
    // Racing first calls compute the same answer; the pointer store is atomic.
    static const fkp_kernels *_Atomic chosen;
    const fkp_kernels *k = chosen;
    if (!k) { k = choose(); chosen = k; }
    return k;
}
