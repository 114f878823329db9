/*
 * cpu: may the fast kernels take their AVX2 path? Asked once, cached (the
 * quant layer's only global state, documented at mq_quant_kernel_name).
 */
#include "kernel.h"

#include <stdlib.h>

#ifdef MQ_HAVE_AVX2
#include <cpuid.h>

/*
 * AVX2 and F16C, and an OS that saves the YMM registers (XCR0 bits 1 and 2),
 * as gcc's __builtin_cpu_supports checks them; read from cpuid directly
 * because clang 14 does not know the "f16c" feature name.
 */
static int cpu_has_avx2_f16c(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	if (!(c & bit_OSXSAVE) || !(c & bit_AVX) || !(c & bit_F16C))
		return 0;
	unsigned xcr0_lo, xcr0_hi;
	__asm__ __volatile__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
	if ((xcr0_lo & 6u) != 6u)
		return 0;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return 0;
	return (b & bit_AVX2) != 0;
}

int mq_cpu_avx2(void)
{
	static int have = -1;
	if (have < 0)
		have = cpu_has_avx2_f16c() && !getenv("MQ_NO_SIMD");
	return have;
}
#else
int mq_cpu_avx2(void)
{
	return 0;
}
#endif

const char *mq_quant_kernel_name(void)
{
	return mq_cpu_avx2() ? "avx2" : "scalar";
}
