/* The resume journal: entries read back, a torn tail cut off, another run's journal refused. */
#include "test_util.h"

#include <stdio.h>
#include <unistd.h>

#include "bounds.h"
#include "journal.h"

static char path[64];

static int setup(void **state)
{
	(void)state;
	snprintf(path, sizeof(path), "mq-test-journal-%d", (int)getpid());
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

static void test_journal_entries_torn_tail_and_identity(void **state)
{
	(void)state;
	uint8_t id[MQ_SHA256_LEN], other[MQ_SHA256_LEN];
	memset(id, 7, sizeof(id));
	memset(other, 8, sizeof(other));
	struct mq_error e = { 0 };
	int fd = mq_journal_start(path, id, 10, 0, &e);
	assert_true(fd >= 0);
	char rec[3][40];
	for (int i = 0; i < 3; i++) {
		memset(rec[i], 'a' + i, sizeof(rec[i]));
		assert_int_equal(mq_journal_append(fd, rec[i], (uint32_t)(10 + 10 * i)), 0);
	}
	close(fd);
	struct mq_journal_load jl;
	assert_int_equal(mq_journal_read(path, id, 10, &jl), 0);
	assert_int_equal(jl.n, 3);
	assert_int_equal(jl.entries[2].len, 30);
	assert_memory_equal(jl.entries[1].rec, rec[1], 20);
	uint64_t full = jl.valid_len;
	mq_journal_load_release(&jl);
	/* another identity or unit count: not this run's journal */
	assert_int_equal(mq_journal_read(path, other, 10, &jl), -1);
	assert_int_equal(mq_journal_read(path, id, 11, &jl), -1);
	/* a crash in the middle of the last entry: the first two stand, and appending goes on after them */
	assert_int_equal(truncate(path, (off_t)(full - 5)), 0);
	assert_int_equal(mq_journal_read(path, id, 10, &jl), 0);
	assert_int_equal(jl.n, 2);
	uint64_t keep = jl.valid_len;
	mq_journal_load_release(&jl);
	fd = mq_journal_start(path, id, 10, keep, &e);
	assert_true(fd >= 0);
	assert_int_equal(mq_journal_append(fd, rec[2], 5), 0);
	close(fd);
	assert_int_equal(mq_journal_read(path, id, 10, &jl), 0);
	assert_int_equal(jl.n, 3);
	assert_int_equal(jl.entries[2].len, 5);
	mq_journal_load_release(&jl);
	/* a flipped byte in an entry ends the journal there */
	FILE *f = fopen(path, "r+b");
	fseek(f, (long)keep - 3, SEEK_SET);
	fputc('Z', f);
	fclose(f);
	assert_int_equal(mq_journal_read(path, id, 10, &jl), 0);
	assert_int_equal(jl.n, 1);
	mq_journal_load_release(&jl);
}

/* A journal larger than MQ_JOURNAL_MAX_BYTES is not read (a new run starts instead). */
static void test_journal_larger_than_the_limit_is_not_read(void **state)
{
	(void)state;
	uint8_t id[MQ_SHA256_LEN];
	memset(id, 7, sizeof(id));
	struct mq_error e = { 0 };
	int fd = mq_journal_start(path, id, 10, 0, &e);
	assert_true(fd >= 0);
	close(fd);
	struct mq_journal_load jl;
	assert_int_equal(mq_journal_read(path, id, 10, &jl), 0);
	mq_journal_load_release(&jl);
	assert_int_equal(truncate(path, (off_t)MQ_JOURNAL_MAX_BYTES + 1), 0); /* sparse */
	assert_int_equal(mq_journal_read(path, id, 10, &jl), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_journal_entries_torn_tail_and_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_larger_than_the_limit_is_not_read, setup, teardown),
	};
	return cmocka_run_group_tests_name("journal", tests, NULL, NULL);
}
