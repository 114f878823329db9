/*
 * hf: the input model folder: what it holds (hf.h).
 */
#include "hf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bounds.h"
#include "fileio.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
#define FOLDER_HOLDS \
	"a Hugging Face model folder holds config.json, the weights (model.safetensors, or model-00001-of-0000N.safetensors and model.safetensors.index.json) and the tokenizer files; for a hub cache, give its snapshots/<revision> folder"

/* A growable list of owned strings. */
struct strlist {
	char **v;
	size_t n, cap;
};

static int strlist_push(struct strlist *l, const char *s)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	char *c = strdup(s);
	if (!c)
		return -1;
	l->v[l->n++] = c;
	return 0;
}

static void strlist_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* qsort of n strings (qsort's pointer must not be NULL, even for none). */
static void sort_strs(char **v, size_t n)
{
	if (n)
		qsort(v, n, sizeof(*v), cmp_str_ptr);
}

static int cmp_skip(const void *a, const void *b)
{
	return strcmp(((const struct mq_hf_skip *)a)->path, ((const struct mq_hf_skip *)b)->path);
}

static int nomem(struct mq_error *err)
{
	return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
}

/* dir/rel into a malloc'd string (rel "" is dir itself), or NULL. */
static char *join(const char *dir, const char *rel)
{
	size_t a = strlen(dir), b = strlen(rel);
	char *p = malloc(a + b + 2);
	if (!p)
		return NULL;
	memcpy(p, dir, a);
	p[a] = '/';
	memcpy(p + a + 1, rel, b + 1);
	if (!b)
		p[a] = '\0';
	return p;
}

/* The error for a path that stat() refused: a dangling link names its target. */
static int stat_error(const char *path, int code, struct mq_error *err)
{
	int e = errno;
	struct stat l;
	char target[PATH_MAX] = "";
	if (e == ENOENT && lstat(path, &l) == 0 && S_ISLNK(l.st_mode)) {
		ssize_t k = readlink(path, target, sizeof(target) - 1);
		target[k > 0 ? k : 0] = '\0';
		return mq_fail(err, code,
			"'%s' is a symbolic link to '%s', which does not exist (a partly downloaded hub cache? download the model again)",
			path, target);
	}
	return mq_fail(err, code, "cannot read '%s': %s", path, strerror(e));
}

/* Whether dir/name is a regular file (1) or absent (0); an error for anything else. */
static int have_file(const char *dir, const char *name, int *found, struct mq_error *err)
{
	char *path = join(dir, name);
	if (!path)
		return nomem(err);
	struct stat st;
	int rc = 0;
	*found = 0;
	if (stat(path, &st) == 0) {
		if (S_ISREG(st.st_mode))
			*found = 1;
		else
			rc = mq_fail(err, MQ_ERR_INPUT, "'%s' is not a regular file", path);
	} else {
		int e = errno;
		if (e != ENOENT || lstat(path, &st) == 0) {
			errno = e;
			rc = stat_error(path, MQ_ERR_INPUT, err);
		}
	}
	free(path);
	return rc;
}

/* The names in folder path but "." and "..", sorted. */
static int list_names(const char *path, struct strlist *names, struct mq_error *err)
{
	DIR *d = opendir(path);
	if (!d)
		return mq_fail(err, MQ_ERR_INPUT, "cannot read folder '%s': %s", path, strerror(errno));
	int rc = 0;
	for (struct dirent *e; !rc && (e = readdir(d));) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (names->n >= MQ_FOLDER_MAX_ENTRIES)
			rc = mq_fail(err, MQ_ERR_INPUT,
				"'%s' holds more than %d entries, the limit of mq-dist (MQ_FOLDER_MAX_ENTRIES in src/core/bounds.h); is it a model folder?",
				path, MQ_FOLDER_MAX_ENTRIES);
		else if (strlist_push(names, e->d_name))
			rc = nomem(err);
	}
	closedir(d);
	sort_strs(names->v, names->n);
	return rc;
}

/* The whole of file path (at most max bytes) into a malloc'd buffer. */
static int read_small(const char *path, size_t max, char **text, size_t *len, struct mq_error *err)
{
	if (!mq_read_small(path, max, text, len))
		return 0;
	if (errno == EFBIG)
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s' is larger than %zu MiB, the limit of mq-dist (MQ_INDEX_MAX_BYTES in src/core/bounds.h); it is not a Hugging Face shard index, or one for more tensors than mq-dist reads",
			path, max >> 20);
	if (errno == ENOMEM)
		return nomem(err);
	return mq_fail(err, MQ_ERR_INPUT, "cannot read '%s': %s", path, errno ? strerror(errno) : "it ended early");
}

/* The shard file names an index's weight_map names, each once, sorted. */
static int index_shards(const char *path, const char *text, size_t len, struct strlist *shards, struct mq_error *err)
{
	cJSON *root = cJSON_ParseWithLength(text, len);
	const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	int rc = 0;
	if (!cJSON_IsObject(map) || !map->child)
		rc = mq_fail(err, MQ_ERR_INPUT,
			"'%s' is not a shard index: expected a JSON object with a non-empty \"weight_map\" object (restore it from the model's source)",
			path);
	const cJSON *it;
	int n_tensors = 0;
	cJSON_ArrayForEach(it, map) {
		const char *v = cJSON_GetStringValue(it);
		if (!v || !*v || strchr(v, '/') || strchr(v, '\\') || strcmp(v, ".") == 0 || strcmp(v, "..") == 0)
			rc = mq_fail(err, MQ_ERR_INPUT,
				"'%s': the shard of tensor '%s' is not a file name beside the index", path, it->string);
		else if (++n_tensors > MQ_MAX_TENSORS)
			rc = mq_fail(err, MQ_ERR_INPUT,
				"'%s' lists more than %d tensors, the limit of mq-dist (MQ_MAX_TENSORS in src/core/bounds.h)",
				path, MQ_MAX_TENSORS);
		else if (shards->n && strcmp(shards->v[shards->n - 1], v) == 0)
			continue; /* the usual run of tensors of one shard */
		else if (strlist_push(shards, v))
			rc = nomem(err);
		if (rc)
			break;
	}
	cJSON_Delete(root);
	if (rc)
		return rc;
	sort_strs(shards->v, shards->n);
	size_t w = 0;
	for (size_t i = 0; i < shards->n; i++) {
		if (w && strcmp(shards->v[w - 1], shards->v[i]) == 0)
			free(shards->v[i]);
		else
			shards->v[w++] = shards->v[i];
	}
	shards->n = w;
	return 0;
}

/* The index's shards, each of them present in the folder. */
static int read_index(struct mq_hf_folder *f, struct strlist *shards, struct mq_error *err)
{
	char *path = join(f->dir, INDEX_NAME), *text = NULL;
	size_t len = 0;
	if (!path)
		return nomem(err);
	int rc = read_small(path, MQ_INDEX_MAX_BYTES, &text, &len, err);
	if (!rc)
		rc = index_shards(path, text, len, shards, err);
	free(text);
	for (size_t i = 0; i < shards->n && !rc; i++) {
		int found = 0;
		rc = have_file(f->dir, shards->v[i], &found, err);
		if (!rc && !found)
			rc = mq_fail(err, MQ_ERR_INPUT,
				"'%s' names the shard '%s', which is not in '%s' (an interrupted download? download the model again)",
				path, shards->v[i], f->dir);
	}
	free(path);
	return rc;
}

/* Up to 8 of the folder's (sorted, not hidden) names, for a message. */
static void describe_names(const struct strlist *names, char *out, size_t cap)
{
	size_t shown = 0, len = 0, n_visible = 0;
	out[0] = '\0';
	for (size_t i = 0; i < names->n; i++) {
		if (names->v[i][0] == '.')
			continue;
		n_visible++;
		if (shown < 8 && len < cap) {
			int k = snprintf(out + len, cap - len, "%s%s", shown ? ", " : "", names->v[i]);
			len += k > 0 ? (size_t)k : 0;
			shown++;
		}
	}
	if (n_visible > shown && len < cap)
		snprintf(out + len, cap - len, " and %zu more", n_visible - shown);
	if (!n_visible)
		snprintf(out, cap, "nothing else");
}

/* The index and its shards, else model.safetensors, else an error that lists what is there. */
static int find_weights(struct mq_hf_folder *f, struct mq_error *err)
{
	struct strlist shards = { 0 };
	int found = 0;
	int rc = have_file(f->dir, INDEX_NAME, &found, err);
	if (!rc && found) {
		rc = read_index(f, &shards, err);
		if (!rc && !(f->index = strdup(INDEX_NAME)))
			rc = nomem(err);
	} else if (!rc) {
		rc = have_file(f->dir, SINGLE_NAME, &found, err);
		if (!rc && found && strlist_push(&shards, SINGLE_NAME))
			rc = nomem(err);
	}
	if (!rc && !found) {
		struct strlist names = { 0 };
		char what[512];
		rc = list_names(f->dir, &names, err);
		describe_names(&names, what, sizeof(what));
		strlist_free(names.v, names.n);
		if (!rc)
			rc = mq_fail(err, MQ_ERR_INPUT,
				"'%s' has config.json but no safetensors weights: neither %s nor %s is there (it holds: %s); mq-dist reads a Hugging Face model's safetensors files",
				f->dir, INDEX_NAME, SINGLE_NAME, what);
	}
	f->shards = shards.v;
	f->n_shards = shards.n;
	return rc;
}

/* The folder as given, without trailing '/'; it must be a folder holding config.json. */
static int open_folder(const char *dir, struct mq_hf_folder *f, struct stat *st, struct mq_error *err)
{
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (!(f->dir = malloc(n + 1)))
		return nomem(err);
	memcpy(f->dir, dir, n);
	f->dir[n] = '\0';
	if (stat(f->dir, st))
		return mq_fail(err, MQ_ERR_INPUT, "cannot open the model folder '%s': %s", f->dir, strerror(errno));
	if (!S_ISDIR(st->st_mode))
		return mq_fail(err, MQ_ERR_INPUT, "'%s' is not a folder: %s", f->dir, FOLDER_HOLDS);
	int found = 0;
	int rc = have_file(f->dir, "config.json", &found, err);
	if (!rc && !found)
		rc = mq_fail(err, MQ_ERR_INPUT, "'%s' has no config.json: %s", f->dir, FOLDER_HOLDS);
	return rc;
}

/* ---- the walk ---- */

struct walk {
	struct mq_hf_folder *f;           /* dir, index and shards set */
	struct strlist copy;
	struct mq_hf_skip *skip;
	size_t n_skip, cap_skip;
	size_t n_entries;
	dev_t dev[MQ_FOLDER_MAX_DEPTH + 1]; /* the folders from the top to the one being read */
	ino_t ino[MQ_FOLDER_MAX_DEPTH + 1];
	struct mq_error *err;
};

static int has_suffix(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);
	return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* A file of model weights by its name (or the index of such files). */
static int is_weights_name(const char *name)
{
	static const char *const ext[] = { ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5",
					   ".msgpack", ".gguf", ".onnx", ".onnx_data" };
	size_t n = strlen(name);
	if (has_suffix(name, n, ".index.json"))
		n -= strlen(".index.json");
	for (size_t k = 0; k < sizeof(ext) / sizeof(ext[0]); k++)
		if (has_suffix(name, n, ext[k]))
			return 1;
	return 0;
}

/* config.json, the index and its shards: the top-level files the output writes anew. */
static int is_own(const struct mq_hf_folder *f, const char *rel)
{
	if (strchr(rel, '/'))
		return 0;
	if (strcmp(rel, "config.json") == 0 || (f->index && strcmp(rel, f->index) == 0))
		return 1;
	return f->n_shards && bsearch(&rel, f->shards, f->n_shards, sizeof(*f->shards), cmp_str_ptr);
}

static int add_skip(struct walk *w, const char *rel, const char *why)
{
	if (w->n_skip == w->cap_skip) {
		size_t cap = w->cap_skip ? 2 * w->cap_skip : 8;
		struct mq_hf_skip *s = realloc(w->skip, cap * sizeof(*s));
		if (!s)
			return nomem(w->err);
		w->skip = s;
		w->cap_skip = cap;
	}
	char *p = strdup(rel);
	if (!p)
		return nomem(w->err);
	w->skip[w->n_skip++] = (struct mq_hf_skip){ p, why };
	return 0;
}

static int walk_dir(struct walk *w, const char *path, const char *rel, int depth, const struct stat *st);

/* One entry, rel, of a folder at depth-1 below the top. */
static int visit(struct walk *w, const char *rel, int depth)
{
	char *path = join(w->f->dir, rel);
	if (!path)
		return nomem(w->err);
	const char *base = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
	struct stat st;
	int rc = 0;
	if (++w->n_entries > MQ_FOLDER_MAX_ENTRIES)
		rc = mq_fail(w->err, MQ_ERR_INPUT,
			"'%s' holds more than %d files and folders, the limit of mq-dist (MQ_FOLDER_MAX_ENTRIES in src/core/bounds.h); is it a model folder?",
			w->f->dir, MQ_FOLDER_MAX_ENTRIES);
	else if (stat(path, &st))
		rc = stat_error(path, MQ_ERR_INPUT, w->err);
	else if (S_ISDIR(st.st_mode))
		rc = walk_dir(w, path, rel, depth, &st);
	else if (!S_ISREG(st.st_mode))
		rc = add_skip(w, rel, "not a regular file");
	else if (is_own(w->f, rel))
		rc = 0;
	else if (is_weights_name(base))
		rc = add_skip(w, rel, "model weights in another file (the output holds its own)");
	else if (strlist_push(&w->copy, rel))
		rc = nomem(w->err);
	free(path);
	return rc;
}

/* The folder path (rel below the top, "" for the top itself, depth levels down), but hidden names. */
static int walk_dir(struct walk *w, const char *path, const char *rel, int depth, const struct stat *st)
{
	if (depth > MQ_FOLDER_MAX_DEPTH)
		return mq_fail(w->err, MQ_ERR_INPUT,
			"'%s' is more than %d folders deep, the limit of mq-dist (MQ_FOLDER_MAX_DEPTH in src/core/bounds.h)",
			path, MQ_FOLDER_MAX_DEPTH);
	for (int k = 0; k < depth; k++)
		if (w->dev[k] == st->st_dev && w->ino[k] == st->st_ino)
			return mq_fail(w->err, MQ_ERR_INPUT,
				"'%s' leads back to a folder that contains it (a symbolic link loop); remove the link",
				path);
	w->dev[depth] = st->st_dev;
	w->ino[depth] = st->st_ino;
	struct strlist names = { 0 };
	int rc = list_names(path, &names, w->err);
	for (size_t i = 0; i < names.n && !rc; i++) {
		if (names.v[i][0] == '.')
			continue;
		char *child = *rel ? join(rel, names.v[i]) : strdup(names.v[i]);
		rc = child ? visit(w, child, depth + 1) : nomem(w->err);
		free(child);
	}
	strlist_free(names.v, names.n);
	return rc;
}

int mq_hf_folder_scan(const char *dir, struct mq_hf_folder *f, struct mq_error *err)
{
	struct mq_error local = { 0 };
	if (!err)
		err = &local;
	memset(f, 0, sizeof(*f));
	struct stat st;
	int rc = open_folder(dir, f, &st, err);
	if (!rc)
		rc = find_weights(f, err);
	struct walk w = { .f = f, .err = err };
	if (!rc)
		rc = walk_dir(&w, f->dir, "", 0, &st);
	sort_strs(w.copy.v, w.copy.n);
	if (w.n_skip)
		qsort(w.skip, w.n_skip, sizeof(*w.skip), cmp_skip);
	f->copy = w.copy.v;
	f->n_copy = w.copy.n;
	f->skipped = w.skip;
	f->n_skipped = w.n_skip;
	if (rc)
		mq_hf_folder_release(f);
	return rc;
}

void mq_hf_folder_release(struct mq_hf_folder *f)
{
	if (!f)
		return;
	free(f->dir);
	free(f->index);
	strlist_free(f->shards, f->n_shards);
	strlist_free(f->copy, f->n_copy);
	for (size_t i = 0; i < f->n_skipped; i++)
		free(f->skipped[i].path);
	free(f->skipped);
	memset(f, 0, sizeof(*f));
}
