/*
 * The writer table: every row (safetensors, the torch archive, and in this
 * test build a dummy row from dummy_writer.c) keeps the same contract. Its
 * layout places the tensors without overlap inside the file; units write the
 * tensors' bytes at those offsets; finish() writes the rest without touching
 * them; and the file reads back with the tensors where the layout put them.
 */
#include "test_util.h"

#include <stdio.h>
#include <unistd.h>
#include <zlib.h>

#include "buf.h"
#include "safetensors.h"
#include "torch.h"
#include "writer.h"

extern const struct mq_writer mq_writer_test_raw;

#define RESERVE 256u
#define N_OUT 3

static const struct mq_out_tensor outs[N_OUT] = {
	{ .name = "a.weight", .dtype = MQ_DTYPE_I8, .ndim = 2, .shape = { 4, 8 }, .begin = 0, .end = 32 },
	{ .name = "a.weight_scale", .dtype = MQ_DTYPE_F32, .ndim = 2, .shape = { 4, 1 }, .begin = 32, .end = 48 },
	{ .name = "b", .dtype = MQ_DTYPE_F16, .ndim = 1, .shape = { 3 }, .begin = 48, .end = 54 },
};

/* An output file in memory; writes outside it fail the test. */
struct memfile {
	unsigned char *data;
	uint64_t size;
};

static int mem_write(void *ctx, int file, uint64_t pos, const void *p, size_t n, struct mq_error *err)
{
	struct memfile *m = ctx;
	(void)err;
	assert_int_equal(file, 0);
	assert_true(pos <= m->size && n <= m->size - pos);
	memcpy(m->data + pos, p, n);
	return 0;
}

static unsigned char pattern(int o, uint64_t k)
{
	return (unsigned char)(17 * o + 3 * k + 1);
}

/* The metadata bytes the pipeline would hand over: a whole safetensors header, or the object alone, padded. */
static void metadata_for(const struct mq_writer *w, struct mq_buf *b)
{
	if (w->meta == MQ_META_HEADER) {
		mq_buf_adds(b, "{");
		for (int o = 0; o < N_OUT; o++) {
			mq_buf_addf(b, "\"%s\":{\"dtype\":\"%s\",\"shape\":[", outs[o].name, mq_dtype_name(outs[o].dtype));
			for (int d = 0; d < outs[o].ndim; d++)
				mq_buf_addf(b, "%s%llu", d ? "," : "", (unsigned long long)outs[o].shape[d]);
			mq_buf_addf(b, "],\"data_offsets\":[%llu,%llu]},", (unsigned long long)outs[o].begin,
				    (unsigned long long)outs[o].end);
		}
		mq_buf_adds(b, "\"__metadata__\":{\"k\":\"v\"}}");
		return;
	}
	mq_buf_adds(b, "{\"k\":\"v\"}");
	while (b->len < RESERVE)
		mq_buf_adds(b, " ");
}

/* The file read back by the project's own reader of its format: tensors at the layout's offsets. */
static void read_back(const struct mq_writer *w, const struct memfile *m, const struct mq_out_files *f)
{
	struct mq_error err = { 0 };
	if (w == &mq_writer_safetensors) {
		uint64_t n = 0;
		for (int i = 0; i < 8; i++)
			n |= (uint64_t)m->data[i] << (8 * i);
		assert_int_equal(n, RESERVE);
		struct mq_st_header h;
		assert_int_equal(mq_st_parse("mem", (const char *)m->data + 8, n, m->size, &h, &err), 0);
		assert_int_equal(h.n_tensors, N_OUT);
		for (int i = 0; i < N_OUT; i++)
			assert_int_equal(h.data_start + h.tensors[i].begin, f->pos[i]); /* sorted by offset, as laid out */
		assert_int_equal(h.n_meta, 1);
		mq_st_header_release(&h);
	} else if (w == &mq_writer_torch) {
		const char *dir = getenv("TMPDIR");
		char path[4096];
		snprintf(path, sizeof(path), "%s/mq-writer-XXXXXX", dir && *dir ? dir : "/tmp");
		int fd = mkstemp(path);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, m->data, m->size), (ssize_t)m->size);
		char *raw = NULL;
		uint64_t raw_len = 0;
		struct mq_torch_header h;
		assert_int_equal(mq_torch_read_raw(path, fd, m->size, &raw, &raw_len, &err), 0);
		assert_int_equal(mq_torch_parse(path, raw, raw_len, m->size, &h, &err), 0);
		assert_int_equal(h.n_tensors, N_OUT);
		for (int i = 0; i < h.n_tensors; i++)
			for (int o = 0; o < N_OUT; o++)
				if (strcmp(h.tensors[i].name, outs[o].name) == 0)
					assert_int_equal(h.tensors[i].offset, f->pos[o]);
		assert_true(h.has_meta);
		assert_memory_equal(m->data + h.meta_offset, "{\"k\":\"v\"}", 9);
		mq_torch_header_release(&h);
		free(raw);
		close(fd);
		unlink(path);
	} else if (w == &mq_writer_hf) { /* one shard: a safetensors file with the metadata object inside */
		uint64_t n = 0;
		for (int i = 0; i < 8; i++)
			n |= (uint64_t)m->data[i] << (8 * i);
		struct mq_st_header h;
		assert_int_equal(mq_st_parse("mem", (const char *)m->data + 8, n, m->size, &h, &err), 0);
		assert_int_equal(h.n_tensors, N_OUT);
		for (int i = 0; i < N_OUT; i++)
			for (int o = 0; o < N_OUT; o++)
				if (strcmp(h.tensors[i].name, outs[o].name) == 0)
					assert_int_equal(h.data_start + h.tensors[i].begin, f->pos[o]);
		assert_int_equal(h.n_meta, 1);
		assert_string_equal(f->names[0], "model.safetensors");
		mq_st_header_release(&h);
	} else { /* the dummy: the metadata after the tensors */
		assert_memory_equal(m->data + m->size - RESERVE, "{\"k\":\"v\"}", 9);
	}
}

static void check_row(const struct mq_writer *w)
{
	struct mq_out_files f;
	struct mq_error err = { 0 };
	assert_int_equal(w->layout(outs, N_OUT, RESERVE, 0, &f, &err), 0);
	assert_int_equal(f.n_files, 1);
	struct memfile m = { calloc(1, f.file_size[0]), f.file_size[0] };
	assert_non_null(m.data);
	uint32_t crc[N_OUT];
	for (int o = 0; o < N_OUT; o++) { /* the units: each tensor's bytes at its place, and their CRC */
		uint64_t n = outs[o].end - outs[o].begin;
		assert_true(f.pos[o] + n <= f.file_size[0]);
		for (int q = 0; q < N_OUT; q++) /* no two tensors share a byte */
			assert_true(q == o || f.pos[q] >= f.pos[o] + n || f.pos[o] >= f.pos[q] + (outs[q].end - outs[q].begin));
		unsigned char bytes[64];
		for (uint64_t k = 0; k < n; k++)
			bytes[k] = pattern(o, k);
		assert_int_equal(mem_write(&m, 0, f.pos[o], bytes, n, &err), 0);
		crc[o] = (uint32_t)crc32(0L, bytes, (uInt)n);
	}
	struct mq_buf meta = MQ_BUF_INIT;
	metadata_for(w, &meta);
	assert_true(mq_buf_ok(&meta));
	assert_int_equal(w->finish(&f, outs, meta.data, meta.len, crc, mem_write, &m, &err), 0);
	for (int o = 0; o < N_OUT; o++) /* finish() left the tensors alone */
		for (uint64_t k = 0; k < outs[o].end - outs[o].begin; k++)
			assert_int_equal(m.data[f.pos[o] + k], pattern(o, k));
	read_back(w, &m, &f);
	mq_buf_release(&meta);
	free(m.data);
	w->release(&f);
}

static void test_writer_rows_keep_the_contract(void **state)
{
	(void)state;
	int n = 0;
	for (const struct mq_writer *w; (w = mq_writer_get(n)); n++)
		check_row(w);
	assert_int_equal(n, 4); /* safetensors, torch, the model folder, and the dummy of this test build */
}

static void test_writer_select_by_extension(void **state)
{
	(void)state;
	assert_ptr_equal(mq_writer_select("d/m.int8.safetensors"), &mq_writer_safetensors);
	assert_ptr_equal(mq_writer_select("m.pth"), &mq_writer_torch);
	assert_ptr_equal(mq_writer_select("pytorch_model.bin"), &mq_writer_torch);
	assert_ptr_equal(mq_writer_select("m.raw"), &mq_writer_test_raw); /* a new row is found like the others */
	assert_null(mq_writer_select("m.RAW"));
	assert_ptr_equal(mq_writer_select("raw"), &mq_writer_hf); /* no extension: a model folder */
	char list[160];
	mq_writer_extensions(list, sizeof(list));
	assert_string_equal(list, ".safetensors, .pt, .pth, .bin, a folder (a name without an extension, or ending in /), .raw");
}

/*
 * The model folder's shards: at most max_shard bytes of tensors each, cut in name order, and a
 * module's tensors never part (a.weight, 32 bytes, and a.weight_scale, 16, share a shard even
 * at 40 bytes a shard; b, 6 bytes, gets the next). One shard has no number.
 */
static void test_writer_folder_shards_keep_modules_whole(void **state)
{
	(void)state;
	static const struct { uint64_t max; int n; int of[N_OUT]; } cases[] = {
		{ 0, 1, { 0, 0, 0 } }, { 1000, 1, { 0, 0, 0 } }, { 54, 1, { 0, 0, 0 } },
		{ 48, 2, { 0, 0, 1 } }, { 40, 2, { 0, 0, 1 } }, { 1, 2, { 0, 0, 1 } },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct mq_out_files f;
		struct mq_error err = { 0 };
		assert_int_equal(mq_writer_hf.layout(outs, N_OUT, RESERVE, cases[c].max, &f, &err), 0);
		assert_int_equal(f.n_files, cases[c].n);
		for (int o = 0; o < N_OUT; o++)
			assert_int_equal(f.file_of[o], cases[c].of[o]);
		assert_string_equal(f.names[0], cases[c].n == 1 ? "model.safetensors" : "model-00001-of-00002.safetensors");
		if (cases[c].n == 2)
			assert_string_equal(f.names[1], "model-00002-of-00002.safetensors");
		mq_writer_hf.release(&f);
	}
}

/* A header longer than its reservation is a bug of the caller, reported, never written past. */
static void test_writer_refuses_metadata_past_its_reservation(void **state)
{
	(void)state;
	for (int i = 0; mq_writer_get(i); i++) {
		const struct mq_writer *w = mq_writer_get(i);
		struct mq_out_files f;
		struct mq_error err = { 0 };
		assert_int_equal(w->layout(outs, N_OUT, 8, 0, &f, &err), 0);
		struct memfile m = { calloc(1, f.file_size[0]), f.file_size[0] };
		uint32_t crc[N_OUT] = { 0 };
		char big[64];
		memset(big, ' ', sizeof(big));
		assert_int_equal(w->finish(&f, outs, big, sizeof(big), crc, mem_write, &m, &err), MQ_ERR_INTERNAL);
		free(m.data);
		w->release(&f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writer_rows_keep_the_contract),
		cmocka_unit_test(test_writer_select_by_extension),
		cmocka_unit_test(test_writer_folder_shards_keep_modules_whole),
		cmocka_unit_test(test_writer_refuses_metadata_past_its_reservation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
