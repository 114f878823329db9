/* The restricted pickle reader: what a state dict needs is read, everything else is refused. */
#include "test_util.h"

#include <stdio.h>

#include "pickle.h"

static int load(const struct mq_buf *b, struct mq_pickle *pk, struct mq_error *e)
{
	memset(e, 0, sizeof(*e));
	return mq_pickle_load("'t.pt': data.pkl", (const unsigned char *)b->data, b->len, pk, e);
}

static void expect_refused(const struct mq_buf *b, const char *needle)
{
	struct mq_pickle pk;
	struct mq_error e;
	assert_int_equal(load(b, &pk, &e), MQ_ERR_INPUT);
	if (!strstr(e.msg, needle))
		fail_msg("message '%s' lacks '%s'", e.msg, needle);
	assert_non_null(strstr(e.msg, "t.pt"));
}

/* {name: _rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), off, size, stride, False, OrderedDict())} */
static void put_tensor(struct mq_buf *b, const char *key, int64_t numel, int64_t off, int ndim, const int64_t *size,
		       const int64_t *stride)
{
	mq_pickle_put_global(b, "torch._utils", "_rebuild_tensor_v2");
	mq_buf_adds(b, "((");
	mq_pickle_put_str(b, "storage");
	mq_pickle_put_global(b, "torch", "FloatStorage");
	mq_pickle_put_str(b, key);
	mq_pickle_put_str(b, "cpu");
	mq_pickle_put_int(b, numel);
	mq_buf_adds(b, "tQ");
	mq_pickle_put_int(b, off);
	mq_buf_adds(b, "(");
	for (int d = 0; d < ndim; d++)
		mq_pickle_put_int(b, size[d]);
	mq_buf_adds(b, "t(");
	for (int d = 0; d < ndim; d++)
		mq_pickle_put_int(b, stride[d]);
	mq_buf_adds(b, "t\x89");
	mq_pickle_put_global(b, "collections", "OrderedDict");
	mq_buf_adds(b, ")RtR");
}

/* An OrderedDict with a transposed weight and a parameter-wrapped bias, then STOP. */
static void state_dict(struct mq_buf *b)
{
	const int64_t size[2] = { 3, 4 }, stride[2] = { 1, 3 }, bsize[1] = { 3 }, bstride[1] = { 1 };
	mq_buf_add(b, "\x80\x02", 2);
	mq_pickle_put_global(b, "collections", "OrderedDict");
	mq_buf_add(b, ")Rq\x00(", 5);
	mq_pickle_put_str(b, "w");
	put_tensor(b, "0", 12, 0, 2, size, stride);
	mq_pickle_put_str(b, "b");
	mq_pickle_put_global(b, "torch._utils", "_rebuild_parameter");
	mq_buf_adds(b, "(");
	put_tensor(b, "1", 5, 2, 1, bsize, bstride);
	mq_buf_adds(b, "\x88");
	mq_pickle_put_global(b, "collections", "OrderedDict");
	mq_buf_adds(b, ")RtR");
	mq_pickle_put_str(b, "epoch");
	mq_pickle_put_int(b, 3);
	mq_buf_adds(b, "u");
	/* the state dict's _metadata attribute, as BUILD state */
	mq_buf_adds(b, "}(");
	mq_pickle_put_str(b, "_metadata");
	mq_buf_adds(b, "}ub.");
}

static void test_pickle_reads_a_state_dict(void **state)
{
	(void)state;
	struct mq_buf b = MQ_BUF_INIT;
	state_dict(&b);
	struct mq_pickle pk;
	struct mq_error e;
	assert_int_equal(load(&b, &pk, &e), 0);
	const struct mq_pk_obj *root = &pk.obj[pk.root];
	assert_int_equal(root->kind, MQ_PK_DICT);
	assert_int_equal(root->n_items, 6);
	const struct mq_pk_obj *w = &pk.obj[root->items[1]], *bias = &pk.obj[root->items[3]];
	assert_int_equal(w->kind, MQ_PK_TENSOR);
	assert_int_equal(bias->kind, MQ_PK_TENSOR);
	const struct mq_pk_tensor *tw = &pk.tensors[w->i], *tb = &pk.tensors[bias->i];
	assert_int_equal(tw->ndim, 2);
	assert_int_equal(tw->shape[1], 4);
	assert_int_equal(tw->stride[0], 1);
	assert_int_equal(tw->stride[1], 3);
	assert_int_equal(tb->offset, 2);
	const struct mq_pk_obj *st = &pk.obj[tb->storage];
	assert_int_equal(st->kind, MQ_PK_STORAGE);
	assert_int_equal(st->dtype, MQ_DTYPE_F32);
	assert_int_equal(st->i, 5);
	assert_memory_equal(pk.data + st->str, "1", 1);
	assert_int_equal(pk.obj[root->items[5]].i, 3);
	mq_pickle_release(&pk);
	mq_buf_release(&b);
}

static void test_pickle_refuses_globals_outside_the_allowlist(void **state)
{
	(void)state;
	static const char *const bad[][2] = { { "os", "system" }, { "builtins", "eval" }, { "subprocess", "Popen" },
					     { "posix", "system" }, { "torch._utils", "_rebuild_qtensor" },
					     { "torch", "load" }, { "collections", "Counter" } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mq_buf b = MQ_BUF_INIT;
		mq_buf_add(&b, "\x80\x02", 2);
		mq_pickle_put_global(&b, bad[i][0], bad[i][1]);
		mq_pickle_put_str(&b, "touch pwned");
		mq_buf_adds(&b, "\x85R.");
		char needle[128];
		snprintf(needle, sizeof(needle), "'%s.%s'", bad[i][0], bad[i][1]);
		expect_refused(&b, needle);
		mq_buf_release(&b);
	}
}

static void test_pickle_refuses_other_opcodes_and_protocols(void **state)
{
	(void)state;
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_add(&b, "\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00", 11);
	expect_refused(&b, "protocol 4");
	b.len = 0;
	mq_buf_add(&b, "\x80\x02\x8c\x02os\x8c\x06system\x93.", 16);
	expect_refused(&b, "SHORT_BINUNICODE");
	b.len = 0;
	mq_buf_add(&b, "\x80\x02X\x01\x00\x00\x00" "aX\x01\x00\x00\x00" "b\x93.", 16);
	expect_refused(&b, "STACK_GLOBAL");
	b.len = 0;
	mq_buf_add(&b, "cos\nsystem\n", 11);
	expect_refused(&b, "not a protocol-2 pickle");
	b.len = 0; /* REDUCE of a string: only allowlisted classes may be called */
	mq_buf_add(&b, "\x80\x02", 2);
	mq_pickle_put_str(&b, "x");
	mq_buf_adds(&b, ")R.");
	expect_refused(&b, "REDUCE");
	b.len = 0; /* a persistent id that is not a storage */
	mq_buf_add(&b, "\x80\x02", 2);
	mq_pickle_put_str(&b, "x");
	mq_buf_adds(&b, "Q.");
	expect_refused(&b, "persistent id");
	b.len = 0; /* a memo slot far beyond the pickle */
	mq_buf_add(&b, "\x80\x02}r\xff\xff\xff\x7f.", 9);
	expect_refused(&b, "memo");
	b.len = 0;
	mq_buf_add(&b, "\x80\x02}h\x05.", 6);
	expect_refused(&b, "never PUT");
	mq_buf_release(&b);
}

static void test_pickle_ints_round_trip_through_the_writer(void **state)
{
	(void)state;
	static const int64_t v[] = { 0, 1, 255, 256, 65535, 65536, -1, -129, INT32_MAX, INT32_MIN, (int64_t)INT32_MAX + 1,
				     (int64_t)INT32_MIN - 1, 1ll << 40, -(1ll << 40), 0x7f00000000ll, INT64_MAX, INT64_MIN };
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct mq_buf b = MQ_BUF_INIT;
		mq_buf_add(&b, "\x80\x02", 2);
		mq_pickle_put_int(&b, v[i]);
		mq_buf_adds(&b, ".");
		struct mq_pickle pk;
		struct mq_error e;
		assert_int_equal(load(&b, &pk, &e), 0);
		assert_int_equal(pk.obj[pk.root].kind, MQ_PK_INT);
		if (pk.obj[pk.root].i != v[i])
			fail_msg("%lld read back as %lld", (long long)v[i], (long long)pk.obj[pk.root].i);
		mq_pickle_release(&pk);
		mq_buf_release(&b);
	}
}

/* Every truncation and many corruptions of a valid pickle fail cleanly (run under ASan in CI). */
static void test_pickle_truncated_and_corrupted_input_fails_cleanly(void **state)
{
	(void)state;
	struct mq_buf b = MQ_BUF_INIT;
	state_dict(&b);
	for (size_t n = 0; n < b.len; n++) {
		struct mq_buf t = MQ_BUF_INIT;
		mq_buf_add(&t, b.data, n);
		struct mq_pickle pk;
		struct mq_error e;
		assert_int_not_equal(load(&t, &pk, &e), 0);
		mq_buf_release(&t);
	}
	uint32_t seed = 12345;
	for (int k = 0; k < 20000; k++) {
		struct mq_buf t = MQ_BUF_INIT;
		mq_buf_add(&t, b.data, b.len);
		for (int j = 0; j < 3; j++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % t.len;
			seed = seed * 1103515245u + 12345u;
			t.data[at] = (char)(seed >> 16);
		}
		struct mq_pickle pk;
		struct mq_error e;
		if (load(&t, &pk, &e) == 0)
			mq_pickle_release(&pk);
		else
			assert_int_not_equal(e.code, 0);
		mq_buf_release(&t);
	}
	mq_buf_release(&b);
}

/* Found by fuzz_pickle: MARK then TUPLE on an empty stack did arithmetic on a null pointer. */
static void test_pickle_tuple_of_an_empty_stack_is_empty(void **state)
{
	(void)state;
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_add(&b, "\x80\x02(t.", 5);
	struct mq_pickle pk;
	struct mq_error e;
	assert_int_equal(load(&b, &pk, &e), 0);
	assert_int_equal(pk.obj[pk.root].kind, MQ_PK_TUPLE);
	assert_int_equal(pk.obj[pk.root].n_items, 0);
	mq_pickle_release(&pk);
	mq_buf_release(&b);
}

/* The memo may not be indexed beyond the objects built so far (its array would be sized by the index). */
static void test_pickle_memo_index_is_bounded_by_the_objects(void **state)
{
	(void)state;
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_add(&b, "\x80\x02Nr\x00\x00\x00\x01.", 9); /* LONG_BINPUT 2^24 after one object */
	expect_refused(&b, "memo index (16777216)");
	b.len = 0;
	mq_buf_add(&b, "\x80\x02Nq\x01h\x01\x86.", 9); /* index 1 after one object: allowed */
	struct mq_pickle pk;
	struct mq_error e;
	assert_int_equal(load(&b, &pk, &e), 0);
	mq_pickle_release(&pk);
	mq_buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pickle_reads_a_state_dict),
		cmocka_unit_test(test_pickle_refuses_globals_outside_the_allowlist),
		cmocka_unit_test(test_pickle_refuses_other_opcodes_and_protocols),
		cmocka_unit_test(test_pickle_ints_round_trip_through_the_writer),
		cmocka_unit_test(test_pickle_truncated_and_corrupted_input_fails_cleanly),
		cmocka_unit_test(test_pickle_tuple_of_an_empty_stack_is_empty),
		cmocka_unit_test(test_pickle_memo_index_is_bounded_by_the_objects),
	};
	return cmocka_run_group_tests_name("pickle", tests, NULL, NULL);
}
