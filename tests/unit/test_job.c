/* Job files: option priority, paths, and errors that name the entry and the key. */
#include "test_util.h"

#include <stdio.h>

#include "job.h"
#include "options.h"

static int parse(const char *text, int argc, char **argv, struct mq_job *job, struct mq_error *e)
{
	memset(e, 0, sizeof(*e));
	return mq_job_parse("jobs/zoo.json", text, strlen(text), argc, argv, job, e);
}

/* The options one model ends up with. */
static void model_options(const struct mq_job *job, int i, struct mq_options *o)
{
	struct mq_error e = { 0 };
	assert_int_equal(mq_options_parse(job->models[i].argc, job->models[i].argv, o, &e), 0);
}

static void test_job_priority_is_cli_then_model_then_defaults(void **state)
{
	(void)state;
	const char *text = "{\"defaults\": {\"scheme\": \"uint8\", \"exclude\": [\"a\", \"b\"], \"memory_budget\": 64,"
			   " \"no-checksum\": true},"
			   " \"models\": ["
			   "  {\"name\": \"one\", \"input\": \"m/one.safetensors\", \"options\": {\"exclude\": \"c\", \"no-checksum\": false}},"
			   "  {\"input\": \"/abs/two.pt\", \"output\": \"out/two.pt\", \"options\": {\"granularity\": \"tensor\"}}"
			   " ]}";
	char *argv[] = { "mq-dist", "--job", "jobs/zoo.json", "-g", "channel", "--groups", "2", NULL };
	struct mq_job job;
	struct mq_error e;
	assert_int_equal(parse(text, 7, argv, &job, &e), 0);
	assert_int_equal(job.n_models, 2);
	struct mq_options o;
	model_options(&job, 0, &o);
	assert_int_equal(o.scheme, MQ_SCHEME_UINT8);        /* from the defaults */
	assert_int_equal(o.n_excludes, 1);                  /* the model's list replaces the defaults' */
	assert_string_equal(o.excludes[0], "c");
	assert_int_equal(o.no_checksum, 0);                 /* the model turns a default flag off */
	assert_int_equal(o.memory_budget, 64ull << 20);     /* '_' stands for '-' */
	assert_string_equal(o.input, "jobs/m/one.safetensors"); /* relative to the job file */
	assert_string_equal(job.models[0].name, "one");
	mq_options_release(&o);
	model_options(&job, 1, &o);
	assert_int_equal(o.per_tensor, 0);                  /* the command line wins over the model */
	assert_int_equal(o.no_checksum, 1);
	assert_int_equal(o.n_excludes, 2);
	assert_string_equal(o.output, "jobs/out/two.pt");
	assert_string_equal(o.input, "/abs/two.pt");
	assert_string_equal(job.models[1].name, "two");     /* the input's stem */
	mq_options_release(&o);
	assert_string_equal(job.report, "jobs/zoo-report");
	mq_job_release(&job);
}

static void expect_bad(const char *text, const char *needle1, const char *needle2)
{
	char *argv[] = { "mq-dist", "--job", "jobs/zoo.json", NULL };
	struct mq_job job;
	struct mq_error e;
	assert_int_equal(parse(text, 3, argv, &job, &e), MQ_ERR_USAGE);
	if (!strstr(e.msg, needle1) || !strstr(e.msg, needle2) || !strstr(e.msg, "jobs/zoo.json"))
		fail_msg("message '%s' lacks '%s' or '%s'", e.msg, needle1, needle2);
}

static void test_job_errors_name_the_entry_and_the_key(void **state)
{
	(void)state;
	expect_bad("{\"models\": [{\"input\": \"x\", \"optons\": {}}]}", "models[0]", "optons");
	expect_bad("{\"defaults\": {\"schem\": \"int8\"}, \"models\": [{\"input\": \"x\"}]}", "defaults", "schem");
	expect_bad("{\"models\": [{\"input\": \"x\"}, {\"name\": \"b\", \"input\": \"y\", \"options\": {\"scheme\": \"int4\"}}]}",
		   "models[1] ('b')", "int4");
	expect_bad("{\"models\": [{\"input\": \"x\", \"options\": {\"force\": \"yes\"}}]}", "force", "true or false");
	expect_bad("{\"models\": [{\"input\": \"x\", \"options\": {\"job\": \"y.json\"}}]}", "job", "cannot be set");
	expect_bad("{\"models\": [{\"input\": \"a/m.safetensors\"}, {\"input\": \"b/m.safetensors\"}]}", "both named", "'m'");
	expect_bad("{\"models\": [{\"name\": \"a\", \"input\": \"x\", \"output\": \"o.pt\"},"
		   " {\"name\": \"b\", \"input\": \"y\", \"output\": \"o.pt\"}]}", "same output", "o.pt");
	expect_bad("{\"models\": []}", "models", "non-empty");
	expect_bad("{\"modles\": []}", "top level", "modles");
	expect_bad("[1, 2]", "not a valid JSON object", "zoo");
	expect_bad("{\"models\": [{\"input\": \"x\", \"options\": {\"observer\": \"mse\"}}]}", "models[0]", "--calib");
	expect_bad("{\"models\": [{\"input\": \"x\", \"calib\": \"c.h5\", \"options\": {\"calib\": \"d.h5\"}}]}", "models[0]",
		   "given twice");
}

/*
 * Found by fuzz_job: the message for invalid JSON quoted the text after the
 * error with %.40s, reading past the end of a text that ends without a NUL,
 * as it does on every rank but 0.
 */
static void test_job_invalid_json_without_a_nul_is_quoted_within_its_length(void **state)
{
	(void)state;
	static const char *const texts[] = { "", "{", "{\"models\": [", "{\"models\": [{\"input\": \"x\"}]",
					     "nul" };
	char *argv[] = { "mq-dist", "--job", "jobs/zoo.json", NULL };
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		size_t n = strlen(texts[i]);
		char *text = malloc(n ? n : 1); /* exactly n bytes, no NUL */
		memcpy(text, texts[i], n);
		struct mq_job job;
		struct mq_error e = { 0 };
		assert_int_equal(mq_job_parse("jobs/zoo.json", text, n, 3, argv, &job, &e), MQ_ERR_USAGE);
		if (!strstr(e.msg, "not a valid JSON object") || !strstr(e.msg, "jobs/zoo.json"))
			fail_msg("message '%s' for '%s'", e.msg, texts[i]);
		free(text);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_job_priority_is_cli_then_model_then_defaults),
		cmocka_unit_test(test_job_errors_name_the_entry_and_the_key),
		cmocka_unit_test(test_job_invalid_json_without_a_nul_is_quoted_within_its_length),
	};
	return cmocka_run_group_tests_name("job", tests, NULL, NULL);
}
