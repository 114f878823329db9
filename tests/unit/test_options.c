/* Options: parsing, validation, default output names. */
#include "test_util.h"

#include "options.h"

static int parse(struct mq_options *o, struct mq_error *e, int argc, const char **argv)
{
	memset(e, 0, sizeof(*e));
	return mq_options_parse(argc, (char **)argv, o, e);
}

static void test_options_defaults_and_values(void **state)
{
	(void)state;
	struct mq_options o;
	struct mq_error e;
	const char *a[] = { "mq-dist", "m.safetensors" };
	assert_int_equal(parse(&o, &e, 2, a), 0);
	assert_int_equal(o.command, MQ_CMD_RUN);
	assert_int_equal(o.scheme, MQ_SCHEME_INT8);
	assert_int_equal(o.per_tensor, 0);
	assert_int_equal(o.memory_budget, 256u << 20);
	char *out = mq_options_default_output(&o, 0);
	assert_string_equal(out, "m.int8.safetensors");
	free(out);
	mq_options_release(&o);

	const char *b[] = { "mq-dist", "--scheme=int8-asym", "-g", "tensor", "-o", "x.safetensors", "--include", "a.*",
			    "-x", "b", "--exclude=c", "--force", "--dry-run", "-m", "16", "dir/model.safetensors.index.json" };
	assert_int_equal(parse(&o, &e, 16, b), 0);
	assert_int_equal(o.scheme, MQ_SCHEME_INT8_ASYM);
	assert_int_equal(o.per_tensor, 1);
	assert_string_equal(o.output, "x.safetensors");
	assert_int_equal(o.n_includes, 1);
	assert_int_equal(o.n_excludes, 2);
	assert_string_equal(o.excludes[1], "c");
	assert_true(o.force && o.dry_run);
	assert_int_equal(o.memory_budget, 16u << 20);
	out = mq_options_default_output(&o, 0);
	assert_string_equal(out, "dir/model.int8-asym-per-tensor.safetensors");
	free(out);
	mq_options_release(&o);

	const char *c[] = { "mq-dist", "inspect", "f.safetensors" };
	assert_int_equal(parse(&o, &e, 3, c), 0);
	assert_int_equal(o.command, MQ_CMD_INSPECT);
	mq_options_release(&o);
}

static void expect_usage(int argc, const char **argv, const char *needle)
{
	struct mq_options o;
	struct mq_error e;
	assert_int_equal(parse(&o, &e, argc, argv), MQ_ERR_USAGE);
	if (!strstr(e.msg, needle))
		fail_msg("message '%s' lacks '%s'", e.msg, needle);
	mq_options_release(&o);
}

static void test_options_errors_name_the_option(void **state)
{
	(void)state;
	expect_usage(1, (const char *[]){ "mq-dist" }, "no model given");
	expect_usage(3, (const char *[]){ "mq-dist", "--scheme", "int3" }, "--scheme 'int3'");
	/* uint8 wrote U8 codes and zero points; the name is refused, pointing to int8-asym */
	expect_usage(3, (const char *[]){ "mq-dist", "--scheme=uint8", "m" }, "use int8-asym");
	expect_usage(5, (const char *[]){ "mq-dist", "--calib", "c.h5", "--act=uint8", "m" }, "use int8-asym");
	expect_usage(3, (const char *[]){ "mq-dist", "--granularity=row", "m" }, "--granularity 'row'");
	expect_usage(3, (const char *[]){ "mq-dist", "--include", "(" }, "invalid regular expression");
	expect_usage(3, (const char *[]){ "mq-dist", "--bogus", "m" }, "unknown option '--bogus'");
	expect_usage(2, (const char *[]){ "mq-dist", "-o" }, "needs a value");
	expect_usage(3, (const char *[]){ "mq-dist", "a", "b" }, "more than one model");
	expect_usage(4, (const char *[]){ "mq-dist", "-m", "2", "m" }, "--memory-budget '2'");
	expect_usage(4, (const char *[]){ "mq-dist", "--scheme=fp16", "--granularity=tensor", "m" }, "does not apply");
	expect_usage(3, (const char *[]){ "mq-dist", "--force=1", "m" }, "takes no value");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options_defaults_and_values),
		cmocka_unit_test(test_options_errors_name_the_option),
	};
	return cmocka_run_group_tests_name("options", tests, NULL, NULL);
}
