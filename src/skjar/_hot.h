/* SKJAR_HOT marks the functions a common load runs: reading a jar's front (_front.c),
 * its header (_json.c), the digest (_digest.c), the walk (_walk.c) and the meaning
 * checks of the usual estimators (_speedups.c). GCC and Clang place such functions
 * together (.text.hot), ahead of the rest of this library's code.
 *
 * Why: a fresh process's first load maps this library's code in 64 KiB blocks around
 * each page it runs (the kernel's fault-around), and a tiny model's peak memory over
 * pickle's is mostly that. Spread across the library as linked, the load's ~50 KiB of
 * code touched all three of its blocks (136 KiB mapped, against 92 KiB of _pickle's).
 * Which functions a load runs was found with gcov over loads of the benchmark's small
 * models; a function missing here is still correct, only farther away. */
#ifndef SKJAR_HOT_H
#define SKJAR_HOT_H
#if defined(__GNUC__) || defined(__clang__)
#define SKJAR_HOT __attribute__((hot))
#else
#define SKJAR_HOT
#endif
#endif
