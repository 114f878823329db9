#include "pickle.h"

#include "bounds.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE 256 /* GLOBAL module and name lines */

static const struct {
	enum mq_dtype dtype;
	const char *cls;
} storage_classes[] = {
	{ MQ_DTYPE_F32, "FloatStorage" }, { MQ_DTYPE_F16, "HalfStorage" },  { MQ_DTYPE_BF16, "BFloat16Storage" },
	{ MQ_DTYPE_F64, "DoubleStorage" }, { MQ_DTYPE_I64, "LongStorage" }, { MQ_DTYPE_I32, "IntStorage" },
	{ MQ_DTYPE_I16, "ShortStorage" },  { MQ_DTYPE_I8, "CharStorage" },  { MQ_DTYPE_U8, "ByteStorage" },
	{ MQ_DTYPE_BOOL, "BoolStorage" },
};

const char *mq_pickle_storage_class(enum mq_dtype d)
{
	for (size_t i = 0; i < sizeof(storage_classes) / sizeof(storage_classes[0]); i++)
		if (storage_classes[i].dtype == d)
			return storage_classes[i].cls;
	return NULL;
}

const char *mq_pickle_kind_name(enum mq_pk_kind k)
{
	static const char *const names[] = { "None", "bool", "int", "float", "str", "tuple",
					     "list", "dict", "class", "storage", "tensor" };
	return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

/* ---- the machine ---- */

struct vm {
	struct mq_pickle *pk;
	const char *what;
	struct mq_error *err;
	size_t pos;            /* of the opcode being run */
	int *stack;
	int n_stack, cap_stack;
	int *marks;            /* stack heights at each MARK */
	int n_marks, cap_marks;
	int *memo;             /* object index per memo id, -1 if unset */
	size_t n_memo;
};

static int grow(void **p, int *cap, int need, size_t elem)
{
	if (need <= *cap)
		return 0;
	int c = *cap ? *cap : 16;
	while (c < need) {
		if (c > (1 << 28))
			return -1;
		c *= 2;
	}
	void *q = realloc(*p, (size_t)c * elem);
	if (!q)
		return -1;
	*p = q;
	*cap = c;
	return 0;
}

__attribute__((format(printf, 2, 3))) static int fail(struct vm *m, const char *fmt, ...)
{
	char msg[640];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return mq_fail(m->err, MQ_ERR_INPUT, "%s: %s (at byte %zu)", m->what, msg, m->pos);
}

static int oom(struct vm *m)
{
	return mq_fail(m->err, MQ_ERR_INTERNAL, "out of memory reading %s", m->what);
}

static int new_obj(struct vm *m, enum mq_pk_kind kind)
{
	struct mq_pickle *pk = m->pk;
	if (pk->n_obj >= MQ_PICKLE_MAX_OBJECTS)
		return fail(m, "builds more than %d objects, the limit of mq-dist (MQ_PICKLE_MAX_OBJECTS in src/core/bounds.h), far more than a state dict of %d tensors needs; the file is corrupt or holds more than a state dict",
			    MQ_PICKLE_MAX_OBJECTS, MQ_MAX_TENSORS), -1;
	if (grow((void **)&pk->obj, &pk->cap_obj, pk->n_obj + 1, sizeof(*pk->obj)))
		return oom(m), -1;
	struct mq_pk_obj *o = &pk->obj[pk->n_obj];
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	return pk->n_obj++;
}

static int push(struct vm *m, int id)
{
	if (id < 0)
		return m->err->code;
	if (grow((void **)&m->stack, &m->cap_stack, m->n_stack + 1, sizeof(int)))
		return oom(m);
	m->stack[m->n_stack++] = id;
	return 0;
}

static int push_new(struct vm *m, enum mq_pk_kind kind)
{
	return push(m, new_obj(m, kind));
}

/* Height of the stack above the innermost mark (the whole stack has no mark). */
static int floor_of(const struct vm *m)
{
	return m->n_marks ? m->marks[m->n_marks - 1] : 0;
}

static int pop(struct vm *m, int *id)
{
	if (m->n_stack <= floor_of(m))
		return fail(m, "%s", "the stack is empty where an operand is expected");
	*id = m->stack[--m->n_stack];
	return 0;
}

static struct mq_pk_obj *obj(struct vm *m, int id)
{
	return &m->pk->obj[id];
}

static int add_item(struct vm *m, int container, int item)
{
	struct mq_pk_obj *o = obj(m, container);
	if (grow((void **)&o->items, &o->cap, o->n_items + 1, sizeof(int)))
		return oom(m);
	o->items[o->n_items++] = item;
	return 0;
}

/* Pops the items above the innermost mark, and the mark. */
static int pop_mark(struct vm *m, int *first, int *n)
{
	if (!m->n_marks)
		return fail(m, "%s", "no MARK before this opcode");
	*first = m->marks[--m->n_marks];
	*n = m->n_stack - *first;
	m->n_stack = *first;
	return 0;
}

static int make_tuple(struct vm *m, const int *items, int n)
{
	int t = new_obj(m, MQ_PK_TUPLE);
	if (t < 0)
		return m->err->code;
	for (int i = 0; i < n; i++) /* items may sit above the stack's height: push() comes last */
		if (add_item(m, t, items[i]))
			return m->err->code;
	return push(m, t);
}

static int need(struct vm *m, size_t n)
{
	if (m->pos + 1 + n > m->pk->len)
		return fail(m, "%s", "truncated (an opcode's argument runs past the end)");
	return 0;
}

static uint64_t le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int push_int(struct vm *m, int64_t v)
{
	int id = new_obj(m, MQ_PK_INT);
	if (id >= 0)
		obj(m, id)->i = v;
	return push(m, id);
}

/* GLOBAL: two text lines; only the allowlisted names become objects. */
static int op_global(struct vm *m, size_t *adv)
{
	const unsigned char *d = m->pk->data;
	size_t p = m->pos + 1, len = m->pk->len;
	char mod[MAX_LINE + 1], name[MAX_LINE + 1];
	char *lines[2] = { mod, name };
	for (int k = 0; k < 2; k++) {
		size_t n = 0;
		while (p < len && d[p] != '\n' && n < MAX_LINE)
			lines[k][n++] = (char)d[p++];
		if (p >= len || d[p] != '\n')
			return fail(m, "%s", "a GLOBAL name is truncated or longer than 256 bytes");
		lines[k][n] = '\0';
		if (strlen(lines[k]) != n)
			return fail(m, "%s", "a GLOBAL name holds a NUL byte");
		p++;
	}
	*adv = p - m->pos;
	int id = -1;
	if (strcmp(mod, "collections") == 0 && strcmp(name, "OrderedDict") == 0) {
		id = new_obj(m, MQ_PK_GLOBAL);
		if (id >= 0)
			obj(m, id)->global = MQ_PKG_ORDERED_DICT;
	} else if (strcmp(mod, "torch._utils") == 0 &&
		   (strcmp(name, "_rebuild_tensor_v2") == 0 || strcmp(name, "_rebuild_parameter") == 0)) {
		id = new_obj(m, MQ_PK_GLOBAL);
		if (id >= 0)
			obj(m, id)->global = strcmp(name, "_rebuild_tensor_v2") == 0 ? MQ_PKG_REBUILD_TENSOR : MQ_PKG_REBUILD_PARAMETER;
	} else if (strcmp(mod, "torch") == 0) {
		for (size_t i = 0; i < sizeof(storage_classes) / sizeof(storage_classes[0]); i++) {
			if (strcmp(name, storage_classes[i].cls) == 0) {
				id = new_obj(m, MQ_PK_GLOBAL);
				if (id >= 0) {
					obj(m, id)->global = MQ_PKG_STORAGE;
					obj(m, id)->dtype = storage_classes[i].dtype;
				}
				break;
			}
		}
	}
	if (id < 0 && !m->err->code) {
		return fail(m,
			"names the global '%s.%s', which a state dict of tensors does not need (for a whole pickled model, save model.state_dict() instead); mq-dist refuses it and runs nothing from the file",
			mod, name);
	}
	return push(m, id);
}

static int int_arg(struct vm *m, int id, int64_t *v, const char *what)
{
	if (obj(m, id)->kind != MQ_PK_INT && obj(m, id)->kind != MQ_PK_BOOL)
		return fail(m, "%s is not an int", what);
	*v = obj(m, id)->i;
	return 0;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
static int rebuild_tensor(struct vm *m, int args)
{
	struct mq_pk_obj *a = obj(m, args);
	if (a->n_items != 6 && a->n_items != 7)
		return fail(m, "%s", "_rebuild_tensor_v2 takes 6 or 7 arguments");
	struct mq_pk_tensor t;
	memset(&t, 0, sizeof(t));
	t.storage = a->items[0];
	if (obj(m, t.storage)->kind != MQ_PK_STORAGE)
		return fail(m, "%s", "_rebuild_tensor_v2: the first argument is not a storage");
	int64_t off = 0;
	if (int_arg(m, a->items[1], &off, "the storage offset"))
		return m->err->code;
	if (off < 0)
		return fail(m, "%s", "a negative storage offset");
	t.offset = (uint64_t)off;
	struct mq_pk_obj *size = obj(m, a->items[2]), *stride = obj(m, a->items[3]);
	if (size->kind != MQ_PK_TUPLE || stride->kind != MQ_PK_TUPLE || size->n_items != stride->n_items)
		return fail(m, "%s", "_rebuild_tensor_v2: size and stride must be tuples of the same length");
	if (size->n_items > MQ_MAX_DIMS)
		return fail(m, "%s", "a tensor with more than 8 dimensions");
	t.ndim = size->n_items;
	for (int d = 0; d < t.ndim; d++) {
		int64_t s = 0, st = 0;
		if (int_arg(m, size->items[d], &s, "a size") || int_arg(m, stride->items[d], &st, "a stride"))
			return m->err->code;
		if (s < 0 || st < 0)
			return fail(m, "%s", "a negative size or stride");
		t.shape[d] = (uint64_t)s;
		t.stride[d] = (uint64_t)st;
	}
	struct mq_pickle *pk = m->pk;
	if (grow((void **)&pk->tensors, &pk->cap_tensors, pk->n_tensors + 1, sizeof(t)))
		return oom(m);
	int id = new_obj(m, MQ_PK_TENSOR);
	if (id < 0)
		return m->err->code;
	pk->tensors[pk->n_tensors] = t;
	obj(m, id)->i = pk->n_tensors++;
	return push(m, id);
}

static int op_reduce(struct vm *m)
{
	int args = -1, fn = -1;
	if (pop(m, &args) || pop(m, &fn))
		return m->err->code;
	if (obj(m, args)->kind != MQ_PK_TUPLE || obj(m, fn)->kind != MQ_PK_GLOBAL)
		return fail(m, "%s", "REDUCE on something other than an allowed class and an argument tuple");
	struct mq_pk_obj *a = obj(m, args);
	switch (obj(m, fn)->global) {
	case MQ_PKG_ORDERED_DICT:
		if (a->n_items != 0)
			return fail(m, "%s", "OrderedDict called with arguments");
		return push_new(m, MQ_PK_DICT);
	case MQ_PKG_REBUILD_TENSOR:
		return rebuild_tensor(m, args);
	case MQ_PKG_REBUILD_PARAMETER:
		if (a->n_items != 3 || obj(m, a->items[0])->kind != MQ_PK_TENSOR)
			return fail(m, "%s", "_rebuild_parameter takes (tensor, requires_grad, hooks)");
		return push(m, a->items[0]);
	case MQ_PKG_STORAGE:
		break;
	}
	return fail(m, "%s", "a storage class is called directly");
}

/* BINPERSID: ('storage', class, key, location, numel) */
static int op_persid(struct vm *m)
{
	int pid = -1;
	if (pop(m, &pid))
		return m->err->code;
	struct mq_pk_obj *t = obj(m, pid);
	if (t->kind != MQ_PK_TUPLE || t->n_items != 5)
		return fail(m, "%s", "a persistent id that is not a 5-tuple ('storage', class, key, location, numel)");
	struct mq_pk_obj *tag = obj(m, t->items[0]), *cls = obj(m, t->items[1]), *key = obj(m, t->items[2]);
	struct mq_pk_obj *loc = obj(m, t->items[3]), *numel = obj(m, t->items[4]);
	if (tag->kind != MQ_PK_STR || tag->len != 7 || memcmp(m->pk->data + tag->str, "storage", 7) != 0 ||
	    cls->kind != MQ_PK_GLOBAL || cls->global != MQ_PKG_STORAGE || key->kind != MQ_PK_STR ||
	    loc->kind != MQ_PK_STR || numel->kind != MQ_PK_INT || numel->i < 0)
		return fail(m, "%s", "a persistent id that is not ('storage', class, key, location, numel)");
	struct mq_pk_obj s = *key; /* copied: new_obj() may move the objects */
	s.kind = MQ_PK_STORAGE;
	s.dtype = cls->dtype;
	s.i = numel->i;
	int id = new_obj(m, MQ_PK_STORAGE);
	if (id < 0)
		return m->err->code;
	*obj(m, id) = s;
	return push(m, id);
}

static int op_setitems(struct vm *m, int marked)
{
	int first = m->n_stack - 2, n = 2;
	if (marked && pop_mark(m, &first, &n))
		return m->err->code;
	if (n % 2)
		return fail(m, "%s", "SETITEMS with an odd number of items");
	if (first - 1 < floor_of(m))
		return fail(m, "%s", "SETITEM(S) without a dict");
	int d = m->stack[first - 1];
	if (obj(m, d)->kind != MQ_PK_DICT)
		return fail(m, "%s", "SETITEM(S) on something that is not a dict");
	for (int i = 0; i < n; i++) { /* the items stay in the stack array until the next push */
		int k = m->stack[first + i];
		if (i % 2 == 0) {
			enum mq_pk_kind kk = obj(m, k)->kind;
			if (kk == MQ_PK_LIST || kk == MQ_PK_DICT)
				return fail(m, "%s", "a dict key that is a list or dict");
		}
		if (add_item(m, d, k))
			return m->err->code;
	}
	if (!marked)
		m->n_stack -= 2;
	return 0;
}

static int op_appends(struct vm *m, int marked)
{
	int first = m->n_stack - 1, n = 1;
	if (marked && pop_mark(m, &first, &n))
		return m->err->code;
	if (first - 1 < floor_of(m))
		return fail(m, "%s", "APPEND(S) without a list");
	int l = m->stack[first - 1];
	if (obj(m, l)->kind != MQ_PK_LIST)
		return fail(m, "%s", "APPEND(S) on something that is not a list");
	for (int i = 0; i < n; i++)
		if (add_item(m, l, m->stack[first + i]))
			return m->err->code;
	if (!marked)
		m->n_stack -= 1;
	return 0;
}

static int memo_put(struct vm *m, uint64_t idx)
{
	if (m->n_stack <= floor_of(m))
		return fail(m, "%s", "PUT with an empty stack");
	/* the pickler numbers memo entries from 0 as it stores objects, so an index never exceeds the objects so far */
	if (idx >= m->pk->len || idx > (uint64_t)m->pk->n_obj)
		return fail(m, "a memo index (%llu) larger than the number of objects so far; the pickle is corrupt",
			    (unsigned long long)idx);
	if (idx >= m->n_memo) {
		size_t n = m->n_memo ? m->n_memo : 64;
		while (n <= idx)
			n *= 2;
		int *memo = realloc(m->memo, n * sizeof(int));
		if (!memo)
			return oom(m);
		for (size_t i = m->n_memo; i < n; i++)
			memo[i] = -1;
		m->memo = memo;
		m->n_memo = n;
	}
	m->memo[idx] = m->stack[m->n_stack - 1];
	return 0;
}

static int memo_get(struct vm *m, uint64_t idx)
{
	if (idx >= m->n_memo || m->memo[idx] < 0)
		return fail(m, "%s", "GET of a memo entry that was never PUT");
	return push(m, m->memo[idx]);
}

static const char *opcode_name(unsigned op)
{
	switch (op) {
	case 0x93: return "STACK_GLOBAL (protocol 4)";
	case 0x95: return "FRAME (protocol 4)";
	case 0x94: return "MEMOIZE (protocol 4)";
	case 0x8c: return "SHORT_BINUNICODE (protocol 4)";
	case 0x81: return "NEWOBJ";
	case 0x92: return "NEWOBJ_EX";
	case 'i': return "INST";
	case 'o': return "OBJ";
	case 'B': case 'C': return "BINBYTES (protocol 3)";
	case 0x82: case 0x83: case 0x84: return "EXT";
	case 'P': return "PERSID (text)";
	default: return "an opcode torch.save does not write";
	}
}

static int step(struct vm *m, int *done)
{
	struct mq_pickle *pk = m->pk;
	const unsigned char *a = pk->data + m->pos + 1;
	unsigned op = pk->data[m->pos];
	size_t adv = 1;
	int rc = 0, x = -1;
	switch (op) {
	case 0x80: /* PROTO */
		if ((rc = need(m, 1)))
			break;
		if (a[0] != 2) {
			char v[8];
			snprintf(v, sizeof(v), "%u", a[0]);
			rc = fail(m, "pickle protocol %s; mq-dist reads protocol 2, which torch.save writes by default", v);
		}
		adv = 2;
		break;
	case '.': /* STOP */
		if (m->n_marks || m->n_stack != 1)
			rc = fail(m, "%s", "STOP with a stack that does not hold exactly one object");
		else
			pk->root = m->stack[0];
		*done = 1;
		break;
	case 'c':
		rc = op_global(m, &adv);
		break;
	case 'R':
		rc = op_reduce(m);
		break;
	case 'b': /* BUILD: the state of a dict or a tensor is not needed */
		if (!(rc = pop(m, &x))) {
			if (m->n_stack <= floor_of(m))
				rc = fail(m, "%s", "BUILD without an object");
			else if (obj(m, m->stack[m->n_stack - 1])->kind != MQ_PK_DICT &&
				 obj(m, m->stack[m->n_stack - 1])->kind != MQ_PK_TENSOR)
				rc = fail(m, "%s", "BUILD on something other than a dict or a tensor");
		}
		break;
	case '(':
		if (grow((void **)&m->marks, &m->cap_marks, m->n_marks + 1, sizeof(int)))
			rc = oom(m);
		else
			m->marks[m->n_marks++] = m->n_stack;
		break;
	case 't': {
		int first = 0, n = 0;
		if (!(rc = pop_mark(m, &first, &n))) /* an empty stack may have no array yet */
			rc = make_tuple(m, n ? m->stack + first : NULL, n);
		break;
	}
	case ')':
		rc = make_tuple(m, NULL, 0);
		break;
	case 0x85: case 0x86: case 0x87: {
		int n = (int)(op - 0x84), items[3];
		if (m->n_stack - floor_of(m) < n) {
			rc = fail(m, "%s", "TUPLE1/2/3 with too few items");
			break;
		}
		m->n_stack -= n;
		memcpy(items, m->stack + m->n_stack, (size_t)n * sizeof(int));
		rc = make_tuple(m, items, n);
		break;
	}
	case ']':
		rc = push_new(m, MQ_PK_LIST);
		break;
	case '}':
		rc = push_new(m, MQ_PK_DICT);
		break;
	case 'a': rc = op_appends(m, 0); break;
	case 'e': rc = op_appends(m, 1); break;
	case 's': rc = op_setitems(m, 0); break;
	case 'u': rc = op_setitems(m, 1); break;
	case 'N': rc = push_new(m, MQ_PK_NONE); break;
	case 0x88: case 0x89:
		if ((x = new_obj(m, MQ_PK_BOOL)) >= 0)
			obj(m, x)->i = op == 0x88;
		rc = push(m, x);
		break;
	case 'J':
		if (!(rc = need(m, 4)))
			rc = push_int(m, (int64_t)(int32_t)(uint32_t)le(a, 4));
		adv = 5;
		break;
	case 'K':
		if (!(rc = need(m, 1)))
			rc = push_int(m, a[0]);
		adv = 2;
		break;
	case 'M':
		if (!(rc = need(m, 2)))
			rc = push_int(m, (int64_t)le(a, 2));
		adv = 3;
		break;
	case 0x8a: { /* LONG1: n bytes of two's complement */
		if ((rc = need(m, 1)))
			break;
		unsigned n = a[0];
		if (n > 8) {
			rc = fail(m, "%s", "an integer wider than 64 bits");
			break;
		}
		if ((rc = need(m, 1 + n)))
			break;
		uint64_t v = le(a + 1, (int)n);
		if (n && n < 8 && (a[n] & 0x80))
			v |= ~0ull << (8 * n);
		rc = push_int(m, (int64_t)v);
		adv = 2 + n;
		break;
	}
	case 'G': { /* BINFLOAT, big-endian */
		if ((rc = need(m, 8)))
			break;
		uint64_t v = 0;
		for (int i = 0; i < 8; i++)
			v = v << 8 | a[i];
		if ((x = new_obj(m, MQ_PK_FLOAT)) >= 0)
			memcpy(&obj(m, x)->f, &v, 8);
		rc = push(m, x);
		adv = 9;
		break;
	}
	case 'X': case 'U': { /* BINUNICODE (u32 length), SHORT_BINSTRING (u8 length) */
		int w = op == 'X' ? 4 : 1;
		if ((rc = need(m, (size_t)w)))
			break;
		uint64_t n = le(a, w);
		if ((rc = need(m, (size_t)w + n)))
			break;
		if ((x = new_obj(m, MQ_PK_STR)) >= 0) {
			obj(m, x)->str = (uint32_t)(m->pos + 1 + (size_t)w);
			obj(m, x)->len = (uint32_t)n;
		}
		rc = push(m, x);
		adv = 1 + (size_t)w + n;
		break;
	}
	case 'Q':
		rc = op_persid(m);
		break;
	case 'h': case 'j': {
		int w = op == 'h' ? 1 : 4;
		if (!(rc = need(m, (size_t)w)))
			rc = memo_get(m, le(a, w));
		adv = 1 + (size_t)w;
		break;
	}
	case 'q': case 'r': {
		int w = op == 'q' ? 1 : 4;
		if (!(rc = need(m, (size_t)w)))
			rc = memo_put(m, le(a, w));
		adv = 1 + (size_t)w;
		break;
	}
	default: {
		char msg[128];
		snprintf(msg, sizeof(msg), "opcode 0x%02x, %s", op, opcode_name(op));
		rc = fail(m, "%s is not allowed in a state dict pickle", msg);
		break;
	}
	}
	m->pos += adv;
	return rc;
}

int mq_pickle_load(const char *what, const unsigned char *data, size_t len, struct mq_pickle *pk,
		   struct mq_error *err)
{
	struct mq_error local = { 0 };
	memset(pk, 0, sizeof(*pk));
	pk->data = data;
	pk->len = len;
	pk->root = -1;
	struct vm m = { .pk = pk, .what = what, .err = err ? err : &local };
	int rc = 0, done = 0;
	if (len > UINT32_MAX)
		rc = mq_fail(m.err, MQ_ERR_INPUT, "%s: larger than 4 GiB", what);
	else if (len < 2 || data[0] != 0x80)
		rc = mq_fail(m.err, MQ_ERR_INPUT, "%s: not a protocol-2 pickle (torch.save writes one)", what);
	while (!rc && !done) {
		if (m.pos >= len)
			rc = fail(&m, "%s", "ends without STOP");
		else
			rc = step(&m, &done);
	}
	free(m.stack);
	free(m.marks);
	free(m.memo);
	if (rc)
		mq_pickle_release(pk);
	return rc;
}

void mq_pickle_release(struct mq_pickle *pk)
{
	for (int i = 0; i < pk->n_obj; i++)
		free(pk->obj[i].items);
	free(pk->obj);
	free(pk->tensors);
	memset(pk, 0, sizeof(*pk));
}

/* ---- writer ---- */

void mq_pickle_put_int(struct mq_buf *b, int64_t v)
{
	unsigned char c[10];
	if (v >= 0 && v < 256) {
		c[0] = 'K';
		c[1] = (unsigned char)v;
		mq_buf_add(b, c, 2);
	} else if (v >= 0 && v < 65536) {
		c[0] = 'M';
		c[1] = (unsigned char)v;
		c[2] = (unsigned char)(v >> 8);
		mq_buf_add(b, c, 3);
	} else if (v >= INT32_MIN && v <= INT32_MAX) {
		c[0] = 'J';
		for (int i = 0; i < 4; i++)
			c[1 + i] = (unsigned char)((uint64_t)v >> (8 * i));
		mq_buf_add(b, c, 5);
	} else { /* LONG1: the fewest bytes of two's complement that keep the sign */
		uint64_t u = (uint64_t)v;
		int n = 8;
		while (n > 1) {
			uint64_t top = u >> (8 * (n - 1)) & 0xff, next_sign = u >> (8 * (n - 1) - 1) & 1;
			if (!((top == 0 && !next_sign) || (top == 0xff && next_sign)))
				break;
			n--;
		}
		c[0] = 0x8a;
		c[1] = (unsigned char)n;
		for (int i = 0; i < n; i++)
			c[2 + i] = (unsigned char)(u >> (8 * i));
		mq_buf_add(b, c, (size_t)n + 2);
	}
}

void mq_pickle_put_str(struct mq_buf *b, const char *s)
{
	size_t n = strlen(s);
	unsigned char c[5] = { 'X', (unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16),
			       (unsigned char)(n >> 24) };
	mq_buf_add(b, c, 5);
	mq_buf_add(b, s, n);
}

void mq_pickle_put_global(struct mq_buf *b, const char *module, const char *name)
{
	mq_buf_addf(b, "c%s\n%s\n", module, name);
}
