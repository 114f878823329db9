#include "job.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "options.h"

/* Options a job file may not set: they select the job itself or end the program. */
static int job_level_only(const char *name)
{
	return strcmp(name, "job") == 0 || strcmp(name, "groups") == 0 || strcmp(name, "help") == 0 ||
	       strcmp(name, "version") == 0;
}

/* Options whose value is a path, resolved against the job file's folder. */
static int is_path_option(const char *name)
{
	return strcmp(name, "output") == 0 || strcmp(name, "calib") == 0 || strcmp(name, "report") == 0;
}

struct ctx {
	const char *path;   /* the job file */
	char *dir;          /* its folder, with a trailing '/', or "" */
	struct mq_error *err;
	char where[256];    /* "models[2] ('tiny')" or "defaults" */
};

static char *resolve(const struct ctx *c, const char *p)
{
	struct mq_buf b = MQ_BUF_INIT;
	if (p[0] != '/')
		mq_buf_adds(&b, c->dir);
	mq_buf_adds(&b, p);
	return mq_buf_ok(&b) ? mq_buf_detach(&b, NULL) : NULL;
}

/* The key as an option's long name ('_' read as '-'), or an error naming it. */
static int option_key(struct ctx *c, const char *key, char *name, size_t cap, int *takes_value, int *repeatable)
{
	size_t n = strlen(key);
	if (n >= cap)
		return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: unknown option '%s'", c->path, c->where, key);
	for (size_t i = 0; i <= n; i++)
		name[i] = key[i] == '_' ? '-' : key[i];
	if (mq_options_lookup(name, takes_value, repeatable))
		return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: unknown option '%s' (the keys are the long option names, see --help)",
			       c->path, c->where, key);
	if (job_level_only(name))
		return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: option '%s' cannot be set in a job file", c->path, c->where,
			       key);
	return 0;
}

/* Checks every key and value of an options object. */
static int check_options(struct ctx *c, const cJSON *obj)
{
	if (!obj)
		return 0;
	if (!cJSON_IsObject(obj))
		return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: options must be a JSON object", c->path, c->where);
	const cJSON *it;
	cJSON_ArrayForEach(it, obj) {
		char name[64];
		int takes, rep;
		if (option_key(c, it->string, name, sizeof(name), &takes, &rep))
			return c->err->code;
		int ok;
		if (!takes)
			ok = cJSON_IsBool(it);
		else if (cJSON_IsArray(it)) {
			ok = rep;
			const cJSON *e;
			cJSON_ArrayForEach(e, it) ok = ok && cJSON_IsString(e);
		} else {
			ok = cJSON_IsString(it) || (cJSON_IsNumber(it) && isfinite(it->valuedouble));
		}
		if (!ok)
			return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: option '%s' takes %s", c->path, c->where, it->string,
				       !takes ? "true or false" : rep ? "a string or an array of strings" : "a string or a number");
	}
	return 0;
}

static const cJSON *find_option(const cJSON *obj, const char *name)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, obj) {
		size_t n = strlen(it->string);
		if (n != strlen(name))
			continue;
		size_t i = 0;
		while (i < n && (it->string[i] == '_' ? '-' : it->string[i]) == name[i])
			i++;
		if (i == n)
			return it;
	}
	return NULL;
}

static void add_arg(struct mq_buf *args, int *argc, const char *s)
{
	mq_buf_add(args, s, strlen(s) + 1); /* NUL-separated */
	(*argc)++;
}

static void add_json_value(struct ctx *c, struct mq_buf *args, int *argc, const char *name, const cJSON *v)
{
	char num[64];
	const char *s = v->valuestring;
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;
		if (d == floor(d) && fabs(d) < 9e15)
			snprintf(num, sizeof(num), "%.0f", d);
		else
			snprintf(num, sizeof(num), "%.17g", d);
		s = num;
	}
	char *resolved = is_path_option(name) ? resolve(c, s) : NULL;
	add_arg(args, argc, resolved ? resolved : s);
	free(resolved);
}

/*
 * The merged options of one model: each option from the first layer that
 * sets it (command line, the model, the defaults), in the option table's order.
 */
static void merge(struct ctx *c, const struct mq_optarg *cli, int n_cli, const cJSON *model, const cJSON *defaults,
		  struct mq_buf *args, int *argc)
{
	for (int i = 0; mq_options_name(i); i++) {
		const char *name = mq_options_name(i);
		int takes, rep;
		mq_options_lookup(name, &takes, &rep);
		if (job_level_only(name))
			continue;
		char flag[72];
		snprintf(flag, sizeof(flag), "--%s", name);
		int on_cli = 0;
		for (int k = 0; k < n_cli; k++) {
			if (!cli[k].name || strcmp(cli[k].name, name) != 0)
				continue;
			if (!takes) {
				if (!on_cli)
					add_arg(args, argc, flag);
			} else {
				add_arg(args, argc, flag);
				add_arg(args, argc, cli[k].value);
			}
			on_cli = 1;
		}
		if (on_cli)
			continue;
		const cJSON *v = model ? find_option(model, name) : NULL;
		if (!v && defaults)
			v = find_option(defaults, name);
		if (!v)
			continue;
		if (!takes) {
			if (cJSON_IsTrue(v))
				add_arg(args, argc, flag);
		} else if (cJSON_IsArray(v)) {
			const cJSON *e;
			cJSON_ArrayForEach(e, v) {
				add_arg(args, argc, flag);
				add_json_value(c, args, argc, name, e);
			}
		} else {
			add_arg(args, argc, flag);
			add_json_value(c, args, argc, name, v);
		}
	}
}

static int check_keys(struct ctx *c, const cJSON *obj, const char *const *allowed, int n_allowed)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, obj) {
		int ok = 0;
		for (int i = 0; i < n_allowed; i++)
			ok |= strcmp(it->string, allowed[i]) == 0;
		if (!ok)
			return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: unknown key '%s'", c->path, c->where, it->string);
	}
	return 0;
}

static char *stem_of(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	char *s = strdup(base);
	if (!s)
		return NULL;
	static const char *const exts[] = { ".safetensors.index.json", ".safetensors", ".index.json", ".json",
					    ".pth", ".pt", ".bin" };
	size_t n = strlen(s);
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		size_t k = strlen(exts[i]);
		if (n > k && strcmp(s + n - k, exts[i]) == 0) {
			s[n - k] = '\0';
			break;
		}
	}
	return s;
}

/* One model entry: its fields, its options, and the merged command line, which must parse. */
static int build_model(struct ctx *c, int index, const cJSON *m, const cJSON *defaults, const struct mq_optarg *cli,
		       int n_cli, struct mq_job_model *out)
{
	static const char *const keys[] = { "name", "input", "output", "calib", "options" };
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
	const cJSON *input = cJSON_GetObjectItemCaseSensitive(m, "input");
	snprintf(c->where, sizeof(c->where), "models[%d]", index);
	if (!cJSON_IsObject(m))
		return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: a model entry must be a JSON object", c->path, c->where);
	if (name && (!cJSON_IsString(name) || !*name->valuestring))
		return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: 'name' must be a non-empty string", c->path, c->where);
	if (name) {
		snprintf(c->where, sizeof(c->where), "models[%d] ('%s')", index, name->valuestring);
	} else if (cJSON_IsString(input)) { /* the name it will get: the input's stem */
		char *stem = stem_of(input->valuestring);
		if (stem)
			snprintf(c->where, sizeof(c->where), "models[%d] ('%s')", index, stem);
		free(stem);
	}
	if (check_keys(c, m, keys, 5))
		return c->err->code;
	if (!cJSON_IsString(input) || !*input->valuestring)
		return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: 'input' (the model file) is missing or not a string", c->path,
			       c->where);
	const cJSON *options = cJSON_GetObjectItemCaseSensitive(m, "options");
	if (check_options(c, options))
		return c->err->code;
	for (int k = 2; k <= 3; k++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, keys[k]);
		if (v && (!cJSON_IsString(v) || !*v->valuestring))
			return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: '%s' must be a path", c->path, c->where, keys[k]);
		if (v && options && find_option(options, keys[k]))
			return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: '%s' is given twice (as a field and in options)",
				       c->path, c->where, keys[k]);
	}
	/* the model's layer: its options plus the output and calib fields */
	cJSON *layer = options ? cJSON_Duplicate(options, 1) : cJSON_CreateObject();
	for (int k = 2; layer && k <= 3; k++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, keys[k]);
		if (v)
			cJSON_AddStringToObject(layer, keys[k], v->valuestring);
	}
	struct mq_buf args = MQ_BUF_INIT;
	int argc = 0;
	add_arg(&args, &argc, "mq-dist");
	if (layer)
		merge(c, cli, n_cli, layer, defaults, &args, &argc);
	cJSON_Delete(layer);
	out->input = resolve(c, input->valuestring);
	out->name = name ? strdup(name->valuestring) : stem_of(input->valuestring);
	if (out->input)
		add_arg(&args, &argc, out->input);
	if (!layer || !out->input || !out->name || !mq_buf_ok(&args)) {
		mq_buf_release(&args);
		return mq_fail(c->err, MQ_ERR_INTERNAL, "out of memory");
	}
	/* argv points into one block of NUL-separated strings */
	size_t len;
	char *block = mq_buf_detach(&args, &len);
	out->argv = calloc((size_t)argc + 2, sizeof(char *));
	if (!out->argv) {
		free(block);
		return mq_fail(c->err, MQ_ERR_INTERNAL, "out of memory");
	}
	char *p = block;
	for (int i = 0; i < argc; i++) {
		out->argv[i] = p;
		p += strlen(p) + 1;
	}
	out->argc = argc;
	struct mq_options o;
	struct mq_error e = { 0 };
	int rc = mq_options_parse(argc, out->argv, &o, &e);
	if (!rc) {
		size_t n = strlen(out->input);
		int torch = (n > 3 && strcmp(out->input + n - 3, ".pt") == 0) ||
			    (n > 4 && (strcmp(out->input + n - 4, ".pth") == 0 || strcmp(out->input + n - 4, ".bin") == 0));
		char *def = o.output ? NULL : mq_options_default_output(&o, torch);
		out->output = strdup(o.output ? o.output : def ? def : "");
		free(def);
	}
	mq_options_release(&o);
	if (rc)
		return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: %s", c->path, c->where, e.msg);
	return out->output ? 0 : mq_fail(c->err, MQ_ERR_INTERNAL, "out of memory");
}

int mq_job_parse(const char *path, const char *text, size_t len, int argc, char **argv, struct mq_job *job,
		 struct mq_error *err)
{
	memset(job, 0, sizeof(*job));
	struct ctx c = { .path = path, .err = err };
	const char *slash = strrchr(path, '/');
	size_t dlen = slash ? (size_t)(slash - path) + 1 : 0;
	c.dir = malloc(dlen + 1);
	struct mq_optarg *cli = NULL;
	int n_cli = 0;
	cJSON *root = cJSON_ParseWithLength(text, len);
	int rc = 0;
	if (!c.dir)
		rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	else {
		memcpy(c.dir, path, dlen);
		c.dir[dlen] = '\0';
	}
	if (!rc && !cJSON_IsObject(root)) {
		/* the text need not end in a NUL (other ranks get exactly len bytes): quote at most what is left */
		const char *near = cJSON_GetErrorPtr();
		uintptr_t t0 = (uintptr_t)text, e = (uintptr_t)near;
		size_t at = near && e >= t0 && e - t0 <= len ? (size_t)(e - t0) : 0;
		int n = near && at < len ? (int)(len - at < 40 ? len - at : 40) : 0;
		rc = n ? mq_fail(err, MQ_ERR_USAGE, "'%s': not a valid JSON object (near: %.*s)", path, n, text + at)
		       : mq_fail(err, MQ_ERR_USAGE, "'%s': not a valid JSON object (near: %s)", path,
				 near && at == len ? "the end" : "the start");
	}
	/* the command line without --job and --groups: it overrides every model */
	if (!rc && !mq_options_split(argc, argv, 1, &cli, &n_cli, err)) {
		int k = 0;
		for (int i = 0; i < n_cli; i++)
			if (!cli[i].name || !job_level_only(cli[i].name))
				cli[k++] = cli[i];
		n_cli = k;
	} else if (!rc) {
		rc = err->code;
	}
	static const char *const top[] = { "defaults", "models", "report" };
	snprintf(c.where, sizeof(c.where), "top level");
	if (!rc)
		rc = check_keys(&c, root, top, 3);
	const cJSON *defaults = cJSON_GetObjectItemCaseSensitive(root, "defaults");
	const cJSON *models = cJSON_GetObjectItemCaseSensitive(root, "models");
	const cJSON *report = cJSON_GetObjectItemCaseSensitive(root, "report");
	snprintf(c.where, sizeof(c.where), "defaults");
	if (!rc)
		rc = check_options(&c, defaults);
	if (!rc && (!cJSON_IsArray(models) || cJSON_GetArraySize(models) == 0))
		rc = mq_fail(err, MQ_ERR_USAGE, "'%s': 'models' must be a non-empty array of model entries", path);
	if (!rc && report && (!cJSON_IsString(report) || !*report->valuestring))
		rc = mq_fail(err, MQ_ERR_USAGE, "'%s': 'report' must be a path prefix", path);
	if (!rc) {
		int n = cJSON_GetArraySize(models);
		job->models = calloc((size_t)n, sizeof(*job->models));
		if (!job->models)
			rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
		for (int i = 0; !rc && i < n; i++) {
			rc = build_model(&c, i, cJSON_GetArrayItem(models, i), defaults, cli, n_cli, &job->models[i]);
			job->n_models = i + 1;
			for (int j = 0; !rc && j < i; j++) {
				if (strcmp(job->models[j].name, job->models[i].name) == 0)
					rc = mq_fail(err, MQ_ERR_USAGE, "'%s': models[%d] and models[%d] are both named '%s'", path, j, i,
						     job->models[i].name);
				else if (strcmp(job->models[j].output, job->models[i].output) == 0)
					rc = mq_fail(err, MQ_ERR_USAGE, "'%s': models[%d] ('%s') and models[%d] ('%s') write the same output '%s'",
						     path, j, job->models[j].name, i, job->models[i].name, job->models[i].output);
			}
		}
	}
	if (!rc) {
		if (report) {
			job->report = resolve(&c, report->valuestring);
		} else { /* beside the job file: NAME-report.json and .md */
			char *stem = stem_of(path);
			struct mq_buf b = MQ_BUF_INIT;
			mq_buf_addf(&b, "%s%s-report", c.dir, stem ? stem : "job");
			free(stem);
			job->report = mq_buf_ok(&b) ? mq_buf_detach(&b, NULL) : NULL;
		}
		if (!job->report)
			rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	cJSON_Delete(root);
	free(cli);
	free(c.dir);
	if (rc)
		mq_job_release(job);
	return rc;
}

void mq_job_release(struct mq_job *job)
{
	for (int i = 0; i < job->n_models; i++) {
		struct mq_job_model *m = &job->models[i];
		if (m->argv)
			free(m->argv[0]);
		free(m->argv);
		free(m->name);
		free(m->input);
		free(m->output);
	}
	free(job->models);
	free(job->report);
	memset(job, 0, sizeof(*job));
}
