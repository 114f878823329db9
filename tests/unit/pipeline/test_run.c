/*
 * run: whole single-rank runs through mq_run_model() on the mock comm, on a
 * small safetensors model the test writes. An int8 per-channel output that
 * the project's reader parses and that dequantizes within half a step; an
 * existing output refused without --force; a NaN that fails the run naming
 * the tensor, leaving nothing behind.
 */
#include "run_util.h"

#include <math.h>

#include "digest.h"
#include "run.h"

struct fixture {
	char dir[64], input[128], output[128];
	struct st_tensor t[MODEL_TENSORS]; /* in name order */
	struct mq_comm *comm;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	dir_make(f->dir);
	snprintf(f->input, sizeof(f->input), "%s/model.safetensors", f->dir);
	snprintf(f->output, sizeof(f->output), "%s/out.safetensors", f->dir);
	model_init(f->t);
	st_write(f->input, f->t, MODEL_TENSORS);
	f->comm = mq_comm_init(NULL, NULL);
	assert_non_null(f->comm);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	model_release(f->t);
	mq_comm_free(f->comm);
	dir_remove(f->dir);
	free(f);
	return 0;
}

static int run(struct fixture *f, struct mq_options *o, struct mq_error *e)
{
	int skipped = -1;
	int rc = mq_run_model(f->comm, o, &skipped, e);
	assert_int_equal(rc, e->code);
	assert_int_equal(skipped, 0);
	return rc;
}

/* The quantized weight t of the output: I8 codes within scale/2 of the input, one F32 scale per row. */
static void check_weight(const struct mq_st_header *h, const unsigned char *file, const struct st_tensor *t)
{
	char name[128];
	const struct mq_st_tensor *q = st_find(h, t->name);
	assert_non_null(q);
	assert_int_equal(q->dtype, MQ_DTYPE_I8);
	assert_int_equal(q->ndim, 2);
	assert_int_equal(q->shape[0], t->rows);
	assert_int_equal(q->shape[1], t->cols);
	snprintf(name, sizeof(name), "%s_scale", t->name);
	const struct mq_st_tensor *s = st_find(h, name);
	assert_non_null(s);
	assert_int_equal(s->dtype, MQ_DTYPE_F32);
	assert_int_equal(s->ndim, 2);
	assert_int_equal(s->shape[0], t->rows);
	assert_int_equal(s->shape[1], 1);
	snprintf(name, sizeof(name), "%s_zero_point", t->name);
	assert_null(st_find(h, name)); /* int8 is symmetric */
	const int8_t *codes = (const int8_t *)(file + h->data_start + q->begin);
	for (uint64_t r = 0; r < t->rows; r++) {
		float scale;
		memcpy(&scale, file + h->data_start + s->begin + 4 * r, 4);
		assert_true(scale >= 0.0f && isfinite(scale));
		/* half a step, and the float32 rounding of x / scale (well under 1e-4 of a step at |q| <= 128) */
		double bound = 0.5 * (double)scale * (1.0 + 1e-4);
		for (uint64_t c = 0; c < t->cols; c++) {
			double x = (double)t->data[r * t->cols + c];
			double back = (double)codes[r * t->cols + c] * (double)scale;
			if (fabs(x - back) > bound)
				fail_msg("%s[%llu][%llu]: %.9g dequantizes to %.9g, more than scale/2 = %.9g away", t->name,
					 (unsigned long long)r, (unsigned long long)c, x, back, 0.5 * (double)scale);
		}
	}
}

static void test_run_int8_per_channel_output_parses_and_dequantizes(void **state)
{
	struct fixture *f = *state;
	struct mq_options o;
	struct mq_error e = { 0 };
	run_options(&o, f->input, f->output);
	assert_int_equal(run(f, &o, &e), MQ_OK);
	assert_string_equal(o.out_format, "safetensors");
	struct mq_st_header h;
	assert_int_equal(st_read_header(f->output, &h), 0);
	size_t len;
	unsigned char *file = read_all(f->output, &len);
	assert_non_null(file);
	assert_int_equal(len, h.file_size);
	/* 3 weights (data and scale) and the bias kept */
	assert_int_equal(h.n_tensors, 7);
	check_weight(&h, file, &f->t[0]);
	check_weight(&h, file, &f->t[2]);
	check_weight(&h, file, &f->t[3]);
	const struct mq_st_tensor *b = st_find(&h, "layers.0.norm.bias");
	assert_non_null(b);
	assert_int_equal(b->dtype, MQ_DTYPE_F32);
	assert_int_equal(b->end - b->begin, 64 * 4);
	assert_memory_equal(file + h.data_start + b->begin, f->t[1].data, 64 * 4);
	/* the all-zero row is all zero codes */
	const struct mq_st_tensor *p = st_find(&h, "layers.2.proj.weight");
	static const int8_t zeros[40];
	assert_memory_equal(file + h.data_start + p->begin + 5 * 40, zeros, 40);
	assert_string_equal(mq_st_meta_get(&h, "scheme"), "int8");
	assert_string_equal(mq_st_meta_get(&h, "per_channel"), "true");
	assert_non_null(mq_st_meta_get(&h, "fingerprint"));
	assert_int_equal(strlen(mq_st_meta_get(&h, "fingerprint")), 2 * MQ_SHA256_LEN);
	assert_int_equal(dir_count(f->dir), 2); /* the input and the output: no partial file, no journal */
	free(file);
	mq_st_header_release(&h);
	mq_options_release(&o);
}

static void test_run_existing_output_without_force_is_refused_and_kept(void **state)
{
	struct fixture *f = *state;
	static const char before[] = "not a model, and not to be overwritten";
	FILE *out = fopen(f->output, "wb");
	assert_non_null(out);
	fputs(before, out);
	fclose(out);
	struct mq_options o;
	struct mq_error e = { 0 };
	run_options(&o, f->input, f->output);
	assert_int_equal(run(f, &o, &e), MQ_ERR_OUTPUT);
	assert_non_null(strstr(e.msg, "exists; use --force"));
	size_t len;
	unsigned char *now = read_all(f->output, &len);
	assert_non_null(now);
	assert_int_equal(len, strlen(before));
	assert_memory_equal(now, before, len);
	free(now);
	assert_int_equal(dir_count(f->dir), 2);
	mq_options_release(&o);

	/* with --force the same run replaces it */
	run_options(&o, f->input, f->output);
	o.force = 1;
	memset(&e, 0, sizeof(e));
	assert_int_equal(run(f, &o, &e), MQ_OK);
	struct mq_st_header h;
	assert_int_equal(st_read_header(f->output, &h), 0);
	mq_st_header_release(&h);
	mq_options_release(&o);
}

static void test_run_nan_fails_naming_the_tensor_and_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	f->t[2].data[11 * 64 + 17] = NAN;
	st_write(f->input, f->t, MODEL_TENSORS);
	struct mq_options o;
	struct mq_error e = { 0 };
	run_options(&o, f->input, f->output);
	assert_int_equal(run(f, &o, &e), MQ_ERR_DATA);
	assert_non_null(strstr(e.msg, "tensor 'layers.1.mlp.weight': NaN at row 11, element 17"));
	assert_false(file_exists(f->output));
	char tmp[160];
	snprintf(tmp, sizeof(tmp), "%s/.out.safetensors.tmp", f->dir);
	assert_false(file_exists(tmp));
	assert_int_equal(dir_count(f->dir), 1); /* only the input: no partial output, no journal */
	mq_options_release(&o);
}

int main(void)
{
	mq_log_init(0, 1); /* rank 0, quiet: no progress lines */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_run_int8_per_channel_output_parses_and_dequantizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_existing_output_without_force_is_refused_and_kept, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_run_nan_fails_naming_the_tensor_and_leaves_nothing, setup, teardown),
	};
	return cmocka_run_group_tests_name("run", tests, NULL, NULL);
}
