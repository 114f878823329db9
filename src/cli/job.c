#include "job.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "jobcheck.h"
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

/* The keys of a model entry; 2 and 3, output and calib, are paths that its options may hold instead. */
static const char *const model_keys[] = { "name", "input", "output", "calib", "options" };

/* "models[2] ('tiny')": the entry as errors name it (its name, or the stem of its input). */
static void entry_where(struct ctx *c, int index, const cJSON *m)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
	const cJSON *input = cJSON_GetObjectItemCaseSensitive(m, "input");
	char *stem = !cJSON_IsString(name) && cJSON_IsString(input) ? stem_of(input->valuestring) : NULL;
	const char *shown = cJSON_IsString(name) && *name->valuestring ? name->valuestring : stem;
	if (shown)
		snprintf(c->where, sizeof(c->where), "models[%d] ('%s')", index, shown);
	else
		snprintf(c->where, sizeof(c->where), "models[%d]", index);
	free(stem);
}

/* One model entry's keys and values, before anything is built of it; c->where names the entry. */
static int check_model(struct ctx *c, int index, const cJSON *m)
{
	snprintf(c->where, sizeof(c->where), "models[%d]", index);
	if (!cJSON_IsObject(m))
		return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: a model entry must be a JSON object", c->path, c->where);
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
	const cJSON *input = cJSON_GetObjectItemCaseSensitive(m, "input");
	if (name && (!cJSON_IsString(name) || !*name->valuestring))
		return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: 'name' must be a non-empty string", c->path, c->where);
	entry_where(c, index, m); /* its name, or the name it will get: the input's stem */
	if (check_keys(c, m, model_keys, 5))
		return c->err->code;
	if (!cJSON_IsString(input) || !*input->valuestring)
		return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: 'input' (the model file) is missing or not a string", c->path,
			       c->where);
	const cJSON *options = cJSON_GetObjectItemCaseSensitive(m, "options");
	if (check_options(c, options))
		return c->err->code;
	for (int k = 2; k <= 3; k++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, model_keys[k]);
		if (v && (!cJSON_IsString(v) || !*v->valuestring))
			return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: '%s' must be a path", c->path, c->where,
				       model_keys[k]);
		if (v && options && find_option(options, model_keys[k]))
			return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: '%s' is given twice (as a field and in options)",
				       c->path, c->where, model_keys[k]);
	}
	return 0;
}

/* The model's layer of options: its options plus the output and calib fields (NULL: out of memory). */
static cJSON *model_layer(const cJSON *m)
{
	const cJSON *options = cJSON_GetObjectItemCaseSensitive(m, "options");
	cJSON *layer = options ? cJSON_Duplicate(options, 1) : cJSON_CreateObject();
	for (int k = 2; layer && k <= 3; k++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, model_keys[k]);
		if (v)
			cJSON_AddStringToObject(layer, model_keys[k], v->valuestring);
	}
	return layer;
}

/* The model's name, input and command line ("mq-dist", the merged options, the input; argv in one block). */
static int model_argv(struct ctx *c, const cJSON *m, const cJSON *defaults, const struct mq_optarg *cli, int n_cli,
		      struct mq_job_model *out)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
	const cJSON *input = cJSON_GetObjectItemCaseSensitive(m, "input");
	cJSON *layer = model_layer(m);
	struct mq_buf args = MQ_BUF_INIT;
	int argc = 0, no_layer = !layer;
	add_arg(&args, &argc, "mq-dist");
	if (layer)
		merge(c, cli, n_cli, layer, defaults, &args, &argc);
	cJSON_Delete(layer);
	out->input = resolve(c, input->valuestring);
	out->name = name ? strdup(name->valuestring) : stem_of(input->valuestring);
	if (out->input)
		add_arg(&args, &argc, out->input);
	if (no_layer || !out->input || !out->name || !mq_buf_ok(&args)) {
		mq_buf_release(&args);
		return mq_fail(c->err, MQ_ERR_INTERNAL, "out of memory");
	}
	/* argv points into one block of NUL-separated strings */
	char *block = mq_buf_detach(&args, NULL);
	out->argv = calloc((size_t)argc + 2, sizeof(char *));
	if (!out->argv) {
		free(block);
		return mq_fail(c->err, MQ_ERR_INTERNAL, "out of memory");
	}
	for (int i = 0; i < argc; i++, block += strlen(block) + 1)
		out->argv[i] = block;
	out->argc = argc;
	return 0;
}

/* One model entry: its fields, its options, and the merged command line, which must parse. */
static int build_model(struct ctx *c, int index, const cJSON *m, const cJSON *defaults, const struct mq_optarg *cli,
		       int n_cli, struct mq_job_model *out)
{
	int rc = check_model(c, index, m);
	if (!rc)
		rc = model_argv(c, m, defaults, cli, n_cli, out);
	if (rc)
		return rc;
	struct mq_options o;
	struct mq_error e = { 0 };
	rc = mq_options_parse(out->argc, out->argv, &o, &e);
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

/* ---- strings with an embedded NUL: cJSON decodes \u0000 but keeps no length, so C would cut them ---- */

/* The strings of the JSON text in document order (keys and values), each told whether it holds a NUL. */
struct string_scan {
	const char *text;
	size_t len, pos;
};

/* 1 if the next string of the text holds \u0000 (or a raw NUL byte), 0 if not, -1 past the last one. */
static int next_string_has_nul(struct string_scan *s)
{
	while (s->pos < s->len && s->text[s->pos] != '"')
		s->pos++;
	if (s->pos >= s->len)
		return -1;
	int nul = 0;
	size_t i = s->pos + 1;
	for (; i < s->len && s->text[i] != '"'; i++) {
		if (s->text[i] == '\0')
			nul = 1;
		if (s->text[i] != '\\')
			continue;
		if (i + 5 < s->len && memcmp(s->text + i + 1, "u0000", 5) == 0)
			nul = 1;
		i++; /* the escaped character; \uXXXX's digits are neither '"' nor '\\' */
	}
	s->pos = i + 1;
	return nul;
}

/*
 * Walks the tree in document order beside the scan of the text, whose strings
 * come in the same order (a member's key, then its value's strings), so the
 * k-th string of the text is the k-th string slot of the tree. 1 when a string
 * holds a NUL: at is then its JSON path ("models[2].options.include[1]"), and
 * *is_key says whether the key at that path is the string.
 */
static int nul_walk(struct string_scan *s, const cJSON *node, char *at, size_t n_at, int *is_key)
{
	const cJSON *items = cJSON_IsArray(node) || cJSON_IsObject(node) ? node : NULL, *it;
	int i = 0;
	cJSON_ArrayForEach(it, items) {
		size_t k = strlen(at);
		if (cJSON_IsObject(node)) {
			snprintf(at + k, n_at - k, "%s%s", k ? "." : "", it->string);
			if ((*is_key = next_string_has_nul(s) == 1))
				return 1;
		} else {
			snprintf(at + k, n_at - k, "[%d]", i++);
		}
		if (nul_walk(s, it, at, n_at, is_key))
			return 1;
		at[k] = '\0';
	}
	return cJSON_IsString(node) && next_string_has_nul(s) == 1;
}

/* No string of the job file (key or value) may hold a NUL; the error names the entry and the key. */
static int check_no_nul(struct ctx *c, const char *text, size_t len, const cJSON *root)
{
	struct string_scan s = { text, len, 0 };
	char at[1024] = "";
	int is_key = 0;
	if (!nul_walk(&s, root, at, sizeof(at), &is_key))
		return 0;
	const char *key = at;
	snprintf(c->where, sizeof(c->where), "top level");
	if (strncmp(at, "models[", 7) == 0 && strchr(at, ']')) {
		int index = atoi(at + 7);
		entry_where(c, index, cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "models"), index));
		key = strchr(at, ']') + 1;
		key += *key == '.';
	}
	return mq_fail(c->err, MQ_ERR_USAGE, "'%s': %s: %s '%s' holds \\u0000, a NUL character, which would cut %s short: "
		       "remove it", c->path, c->where, is_key ? "the key at" : "the value of", *key ? key : "the entry",
		       is_key ? "the key" : "the string");
}

/* *root: the text as one JSON object, followed by nothing but white space (else an error quoting where it broke). */
static int parse_object(struct ctx *c, const char *text, size_t len, cJSON **root)
{
	const char *end = NULL;
	*root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (!cJSON_IsObject(*root)) {
		/* the text need not end in a NUL (other ranks get exactly len bytes): quote at most what is left */
		const char *near = cJSON_GetErrorPtr();
		uintptr_t t0 = (uintptr_t)text, e = (uintptr_t)near;
		size_t at = near && e >= t0 && e - t0 <= len ? (size_t)(e - t0) : 0;
		int n = near && at < len ? (int)(len - at < 40 ? len - at : 40) : 0;
		return n ? mq_fail(c->err, MQ_ERR_USAGE, "'%s': not a valid JSON object (near: %.*s)", c->path, n,
				   text + at)
			 : mq_fail(c->err, MQ_ERR_USAGE, "'%s': not a valid JSON object (near: %s)", c->path,
				   near && at == len ? "the end" : "the start");
	}
	/* only white space may follow the object */
	size_t at = end && end >= text && (size_t)(end - text) <= len ? (size_t)(end - text) : len;
	while (at < len && strchr(" \t\r\n", text[at]) && text[at])
		at++;
	if (at < len)
		return mq_fail(c->err, MQ_ERR_USAGE, "'%s': text after the JSON object, at byte %zu: remove it",
			       c->path, at);
	return 0;
}

/* The command line without --job and --groups: it overrides every model. */
static int command_line(struct ctx *c, int argc, char **argv, struct mq_optarg **cli, int *n_cli)
{
	if (mq_options_split(argc, argv, 1, cli, n_cli, c->err))
		return c->err->code;
	int k = 0;
	for (int i = 0; i < *n_cli; i++)
		if (!(*cli)[i].name || !job_level_only((*cli)[i].name))
			(*cli)[k++] = (*cli)[i];
	*n_cli = k;
	return 0;
}

/* The top level's keys, its defaults, a non-empty models array and the report prefix. */
static int check_top(struct ctx *c, const cJSON *root)
{
	static const char *const top[] = { "defaults", "models", "report" };
	snprintf(c->where, sizeof(c->where), "top level");
	int rc = check_keys(c, root, top, 3);
	const cJSON *models = cJSON_GetObjectItemCaseSensitive(root, "models");
	const cJSON *report = cJSON_GetObjectItemCaseSensitive(root, "report");
	snprintf(c->where, sizeof(c->where), "defaults");
	if (!rc)
		rc = check_options(c, cJSON_GetObjectItemCaseSensitive(root, "defaults"));
	if (!rc && (!cJSON_IsArray(models) || cJSON_GetArraySize(models) == 0))
		rc = mq_fail(c->err, MQ_ERR_USAGE, "'%s': 'models' must be a non-empty array of model entries",
			     c->path);
	if (!rc && report && (!cJSON_IsString(report) || !*report->valuestring))
		rc = mq_fail(c->err, MQ_ERR_USAGE, "'%s': 'report' must be a path prefix", c->path);
	return rc;
}

/* Every model in turn, the checks across them (names, then paths), and the report's path prefix. */
static int build_job(struct ctx *c, const cJSON *root, const struct mq_optarg *cli, int n_cli, struct mq_job *job)
{
	const cJSON *defaults = cJSON_GetObjectItemCaseSensitive(root, "defaults");
	const cJSON *models = cJSON_GetObjectItemCaseSensitive(root, "models");
	const cJSON *report = cJSON_GetObjectItemCaseSensitive(root, "report");
	int n = cJSON_GetArraySize(models), rc = 0;
	job->models = calloc((size_t)n, sizeof(*job->models));
	if (!job->models)
		rc = mq_fail(c->err, MQ_ERR_INTERNAL, "out of memory");
	const cJSON *m = models->child; /* in turn: cJSON_GetArrayItem walks the list from its head */
	for (int i = 0; !rc && i < n; i++, m = m->next) {
		rc = build_model(c, i, m, defaults, cli, n_cli, &job->models[i]);
		job->n_models = i + 1;
	}
	if (!rc)
		rc = mq_job_check_names(c->path, job, c->err);
	if (!rc)
		rc = mq_job_check_paths(c->path, job, c->err);
	if (rc)
		return rc;
	if (report) {
		job->report = resolve(c, report->valuestring);
	} else { /* beside the job file: NAME-report.json and .md */
		char *stem = stem_of(c->path);
		struct mq_buf b = MQ_BUF_INIT;
		mq_buf_addf(&b, "%s%s-report", c->dir, stem ? stem : "job");
		free(stem);
		job->report = mq_buf_ok(&b) ? mq_buf_detach(&b, NULL) : NULL;
	}
	return job->report ? 0 : mq_fail(c->err, MQ_ERR_INTERNAL, "out of memory");
}

int mq_job_parse(const char *path, const char *text, size_t len, int argc, char **argv, struct mq_job *job,
		 struct mq_error *err)
{
	memset(job, 0, sizeof(*job));
	struct ctx c = { .path = path, .err = err };
	struct mq_optarg *cli = NULL;
	int n_cli = 0;
	cJSON *root = NULL;
	const char *slash = strrchr(path, '/');
	size_t dlen = slash ? (size_t)(slash - path) + 1 : 0;
	c.dir = malloc(dlen + 1);
	int rc = c.dir ? 0 : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	if (!rc) {
		memcpy(c.dir, path, dlen);
		c.dir[dlen] = '\0';
		rc = parse_object(&c, text, len, &root);
	}
	if (!rc)
		rc = check_no_nul(&c, text, len, root);
	if (!rc)
		rc = command_line(&c, argc, argv, &cli, &n_cli);
	if (!rc)
		rc = check_top(&c, root);
	if (!rc)
		rc = build_job(&c, root, cli, n_cli, job);
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
