/* Metadata: the reserved header always fits, parses back, and carries the keys. */
#include "manifest_util.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>

#include "metadata.h"

static const struct spec model[] = {
	{ "a.weight", MQ_DTYPE_F32, 2, { 4, 8 } },
	{ "b.weight", MQ_DTYPE_BF16, 4, { 2, 2, 3, 3 } },
	{ "b.bias", MQ_DTYPE_F32, 1, { 2 } },
	{ "we\"ird\\name.weight", MQ_DTYPE_F16, 2, { 2, 2 } },
};

struct fixture {
	struct mq_manifest m;
	struct mq_options o;
	struct mq_plan p;
	struct mq_tensor_result res[4];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct mq_error e = { 0 };
	make_manifest(&f->m, model, 4);
	f->o.scheme = MQ_SCHEME_INT8_ASYM;
	f->o.memory_budget = 64u << 20;
	f->o.input = "model.safetensors";
	f->o.out_format = "safetensors"; /* what a run sets once it knows the output path */
	if (mq_plan_build(&f->m, &f->o, 2, NULL, &f->p, &e))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	mq_plan_release(&f->p);
	mq_manifest_release(&f->m);
	free(f);
	return 0;
}

/* Builds the final header and parses it back with the safetensors reader. */
static void check_header(struct fixture *f, uint64_t reserved, struct mq_st_header *h)
{
	struct mq_buf b = MQ_BUF_INIT;
	struct mq_error e = { 0 };
	assert_int_equal(mq_metadata_header(&f->m, &f->p, &f->o, f->res, NULL, reserved, &b, &e), 0);
	assert_int_equal(b.len, reserved);
	assert_int_equal(b.len % 8, 0);
	assert_int_equal(b.data[0], '{');
	assert_int_equal(mq_st_parse("out", b.data, b.len, 8 + b.len + f->p.bytes_out, h, &e), 0);
	mq_buf_release(&b);
}

static void test_metadata_extreme_values_fit_the_reservation(void **state)
{
	struct fixture *f = *state;
	uint64_t reserved;
	struct mq_error e = { 0 };
	assert_int_equal(mq_metadata_reserve(&f->m, &f->p, &f->o, 0, &reserved, &e), 0);
	double extremes[][3] = {
		{ 1.0, 0.0, 0.0 },                        /* exact: sqnr is null */
		{ -1.23456789e-308, 9.87654321e-300, 1e300 }, /* widest exponents */
		{ 1e-320, 1e-320, 1e-320 },               /* subnormals */
		{ 123456789.0, 1.0, 0.000123456789 },
	};
	for (size_t k = 0; k < sizeof(extremes) / sizeof(extremes[0]); k++) {
		for (int i = 0; i < 4; i++) {
			f->res[i].signal = fabs(extremes[k][0]);
			f->res[i].noise = extremes[k][1];
			f->res[i].max_abs = extremes[k][2];
			memset(f->res[i].sha256, 0xab, MQ_SHA256_LEN);
		}
		struct mq_st_header h;
		check_header(f, reserved, &h);
		mq_st_header_release(&h);
	}
}

static void test_metadata_keys_and_records(void **state)
{
	struct fixture *f = *state;
	uint64_t reserved;
	struct mq_error e = { 0 };
	assert_int_equal(mq_metadata_reserve(&f->m, &f->p, &f->o, 0, &reserved, &e), 0);
	for (int i = 0; i < 4; i++) {
		f->res[i] = (struct mq_tensor_result){ .signal = 100.0, .noise = 1.0, .max_abs = 0.5 };
		f->res[i].sha256[0] = (uint8_t)i;
	}
	struct mq_st_header h;
	check_header(f, reserved, &h);
	const char *keys[] = { "format", "quantization_dtype", "scheme", "per_channel", "selected_layers",
			       "calibration_samples", "mq_dist_version", "original_size_mb", "quantized_size_mb",
			       "compression_ratio", "sqnr_db", "layers", "provenance", "symmetric" };
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		if (!mq_st_meta_get(&h, keys[k]))
			fail_msg("missing metadata key %s", keys[k]);
	assert_string_equal(mq_st_meta_get(&h, "format"), "pt");
	assert_string_equal(mq_st_meta_get(&h, "quantization_dtype"), "int8");
	assert_string_equal(mq_st_meta_get(&h, "scheme"), "int8-asym");
	assert_string_equal(mq_st_meta_get(&h, "symmetric"), "false");
	assert_string_equal(mq_st_meta_get(&h, "sqnr_db"), "20");
	cJSON *layers = cJSON_Parse(mq_st_meta_get(&h, "layers"));
	assert_non_null(layers);
	assert_int_equal(cJSON_GetArraySize(layers), 4);
	cJSON *a = cJSON_GetObjectItemCaseSensitive(layers, "a.weight");
	assert_string_equal(cJSON_GetObjectItem(a, "action")->valuestring, "quantized");
	assert_true(cJSON_GetObjectItem(a, "sqnr_db")->valuedouble == 20.0);
	assert_true(cJSON_GetObjectItem(a, "mse")->valuedouble == 1.0 / 32.0);
	assert_int_equal(cJSON_GetObjectItem(a, "bytes_out")->valueint, 32 + 16 + 4);
	cJSON *w = cJSON_GetObjectItemCaseSensitive(layers, "we\"ird\\name.weight");
	assert_non_null(w);
	cJSON *bias = cJSON_GetObjectItemCaseSensitive(layers, "b.bias");
	assert_string_equal(cJSON_GetObjectItem(bias, "action")->valuestring, "kept");
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(bias, "sqnr_db")));
	cJSON_Delete(layers);
	cJSON *sel = cJSON_Parse(mq_st_meta_get(&h, "selected_layers"));
	assert_int_equal(cJSON_GetArraySize(sel), 3);
	cJSON_Delete(sel);
	cJSON *prov = cJSON_Parse(mq_st_meta_get(&h, "provenance"));
	uint8_t d[MQ_DIGEST_MAX];
	char hex[65];
	mq_metadata_source_digest(&f->p, f->res, MQ_DIGEST_XXH3, d); /* the options' default */
	mq_hex(d, mq_digest_len(MQ_DIGEST_XXH3), hex);
	assert_int_equal(strlen(hex), 32);
	assert_string_equal(cJSON_GetObjectItem(prov, "source_xxh3_128")->valuestring, hex);
	assert_null(cJSON_GetObjectItem(prov, "source_sha256"));
	cJSON_Delete(prov);
	/* the output tensors are all there, with their scale and zero point */
	assert_int_equal(h.n_tensors, 3 * 3 + 1);
	mq_st_header_release(&h);
}

static void test_metadata_sqnr(void **state)
{
	(void)state;
	/* log10 within a few ulps (glibc: under 2) and the product by 10: 4 DBL_EPSILON relative */
	assert_true(fabs(mq_sqnr_db(1000.0, 1.0) - 30.0) <= 30.0 * 4 * DBL_EPSILON);
	assert_true(isinf(mq_sqnr_db(1.0, 0.0)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_metadata_extreme_values_fit_the_reservation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metadata_keys_and_records, setup, teardown),
		cmocka_unit_test(test_metadata_sqnr),
	};
	return cmocka_run_group_tests_name("metadata", tests, NULL, NULL);
}
