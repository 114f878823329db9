/* The pipeline tests' in-memory manifests. */
#ifndef MQ_MANIFEST_UTIL_H
#define MQ_MANIFEST_UTIL_H

#include "test_util.h"
#include "manifest.h"

struct spec {
	const char *name;
	enum mq_dtype dtype;
	int ndim;
	uint64_t shape[4];
};

/* A one-file manifest holding the given tensors (names sorted as the loader sorts them). */
static inline void make_manifest(struct mq_manifest *m, const struct spec *s, int n)
{
	memset(m, 0, sizeof(*m));
	m->model_path = strdup("model.safetensors");
	m->n_files = 1;
	m->files = calloc(1, sizeof(*m->files));
	m->files[0].path = strdup("model.safetensors");
	m->files[0].name = strdup("model.safetensors");
	m->files[0].raw = strdup("{}");
	m->n_tensors = n;
	m->tensors = calloc((size_t)n, sizeof(*m->tensors));
	uint64_t off = 8;
	for (int i = 0; i < n; i++) {
		struct mq_tensor *t = &m->tensors[i];
		t->name = strdup(s[i].name);
		t->dtype = s[i].dtype;
		t->ndim = s[i].ndim;
		uint64_t numel = 1;
		for (int d = 0; d < s[i].ndim; d++) {
			t->shape[d] = s[i].shape[d];
			numel *= s[i].shape[d];
		}
		t->nbytes = numel * mq_dtype_size(t->dtype);
		t->offset = off;
		t->contiguous = 1;
		uint64_t st = 1;
		for (int d = s[i].ndim - 1; d >= 0; st *= s[i].shape[d], d--)
			t->stride[d] = st;
		off += t->nbytes;
	}
	/* insertion sort by name, as mq_manifest_load leaves them */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && strcmp(m->tensors[j - 1].name, m->tensors[j].name) > 0; j--) {
			struct mq_tensor tmp = m->tensors[j];
			m->tensors[j] = m->tensors[j - 1];
			m->tensors[j - 1] = tmp;
		}
	m->files[0].size = off;
}

#endif
