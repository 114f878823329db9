/*
 * pickle: a restricted reader and a small writer for the protocol-2 pickles
 * that torch.save puts in data.pkl.
 *
 * The reader is a stack machine that builds plain data (ints, floats,
 * strings, tuples, lists, dicts) and three kinds of torch objects (storage
 * references, tensors, and the classes that make them). It accepts only the
 * opcodes that torch.save emits for a state dict and only the globals in its
 * allowlist (collections.OrderedDict, torch._utils._rebuild_tensor_v2 and
 * _rebuild_parameter, and the torch.<X>Storage classes of the dtypes below);
 * anything else is refused with the opcode or the global's name. Nothing is
 * ever imported or called: a "call" builds a record. Memory is bounded by the
 * pickle's length.
 */
#ifndef MQ_PICKLE_H
#define MQ_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "dtype.h"
#include "safetensors.h"
#include "status.h"

enum mq_pk_kind {
	MQ_PK_NONE, MQ_PK_BOOL, MQ_PK_INT, MQ_PK_FLOAT, MQ_PK_STR,
	MQ_PK_TUPLE, MQ_PK_LIST, MQ_PK_DICT, MQ_PK_GLOBAL, MQ_PK_STORAGE, MQ_PK_TENSOR
};

enum mq_pk_global { MQ_PKG_ORDERED_DICT, MQ_PKG_REBUILD_TENSOR, MQ_PKG_REBUILD_PARAMETER, MQ_PKG_STORAGE };

struct mq_pk_tensor {
	int storage;                  /* object index of the MQ_PK_STORAGE */
	uint64_t offset;              /* storage offset, elements */
	int ndim;
	uint64_t shape[MQ_MAX_DIMS];
	uint64_t stride[MQ_MAX_DIMS]; /* elements */
};

struct mq_pk_obj {
	enum mq_pk_kind kind;
	int64_t i;                    /* INT, BOOL; STORAGE: numel; TENSOR: index in tensors[] */
	double f;                     /* FLOAT */
	uint32_t str, len;            /* STR; STORAGE: its key. Offset and length in the pickle bytes */
	enum mq_pk_global global;     /* GLOBAL */
	enum mq_dtype dtype;          /* GLOBAL storage class, STORAGE */
	int *items;                   /* TUPLE, LIST: elements; DICT: key, value, key, value, ... */
	int n_items, cap;
};

struct mq_pickle {
	const unsigned char *data;    /* the pickle bytes (not owned) */
	size_t len;
	struct mq_pk_obj *obj;
	int n_obj, cap_obj;
	struct mq_pk_tensor *tensors;
	int n_tensors, cap_tensors;
	int root;                     /* object index of the result */
};

/* Runs the pickle. `what` names it in messages (e.g. "'m.pt': data.pkl"). */
int mq_pickle_load(const char *what, const unsigned char *data, size_t len, struct mq_pickle *pk,
		   struct mq_error *err);
void mq_pickle_release(struct mq_pickle *pk);

/* A kind's name for messages ("int", "dict", ...). */
const char *mq_pickle_kind_name(enum mq_pk_kind k);

/* Writer pieces (protocol 2): the shortest opcode for an int, a string, a GLOBAL. */
void mq_pickle_put_int(struct mq_buf *b, int64_t v);
void mq_pickle_put_str(struct mq_buf *b, const char *s);
void mq_pickle_put_global(struct mq_buf *b, const char *module, const char *name);

/* The storage class torch uses for a dtype ("FloatStorage"), or NULL if it has none in protocol 2. */
const char *mq_pickle_storage_class(enum mq_dtype d);

#endif
