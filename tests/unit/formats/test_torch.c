/*
 * torch archives: the ZIP writer read back by the ZIP reader, state dicts
 * found and checked against their storage records, and hostile archives.
 */
#include "test_util.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <zlib.h>

#include "pickle.h"
#include "torch.h"
#include "zip.h"

struct rec {
	const char *name;
	const void *data;
	uint64_t size;
};

/* Writes an archive of stored records with the project's writer; returns its size. */
static uint64_t write_archive(const char *path, const struct rec *r, int n)
{
	struct mq_zip_entry *e = calloc((size_t)n, sizeof(*e));
	for (int i = 0; i < n; i++) {
		e[i].name = strdup(r[i].name);
		e[i].size = r[i].size;
		e[i].crc = (uint32_t)crc32(0L, r[i].data, (uInt)r[i].size);
	}
	uint64_t dir, size;
	mq_zip_layout(e, n, &dir, &size);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	for (int i = 0; i < n; i++) {
		struct mq_buf b = MQ_BUF_INIT;
		mq_zip_local_header(&e[i], &b);
		assert_int_equal(b.len, e[i].data_offset - e[i].header_offset);
		assert_int_equal(e[i].data_offset % MQ_ZIP_ALIGN, 0);
		assert_int_equal((uint64_t)ftell(f), e[i].header_offset);
		fwrite(b.data, 1, b.len, f);
		fwrite(r[i].data, 1, (size_t)r[i].size, f);
		mq_buf_release(&b);
	}
	struct mq_buf b = MQ_BUF_INIT;
	mq_zip_directory(e, n, dir, &b);
	fwrite(b.data, 1, b.len, f);
	assert_int_equal((uint64_t)ftell(f), size);
	fclose(f);
	mq_buf_release(&b);
	mq_zip_entries_free(e, n);
	return size;
}

static int parse_file(const char *path, struct mq_torch_header *h, struct mq_error *e)
{
	memset(e, 0, sizeof(*e));
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	uint64_t size = (uint64_t)lseek(fd, 0, SEEK_END);
	char *raw = NULL;
	uint64_t len = 0;
	int rc = mq_torch_read_raw(path, fd, size, &raw, &len, e);
	close(fd);
	if (!rc)
		rc = mq_torch_parse(path, raw, len, size, h, e);
	free(raw);
	return rc;
}

static void expect_bad(const char *path, const char *needle)
{
	struct mq_torch_header h;
	struct mq_error e;
	assert_int_equal(parse_file(path, &h, &e), MQ_ERR_INPUT);
	if (!strstr(e.msg, needle))
		fail_msg("message '%s' lacks '%s'", e.msg, needle);
	assert_non_null(strstr(e.msg, path));
}

/* data.pkl: {prefix + "w": view of storage "0" (numel) at off with size/stride, "n": 7} */
static void pickle_one(struct mq_buf *b, int64_t numel, int64_t off, int64_t rows, int64_t cols, int64_t s0, int64_t s1)
{
	mq_buf_add(b, "\x80\x02}(", 4);
	mq_pickle_put_str(b, "layer.weight");
	mq_pickle_put_global(b, "torch._utils", "_rebuild_tensor_v2");
	mq_buf_adds(b, "((");
	mq_pickle_put_str(b, "storage");
	mq_pickle_put_global(b, "torch", "HalfStorage");
	mq_pickle_put_str(b, "0");
	mq_pickle_put_str(b, "cpu");
	mq_pickle_put_int(b, numel);
	mq_buf_adds(b, "tQ");
	mq_pickle_put_int(b, off);
	mq_pickle_put_int(b, rows);
	mq_pickle_put_int(b, cols);
	mq_buf_adds(b, "\x86");
	mq_pickle_put_int(b, s0);
	mq_pickle_put_int(b, s1);
	mq_buf_adds(b, "\x86\x89}tR");
	mq_pickle_put_str(b, "n");
	mq_pickle_put_int(b, 7);
	mq_buf_adds(b, "u.");
}

static char tmp_path[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmp_path, sizeof(tmp_path), "mq-test-torch-%d.pt", (int)getpid());
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(tmp_path);
	return 0;
}

static void test_torch_archive_round_trip_and_views(void **state)
{
	(void)state;
	struct mq_buf pkl = MQ_BUF_INIT;
	pickle_one(&pkl, 40, 4, 3, 5, 1, 6); /* a transposed view with an offset: last element 4 + 2 + 24 = 30 < 40 */
	unsigned char data[80];
	for (int i = 0; i < 80; i++)
		data[i] = (unsigned char)i;
	struct rec r[] = { { "ckpt/data.pkl", pkl.data, pkl.len }, { "ckpt/data/0", data, 80 }, { "ckpt/version", "3\n", 2 } };
	write_archive(tmp_path, r, 3);
	struct mq_torch_header h;
	struct mq_error e;
	assert_int_equal(parse_file(tmp_path, &h, &e), 0);
	assert_string_equal(h.archive, "ckpt");
	assert_int_equal(h.n_tensors, 1);
	assert_int_equal(h.n_ignored, 1); /* "n" is an int */
	const struct mq_torch_tensor *t = &h.tensors[0];
	assert_string_equal(t->name, "layer.weight");
	assert_int_equal(t->dtype, MQ_DTYPE_F16);
	assert_int_equal(t->contiguous, 0);
	assert_int_equal(t->nbytes, 30);
	assert_int_equal(t->stride[1], 6);
	/* element 0 sits 4 halves into the record, whose data is 64-aligned */
	assert_int_equal(t->offset % 64, 8);
	FILE *f = fopen(tmp_path, "rb");
	unsigned char got[2];
	fseek(f, (long)t->offset, SEEK_SET);
	assert_int_equal(fread(got, 1, 2, f), 2);
	fclose(f);
	assert_int_equal(got[0], 8);
	assert_int_equal(got[1], 9);
	mq_torch_header_release(&h);
	mq_buf_release(&pkl);
}

static void test_torch_state_dict_under_a_key(void **state)
{
	(void)state;
	struct mq_buf inner = MQ_BUF_INIT, pkl = MQ_BUF_INIT;
	pickle_one(&inner, 15, 0, 3, 5, 5, 1);
	/* {"epoch": 3, "state_dict": <inner dict>}: splice the inner pickle's dict (without PROTO and STOP) */
	mq_buf_add(&pkl, "\x80\x02}(", 4);
	mq_pickle_put_str(&pkl, "epoch");
	mq_pickle_put_int(&pkl, 3);
	mq_pickle_put_str(&pkl, "state_dict");
	mq_buf_add(&pkl, inner.data + 2, inner.len - 3);
	mq_buf_adds(&pkl, "u.");
	unsigned char data[30] = { 0 };
	struct rec r[] = { { "a/data.pkl", pkl.data, pkl.len }, { "a/data/0", data, 30 } };
	write_archive(tmp_path, r, 2);
	struct mq_torch_header h;
	struct mq_error e;
	assert_int_equal(parse_file(tmp_path, &h, &e), 0);
	assert_string_equal(h.state_dict_key, "state_dict");
	assert_int_equal(h.n_tensors, 1);
	assert_int_equal(h.tensors[0].contiguous, 1);
	assert_string_equal(h.tensors[0].name, "layer.weight");
	mq_torch_header_release(&h);
	mq_buf_release(&inner);
	mq_buf_release(&pkl);
}

static void test_torch_hostile_archives_are_refused(void **state)
{
	(void)state;
	struct mq_buf pkl = MQ_BUF_INIT;
	unsigned char data[80] = { 0 };
	/* a record shorter than its storage */
	pickle_one(&pkl, 40, 0, 5, 8, 8, 1);
	struct rec short_rec[] = { { "x/data.pkl", pkl.data, pkl.len }, { "x/data/0", data, 78 } };
	write_archive(tmp_path, short_rec, 2);
	expect_bad(tmp_path, "record 'x/data/0' holds 78 bytes");
	/* a stride that walks past the storage */
	pkl.len = 0;
	pickle_one(&pkl, 40, 0, 5, 8, 9, 1);
	struct rec past[] = { { "x/data.pkl", pkl.data, pkl.len }, { "x/data/0", data, 80 } };
	write_archive(tmp_path, past, 2);
	expect_bad(tmp_path, "reads past the end");
	/* a record outside the folder */
	pkl.len = 0;
	pickle_one(&pkl, 40, 0, 5, 8, 8, 1);
	struct rec outside[] = { { "x/data.pkl", pkl.data, pkl.len }, { "x/data/0", data, 80 }, { "evil.txt", "hi", 2 } };
	write_archive(tmp_path, outside, 3);
	expect_bad(tmp_path, "outside the archive folder");
	/* a storage with no record, and a TorchScript archive */
	struct rec missing[] = { { "x/data.pkl", pkl.data, pkl.len } };
	write_archive(tmp_path, missing, 1);
	expect_bad(tmp_path, "record 'x/data/0' is missing");
	struct rec script[] = { { "x/data.pkl", pkl.data, pkl.len }, { "x/constants.pkl", "\x80\x02)." , 4 } };
	write_archive(tmp_path, script, 2);
	expect_bad(tmp_path, "TorchScript");
	/* one sub-dict under two keys: shared dicts would multiply the tensors without bound */
	struct mq_buf dag = MQ_BUF_INIT;
	mq_buf_add(&dag, "\x80\x02}(", 4);
	mq_pickle_put_str(&dag, "a");
	mq_buf_add(&dag, pkl.data + 2, pkl.len - 3);
	mq_buf_add(&dag, "q\x01", 2);
	mq_pickle_put_str(&dag, "b");
	mq_buf_add(&dag, "h\x01u.", 4);
	struct rec shared[] = { { "x/data.pkl", dag.data, dag.len }, { "x/data/0", data, 80 } };
	write_archive(tmp_path, shared, 2);
	expect_bad(tmp_path, "appears more than once");
	mq_buf_release(&dag);
	mq_buf_release(&pkl);
}

/* Truncations and a directory pointing past the end of the file. */
static void test_torch_broken_zip_structure_is_refused(void **state)
{
	(void)state;
	struct mq_buf pkl = MQ_BUF_INIT;
	pickle_one(&pkl, 40, 0, 5, 8, 8, 1);
	unsigned char data[80] = { 0 };
	struct rec r[] = { { "x/data.pkl", pkl.data, pkl.len }, { "x/data/0", data, 80 } };
	uint64_t size = write_archive(tmp_path, r, 2);
	FILE *f = fopen(tmp_path, "rb");
	unsigned char *all = malloc(size);
	assert_int_equal(fread(all, 1, size, f), size);
	fclose(f);
	/* the end record's directory offset (4 bytes at size - 6) moved past the end; drop the zip64 records */
	unsigned char *c = malloc(size);
	memcpy(c, all, size);
	uint64_t end = size - 22;
	memcpy(c + end - 76, c + end, 22); /* the end record without the zip64 end record and locator before it */
	uint64_t n = end - 76 + 22;
	c[n - 6] = 0xff;
	c[n - 5] = 0xff;
	c[n - 4] = 0x00;
	c[n - 3] = 0x01;
	f = fopen(tmp_path, "wb");
	fwrite(c, 1, (size_t)n, f);
	fclose(f);
	expect_bad(tmp_path, "points outside the file");
	/* every truncation fails with an input error, never a crash */
	for (uint64_t k = 0; k < size; k += 7) {
		f = fopen(tmp_path, "wb");
		fwrite(all, 1, (size_t)k, f);
		fclose(f);
		struct mq_torch_header h;
		struct mq_error e;
		assert_int_equal(parse_file(tmp_path, &h, &e), MQ_ERR_INPUT);
	}
	free(c);
	free(all);
	mq_buf_release(&pkl);
}

/* Records at or past 4 GiB get zip64 fields; the layout accounts for them. */
static void test_torch_zip64_layout(void **state)
{
	(void)state;
	struct mq_zip_entry e[3];
	memset(e, 0, sizeof(e));
	e[0].name = "a/data/0";
	e[0].size = 5ull << 30; /* a 5 GiB record */
	e[1].name = "a/data/1";
	e[1].size = 10;
	e[2].name = "a/version";
	e[2].size = 2;
	uint64_t dir, size;
	mq_zip_layout(e, 3, &dir, &size);
	for (int i = 0; i < 3; i++)
		assert_int_equal(e[i].data_offset % MQ_ZIP_ALIGN, 0);
	struct mq_buf b = MQ_BUF_INIT;
	mq_zip_local_header(&e[0], &b);
	assert_int_equal(b.len, e[0].data_offset);
	assert_memory_equal(b.data + 18, "\xff\xff\xff\xff", 4); /* 32-bit size slots overflow into the zip64 extra */
	assert_memory_equal(b.data + 30 + 8, "\x01\x00\x10\x00", 4);
	b.len = 0;
	mq_zip_directory(e, 3, dir, &b);
	assert_int_equal(dir + b.len, size);
	/* entry 1 sits past 4 GiB: its offset moves to the zip64 extra */
	const unsigned char *second = (const unsigned char *)b.data + 46 + 8 + 4 + 16;
	assert_memory_equal(second, "PK\x01\x02", 4);
	assert_memory_equal(second + 42, "\xff\xff\xff\xff", 4);
	uint64_t off = 0;
	for (int k = 7; k >= 0; k--)
		off = off << 8 | second[46 + 8 + 4 + k];
	assert_int_equal(off, e[1].header_offset);
	mq_buf_release(&b);
}

/* Hostile sizes fail at once with the true figures: huge storages, overflowing shapes, expanded views. */
static void test_torch_hostile_sizes_fail_fast(void **state)
{
	(void)state;
	struct mq_buf pkl = MQ_BUF_INIT;
	unsigned char data[80] = { 0 };
	struct rec r[] = { { "x/data.pkl", NULL, 0 }, { "x/data/0", data, 80 } };
	/* a storage of 2^40 halves: 2^41 bytes that the 80-byte record does not hold */
	pickle_one(&pkl, 1ll << 40, 0, 5, 8, 8, 1);
	r[0].data = pkl.data;
	r[0].size = pkl.len;
	write_archive(tmp_path, r, 2);
	expect_bad(tmp_path, "needs 2199023255552;");
	/* a zero-stride view of [2^20, 2^20] over 40 halves: 2 TiB from an 80-byte record */
	pkl.len = 0;
	pickle_one(&pkl, 40, 0, 1 << 20, 1 << 20, 0, 0);
	r[0].data = pkl.data;
	r[0].size = pkl.len;
	write_archive(tmp_path, r, 2);
	expect_bad(tmp_path, "more than the whole");
	/* [2^40, 2^40]: the element count overflows 64 bits */
	pkl.len = 0;
	pickle_one(&pkl, 40, 0, 1ll << 40, 1ll << 40, 0, 0);
	r[0].data = pkl.data;
	r[0].size = pkl.len;
	write_archive(tmp_path, r, 2);
	expect_bad(tmp_path, "its shape overflows");
	mq_buf_release(&pkl);
}

/* Sets the compression method of directory entry i of the archive at path (the data stays stored). */
static void set_method(const char *path, int i, unsigned method)
{
	FILE *f = fopen(path, "r+b");
	assert_non_null(f);
	unsigned char all[4096];
	size_t n = fread(all, 1, sizeof(all), f);
	assert_true(n < sizeof(all));
	int seen = 0;
	for (size_t k = 0; k + 12 <= n; k++) {
		if (memcmp(all + k, "PK\x01\x02", 4) == 0 && seen++ == i) {
			unsigned char m[2] = { (unsigned char)method, (unsigned char)(method >> 8) };
			fseek(f, (long)(k + 10), SEEK_SET);
			fwrite(m, 1, 2, f);
			fclose(f);
			return;
		}
	}
	fail_msg("no directory entry %d in '%s'", i, path);
}

/* The exact message of the temporary checkpoint, which fails: its quoted name, then rest. */
static void expect_message(const char *rest)
{
	struct mq_torch_header h;
	struct mq_error e;
	char want[1024];
	assert_int_equal(parse_file(tmp_path, &h, &e), MQ_ERR_INPUT);
	snprintf(want, sizeof(want), "'%s': %s", tmp_path, rest);
	assert_string_equal(e.msg, want);
}

/* A storage key with a NUL byte, and compressed records: data.pkl, or a tensor's storage. */
static void test_torch_storage_keys_and_compressed_records(void **state)
{
	(void)state;
	struct mq_buf pkl = MQ_BUF_INIT, bad = MQ_BUF_INIT;
	unsigned char data[80] = { 0 };
	pickle_one(&pkl, 40, 0, 5, 8, 8, 1);
	struct rec r[] = { { "x/data.pkl", pkl.data, pkl.len }, { "x/data/0", data, 80 } };
	/* the storage key "0" becomes "0\0" (BINUNICODE of 2 bytes) */
	const char *key = NULL;
	for (size_t k = 0; !key && k + 6 <= pkl.len; k++)
		if (memcmp(pkl.data + k, "X\x01\x00\x00\x00" "0", 6) == 0)
			key = pkl.data + k;
	assert_non_null(key);
	mq_buf_add(&bad, pkl.data, (size_t)(key - pkl.data));
	mq_buf_add(&bad, "X\x02\x00\x00\x00" "0\x00", 7);
	mq_buf_add(&bad, key + 6, pkl.len - (size_t)(key - pkl.data) - 6);
	struct rec nul[] = { { "x/data.pkl", bad.data, bad.len }, { "x/data/0", data, 80 } };
	write_archive(tmp_path, nul, 2);
	expect_message("tensor 'layer.weight': its storage key holds a NUL byte");
	write_archive(tmp_path, r, 2);
	set_method(tmp_path, 1, 8);
	expect_message("record 'x/data/0' is compressed; torch.save stores records uncompressed: re-save the file with "
		       "torch.save");
	write_archive(tmp_path, r, 2);
	set_method(tmp_path, 0, 8);
	expect_message("record 'x/data.pkl' is compressed (method 8); torch.save stores records uncompressed: re-save "
		       "the file with torch.save");
	mq_buf_release(&bad);
	mq_buf_release(&pkl);
}

/* A ZIP directory that claims more records than the limit is refused before anything is allocated for them. */
static void test_torch_zip_record_count_is_bounded(void **state)
{
	(void)state;
	uint64_t count = MQ_ZIP_MAX_RECORDS + 1, dir_len = count * 46;
	unsigned char end[56 + 20 + 22] = { 0 }, *p = end;
	/* zip64 end record, locator, end record; the directory before them is a hole of zeros */
	memcpy(p, "PK\x06\x06", 4);
	for (int i = 0; i < 8; i++) {
		p[4 + i] = (unsigned char)(44ull >> (8 * i));
		p[24 + i] = p[32 + i] = (unsigned char)(count >> (8 * i));
		p[40 + i] = (unsigned char)(dir_len >> (8 * i));
	}
	p += 56;
	memcpy(p, "PK\x06\x07", 4);
	for (int i = 0; i < 8; i++)
		p[8 + i] = (unsigned char)(dir_len >> (8 * i));
	p[16] = 1;
	p += 20;
	memcpy(p, "PK\x05\x06", 4);
	memset(p + 8, 0xff, 12);
	int fd = open(tmp_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, end, sizeof(end), (off_t)dir_len), (ssize_t)sizeof(end));
	struct mq_zip_entry *e = NULL;
	int n = 0;
	struct mq_error err = { 0 };
	assert_int_equal(mq_zip_read(tmp_path, fd, dir_len + sizeof(end), &e, &n, &err), MQ_ERR_INPUT);
	close(fd);
	if (!strstr(err.msg, "MQ_ZIP_MAX_RECORDS"))
		fail_msg("message '%s'", err.msg);
	assert_null(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_torch_archive_round_trip_and_views, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torch_state_dict_under_a_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torch_hostile_archives_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torch_broken_zip_structure_is_refused, setup, teardown),
		cmocka_unit_test(test_torch_zip64_layout),
		cmocka_unit_test_setup_teardown(test_torch_hostile_sizes_fail_fast, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torch_storage_keys_and_compressed_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torch_zip_record_count_is_bounded, setup, teardown),
	};
	return cmocka_run_group_tests_name("torch", tests, NULL, NULL);
}
