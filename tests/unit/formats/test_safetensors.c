/* Header parsing: valid files, and every rule of the reference reader. */
#include "test_util.h"

#include <stdio.h>
#include <unistd.h>

#include "buf.h"
#include "safetensors.h"

/* Parses a header whose data buffer is exactly data_len bytes. */
static int parse(const char *json, uint64_t data_len, struct mq_st_header *h, struct mq_error *e)
{
	memset(e, 0, sizeof(*e));
	uint64_t n = strlen(json);
	return mq_st_parse("t.safetensors", json, n, 8 + n + data_len, h, e);
}

static void expect_bad(const char *json, uint64_t data_len, const char *needle)
{
	struct mq_st_header h;
	struct mq_error e;
	int rc = parse(json, data_len, &h, &e);
	assert_int_equal(rc, MQ_ERR_INPUT);
	assert_int_equal(e.code, MQ_ERR_INPUT);
	if (!strstr(e.msg, needle))
		fail_msg("message '%s' lacks '%s'", e.msg, needle);
	assert_non_null(strstr(e.msg, "t.safetensors"));
}

static void test_safetensors_valid_parses_tensors_and_metadata(void **state)
{
	(void)state;
	const char *j = "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\\u00e9\"},"
			"\"b\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
			"\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}   ";
	struct mq_st_header h;
	struct mq_error e;
	assert_int_equal(parse(j, 28, &h, &e), 0);
	assert_int_equal(h.n_tensors, 2);
	assert_string_equal(h.tensors[0].name, "a"); /* sorted by offset */
	assert_int_equal(h.tensors[1].dtype, MQ_DTYPE_F16);
	assert_int_equal(h.tensors[1].ndim, 2);
	assert_int_equal(h.tensors[1].shape[1], 3);
	assert_string_equal(mq_st_meta_get(&h, "format"), "pt");
	assert_string_equal(mq_st_meta_get(&h, "k"), "v\xc3\xa9");
	assert_null(mq_st_meta_get(&h, "missing"));
	mq_st_header_release(&h);
}

static void test_safetensors_empty_and_scalar_tensors_are_valid(void **state)
{
	(void)state;
	const char *j = "{\"e\":{\"dtype\":\"F32\",\"shape\":[2,0],\"data_offsets\":[0,0]},"
			"\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]}, \"x\":{\"dtype\":\"U8\","
			"\"shape\":[3],\"data_offsets\":[8,11],\"extra\":[1,{\"a\":null}]}}";
	struct mq_st_header h;
	struct mq_error e;
	assert_int_equal(parse(j, 11, &h, &e), 0);
	assert_int_equal(h.n_tensors, 3);
	mq_st_header_release(&h);
	assert_int_equal(parse("{}", 0, &h, &e), 0);
	assert_int_equal(h.n_tensors, 0);
	mq_st_header_release(&h);
}

static void test_safetensors_layout_violations_are_refused(void **state)
{
	(void)state;
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "not at 0");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20, "a hole");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "an overlap");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "shape mismatch");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "before begin");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "truncated");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 9, "unexpected bytes");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 8,
		   "overflows");
}

static void test_safetensors_numbers_must_be_plain_integers(void **state)
{
	(void)state;
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "negative");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "fraction or exponent");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8e0]}}", 8, "fraction or exponent");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", 8, "leading zero");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}", 8,
		   "too large");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 8, "more than 2");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
		   "more than 8");
}

static void test_safetensors_json_and_schema_errors_are_refused(void **state)
{
	(void)state;
	expect_bad("{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype 'Q7'");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "needs dtype, shape and data_offsets");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
		   "duplicate key");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		   "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "appears twice");
	expect_bad("{\"__metadata__\":{\"n\":1}}", 0, "is not a string");
	expect_bad("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "duplicate __metadata__ key");
	expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate __metadata__");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "malformed");
	expect_bad("[1,2]", 0, "malformed");
	expect_bad("{\"a\":1}", 0, "not an object");
	expect_bad("{\"a\\u0000b\":{}}", 0, "NUL");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, "after the JSON");
	expect_bad("{\"\xff\":{}}", 0, "UTF-8");
	expect_bad("{\"\xc0\xaf\":{}}", 0, "UTF-8"); /* overlong encoding */
	expect_bad("{\"\\ud800\":{}}", 0, "surrogate");
}

/* The exact message of a header that fails. */
static void expect_message(const char *json, uint64_t data_len, const char *msg)
{
	struct mq_st_header h;
	struct mq_error e;
	assert_int_equal(parse(json, data_len, &h, &e), MQ_ERR_INPUT);
	assert_string_equal(e.msg, msg);
}

/* A tensor entry's keys: each known one once, checked as it comes; a second one is refused unread. */
static void test_safetensors_tensor_entry_keys(void **state)
{
	(void)state;
	expect_message("{\"a\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
		       "'t.safetensors': tensor 'a': dtype is not a string");
	expect_message("{\"a\":{\"dtype\":\"F32\",\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
		       "'t.safetensors': tensor 'a': duplicate key 'dtype'");
	expect_message("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"shape\":[x],\"data_offsets\":[0,8]}}", 8,
		       "'t.safetensors': tensor 'a': duplicate key 'shape'");
	expect_message("{\"a\":{\"data_offsets\":[0,8],\"dtype\":\"F32\",\"data_offsets\":[0]}}", 8,
		       "'t.safetensors': tensor 'a': duplicate key 'data_offsets'");
	expect_message("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
		       "'t.safetensors': tensor 'a': data_offsets must hold exactly [begin, end]");
	expect_message("{\"a\":{}}", 0, "'t.safetensors': tensor 'a': entry needs dtype, shape and data_offsets");
	expect_message("{\"a\":{\"dtype\":\"F32\" \"shape\":[2]}}", 8,
		       "'t.safetensors': malformed safetensors header at byte 21 of the JSON: expected ',' or '}' in tensor "
		       "entry (the file is not a valid safetensors file; re-export or re-download it)");
	/* other keys are skipped whole, whatever they hold */
	struct mq_st_header h;
	struct mq_error e;
	assert_int_equal(parse("{\"a\":{\"x\":{\"y\":[1,{\"z\":null}]},\"dtype\":\"F32\",\"shape\":[2],"
			       "\"data_offsets\":[0,8],\"w\":\"\\u00e9\"}}", 8, &h, &e), 0);
	assert_int_equal(h.n_tensors, 1);
	assert_int_equal(h.tensors[0].end, 8);
	mq_st_header_release(&h);
}

/* Size rules checked on the raw file: too small, too large, past the end. */
static void test_safetensors_raw_size_rules(void **state)
{
	(void)state;
	char path[] = "/tmp/mq-test-st-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	char *json = NULL;
	uint64_t n = 0;
	struct mq_error e = { 0 };
	assert_int_equal(write(fd, "abcde", 5), 5);
	assert_int_equal(mq_st_read_raw(path, fd, 5, &json, &n, &e), MQ_ERR_INPUT);
	assert_non_null(strstr(e.msg, "too small"));
	unsigned char big[8] = { 0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0 }; /* 100000001 */
	assert_int_equal(pwrite(fd, big, 8, 0), 8);
	memset(&e, 0, sizeof(e));
	assert_int_equal(mq_st_read_raw(path, fd, 8, &json, &n, &e), MQ_ERR_INPUT);
	assert_non_null(strstr(e.msg, "exceeds"));
	unsigned char past[8] = { 100, 0, 0, 0, 0, 0, 0, 0 };
	assert_int_equal(pwrite(fd, past, 8, 0), 8);
	assert_int_equal(pwrite(fd, "{}", 2, 8), 2);
	memset(&e, 0, sizeof(e));
	assert_int_equal(mq_st_read_raw(path, fd, 10, &json, &n, &e), MQ_ERR_INPUT);
	assert_non_null(strstr(e.msg, "past the end"));
	unsigned char ok[8] = { 2, 0, 0, 0, 0, 0, 0, 0 };
	assert_int_equal(pwrite(fd, ok, 8, 0), 8);
	memset(&e, 0, sizeof(e));
	assert_int_equal(mq_st_read_raw(path, fd, 10, &json, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_string_equal(json, "{}");
	free(json);
	close(fd);
	unlink(path);
}

/* Found by fuzz_safetensors: the key of a tensor entry leaked when no ':' followed it. */
static void test_safetensors_entry_key_without_colon_is_refused_without_a_leak(void **state)
{
	(void)state;
	expect_bad("{\"a\":{\"dtype\"}}", 0, "expected ':'");
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\" [1]}}", 0, "expected ':'");
	expect_bad("{\"a\"}", 0, "expected ':'");
}

/* Hostile sizes: a header past MQ_MAX_TENSORS stops at the limit, and overflowing or absent bytes are named. */
static void test_safetensors_hostile_sizes_fail_at_the_limits(void **state)
{
	(void)state;
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_adds(&b, "{");
	for (int i = 0; i <= MQ_MAX_TENSORS; i++)
		mq_buf_addf(&b, "%s\"%x\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}", i ? "," : "", i);
	mq_buf_adds(&b, "}");
	assert_true(mq_buf_ok(&b));
	struct mq_st_header h;
	struct mq_error e = { 0 };
	assert_int_equal(mq_st_parse("t.safetensors", b.data, b.len, 8 + b.len, &h, &e), MQ_ERR_INPUT);
	if (!strstr(e.msg, "more than 524288 tensors") || !strstr(e.msg, "MQ_MAX_TENSORS"))
		fail_msg("message '%s'", e.msg);
	assert_int_equal(h.n_tensors, 0); /* released */
	mq_buf_release(&b);
	/* shape products beyond 64 bits, in elements and in bytes */
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0, "2^64 bytes");
	expect_bad("{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,0]}}", 0, "2^64 bytes");
	/* 2^40 elements whose 2^42 bytes the file does not hold */
	expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776],\"data_offsets\":[0,4398046511104]}}", 16,
		   "truncated");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_safetensors_valid_parses_tensors_and_metadata),
		cmocka_unit_test(test_safetensors_empty_and_scalar_tensors_are_valid),
		cmocka_unit_test(test_safetensors_layout_violations_are_refused),
		cmocka_unit_test(test_safetensors_numbers_must_be_plain_integers),
		cmocka_unit_test(test_safetensors_json_and_schema_errors_are_refused),
		cmocka_unit_test(test_safetensors_tensor_entry_keys),
		cmocka_unit_test(test_safetensors_raw_size_rules),
		cmocka_unit_test(test_safetensors_entry_key_without_colon_is_refused_without_a_leak),
		cmocka_unit_test(test_safetensors_hostile_sizes_fail_at_the_limits),
	};
	return cmocka_run_group_tests_name("safetensors", tests, NULL, NULL);
}
