/*
 * jobcheck: the checks of a job file across its models, by sorting: no two
 * models share a name or an output, and no output is a model's input.
 */
#include "jobcheck.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"

/* A model's path as the file system will take it (see norm_path). */
struct path_key {
	char *key;
	int model;
	int is_input;      /* 0: its output */
};

static int cmp_path_key(const void *a, const void *b)
{
	const struct path_key *x = a, *y = b;
	int d = strcmp(x->key, y->key);
	if (d)
		return d;
	if (x->is_input != y->is_input)
		return x->is_input - y->is_input; /* outputs first */
	return x->model - y->model;
}

/* Lexical normalization of an absolute path: no "", "." or ".." components (".." above '/' stays at '/'). */
static void lexical(char *p)
{
	char *out = p, *in = p;
	while (*in) {
		while (*in == '/')
			in++;
		size_t n = strcspn(in, "/");
		if (n == 0 || (n == 1 && in[0] == '.')) {
			in += n;
			continue;
		}
		if (n == 2 && in[0] == '.' && in[1] == '.') {
			while (out > p && *--out != '/')
				;
			in += n;
			continue;
		}
		*out++ = '/';
		memmove(out, in, n);
		out += n;
		in += n;
	}
	if (out == p)
		*out++ = '/';
	*out = '\0';
}

/*
 * The path two models would share if they name the same file: the real path
 * of its existing folder (symbolic links, "//", "." and ".." resolved by the
 * file system) and its base name, or, when the folder does not exist, the
 * lexically normalized absolute path. An input that exists is resolved whole,
 * so a link to another model's output counts as that output.
 */
static char *norm_path(const char *cwd, const char *path, int is_input)
{
	struct mq_buf b = MQ_BUF_INIT;
	char *real = is_input ? realpath(path, NULL) : NULL;
	if (real) {
		mq_buf_adds(&b, real);
		free(real);
		return mq_buf_ok(&b) ? mq_buf_detach(&b, NULL) : NULL;
	}
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	if (slash || *base) {
		struct mq_buf dir = MQ_BUF_INIT;
		if (slash == path)
			mq_buf_adds(&dir, "/");
		else if (slash)
			mq_buf_add(&dir, path, (size_t)(slash - path));
		else
			mq_buf_adds(&dir, ".");
		real = mq_buf_ok(&dir) && strcmp(base, ".") && strcmp(base, "..") && *base ? realpath(dir.data, NULL) : NULL;
		mq_buf_release(&dir);
	}
	if (real) {
		mq_buf_addf(&b, "%s%s%s", real, strcmp(real, "/") ? "/" : "", base);
		free(real);
	} else {
		mq_buf_addf(&b, "%s%s%s", path[0] == '/' ? "" : cwd, path[0] == '/' ? "" : "/", path);
		if (mq_buf_ok(&b))
			lexical(b.data);
	}
	if (!mq_buf_ok(&b)) {
		mq_buf_release(&b);
		return NULL;
	}
	return mq_buf_detach(&b, NULL);
}

static int cmp_name(const void *a, const void *b)
{
	const struct mq_job_model *const *x = a, *const *y = b;
	int d = strcmp((*x)->name, (*y)->name);
	return d ? d : (*x < *y ? -1 : *x > *y);
}

/* Two models with one name: the pair whose second entry comes first, as a scan in file order finds it. */
int mq_job_check_names(const char *path, struct mq_job *job, struct mq_error *err)
{
	int n = job->n_models;
	struct mq_job_model **by = malloc(((size_t)n + 1) * sizeof(*by));
	if (!by)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	for (int i = 0; i < n; i++)
		by[i] = &job->models[i];
	qsort(by, (size_t)n, sizeof(*by), cmp_name);
	long best = -1;
	for (int i = 1; i < n; i++)
		if (strcmp(by[i - 1]->name, by[i]->name) == 0 && (i == 1 || strcmp(by[i - 2]->name, by[i]->name) != 0) &&
		    (best < 0 || by[i] < by[best]))
			best = i;
	int rc = 0;
	if (best >= 0)
		rc = mq_fail(err, MQ_ERR_USAGE, "'%s': models[%d] and models[%d] are both named '%s'", path,
			     (int)(by[best - 1] - job->models), (int)(by[best] - job->models), by[best]->name);
	free(by);
	return rc;
}

/*
 * Outputs must be distinct files, and none may be an input of the same job
 * (the second model would quantize the first one's result, or what an earlier
 * run left there, depending on the order). O(n log n): one sort of every
 * input and output by its normalized path.
 */
int mq_job_check_paths(const char *path, struct mq_job *job, struct mq_error *err)
{
	int n = job->n_models, rc = 0;
	char *cwd = getcwd(NULL, 0);
	struct path_key *k = calloc(2 * (size_t)n + 1, sizeof(*k));
	if (!cwd || !k)
		rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory (or the working folder is gone)");
	for (int i = 0; !rc && i < 2 * n; i++) {
		const struct mq_job_model *m = &job->models[i / 2];
		k[i] = (struct path_key){ norm_path(cwd, i % 2 ? m->input : m->output, i % 2), i / 2, i % 2 };
		if (!k[i].key)
			rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	if (!rc)
		qsort(k, 2 * (size_t)n, sizeof(*k), cmp_path_key);
	/* the first clash in sorted order, so the message does not depend on qsort */
	for (int i = 1; !rc && i < 2 * n; i++) {
		const struct path_key *a = &k[i - 1], *b = &k[i];
		if (strcmp(a->key, b->key) != 0 || a->is_input)
			continue;
		const struct mq_job_model *ma = &job->models[a->model], *mb = &job->models[b->model];
		if (!b->is_input)
			rc = mq_fail(err, MQ_ERR_USAGE, "'%s': models[%d] ('%s') and models[%d] ('%s') write the same output "
				     "'%s'%s%s%s", path, a->model, ma->name, b->model, mb->name, mb->output,
				     strcmp(ma->output, mb->output) ? " (also named '" : "",
				     strcmp(ma->output, mb->output) ? ma->output : "", strcmp(ma->output, mb->output) ? "')" : "");
		else if (a->model == b->model)
			rc = mq_fail(err, MQ_ERR_USAGE, "'%s': models[%d] ('%s'): its output '%s' is its own input", path,
				     a->model, ma->name, ma->output);
		else
			rc = mq_fail(err, MQ_ERR_USAGE, "'%s': models[%d] ('%s') reads '%s', which models[%d] ('%s') writes: "
				     "a job may not quantize its own outputs (give it the original model, or run it in a "
				     "second job)", path, b->model, mb->name, mb->input, a->model, ma->name);
	}
	for (int i = 0; k && i < 2 * n; i++)
		free(k[i].key);
	free(k);
	free(cwd);
	return rc;
}
