/*
 * resume: the partial output and its journal, through whole single-rank runs
 * (mq_run_model on the mock comm). A run is interrupted as SIGUSR1 would
 * interrupt it: the mock's write hook sets mq_stop_requested during the
 * first unit's writes, so that unit finishes and no other starts, with no
 * timing involved. Then: the next run resumes the journaled unit and writes
 * the bytes of a fresh run; a journal of other inputs (a new modification
 * time) is discarded; a unit whose bytes in the partial changed is redone;
 * in job mode an up-to-date output is skipped and an out-of-date one redone.
 */
#include "run_util.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "mock_comm.h"
#include "output.h"
#include "run.h"

/* Output bytes of the first unit (layers.0.attn.weight, 64 x 96): the int8 codes and a float scale per row. */
#define UNIT0_BYTES (64 * 96 + 64 * 4)

struct writes {
	int n;            /* mq_comm_file_write calls */
	uint64_t bytes;
	int stop_after;   /* > 0: request a stop (as SIGUSR1 does) at that write */
};

static void count_write(void *ctx, uint64_t offset, size_t n)
{
	struct writes *w = ctx;
	(void)offset;
	w->n++;
	w->bytes += n;
	if (w->stop_after > 0 && w->n >= w->stop_after)
		mq_stop_requested = 1;
}

struct fixture {
	char dir[64], input[128], output[128], fresh[128], tmp[160], journal[176];
	struct st_tensor t[MODEL_TENSORS];
	struct mq_comm *comm;
	struct writes w;
	unsigned char *fresh_bytes; /* a fresh, uninterrupted run's output */
	size_t fresh_len;
	uint64_t fresh_written;     /* and the bytes it wrote */
};

/* One run of the options (output: the fixture's, or path); rank 0's messages into *text (malloc'd). */
static int run_to(struct fixture *f, const char *path, int job_mode, int *skipped, char **text, struct mq_error *e)
{
	struct mq_options o;
	struct capture c;
	run_options(&o, f->input, path ? path : f->output);
	o.job_mode = job_mode;
	memset(e, 0, sizeof(*e));
	f->w.n = 0;
	f->w.bytes = 0;
	capture_begin(&c);
	int rc = mq_run_model(f->comm, &o, skipped, e);
	*text = capture_end(&c);
	mq_options_release(&o);
	assert_int_equal(rc, e->code);
	return rc;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	dir_make(f->dir);
	snprintf(f->input, sizeof(f->input), "%s/model.safetensors", f->dir);
	snprintf(f->output, sizeof(f->output), "%s/out.safetensors", f->dir);
	snprintf(f->fresh, sizeof(f->fresh), "%s/fresh.safetensors", f->dir);
	snprintf(f->tmp, sizeof(f->tmp), "%s/.out.safetensors.tmp", f->dir);
	snprintf(f->journal, sizeof(f->journal), "%s.journal", f->tmp);
	model_init(f->t);
	st_write(f->input, f->t, MODEL_TENSORS);
	f->comm = mq_comm_init(NULL, NULL);
	assert_non_null(f->comm);
	mock_comm_set_write_hook(count_write, &f->w);
	/* the reference: a fresh run of the same options to another name (the name is not in the bytes) */
	struct mq_error e;
	int skipped;
	char *text;
	assert_int_equal(run_to(f, f->fresh, 0, &skipped, &text, &e), MQ_OK);
	free(text);
	f->fresh_bytes = read_all(f->fresh, &f->fresh_len);
	assert_non_null(f->fresh_bytes);
	f->fresh_written = f->w.bytes;
	assert_true(f->fresh_written > UNIT0_BYTES);
	unlink(f->fresh);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	mock_comm_set_write_hook(NULL, NULL);
	mq_stop_requested = 0;
	model_release(f->t);
	free(f->fresh_bytes);
	mq_comm_free(f->comm);
	dir_remove(f->dir);
	free(f);
	return 0;
}

/* A run stopped after its first unit: the partial output (at its full size) and the journal stay. */
static void interrupt(struct fixture *f)
{
	struct mq_error e;
	int skipped;
	char *text;
	f->w.stop_after = 1;
	int rc = run_to(f, NULL, 0, &skipped, &text, &e);
	f->w.stop_after = 0;
	mq_stop_requested = 0; /* a signal's flag: nothing in the run clears it */
	assert_int_equal(rc, MQ_ERR_INTERRUPTED);
	assert_non_null(strstr(e.msg, "run the same command again to resume"));
	assert_non_null(strstr(text, "1 of 4 work units are finished and journaled"));
	free(text);
	assert_false(file_exists(f->output));
	struct stat st;
	assert_int_equal(stat(f->tmp, &st), 0);
	assert_int_equal((size_t)st.st_size, f->fresh_len);
	assert_true(file_exists(f->journal));
}

/* The run after it: the output is the fresh run's bytes, and nothing of the partial is left. */
static void check_finished(struct fixture *f)
{
	size_t len;
	unsigned char *out = read_all(f->output, &len);
	assert_non_null(out);
	assert_int_equal(len, f->fresh_len);
	assert_memory_equal(out, f->fresh_bytes, len);
	free(out);
	assert_false(file_exists(f->tmp));
	assert_false(file_exists(f->journal));
	assert_int_equal(dir_count(f->dir), 2);
}

static void test_resume_interrupted_run_resumes_to_the_same_bytes(void **state)
{
	struct fixture *f = *state;
	interrupt(f);
	struct mq_error e;
	int skipped;
	char *text;
	assert_int_equal(run_to(f, NULL, 0, &skipped, &text, &e), MQ_OK);
	assert_non_null(strstr(text, "resuming an interrupted run: 1 of 4 work units verified"));
	free(text);
	assert_int_equal(f->w.bytes, f->fresh_written - UNIT0_BYTES); /* the resumed unit is not written again */
	check_finished(f);
}

static void test_resume_journal_of_other_inputs_is_discarded(void **state)
{
	struct fixture *f = *state;
	interrupt(f);
	/* the same bytes with another modification time: the journal's identity no longer matches */
	const struct timespec when[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, f->input, when, 0), 0);
	struct mq_error e;
	int skipped;
	char *text;
	assert_int_equal(run_to(f, NULL, 0, &skipped, &text, &e), MQ_OK);
	char want[256];
	snprintf(want, sizeof(want), "discarding '%s' (left by a run with other inputs or options", f->tmp);
	assert_non_null(strstr(text, want));
	assert_null(strstr(text, "resuming"));
	free(text);
	assert_int_equal(f->w.bytes, f->fresh_written); /* every unit redone */
	check_finished(f);
}

static void test_resume_unit_whose_bytes_changed_is_redone(void **state)
{
	struct fixture *f = *state;
	interrupt(f);
	/* one byte of the first unit's int8 codes in the partial (the final layout is the partial's) */
	struct mq_st_header h;
	assert_int_equal(st_parse_bytes(f->fresh_bytes, f->fresh_len, &h), 0);
	const struct mq_st_tensor *q = st_find(&h, "layers.0.attn.weight");
	assert_non_null(q);
	uint64_t at = h.data_start + q->begin + 100;
	mq_st_header_release(&h);
	FILE *p = fopen(f->tmp, "r+b");
	assert_non_null(p);
	assert_int_equal(fseek(p, (long)at, SEEK_SET), 0);
	assert_int_equal(fputc(f->fresh_bytes[at] ^ 0x5a, p), f->fresh_bytes[at] ^ 0x5a);
	assert_int_equal(fclose(p), 0);
	struct mq_error e;
	int skipped;
	char *text;
	assert_int_equal(run_to(f, NULL, 0, &skipped, &text, &e), MQ_OK);
	assert_non_null(strstr(text, "resuming an interrupted run: 0 of 4 work units verified"));
	free(text);
	assert_int_equal(f->w.bytes, f->fresh_written);
	check_finished(f);
}

static void test_resume_job_mode_skips_an_up_to_date_output(void **state)
{
	struct fixture *f = *state;
	struct mq_error e;
	int skipped = -1;
	char *text;
	assert_int_equal(run_to(f, NULL, 1, &skipped, &text, &e), MQ_OK);
	assert_int_equal(skipped, 0);
	free(text);
	struct stat before, after;
	assert_int_equal(stat(f->output, &before), 0);

	assert_int_equal(run_to(f, NULL, 1, &skipped, &text, &e), MQ_OK);
	assert_int_equal(skipped, 1);
	assert_non_null(strstr(text, "up to date, skipped"));
	free(text);
	assert_int_equal(f->w.n, 0); /* hashed the sources, wrote nothing */
	assert_int_equal(stat(f->output, &after), 0);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
	assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
	check_finished(f);

	/* one value changed, the same size: out of date, redone */
	f->t[2].data[5] = -f->t[2].data[5];
	st_write(f->input, f->t, MODEL_TENSORS);
	assert_int_equal(run_to(f, NULL, 1, &skipped, &text, &e), MQ_OK);
	assert_int_equal(skipped, 0);
	assert_non_null(strstr(text, "out of date"));
	free(text);
	size_t len;
	unsigned char *out = read_all(f->output, &len);
	assert_non_null(out);
	assert_int_equal(len, f->fresh_len);
	assert_memory_not_equal(out, f->fresh_bytes, len);
	free(out);
}

int main(void)
{
	mq_log_init(0, 0); /* rank 0, not quiet: the tests read its messages (captured) */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_resume_interrupted_run_resumes_to_the_same_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_journal_of_other_inputs_is_discarded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_unit_whose_bytes_changed_is_redone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_job_mode_skips_an_up_to_date_output, setup, teardown),
	};
	return cmocka_run_group_tests_name("resume", tests, NULL, NULL);
}
