/* Strided views read into row-major order, against an element-by-element reference. */
#include "test_util.h"

#include "gather.h"

struct memfile {
	const unsigned char *data;
	uint64_t size;
	int reads;
	uint64_t bytes;
};

static int mem_read(void *ctx, void *buf, size_t n, uint64_t pos)
{
	struct memfile *f = ctx;
	if (pos > f->size || n > f->size - pos)
		fail_msg("read of %zu bytes at %llu outside the %llu-byte file", n, (unsigned long long)pos,
			 (unsigned long long)f->size);
	memcpy(buf, f->data + pos, n);
	f->reads++;
	f->bytes += n;
	return 0;
}

static uint32_t rng(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s >> 8;
}

/* Element i (row-major) of the view, the slow way. */
static uint64_t element_pos(const struct mq_tensor *t, uint64_t i)
{
	uint64_t pos = t->offset, es = mq_dtype_size(t->dtype);
	for (int d = t->ndim - 1; d >= 0; d--) {
		pos += (i % t->shape[d]) * t->stride[d] * es;
		i /= t->shape[d];
	}
	return pos;
}

static void check_ranges(const struct mq_tensor *t, struct memfile *f, struct mq_gather **g, uint32_t *seed, int n_ranges)
{
	uint64_t es = mq_dtype_size(t->dtype), numel = t->nbytes / es;
	unsigned char *out = malloc(t->nbytes + 1), *ref = malloc(t->nbytes + 1);
	for (uint64_t i = 0; i < numel; i++)
		memcpy(ref + i * es, f->data + element_pos(t, i), es);
	for (int k = 0; k < n_ranges; k++) {
		uint64_t a = k == 0 ? 0 : rng(seed) % numel, b = k == 0 ? numel : a + 1 + rng(seed) % (numel - a);
		memset(out, 0xAB, t->nbytes);
		assert_int_equal(mq_gather_read(g, t, a * es, out, (size_t)((b - a) * es), mem_read, f), 0);
		if (memcmp(out, ref + a * es, (size_t)((b - a) * es)) != 0)
			fail_msg("elements [%llu, %llu) of a %d-D view differ", (unsigned long long)a, (unsigned long long)b,
				 t->ndim);
	}
	free(out);
	free(ref);
}

/* Random views: permuted dims (transposes), stepped slices, storage offsets. */
static void test_gather_random_views_match_the_reference(void **state)
{
	(void)state;
	uint32_t seed = 7;
	struct mq_gather *g = NULL;
	for (int trial = 0; trial < 300; trial++) {
		struct mq_tensor t;
		memset(&t, 0, sizeof(t));
		static const enum mq_dtype dts[] = { MQ_DTYPE_F32, MQ_DTYPE_F16, MQ_DTYPE_F64, MQ_DTYPE_I8 };
		t.dtype = dts[rng(&seed) % 4];
		t.ndim = 1 + (int)(rng(&seed) % 4);
		uint64_t base_shape[MQ_MAX_DIMS] = { 0 }, step[MQ_MAX_DIMS] = { 0 }, numel = 1;
		for (int d = 0; d < t.ndim; d++) {
			t.shape[d] = 1 + rng(&seed) % 9;
			step[d] = 1 + rng(&seed) % 3 * (rng(&seed) % 2);
			base_shape[d] = t.shape[d] * step[d] + rng(&seed) % 3;
			numel *= t.shape[d];
		}
		/* lay the base tensor out in a random dimension order */
		int perm[MQ_MAX_DIMS];
		for (int d = 0; d < t.ndim; d++)
			perm[d] = d;
		for (int d = t.ndim - 1; d > 0; d--) {
			int j = (int)(rng(&seed) % (uint32_t)(d + 1)), x = perm[d];
			perm[d] = perm[j];
			perm[j] = x;
		}
		uint64_t acc = 1, base_stride[MQ_MAX_DIMS];
		for (int k = t.ndim - 1; k >= 0; k--) {
			base_stride[perm[k]] = acc;
			acc *= base_shape[perm[k]];
		}
		uint64_t es = mq_dtype_size(t.dtype), lead = rng(&seed) % 5, storage = acc + lead + 3;
		for (int d = 0; d < t.ndim; d++)
			t.stride[d] = base_stride[d] * step[d];
		t.offset = 16 + lead * es;
		t.nbytes = numel * es;
		unsigned char *file = malloc(16 + storage * es);
		for (uint64_t i = 0; i < 16 + storage * es; i++)
			file[i] = (unsigned char)rng(&seed);
		struct memfile f = { file, 16 + storage * es, 0, 0 };
		check_ranges(&t, &f, &g, &seed, 6);
		free(file);
	}
	mq_gather_free(g);
}

/* A transposed 1024 x 768 F32 weight: runs longer than the bounce buffer, many runs, few reads. */
static void test_gather_large_transpose_reads_in_few_calls(void **state)
{
	(void)state;
	struct mq_tensor t;
	memset(&t, 0, sizeof(t));
	t.dtype = MQ_DTYPE_F32;
	t.ndim = 2;
	t.shape[0] = 1024;
	t.shape[1] = 768;
	t.stride[0] = 1;
	t.stride[1] = 1024;
	t.nbytes = 1024 * 768 * 4;
	uint32_t seed = 3;
	unsigned char *file = malloc(t.nbytes);
	for (uint64_t i = 0; i < t.nbytes; i++)
		file[i] = (unsigned char)rng(&seed);
	struct memfile f = { file, t.nbytes, 0, 0 };
	struct mq_gather *g = NULL;
	check_ranges(&t, &f, &g, &seed, 1);
	/* the whole file once, in about 1 MiB reads: not one read per element */
	assert_true(f.bytes <= t.nbytes + (1u << 20));
	assert_true(f.reads < 64);
	/* a slice of rows: one row is 768 elements 4 KiB apart */
	f.reads = 0;
	f.bytes = 0;
	unsigned char *out = malloc(16 * 768 * 4);
	assert_int_equal(mq_gather_read(&g, &t, 100 * 768 * 4, out, 16 * 768 * 4, mem_read, &f), 0);
	for (uint64_t i = 0; i < 16 * 768; i++)
		assert_memory_equal(out + i * 4, file + element_pos(&t, 100 * 768 + i), 4);
	free(out);
	mq_gather_free(g);
	free(file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gather_random_views_match_the_reference),
		cmocka_unit_test(test_gather_large_transpose_reads_in_few_calls),
	};
	return cmocka_run_group_tests_name("gather", tests, NULL, NULL);
}
