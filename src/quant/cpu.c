/*
 * cpu: which path the fast kernels take. The CPU's vector level is asked
 * once and cached by core/dtype.c (mq_dtype_simd: MQ_NO_SIMD, MQ_SIMD), the
 * quant layer's only global state, documented at mq_quant_kernel_name.
 */
#include "kernel.h"

int mq_cpu_avx2(void)
{
#ifdef MQ_HAVE_AVX2
	return mq_dtype_simd() >= MQ_SIMD_AVX2;
#else
	return 0;
#endif
}

int mq_cpu_avx512(void)
{
#ifdef MQ_HAVE_AVX2
	return mq_dtype_simd() == MQ_SIMD_AVX512;
#else
	return 0;
#endif
}

const char *mq_quant_kernel_name(void)
{
	return mq_dtype_simd_name(mq_cpu_avx512() ? MQ_SIMD_AVX512 : mq_cpu_avx2() ? MQ_SIMD_AVX2 : MQ_SIMD_SCALAR);
}
