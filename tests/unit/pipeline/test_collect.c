/*
 * collect: rank 0's side of the unit records, on a plan of a few tensors of
 * several units each (no data is read: the records are made up). Sums in
 * unit order whatever order the records come in, a failed record cancels, a
 * tensor's last record finishes it, records are journaled once, and records
 * that come through comm are taken by collect_poll.
 */
#include "manifest_util.h"

#include <stdio.h>
#include <unistd.h>

#include <zlib.h>

#include "collect.h"
#include "journal.h"
#include "mock_comm.h"
#include "plan.h"
#include "state.h"

/* 16 MiB chunks: a.weight is 4 units, b.weight 3, the others one or none. */
static const struct spec model[] = {
	{ "a.weight", MQ_DTYPE_F32, 2, { 16384, 1024 } },
	{ "b.weight", MQ_DTYPE_F32, 2, { 12288, 1024 } },
	{ "b.bias", MQ_DTYPE_F32, 1, { 1024 } },
	{ "c.weight", MQ_DTYPE_F32, 2, { 16, 16 } },
	{ "d.weight", MQ_DTYPE_F32, 2, { 0, 16 } },
};
#define N_MODEL ((int)(sizeof(model) / sizeof(model[0])))

struct fixture {
	struct mq_options o;
	struct run r;
};

/* Rank 0 of 1 with the plan for n_ranks (the units do not depend on it), before any record. */
static struct fixture *fixture_new(int n_ranks)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->o.scheme = MQ_SCHEME_INT8;
	f->o.memory_budget = 256u << 20;
	f->o.input = "model.safetensors";
	struct run *r = &f->r;
	r->comm = mq_comm_init(NULL, NULL);
	assert_non_null(r->comm);
	r->rank = mq_comm_rank(r->comm);
	r->size = mq_comm_size(r->comm);
	r->opt = &f->o;
	make_manifest(&r->man, model, N_MODEL);
	r->writer = &mq_writer_torch; /* a row that needs each output tensor's CRC: collect joins them */
	r->journal_fd = r->lock_fd = -1;
	assert_int_equal(mq_plan_build(&r->man, &f->o, n_ranks, NULL, &r->plan, &r->err), 0);
	assert_int_equal(collect_setup(r), 0);
	return f;
}

static void fixture_free(struct fixture *f)
{
	collect_release(&f->r);
	mq_plan_release(&f->r.plan);
	mq_manifest_release(&f->r.man);
	mq_comm_free(f->r.comm);
	free(f);
}

static int tensor_index(const struct run *r, const char *name)
{
	int i = mq_manifest_find(&r->man, name);
	assert_true(i >= 0);
	return i;
}

/* Figures that do not add up the same in another order: 0.1 + 0.2 + 0.3 is not 0.3 + 0.2 + 0.1. */
static double signal_of(int u)
{
	return 0.1 * (double)(u % 5 + 1);
}

static double noise_of(int u)
{
	return u % 2 ? 1e-3 / (double)(u + 3) : 1e3 + 0.7 * (double)u;
}

/* The bytes a unit "wrote" to its k-th output tensor, for its CRC. */
static size_t payload(int u, int k, unsigned char *buf)
{
	size_t n = 10 + (size_t)u + (size_t)k;
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)(u * 31 + k * 7 + (int)i);
	return n;
}

/* Unit u's record (malloc'd, *len its size with the chunk digests), or a failed one. */
static struct unit_record *make_record(const struct run *r, int u, int failed, size_t *len)
{
	const struct mq_unit *un = &r->plan.units[u];
	const struct mq_plan_tensor *pt = &r->plan.tensors[un->tensor];
	uint32_t n_dig = failed ? 0 : (uint32_t)(un->chunk_end - un->chunk_begin);
	*len = sizeof(struct unit_record) + n_dig * (size_t)MQ_SHA256_LEN;
	struct unit_record *rec = calloc(1, *len);
	assert_non_null(rec);
	rec->unit = u;
	rec->failed = failed;
	rec->n_digests = n_dig;
	if (failed)
		return rec;
	rec->signal = signal_of(u);
	rec->noise = noise_of(u);
	rec->max_abs = 0.01 * (double)((u * 7) % 5);
	uint8_t *dig = (uint8_t *)(rec + 1);
	for (size_t i = 0; i < n_dig * (size_t)MQ_SHA256_LEN; i++)
		dig[i] = (uint8_t)(u * 13 + (int)i);
	const int outs[3] = { pt->out_data, pt->out_scale, pt->out_zero_point };
	unsigned char buf[64];
	for (int k = 0; k < 3; k++) {
		if (outs[k] < 0)
			continue;
		size_t n = payload(u, k, buf);
		rec->crc[k] = (uint32_t)crc32(0L, buf, (uInt)n);
		rec->crc_len[k] = n;
	}
	return rec;
}

static void take(struct run *r, int u)
{
	size_t len;
	struct unit_record *rec = make_record(r, u, 0, &len);
	collect_take(r, rec, len);
	free(rec);
}

/* Records in any order give the per-tensor results of unit order, bit for bit. */
static void test_collect_any_order_sums_in_unit_order(void **state)
{
	(void)state;
	struct fixture *fwd = fixture_new(1), *rev = fixture_new(1);
	const struct mq_plan *p = &fwd->r.plan;
	assert_int_equal(p->tensors[tensor_index(&fwd->r, "a.weight")].n_units, 4);
	assert_int_equal(p->tensors[tensor_index(&fwd->r, "b.weight")].n_units, 3);
	for (int u = 0; u < p->n_units; u++)
		take(&fwd->r, u);
	for (int u = p->n_units - 1; u >= 0; u--)
		take(&rev->r, u);
	assert_int_equal(fwd->r.tensors_done, p->n_tensors);
	assert_int_equal(rev->r.tensors_done, p->n_tensors);
	assert_memory_equal(fwd->r.res, rev->r.res, (size_t)p->n_tensors * sizeof(*fwd->r.res));
	assert_memory_equal(fwd->r.out_crc, rev->r.out_crc, (size_t)p->n_out * sizeof(*fwd->r.out_crc));

	/* the sums are the unit-order sums, which the arrival order would not have given */
	int differs = 0;
	for (int t = 0; t < p->n_tensors; t++) {
		const struct mq_plan_tensor *pt = &p->tensors[t];
		double s = 0, n = 0, s_rev = 0;
		for (int k = 0; k < pt->n_units; k++) {
			s += signal_of(pt->first_unit + k);
			n += noise_of(pt->first_unit + k);
		}
		for (int k = pt->n_units - 1; k >= 0; k--)
			s_rev += signal_of(pt->first_unit + k);
		assert_memory_equal(&fwd->r.res[t].signal, &s, sizeof(s));
		assert_memory_equal(&fwd->r.res[t].noise, &n, sizeof(n));
		differs |= s != s_rev;
	}
	assert_true(differs); /* else this test could not tell the two orders apart */

	/* each output tensor's CRC is that of its units' bytes joined in unit order */
	for (int t = 0; t < p->n_tensors; t++) {
		const struct mq_plan_tensor *pt = &p->tensors[t];
		const int outs[3] = { pt->out_data, pt->out_scale, pt->out_zero_point };
		for (int k = 0; k < 3; k++) {
			if (outs[k] < 0)
				continue;
			uLong crc = crc32(0L, Z_NULL, 0);
			unsigned char buf[64];
			for (int i = 0; i < pt->n_units; i++) {
				size_t len = payload(pt->first_unit + i, k, buf);
				crc = crc32(crc, buf, (uInt)len);
			}
			assert_int_equal(fwd->r.out_crc[outs[k]], (uint32_t)crc);
		}
	}
	fixture_free(fwd);
	fixture_free(rev);
}

/* A failed record stops the run and counts nothing; an interrupted one (2) stops nobody. */
static void test_collect_failed_record_cancels(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(1);
	struct run *r = &f->r;
	int a = tensor_index(r, "a.weight");
	int first = r->plan.tensors[a].first_unit;
	size_t len;
	struct unit_record *rec = make_record(r, first + 1, 2, &len);
	collect_take(r, rec, len);
	free(rec);
	assert_false(r->cancelled);
	rec = make_record(r, first + 1, 1, &len);
	collect_take(r, rec, len);
	free(rec);
	assert_true(r->cancelled);
	assert_false(r->cancel_sent); /* one rank: nobody to tell */
	assert_int_equal(r->units_taken, 0);
	assert_int_equal(r->units_left[a], 4);
	fixture_free(f);
}

/* The record of a tensor's last unit finishes it: its results appear, and tensors_done counts it. */
static void test_collect_last_unit_finishes_the_tensor(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(1);
	struct run *r = &f->r;
	int a = tensor_index(r, "a.weight"), d = tensor_index(r, "d.weight");
	const struct mq_plan_tensor *pt = &r->plan.tensors[a];
	assert_int_equal(r->plan.tensors[d].n_units, 0);
	assert_int_equal(r->tensors_done, 1); /* the empty tensor, at setup */
	static const struct mq_tensor_result zero;
	for (int k = 0; k < pt->n_units - 1; k++)
		take(r, pt->first_unit + pt->n_units - 1 - k); /* the last unit is not the one that finishes */
	assert_int_equal(r->units_left[a], 1);
	assert_int_equal(r->tensors_done, 1);
	assert_memory_equal(&r->res[a], &zero, sizeof(zero));
	take(r, pt->first_unit);
	assert_int_equal(r->units_left[a], 0);
	assert_int_equal(r->tensors_done, 2);
	assert_int_equal(r->units_taken, pt->n_units);
	assert_true(r->res[a].signal > 0);
	assert_memory_not_equal(r->res[a].sha256, zero.sha256, sizeof(zero.sha256));
	fixture_free(f);
}

/* Each record taken is journaled once, as sent; a replayed one (from the journal) is not appended again. */
static void test_collect_journals_each_record_once(void **state)
{
	(void)state;
	char path[64];
	snprintf(path, sizeof(path), "mq-test-collect-%d.journal", (int)getpid());
	struct fixture *f = fixture_new(1);
	struct run *r = &f->r;
	uint8_t id[MQ_SHA256_LEN];
	memset(id, 5, sizeof(id));
	r->journal_path = path;
	r->journal_fd = mq_journal_start(path, id, (uint64_t)r->plan.n_units, 0, &r->err);
	assert_true(r->journal_fd >= 0);
	take(r, 2);
	size_t len;
	struct unit_record *rec = make_record(r, 0, 0, &len);
	r->replaying = 1;
	collect_take(r, rec, len);
	r->replaying = 0;
	take(r, 1);
	close(r->journal_fd);
	r->journal_fd = -1;
	struct mq_journal_load jl;
	assert_int_equal(mq_journal_read(path, id, (uint64_t)r->plan.n_units, &jl), 0);
	assert_int_equal(jl.n, 2);
	const int want[2] = { 2, 1 };
	for (int i = 0; i < 2; i++) {
		struct unit_record *exp = make_record(r, want[i], 0, &len);
		assert_int_equal(jl.entries[i].len, len);
		assert_memory_equal(jl.entries[i].rec, exp, len);
		free(exp);
	}
	mq_journal_load_release(&jl);
	free(rec);
	assert_int_equal(r->units_taken, 3); /* the replayed one counts as taken */
	unlink(path);
	fixture_free(f);
}

/*
 * Records that come through comm (the other ranks' units of a two-rank plan,
 * which the single-rank mock queues) are taken by collect_poll, and the
 * results are those of one rank taking every unit itself.
 */
static void test_collect_poll_takes_the_records_sent(void **state)
{
	(void)state;
	struct fixture *one = fixture_new(1), *two = fixture_new(2);
	struct run *r = &two->r;
	int others = 0;
	for (int u = 0; u < one->r.plan.n_units; u++)
		take(&one->r, u);
	for (int u = r->plan.n_units - 1; u >= 0; u--) {
		if (r->plan.units[u].rank == 0) {
			take(r, u);
			continue;
		}
		size_t len;
		struct unit_record *rec = make_record(r, u, 0, &len);
		assert_int_equal(mq_comm_send_record(r->comm, rec, len, &r->err), 0);
		free(rec);
		others++;
	}
	assert_true(others > 0);
	assert_int_equal(r->records_left, others);
	assert_int_equal(mock_comm_queued(r->comm), others);
	collect_poll(r, 0);
	assert_int_equal(r->records_left, 0);
	assert_int_equal(mock_comm_queued(r->comm), 0);
	assert_int_equal(r->tensors_done, r->plan.n_tensors);
	assert_memory_equal(one->r.res, r->res, (size_t)r->plan.n_tensors * sizeof(*r->res));
	collect_poll(r, 1); /* nothing is due: returns at once */
	assert_int_equal(r->err.code, MQ_OK);
	fixture_free(one);
	fixture_free(two);
}

int main(void)
{
	mq_log_init(0, 1); /* no progress lines */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_collect_any_order_sums_in_unit_order),
		cmocka_unit_test(test_collect_failed_record_cancels),
		cmocka_unit_test(test_collect_last_unit_finishes_the_tensor),
		cmocka_unit_test(test_collect_journals_each_record_once),
		cmocka_unit_test(test_collect_poll_takes_the_records_sent),
	};
	return cmocka_run_group_tests_name("collect", tests, NULL, NULL);
}
