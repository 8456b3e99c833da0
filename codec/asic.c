#include "codec/asic.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "codec/half.h"
#include "codec/qkernel.h"

/* Header fields (docs/formats.md). */
#define H_MAGIC 0
#define H_VERSION 4
#define H_DTYPE 6
#define H_RESERVED0 7
#define H_NAME 8
#define H_CORES 40
#define H_LANES 44
#define H_TILE 48
#define H_ENTRIES 52
#define H_SRAM 56
#define H_STRINGS 64
#define H_STRBYTES 68
#define H_DATA_OFF 72
#define H_DATA_BYTES 80
#define H_USED 88
#define H_RESERVED1 92 /* 20 zero bytes */
#define H_HCHECK 112
#define H_CHECKSUM 120

/* Entry fields. */
#define E_TENSOR 0
#define E_CORE 4
#define E_NCORES 8
#define E_DEVCORE 12
#define E_RLEFT 16
#define E_N 24
#define E_RRIGHT 32
#define E_ROW0 40
#define E_ROWS 48
#define E_PITCH 56
#define E_TROWS 64
#define E_RESERVED 68
#define E_SRAM 72
#define E_FILE 80
#define E_LENGTH 88
#define E_SCALE 96

#define FETCH_BUDGET ((uint64_t)256 << 10) /* f32 bytes per fetch */
#define MAX_ROWS ((uint64_t)1 << 58)     /* rows or bytes of one matrix */

/* Fuzzers cannot forge the checks; let them past to reach the rest (the
 * usual libFuzzer convention, never defined in a real build). */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CHECK_OK(got, want) ((void)(got), (void)(want), 1)
#else
#define CHECK_OK(got, want) ((got) == (want))
#endif

static uint32_t ld32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4); /* the build admits little-endian hosts only */
	return v;
}

static uint64_t ld64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static void st16(unsigned char *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void st32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void st64(unsigned char *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static int errf(int rc, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int errf(int rc, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

/* A name for a one-line message: printable ASCII kept, other bytes as
 * \xNN, at most about 60 bytes shown. */
typedef struct shown {
	char s[72];
} shown;

static shown show(const char *name, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	shown o;
	size_t k = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (k > 56) {
			memcpy(o.s + k, "...", 3);
			k += 3;
			break;
		}
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
			o.s[k++] = (char)c;
		} else {
			o.s[k++] = '\\';
			o.s[k++] = 'x';
			o.s[k++] = hex[c >> 4];
			o.s[k++] = hex[c & 15];
		}
	}
	o.s[k] = 0;
	return o;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above
 * U+10FFFF. */
static int utf8_ok(const unsigned char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (len - i - 1 < n)
			return 0;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
			return 0;
		i += n + 1;
	}
	return 1;
}

static uint64_t ru(uint64_t x, uint64_t m)
{
	return (x + m - 1) / m * m;
}

static uint64_t gcd64(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* ---- dtypes and profiles ---- */

size_t tcz_asic_dtype_size(tcz_asic_dtype dt)
{
	switch (dt) {
	case TCZ_ASIC_F32: return 4;
	case TCZ_ASIC_F16: return 2;
	case TCZ_ASIC_I8: return 1;
	}
	return 0;
}

const char *tcz_asic_dtype_name(tcz_asic_dtype dt)
{
	switch (dt) {
	case TCZ_ASIC_F32: return "f32";
	case TCZ_ASIC_F16: return "f16";
	case TCZ_ASIC_I8: return "i8";
	}
	return NULL;
}

int tcz_asic_dtype_parse(const char *s, tcz_asic_dtype *out)
{
	static const tcz_asic_dtype all[] = {TCZ_ASIC_F32, TCZ_ASIC_F16,
					     TCZ_ASIC_I8};
	for (size_t i = 0; s && i < sizeof(all) / sizeof(*all); i++)
		if (strcmp(s, tcz_asic_dtype_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	return -EINVAL;
}

void tcz_asic_profile_newport(tcz_asic_profile *p)
{
	memset(p, 0, sizeof(*p));
	memcpy(p->name, "newport", 8);
	p->cores = 256;
	p->sram_bytes = (uint64_t)8 << 20;
	p->tile_bytes = 64;
	p->lanes = 16;
	p->dtype = TCZ_ASIC_F32;
}

static int name_char(char c, int first)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return !first && (c == '.' || c == '_' || c == '-');
}

int tcz_asic_profile_check(const tcz_asic_profile *p, char *err,
			   size_t errlen)
{
	size_t nl = strnlen(p->name, sizeof(p->name));
	if (nl == 0)
		return errf(-EINVAL, err, errlen, "profile: empty name");
	if (nl > TCZ_ASIC_NAME_MAX)
		return errf(-EINVAL, err, errlen,
			    "profile: name longer than %u bytes",
			    TCZ_ASIC_NAME_MAX);
	for (size_t i = 0; i < nl; i++)
		if (!name_char(p->name[i], i == 0))
			return errf(-EINVAL, err, errlen,
				    "profile '%s': the name must be letters, "
				    "digits, '.', '_' or '-', starting with a "
				    "letter or digit", show(p->name, nl).s);
	const char *nm = p->name;
	size_t es = tcz_asic_dtype_size(p->dtype);
	if (!es)
		return errf(-EINVAL, err, errlen,
			    "profile '%s': unknown dtype %d (f32, f16 or i8)",
			    nm, (int)p->dtype);
	const char *dn = tcz_asic_dtype_name(p->dtype);
	if (p->cores == 0)
		return errf(-EINVAL, err, errlen, "profile '%s': zero cores",
			    nm);
	if (p->cores > TCZ_ASIC_MAX_CORES)
		return errf(-EINVAL, err, errlen,
			    "profile '%s': %" PRIu32 " cores, more than %u", nm,
			    p->cores, TCZ_ASIC_MAX_CORES);
	if (p->lanes == 0)
		return errf(-EINVAL, err, errlen, "profile '%s': zero SIMD lanes",
			    nm);
	if (p->lanes > TCZ_ASIC_MAX_LANES)
		return errf(-EINVAL, err, errlen,
			    "profile '%s': %" PRIu32 " SIMD lanes, more than %u",
			    nm, p->lanes, TCZ_ASIC_MAX_LANES);
	if (p->tile_bytes == 0)
		return errf(-EINVAL, err, errlen, "profile '%s': zero tile bytes",
			    nm);
	if (p->tile_bytes > TCZ_ASIC_MAX_TILE)
		return errf(-EINVAL, err, errlen,
			    "profile '%s': a tile of %" PRIu32
			    " bytes, more than 1 MiB", nm, p->tile_bytes);
	if (p->tile_bytes % es)
		return errf(-EINVAL, err, errlen,
			    "profile '%s': a tile of %" PRIu32 " bytes is not a "
			    "multiple of the %s element size (%zu bytes)", nm,
			    p->tile_bytes, dn, es);
	if (p->tile_bytes % (p->lanes * es))
		return errf(-EINVAL, err, errlen,
			    "profile '%s': %" PRIu32 " lanes x %zu bytes (%s) = "
			    "%" PRIu64 " bytes does not divide the tile (%" PRIu32
			    " bytes)", nm, p->lanes, es, dn,
			    (uint64_t)p->lanes * es, p->tile_bytes);
	if (p->sram_bytes == 0)
		return errf(-EINVAL, err, errlen, "profile '%s': zero SRAM bytes",
			    nm);
	if (p->sram_bytes > TCZ_ASIC_MAX_SRAM)
		return errf(-EINVAL, err, errlen,
			    "profile '%s': %" PRIu64 " bytes of SRAM per core, "
			    "more than 1 TiB", nm, p->sram_bytes);
	if (p->sram_bytes % p->tile_bytes)
		return errf(-EINVAL, err, errlen,
			    "profile '%s': %" PRIu64 " bytes of SRAM per core is "
			    "not a whole number of %" PRIu32 "-byte tiles", nm,
			    p->sram_bytes, p->tile_bytes);
	return 0;
}

int tcz_asic_dense_matrix(uint32_t ndim, const uint64_t *shape,
			  uint64_t *rows, uint64_t *cols)
{
	const uint64_t lim = (uint64_t)1 << 62;
	uint64_t r = 1, c = 1;
	for (uint32_t i = 0; i < ndim; i++) {
		uint64_t d = shape[i];
		if (ndim >= 2 && i == 0) {
			if (d > lim)
				return -EOVERFLOW;
			r = d;
			continue;
		}
		if (d && c > lim / d)
			return -EOVERFLOW;
		c *= d;
	}
	if (r && c > lim / r)
		return -EOVERFLOW;
	*rows = r;
	*cols = c;
	return 0;
}

/* ---- geometry ---- */

/* A matrix's packing: row pitch, rows per tile row, and whether scales
 * follow (f16/i8). */
typedef struct geom {
	uint64_t pitch;
	uint32_t g;
	uint32_t tile;
	int q;
} geom;

static geom geom_of(const tcz_asic_profile *p, uint64_t r_right)
{
	size_t es = tcz_asic_dtype_size(p->dtype);
	geom G = {.tile = p->tile_bytes, .q = p->dtype != TCZ_ASIC_F32};
	G.pitch = ru(r_right, p->lanes) * es; /* r_right <= 2^58 */
	G.g = G.pitch ? (uint32_t)(p->tile_bytes / gcd64(G.pitch, p->tile_bytes))
		      : 1;
	return G;
}

/* Bytes of a block of k rows; k * pitch <= 2^58 and k <= 2^58. */
static uint64_t block_bytes(const geom *G, uint64_t k)
{
	uint64_t b = ru(k * G->pitch, G->tile);
	if (G->q)
		b += ru(4 * ((k + G->g - 1) / G->g), G->tile);
	return b;
}

static uint64_t scale_offset_of(const geom *G, uint64_t k)
{
	return G->q ? ru(k * G->pitch, G->tile) : 0;
}

/* The most whole tile rows (at most maxtr, of a block of `rows` rows)
 * whose block fits in cap bytes: 0 when not even one does. */
static uint64_t fit_tile_rows(const geom *G, uint64_t rows, uint64_t maxtr,
			      uint64_t cap)
{
	uint64_t lo = 0, hi = maxtr;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2;
		uint64_t k = mid * G->g < rows ? mid * G->g : rows;
		if (block_bytes(G, k) <= cap)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* ---- layout ---- */

typedef struct mat {
	size_t idx; /* the caller's index */
	const char *name;
	size_t len;
	uint32_t core, d, tensor;
	uint64_t rl, n, rr, rows;
	geom G;
	int empty;
} mat;

static int cmp_name(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	if (c)
		return c;
	return al < bl ? -1 : al > bl;
}

static int cmp_mat(const void *pa, const void *pb)
{
	const mat *a = pa, *b = pb;
	int c = cmp_name(a->name, a->len, b->name, b->len);
	if (c)
		return c;
	if (a->core != b->core)
		return a->core < b->core ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx; /* duplicates */
}

typedef struct piece {
	uint32_t mat; /* index into the sorted matrices */
	uint32_t seq; /* canonical order: matrix, then first row */
	uint64_t row0, rows, bytes;
} piece;

static int cmp_piece(const void *pa, const void *pb)
{
	const piece *a = pa, *b = pb;
	if (a->bytes != b->bytes)
		return a->bytes > b->bytes ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

typedef struct placed {
	uint32_t mat, core;
	uint64_t row0, rows, offset, bytes;
} placed;

static int cmp_placed(const void *pa, const void *pb)
{
	const placed *a = pa, *b = pb;
	if (a->core != b->core)
		return a->core < b->core ? -1 : 1;
	return a->offset < b->offset ? -1 : a->offset > b->offset;
}

/* A min-heap of cores by (load, index). */
typedef struct heap {
	uint32_t *h;
	uint32_t n;
	const uint64_t *load;
} heap;

static int heap_less(const heap *H, uint32_t a, uint32_t b)
{
	if (H->load[a] != H->load[b])
		return H->load[a] < H->load[b];
	return a < b;
}

static void heap_down(heap *H, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < H->n && heap_less(H, H->h[l], H->h[m]))
			m = l;
		if (r < H->n && heap_less(H, H->h[r], H->h[m]))
			m = r;
		if (m == i)
			return;
		uint32_t t = H->h[i];
		H->h[i] = H->h[m];
		H->h[m] = t;
		i = m;
	}
}

static void fmt_bytes(char *out, size_t cap, uint64_t b)
{
	if (b >= ((uint64_t)1 << 30))
		snprintf(out, cap, "%" PRIu64 " bytes (%.1f GiB)", b,
			 (double)b / (1 << 30));
	else if (b >= ((uint64_t)1 << 20))
		snprintf(out, cap, "%" PRIu64 " bytes (%.1f MiB)", b,
			 (double)b / (1 << 20));
	else if (b >= 1024)
		snprintf(out, cap, "%" PRIu64 " bytes (%.1f KiB)", b,
			 (double)b / 1024);
	else
		snprintf(out, cap, "%" PRIu64 " bytes", b);
}

void tcz_asic_layout_free(tcz_asic_layout *l)
{
	if (!l)
		return;
	free(l->entries);
	free(l->names);
	free(l->prefix);
	free(l->core_bytes);
	free(l->core_blocks);
	free(l);
}

/* Validates the matrices (sorted) and fills tensor, d, rows, geometry. */
static int check_mats(const tcz_asic_profile *p, mat *ms, size_t n,
		      uint32_t *ntensors, char *err, size_t errlen)
{
	uint32_t t = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && cmp_name(ms[j].name, ms[j].len, ms[i].name,
					 ms[i].len) == 0)
			j++;
		shown nm = show(ms[i].name, ms[i].len);
		size_t d = j - i;
		for (size_t k = i; k < j; k++) {
			if (ms[k].core == k - i)
				continue;
			if (k > i && ms[k].core == ms[k - 1].core)
				return errf(-EINVAL, err, errlen,
					    "tensor '%s': core %" PRIu32
					    " given twice", nm.s, ms[k].core);
			return errf(-EINVAL, err, errlen,
				    "tensor '%s': core %zu missing (the "
				    "cores are 0..%zu)", nm.s, k - i, d - 1);
		}
		if (d > TCZ_ASIC_MAX_TT_CORES)
			return errf(-EINVAL, err, errlen,
				    "tensor '%s': %zu cores, more than %u",
				    nm.s, d, TCZ_ASIC_MAX_TT_CORES);
		for (size_t k = i; k < j; k++) {
			mat *m = &ms[k];
			m->tensor = t;
			m->d = (uint32_t)d;
			if (d == 1 && m->rl != 1)
				return errf(-EINVAL, err, errlen,
					    "tensor '%s': a dense matrix has "
					    "r_left 1, not %" PRIu64, nm.s,
					    m->rl);
			if (d > 1 && (!m->rl || !m->n || !m->rr))
				return errf(-EINVAL, err, errlen,
					    "tensor '%s' core %" PRIu32
					    ": a TT core has no zero "
					    "dimension", nm.s, m->core);
			if (d > 1 && k == i && m->rl != 1)
				return errf(-EINVAL, err, errlen,
					    "tensor '%s': TT core 0 has r_left "
					    "%" PRIu64 ", not 1", nm.s, m->rl);
			if (d > 1 && k == j - 1 && m->rr != 1)
				return errf(-EINVAL, err, errlen,
					    "tensor '%s': the last TT core has "
					    "r_right %" PRIu64 ", not 1", nm.s,
					    m->rr);
			if (d > 1 && k > i && ms[k - 1].rr != m->rl)
				return errf(-EINVAL, err, errlen,
					    "tensor '%s': core %" PRIu32
					    " has r_right %" PRIu64 " but core "
					    "%" PRIu32 " has r_left %" PRIu64,
					    nm.s, ms[k - 1].core, ms[k - 1].rr,
					    m->core, m->rl);
			if (m->n && m->rl > MAX_ROWS / m->n)
				return errf(-EINVAL, err, errlen,
					    "tensor '%s' core %" PRIu32
					    ": r_left x n overflows", nm.s,
					    m->core);
			if (m->rr > MAX_ROWS)
				return errf(-EINVAL, err, errlen,
					    "tensor '%s' core %" PRIu32
					    ": r_right %" PRIu64 " is absurd",
					    nm.s, m->core, m->rr);
			m->rows = m->rl * m->n;
			m->G = geom_of(p, m->rr);
			m->empty = m->rows == 0 || m->rr == 0;
		}
		t++;
		i = j;
	}
	*ntensors = t;
	return 0;
}

/* Splits every matrix into the blocks of its initial split. */
static int split(const tcz_asic_profile *p, const mat *ms, size_t n,
		 piece **out, uint32_t *npieces, uint64_t *needed, char *err,
		 size_t errlen)
{
	uint64_t S = p->sram_bytes;
	uint64_t cap = S * p->cores;
	uint64_t count = 0, need = 0;
	char b1[64], b2[64];
	/* first pass: counts, and what does not fit at all */
	for (size_t i = 0; i < n; i++) {
		const mat *m = &ms[i];
		if (m->empty)
			continue;
		shown nm = show(m->name, m->len);
		uint64_t tr = (uint64_t)m->G.g * m->G.pitch;
		uint64_t trb = tr + (m->G.q ? m->G.tile : 0);
		if (m->G.pitch > S || m->G.g > S / m->G.pitch || trb > S) {
			fmt_bytes(b1, sizeof b1, S);
			return errf(-ENOSPC, err, errlen,
				    "tensor '%s' core %" PRIu32 ": a tile row "
				    "of %" PRIu32 " rows of %" PRIu64 " bytes "
				    "does not fit a core's SRAM (%s) of device "
				    "'%s'", nm.s, m->core, m->G.g, m->G.pitch,
				    b1, p->name);
		}
		if (m->rows > cap / m->G.pitch) {
			fmt_bytes(b1, sizeof b1, cap);
			/* rows * pitch may exceed 64 bits only past any SRAM */
			uint64_t need = m->rows > UINT64_MAX / m->G.pitch
						? UINT64_MAX
						: m->rows * m->G.pitch;
			fmt_bytes(b2, sizeof b2, need - cap);
			return errf(-ENOSPC, err, errlen,
				    "model does not fit device '%s': tensor "
				    "'%s' core %" PRIu32 " alone needs %" PRIu64
				    " x %" PRIu64 " bytes, more than the %" PRIu32
				    " cores hold (%s): %s missing", p->name, nm.s,
				    m->core, m->rows, m->G.pitch, p->cores, b1, b2);
		}
		uint64_t ntr = (m->rows + m->G.g - 1) / m->G.g;
		uint64_t k = fit_tile_rows(&m->G, m->rows, ntr, S);
		uint64_t np = (ntr + k - 1) / k;
		count += np;
		if (count > TCZ_ASIC_MAX_ENTRIES)
			return errf(-EOVERFLOW, err, errlen,
				    "more than %u blocks", TCZ_ASIC_MAX_ENTRIES);
	}
	piece *ps = malloc((count ? count : 1) * sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	uint32_t np_all = 0;
	for (size_t i = 0; i < n; i++) {
		const mat *m = &ms[i];
		if (m->empty)
			continue;
		uint64_t ntr = (m->rows + m->G.g - 1) / m->G.g;
		uint64_t k = fit_tile_rows(&m->G, m->rows, ntr, S);
		uint64_t np = (ntr + k - 1) / k;
		uint64_t base = ntr / np, extra = ntr % np, at = 0;
		for (uint64_t j = 0; j < np; j++) {
			uint64_t trs = base + (j < extra);
			uint64_t r0 = at * m->G.g;
			uint64_t r1 = (at + trs) * m->G.g;
			if (r1 > m->rows)
				r1 = m->rows;
			piece *q = &ps[np_all];
			q->mat = (uint32_t)i;
			q->seq = np_all;
			q->row0 = r0;
			q->rows = r1 - r0;
			q->bytes = block_bytes(&m->G, q->rows);
			need += q->bytes; /* each <= S, count <= 2^22 */
			np_all++;
			at += trs;
		}
	}
	if (need > cap) {
		fmt_bytes(b1, sizeof b1, need);
		fmt_bytes(b2, sizeof b2, cap);
		char b3[64];
		fmt_bytes(b3, sizeof b3, need - cap);
		free(ps);
		return errf(-ENOSPC, err, errlen,
			    "model does not fit device '%s': it needs %s, the "
			    "device has %s (%" PRIu32 " cores x %" PRIu64
			    " bytes): %s missing", p->name, b1, b2, p->cores,
			    S, b3);
	}
	*out = ps;
	*npieces = np_all;
	*needed = need;
	return 0;
}

/* LPT placement with spill (tcz_asic_layout_new's comment). */
static int place(const tcz_asic_profile *p, const mat *ms, piece *ps,
		 uint32_t np, uint64_t needed, uint64_t *load, placed **out,
		 uint32_t *nout, char *err, size_t errlen)
{
	uint64_t S = p->sram_bytes;
	qsort(ps, np, sizeof(*ps), cmp_piece);
	heap H = {.n = p->cores, .load = load};
	H.h = malloc(p->cores * sizeof(*H.h));
	uint32_t cap = np + 16, n = 0;
	placed *pl = malloc(cap * sizeof(*pl));
	if (!H.h || !pl) {
		free(H.h);
		free(pl);
		return -ENOMEM;
	}
	for (uint32_t c = 0; c < p->cores; c++)
		H.h[c] = c; /* all loads 0: a valid heap */
	uint64_t lost = 0;
	const piece *first_lost = NULL;
	for (uint32_t i = 0; i < np; i++) {
		const mat *m = &ms[ps[i].mat];
		uint64_t r0 = ps[i].row0, left = ps[i].rows;
		while (left) {
			uint32_t c = H.h[0];
			uint64_t free_b = S - load[c], k = left, b;
			b = block_bytes(&m->G, left);
			if (b > free_b) {
				uint64_t ntr = (left + m->G.g - 1) / m->G.g;
				uint64_t tr = fit_tile_rows(&m->G, left, ntr - 1,
							    free_b);
				k = tr * m->G.g;
				b = block_bytes(&m->G, k);
			}
			if (!k) {
				lost += block_bytes(&m->G, left);
				if (!first_lost)
					first_lost = &ps[i];
				break;
			}
			if (n == cap) {
				if (cap > TCZ_ASIC_MAX_ENTRIES) {
					free(H.h);
					free(pl);
					return errf(-EOVERFLOW, err, errlen,
						    "more than %u blocks",
						    TCZ_ASIC_MAX_ENTRIES);
				}
				placed *np2 = realloc(pl, 2 * (size_t)cap *
							      sizeof(*pl));
				if (!np2) {
					free(H.h);
					free(pl);
					return -ENOMEM;
				}
				pl = np2;
				cap *= 2;
			}
			pl[n++] = (placed){
				.mat = ps[i].mat,
				.core = c,
				.row0 = r0,
				.rows = k,
				.offset = load[c],
				.bytes = b,
			};
			load[c] += b;
			heap_down(&H, 0);
			r0 += k;
			left -= k;
		}
	}
	free(H.h);
	if (lost) {
		const mat *m = &ms[first_lost->mat];
		char b1[64], b2[64], b3[64];
		fmt_bytes(b1, sizeof b1, needed);
		fmt_bytes(b2, sizeof b2, S * p->cores);
		fmt_bytes(b3, sizeof b3, lost);
		free(pl);
		return errf(-ENOSPC, err, errlen,
			    "model does not fit device '%s': it needs %s of "
			    "%s, but %s fit no core (the space left on each "
			    "core is smaller than a tile row of tensor '%s' "
			    "core %" PRIu32 ")", p->name, b1, b2, b3,
			    show(m->name, m->len).s, m->core);
	}
	if (n > TCZ_ASIC_MAX_ENTRIES) {
		free(pl);
		return errf(-EOVERFLOW, err, errlen, "more than %u blocks",
			    TCZ_ASIC_MAX_ENTRIES);
	}
	qsort(pl, n, sizeof(*pl), cmp_placed);
	*out = pl;
	*nout = n;
	return 0;
}

static void put_entry(unsigned char *b, const tcz_asic_entry *e)
{
	memset(b, 0, TCZ_ASIC_ENTRY_BYTES);
	st32(b + E_TENSOR, e->tensor);
	st32(b + E_CORE, e->core);
	st32(b + E_NCORES, e->ncores);
	st32(b + E_DEVCORE, e->device_core);
	st64(b + E_RLEFT, e->r_left);
	st64(b + E_N, e->n);
	st64(b + E_RRIGHT, e->r_right);
	st64(b + E_ROW0, e->row0);
	st64(b + E_ROWS, e->rows);
	st64(b + E_PITCH, e->pitch);
	st32(b + E_TROWS, e->tile_rows);
	st64(b + E_SRAM, e->sram_offset);
	st64(b + E_FILE, e->file_offset);
	st64(b + E_LENGTH, e->length);
	st64(b + E_SCALE, e->scale_offset);
}

static tcz_asic_entry entry_of(const mat *m, uint64_t row0, uint64_t rows)
{
	return (tcz_asic_entry){
		.tensor = m->tensor,
		.core = m->core,
		.ncores = m->d,
		.device_core = TCZ_ASIC_UNPLACED,
		.r_left = m->rl,
		.n = m->n,
		.r_right = m->rr,
		.row0 = row0,
		.rows = rows,
		.pitch = m->G.pitch,
		.tile_rows = m->G.g,
		.matrix = m->idx,
	};
}

/* Builds entries, names, the prefix and the per-core totals. */
static int build(tcz_asic_layout *l, const mat *ms, size_t n,
		 uint32_t ntensors, const placed *pl, uint32_t npl,
		 char *err, size_t errlen)
{
	const tcz_asic_profile *p = &l->profile;
	uint32_t nempty = 0;
	uint64_t strbytes = 0;
	for (size_t i = 0; i < n; i++) {
		nempty += ms[i].empty;
		if (ms[i].core == 0)
			strbytes += 4 + ms[i].len;
	}
	if (strbytes > UINT32_MAX)
		return errf(-EOVERFLOW, err, errlen,
			    "tensor names take more than 4 GiB");
	if ((uint64_t)npl + nempty > TCZ_ASIC_MAX_ENTRIES)
		return errf(-EOVERFLOW, err, errlen, "more than %u blocks",
			    TCZ_ASIC_MAX_ENTRIES);
	l->nentries = npl + nempty;
	l->nplaced = npl;
	l->nnames = ntensors;
	l->entries = calloc(l->nentries ? l->nentries : 1, sizeof(*l->entries));
	l->names = calloc(ntensors ? ntensors : 1, sizeof(*l->names));
	l->core_bytes = calloc(p->cores, sizeof(*l->core_bytes));
	l->core_blocks = calloc(p->cores, sizeof(*l->core_blocks));
	uint64_t table_end = TCZ_ASIC_HEADER_BYTES +
			     (uint64_t)TCZ_ASIC_ENTRY_BYTES * l->nentries +
			     strbytes;
	l->data_offset = ru(table_end, p->tile_bytes);
	if (!l->entries || !l->names || !l->core_bytes || !l->core_blocks ||
	    l->data_offset > SIZE_MAX)
		return -ENOMEM;
	l->prefix = calloc(1, (size_t)l->data_offset);
	if (!l->prefix)
		return -ENOMEM;

	uint64_t file = l->data_offset;
	for (uint32_t i = 0; i < npl; i++) {
		const mat *m = &ms[pl[i].mat];
		tcz_asic_entry *e = &l->entries[i];
		*e = entry_of(m, pl[i].row0, pl[i].rows);
		e->device_core = pl[i].core;
		e->sram_offset = pl[i].offset;
		e->file_offset = file;
		e->length = pl[i].bytes;
		e->scale_offset = scale_offset_of(&m->G, e->rows);
		file += e->length;
		l->core_bytes[e->device_core] += e->length;
		l->core_blocks[e->device_core]++;
	}
	uint32_t k = npl;
	for (size_t i = 0; i < n; i++)
		if (ms[i].empty)
			l->entries[k++] = entry_of(&ms[i], 0, ms[i].rows);
	l->data_bytes = file - l->data_offset;
	l->image_bytes = file;

	unsigned char *b = l->prefix;
	st32(b + H_MAGIC, TCZ_ASIC_MAGIC);
	st16(b + H_VERSION, TCZ_ASIC_VERSION);
	b[H_DTYPE] = (unsigned char)p->dtype;
	memcpy(b + H_NAME, p->name, strnlen(p->name, TCZ_ASIC_NAME_MAX));
	st32(b + H_CORES, p->cores);
	st32(b + H_LANES, p->lanes);
	st32(b + H_TILE, p->tile_bytes);
	st32(b + H_ENTRIES, l->nentries);
	st64(b + H_SRAM, p->sram_bytes);
	st32(b + H_STRINGS, ntensors);
	st32(b + H_STRBYTES, (uint32_t)strbytes);
	st64(b + H_DATA_OFF, l->data_offset);
	st64(b + H_DATA_BYTES, l->data_bytes);
	for (uint32_t i = 0; i < l->nentries; i++)
		put_entry(b + TCZ_ASIC_HEADER_BYTES +
				  (size_t)TCZ_ASIC_ENTRY_BYTES * i,
			  &l->entries[i]);
	unsigned char *s = b + TCZ_ASIC_HEADER_BYTES +
			   (size_t)TCZ_ASIC_ENTRY_BYTES * l->nentries;
	for (size_t i = 0; i < n; i++) {
		if (ms[i].core)
			continue;
		st32(s, (uint32_t)ms[i].len);
		memcpy(s + 4, ms[i].name, ms[i].len);
		l->names[ms[i].tensor] = (tcz_asic_name){
			.s = (const char *)s + 4,
			.len = (uint32_t)ms[i].len,
		};
		s += 4 + ms[i].len;
	}

	uint64_t used = 0, mx = 0;
	for (uint32_t c = 0; c < p->cores; c++) {
		used += l->core_bytes[c] > 0;
		if (l->core_bytes[c] > mx)
			mx = l->core_bytes[c];
	}
	l->used_cores = (uint32_t)used;
	l->max_core_bytes = mx;
	l->imbalance = used ? (double)mx * (double)used / (double)l->data_bytes
			    : 1.0;
	st32(b + H_USED, l->used_cores);
	st64(b + H_HCHECK, XXH3_64bits(b, H_HCHECK));
	return 0;
}

int tcz_asic_layout_new(const tcz_asic_profile *p, const tcz_asic_matrix *m,
			size_t n, tcz_asic_layout **out, char *err,
			size_t errlen)
{
	int rc = tcz_asic_profile_check(p, err, errlen);
	if (rc)
		return rc;
	if (n > TCZ_ASIC_MAX_ENTRIES)
		return errf(-EOVERFLOW, err, errlen, "more than %u matrices",
			    TCZ_ASIC_MAX_ENTRIES);
	for (size_t i = 0; i < n; i++) {
		if (m[i].name_len == 0 || !m[i].name)
			return errf(-EINVAL, err, errlen,
				    "matrix %zu: empty tensor name", i);
		if (m[i].name_len > TCZ_ASIC_MAX_TENSOR_NAME)
			return errf(-EINVAL, err, errlen,
				    "tensor '%s': name longer than %u bytes",
				    show(m[i].name, m[i].name_len).s,
				    TCZ_ASIC_MAX_TENSOR_NAME);
		if (!utf8_ok((const unsigned char *)m[i].name, m[i].name_len))
			return errf(-EINVAL, err, errlen,
				    "tensor '%s': name is not valid UTF-8",
				    show(m[i].name, m[i].name_len).s);
	}
	mat *ms = malloc((n ? n : 1) * sizeof(*ms));
	tcz_asic_layout *l = calloc(1, sizeof(*l));
	uint64_t *load = calloc(p->cores, sizeof(*load));
	piece *ps = NULL;
	placed *pl = NULL;
	uint32_t np = 0, npl = 0, ntensors = 0;
	uint64_t needed = 0;
	rc = -ENOMEM;
	if (!ms || !l || !load)
		goto fail;
	for (size_t i = 0; i < n; i++)
		ms[i] = (mat){
			.idx = i,
			.name = m[i].name,
			.len = m[i].name_len,
			.core = m[i].core,
			.rl = m[i].r_left,
			.n = m[i].n,
			.rr = m[i].r_right,
		};
	qsort(ms, n, sizeof(*ms), cmp_mat);
	l->profile = *p;
	rc = check_mats(p, ms, n, &ntensors, err, errlen);
	if (rc)
		goto fail;
	rc = split(p, ms, n, &ps, &np, &needed, err, errlen);
	if (rc)
		goto fail;
	rc = place(p, ms, ps, np, needed, load, &pl, &npl, err, errlen);
	if (rc)
		goto fail;
	rc = build(l, ms, n, ntensors, pl, npl, err, errlen);
	if (rc)
		goto fail;
	free(ms);
	free(load);
	free(ps);
	free(pl);
	*out = l;
	return 0;
fail:
	if (rc == -ENOMEM)
		errf(rc, err, errlen, "out of memory");
	free(ms);
	free(load);
	free(ps);
	free(pl);
	tcz_asic_layout_free(l);
	return rc;
}

/* ---- packing ---- */

/* The scale of one tile row (cnt values): i8 max|v| / 127 (the smallest
 * subnormal when that underflows, 0 for a row of zeros); f16 the power of
 * two 2^(e-15) with 2^(e-1) <= max|v| < 2^e, at least 2^-149, 1 for a
 * row of zeros. Non-finite values do not count. */
static float tile_row_scale(tcz_asic_dtype dt, const float *v, size_t cnt)
{
	float m = 0;
	uint32_t mb = tcz_qk_absmax_bits(v, cnt);
	if (mb < 0x7f800000u) {
		memcpy(&m, &mb, 4);
	} else { /* NaN or infinity: the largest finite magnitude */
		for (size_t i = 0; i < cnt; i++) {
			float a = fabsf(v[i]);
			if (a > m && a <= FLT_MAX)
				m = a;
		}
	}
	if (dt == TCZ_ASIC_I8) {
		float s = m / 127.0f;
		if (m > 0 && s == 0)
			s = 0x1p-149f;
		return s;
	}
	if (m == 0)
		return 1.0f;
	int e;
	frexpf(m, &e);
	return ldexpf(1.0f, e - 15 < -149 ? -149 : e - 15);
}

/* clamp(rint(t), -127, 127) with NaN giving 0. */
static inline signed char i8_code(float t)
{
	if (t != t)
		return 0;
	t = t > 127.0f ? 127.0f : t;
	t = t < -127.0f ? -127.0f : t;
	return (signed char)rintf(t);
}

/* o[c] = i8_code(v[c] / s) for c < n (s > 0; s == 0 means no division). */
static void i8_codes(const float *v, uint64_t n, float s, unsigned char *o)
{
	uint64_t c = 0;
#ifdef __SSE2__
	/* the same per value: NaN masked to 0, clamped, then converted with
	 * the current rounding (nearest, ties to even, as rintf) */
	const __m128 sv = _mm_set1_ps(s > 0 ? s : 1.0f);
	const __m128 hi = _mm_set1_ps(127.0f), lo = _mm_set1_ps(-127.0f);
	for (; c + 16 <= n; c += 16) {
		__m128i q[4];
		for (int k = 0; k < 4; k++) {
			__m128 t = _mm_div_ps(_mm_loadu_ps(v + c + 4 * k), sv);
			t = _mm_and_ps(t, _mm_cmpord_ps(t, t));
			t = _mm_min_ps(_mm_max_ps(t, lo), hi);
			q[k] = _mm_cvtps_epi32(t);
		}
		__m128i w = _mm_packs_epi16(_mm_packs_epi32(q[0], q[1]),
					    _mm_packs_epi32(q[2], q[3]));
		_mm_storeu_si128((__m128i *)(void *)(o + c), w);
	}
#endif
	for (; c < n; c++)
		o[c] = (unsigned char)i8_code(s > 0 ? v[c] / s : v[c]);
}

/* Packs nr rows (one tile row, or any rows for f32) of cols values. */
static void pack_tile_row(tcz_asic_dtype dt, const float *v, uint64_t nr,
			  uint64_t cols, uint64_t pitch, unsigned char *dst)
{
	size_t es = tcz_asic_dtype_size(dt);
	float s = dt == TCZ_ASIC_F32 ? 1.0f
				     : tile_row_scale(dt, v, (size_t)(nr * cols));
	for (uint64_t r = 0; r < nr; r++) {
		const float *row = v + r * cols;
		unsigned char *o = dst + r * pitch;
		switch (dt) {
		case TCZ_ASIC_F32:
			memcpy(o, row, (size_t)cols * 4);
			break;
		case TCZ_ASIC_F16: {
			/* s is a power of two: v * (1/s) is v / s exactly
			 * while 1/s is a (normal) f32 */
			float tmp[256], inv = s >= 0x1p-126f ? 1.0f / s : 0;
			for (uint64_t c = 0; c < cols; c += 256) {
				size_t k = cols - c < 256 ? (size_t)(cols - c)
							  : 256;
				if (inv > 0)
					for (size_t i = 0; i < k; i++)
						tmp[i] = row[c + i] * inv;
				else
					for (size_t i = 0; i < k; i++)
						tmp[i] = row[c + i] / s;
				tcz_f32_to_f16_n(tmp, o + 2 * c, k);
			}
			break;
		}
		case TCZ_ASIC_I8:
			i8_codes(row, cols, s, o);
			break;
		}
		memset(o + cols * es, 0, (size_t)(pitch - cols * es));
	}
}

/* Checks e and whole tile rows [row0, row0+nrows) of it. */
static const tcz_asic_entry *rows_ok(const tcz_asic_layout *l, uint32_t e,
				     uint64_t row0, uint64_t nrows, int q)
{
	if (e >= l->nplaced)
		return NULL;
	const tcz_asic_entry *en = &l->entries[e];
	if (row0 > en->rows || nrows > en->rows - row0)
		return NULL;
	if (q && (row0 % en->tile_rows ||
		  (nrows % en->tile_rows && row0 + nrows != en->rows)))
		return NULL;
	return en;
}

int tcz_asic_pack_rows(const tcz_asic_layout *l, uint32_t e, uint64_t row0,
		       uint64_t nrows, const float *rows, void *dst)
{
	tcz_asic_dtype dt = l->profile.dtype;
	const tcz_asic_entry *en = rows_ok(l, e, row0, nrows,
					   dt != TCZ_ASIC_F32);
	if (!en)
		return -EINVAL;
	unsigned char *o = dst;
	uint64_t step = dt == TCZ_ASIC_F32 ? nrows : en->tile_rows;
	for (uint64_t r = 0; r < nrows; r += step) {
		uint64_t k = nrows - r < step ? nrows - r : step;
		pack_tile_row(dt, rows + r * en->r_right, k, en->r_right,
			      en->pitch, o + r * en->pitch);
	}
	return 0;
}

int tcz_asic_pack_scales(const tcz_asic_layout *l, uint32_t e,
			 uint64_t row0, uint64_t nrows, const float *rows,
			 void *dst)
{
	tcz_asic_dtype dt = l->profile.dtype;
	if (dt == TCZ_ASIC_F32)
		return -EINVAL;
	const tcz_asic_entry *en = rows_ok(l, e, row0, nrows, 1);
	if (!en)
		return -EINVAL;
	unsigned char *o = dst;
	uint64_t g = en->tile_rows;
	for (uint64_t r = 0; r < nrows; r += g) {
		uint64_t k = nrows - r < g ? nrows - r : g;
		float s = tile_row_scale(dt, rows + r * en->r_right,
					 (size_t)(k * en->r_right));
		memcpy(o + 4 * (r / g), &s, 4);
	}
	return 0;
}

/* ---- reading ---- */

/* Spreads k rows of rowb bytes, fetched back to back at d, to the pitch,
 * zero-padding each (in place: the last row moves first). */
static void expand_rows(unsigned char *d, uint64_t k, uint64_t rowb,
			uint64_t pitch)
{
	if (rowb == pitch)
		return;
	for (uint64_t r = k; r-- > 0;) {
		if (r)
			memmove(d + r * pitch, d + r * rowb, (size_t)rowb);
		memset(d + r * pitch + rowb, 0, (size_t)(pitch - rowb));
	}
}

/* Rows [ra, rb) of entry e, as packed rows (scales == 0) or as their
 * scales, copied where they meet entry bytes [a, b) into o (o is byte a).
 * f32 rows wholly inside [a, b) are fetched straight into o; the rest
 * goes through scratch buffers of about FETCH_BUDGET bytes. */
static int read_rows(const tcz_asic_layout *l, uint32_t e, uint64_t ra,
		     uint64_t rb, int scales, uint64_t a, uint64_t b,
		     unsigned char *o, tcz_asic_fetch_fn fetch, void *ctx)
{
	const tcz_asic_entry *en = &l->entries[e];
	uint64_t g = en->tile_rows, cols = en->r_right;
	int f32 = l->profile.dtype == TCZ_ASIC_F32;
	uint64_t bs = FETCH_BUDGET / (cols * 4) / g * g;
	if (bs < g)
		bs = g;
	if (bs > rb - ra)
		bs = rb - ra;
	float *f = NULL;
	unsigned char *buf = NULL;
	int rc = 0;
	for (uint64_t r = ra; r < rb; r += bs) {
		uint64_t k = rb - r < bs ? rb - r : bs;
		uint64_t lo, hi;
		if (scales) {
			lo = en->scale_offset + 4 * (r / g);
			hi = en->scale_offset + 4 * ((r + k + g - 1) / g);
		} else {
			lo = r * en->pitch;
			hi = (r + k) * en->pitch;
		}
		uint64_t from = lo > a ? lo : a, to = hi < b ? hi : b;
		if (from >= to)
			continue;
		unsigned char *d = o + (lo - a);
		int whole = !scales && from == lo && to == hi;
		if (whole && f32 && (uintptr_t)d % _Alignof(float) == 0) {
			rc = fetch(ctx, en->matrix, en->row0 + r, k,
				   (float *)(void *)d);
			if (rc)
				goto out;
			expand_rows(d, k, cols * 4, en->pitch);
			continue;
		}
		if (!f) {
			size_t ob = scales ? (size_t)((bs + g - 1) / g * 4)
					   : (size_t)(bs * en->pitch);
			f = malloc((size_t)(bs * cols) * sizeof(float));
			buf = malloc(ob);
			if (!f || !buf) {
				rc = -ENOMEM;
				goto out;
			}
		}
		rc = fetch(ctx, en->matrix, en->row0 + r, k, f);
		if (rc)
			goto out;
		if (whole) {
			tcz_asic_pack_rows(l, e, r, k, f, d);
			continue;
		}
		if (scales)
			tcz_asic_pack_scales(l, e, r, k, f, buf);
		else
			tcz_asic_pack_rows(l, e, r, k, f, buf);
		memcpy(o + (from - a), buf + (from - lo), (size_t)(to - from));
	}
out:
	free(f);
	free(buf);
	return rc;
}

/* Bytes [a, a+n) of entry e into o. */
static int read_entry(const tcz_asic_layout *l, uint32_t e, uint64_t a,
		      uint64_t n, unsigned char *o, tcz_asic_fetch_fn fetch,
		      void *ctx)
{
	const tcz_asic_entry *en = &l->entries[e];
	uint64_t b = a + n, rowbytes = en->rows * en->pitch;
	uint64_t g = en->tile_rows;
	int q = l->profile.dtype != TCZ_ASIC_F32;
	/* zeros: after the rows (to the scales or the end), after the
	 * scales; read_rows writes every byte of the rows and scales */
	uint64_t se = q ? en->scale_offset + 4 * ((en->rows + g - 1) / g)
			: en->length;
	uint64_t zr[2][2] = {{rowbytes, q ? en->scale_offset : en->length},
			     {se, en->length}};
	for (int z = 0; z < 2; z++) {
		uint64_t from = zr[z][0] > a ? zr[z][0] : a;
		uint64_t to = zr[z][1] < b ? zr[z][1] : b;
		if (from < to)
			memset(o + (from - a), 0, (size_t)(to - from));
	}
	if (a < rowbytes) {
		uint64_t ra = a / en->pitch;
		uint64_t end = b < rowbytes ? b : rowbytes;
		uint64_t rb = (end + en->pitch - 1) / en->pitch;
		if (q) {
			ra = ra / g * g;
			rb = (rb + g - 1) / g * g;
			if (rb > en->rows)
				rb = en->rows;
		}
		int rc = read_rows(l, e, ra, rb, 0, a, b, o, fetch, ctx);
		if (rc)
			return rc;
	}
	if (q) {
		uint64_t so = en->scale_offset;
		if (b > so && a < se) {
			uint64_t ja = ((a > so ? a : so) - so) / 4;
			uint64_t jb = ((b < se ? b : se) - so + 3) / 4;
			uint64_t rb = jb * g < en->rows ? jb * g : en->rows;
			int rc = read_rows(l, e, ja * g, rb, 1, a, b, o, fetch,
					   ctx);
			if (rc)
				return rc;
		}
	}
	return 0;
}

int tcz_asic_read(const tcz_asic_layout *l, uint64_t off, size_t len,
		  void *dst, tcz_asic_fetch_fn fetch, void *ctx)
{
	if (off > l->image_bytes || len > l->image_bytes - off)
		return -EINVAL;
	unsigned char *o = dst;
	if (len && off < l->data_offset) {
		uint64_t k = l->data_offset - off < len ? l->data_offset - off
							: len;
		memcpy(o, l->prefix + off, (size_t)k);
		o += k;
		off += k;
		len -= (size_t)k;
	}
	if (!len)
		return 0;
	/* the first placed entry that ends after off */
	uint32_t lo = 0, hi = l->nplaced;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const tcz_asic_entry *e = &l->entries[mid];
		if (e->file_offset + e->length <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint32_t e = lo; len; e++) {
		const tcz_asic_entry *en = &l->entries[e];
		uint64_t a = off - en->file_offset;
		uint64_t k = en->length - a < len ? en->length - a : len;
		int rc = read_entry(l, e, a, k, o, fetch, ctx);
		if (rc)
			return rc;
		o += k;
		off += k;
		len -= (size_t)k;
	}
	return 0;
}

int tcz_asic_checksum(const tcz_asic_layout *l, tcz_asic_fetch_fn fetch,
		      void *ctx, uint64_t *out)
{
	const size_t piece = 1u << 20;
	XXH3_state_t *st = XXH3_createState();
	unsigned char *buf = malloc(piece);
	int rc = -ENOMEM;
	if (!st || !buf || XXH3_64bits_reset(st) != XXH_OK)
		goto out;
	XXH3_64bits_update(st, l->prefix + TCZ_ASIC_HEADER_BYTES,
			   (size_t)(l->data_offset - TCZ_ASIC_HEADER_BYTES));
	for (uint64_t off = l->data_offset; off < l->image_bytes;) {
		size_t k = l->image_bytes - off < piece
				   ? (size_t)(l->image_bytes - off)
				   : piece;
		rc = tcz_asic_read(l, off, k, buf, fetch, ctx);
		if (rc)
			goto out;
		XXH3_64bits_update(st, buf, k);
		off += k;
	}
	*out = XXH3_64bits_digest(st);
	rc = 0;
out:
	XXH3_freeState(st);
	free(buf);
	return rc;
}

void tcz_asic_set_checksum(tcz_asic_layout *l, uint64_t checksum)
{
	st64(l->prefix + H_CHECKSUM, checksum);
	l->checksum_set = 1;
}

/* ---- checking an image ---- */

typedef struct ck {
	const unsigned char *b;
	size_t len;
	char *err;
	size_t errlen;
	tcz_asic_profile p;
	size_t es;
	int q;
	uint32_t ne, ns;
	const unsigned char **names; /* [ns] */
	uint32_t *name_len;
} ck;

typedef struct ck_entry {
	tcz_asic_entry e;
	uint32_t index;
} ck_entry;

static void get_entry(const unsigned char *b, tcz_asic_entry *e,
		      uint32_t *reserved)
{
	e->tensor = ld32(b + E_TENSOR);
	e->core = ld32(b + E_CORE);
	e->ncores = ld32(b + E_NCORES);
	e->device_core = ld32(b + E_DEVCORE);
	e->r_left = ld64(b + E_RLEFT);
	e->n = ld64(b + E_N);
	e->r_right = ld64(b + E_RRIGHT);
	e->row0 = ld64(b + E_ROW0);
	e->rows = ld64(b + E_ROWS);
	e->pitch = ld64(b + E_PITCH);
	e->tile_rows = ld32(b + E_TROWS);
	*reserved = ld32(b + E_RESERVED);
	e->sram_offset = ld64(b + E_SRAM);
	e->file_offset = ld64(b + E_FILE);
	e->length = ld64(b + E_LENGTH);
	e->scale_offset = ld64(b + E_SCALE);
	e->matrix = 0;
}

/* "entry 3" or "entry 3 (tensor 'w' core 1)" once the names are known. */
static void entry_label(const ck *c, uint32_t i, const tcz_asic_entry *e,
			char *out, size_t cap)
{
	if (c->names && e->tensor < c->ns)
		snprintf(out, cap, "entry %" PRIu32 " (tensor '%s' core %" PRIu32
			 ")", i, show((const char *)c->names[e->tensor],
				      c->name_len[e->tensor]).s, e->core);
	else
		snprintf(out, cap, "entry %" PRIu32, i);
}

#define BAD(c, ...) errf(-EBADMSG, (c)->err, (c)->errlen, __VA_ARGS__)

static int all_zero(const unsigned char *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static int check_header(ck *c, uint64_t *data_off, uint64_t *data_bytes)
{
	const unsigned char *b = c->b;
	size_t len = c->len;
	if (len < 4 || ld32(b) != TCZ_ASIC_MAGIC)
		return BAD(c, "not a tczfs device image (bad magic)");
	if (len < 6)
		return BAD(c, "truncated: %zu bytes, the header is %u", len,
			   TCZ_ASIC_HEADER_BYTES);
	/* the version before anything else: a later version may lay out
	 * the rest differently */
	unsigned ver = b[H_VERSION] | (unsigned)b[H_VERSION + 1] << 8;
	if (ver != TCZ_ASIC_VERSION)
		return errf(-EPROTONOSUPPORT, c->err, c->errlen,
			    "format version %u (this build reads version %u)",
			    ver, TCZ_ASIC_VERSION);
	if (len < TCZ_ASIC_HEADER_BYTES)
		return BAD(c, "truncated: %zu bytes, the header is %u", len,
			   TCZ_ASIC_HEADER_BYTES);
	uint64_t hc = XXH3_64bits(b, H_HCHECK);
	if (!CHECK_OK(hc, ld64(b + H_HCHECK)))
		return BAD(c, "header check mismatch: stored %016" PRIx64
			   ", computed %016" PRIx64, ld64(b + H_HCHECK), hc);
	if (b[H_RESERVED0] || !all_zero(b + H_RESERVED1, H_HCHECK - H_RESERVED1))
		return BAD(c, "reserved header bytes are not zero");
	if (b[H_DTYPE] > TCZ_ASIC_I8)
		return BAD(c, "unknown element dtype %u", b[H_DTYPE]);
	size_t nl = strnlen((const char *)b + H_NAME, TCZ_ASIC_NAME_MAX + 1);
	if (nl > TCZ_ASIC_NAME_MAX)
		return BAD(c, "profile name not NUL-terminated within %u bytes",
			   TCZ_ASIC_NAME_MAX + 1);
	if (!all_zero(b + H_NAME + nl, TCZ_ASIC_NAME_MAX + 1 - nl))
		return BAD(c, "bytes after the profile name are not zero");
	memset(&c->p, 0, sizeof(c->p));
	memcpy(c->p.name, b + H_NAME, nl);
	c->p.cores = ld32(b + H_CORES);
	c->p.lanes = ld32(b + H_LANES);
	c->p.tile_bytes = ld32(b + H_TILE);
	c->p.sram_bytes = ld64(b + H_SRAM);
	c->p.dtype = (tcz_asic_dtype)b[H_DTYPE];
	char perr[200];
	if (tcz_asic_profile_check(&c->p, perr, sizeof perr))
		return BAD(c, "bad %s", perr);
	c->es = tcz_asic_dtype_size(c->p.dtype);
	c->q = c->p.dtype != TCZ_ASIC_F32;
	c->ne = ld32(b + H_ENTRIES);
	c->ns = ld32(b + H_STRINGS);
	uint32_t strbytes = ld32(b + H_STRBYTES);
	if (c->ne > TCZ_ASIC_MAX_ENTRIES)
		return BAD(c, "%" PRIu32 " entries, more than %u", c->ne,
			   TCZ_ASIC_MAX_ENTRIES);
	if (c->ns > c->ne)
		return BAD(c, "%" PRIu32 " strings for %" PRIu32 " entries",
			   c->ns, c->ne);
	uint64_t table_end = TCZ_ASIC_HEADER_BYTES +
			     (uint64_t)TCZ_ASIC_ENTRY_BYTES * c->ne + strbytes;
	uint64_t want = ru(table_end, c->p.tile_bytes);
	*data_off = ld64(b + H_DATA_OFF);
	*data_bytes = ld64(b + H_DATA_BYTES);
	if (*data_off != want)
		return BAD(c, "data offset %" PRIu64 ", expected %" PRIu64
			   " (the tables end at %" PRIu64 ")", *data_off, want,
			   table_end);
	uint64_t cap = c->p.sram_bytes * c->p.cores;
	if (*data_bytes > cap)
		return BAD(c, "%" PRIu64 " bytes of data, more than the "
			   "device's SRAM (%" PRIu64 ")", *data_bytes, cap);
	if (*data_bytes % c->p.tile_bytes)
		return BAD(c, "%" PRIu64 " bytes of data, not a whole number "
			   "of tiles", *data_bytes);
	uint64_t total = *data_off + *data_bytes;
	if (len < total)
		return BAD(c, "truncated: %zu bytes, the image is %" PRIu64,
			   len, total);
	if (len > total)
		return BAD(c, "%" PRIu64 " bytes after the end of the image",
			   (uint64_t)len - total);
	uint64_t sum = XXH3_64bits(b + TCZ_ASIC_HEADER_BYTES,
				   len - TCZ_ASIC_HEADER_BYTES);
	if (!CHECK_OK(sum, ld64(b + H_CHECKSUM)))
		return BAD(c, "checksum mismatch: stored %016" PRIx64
			   ", computed %016" PRIx64, ld64(b + H_CHECKSUM), sum);
	return 0;
}

static int check_strings(ck *c, uint64_t data_off)
{
	const unsigned char *b = c->b;
	uint64_t at = TCZ_ASIC_HEADER_BYTES + (uint64_t)TCZ_ASIC_ENTRY_BYTES * c->ne;
	uint64_t end = at + ld32(b + H_STRBYTES);
	c->names = malloc((c->ns ? c->ns : 1) * sizeof(*c->names));
	c->name_len = malloc((c->ns ? c->ns : 1) * sizeof(*c->name_len));
	if (!c->names || !c->name_len)
		return errf(-ENOMEM, c->err, c->errlen, "out of memory");
	for (uint32_t i = 0; i < c->ns; i++) {
		if (end - at < 4)
			return BAD(c, "string %" PRIu32 ": past the end of the "
				   "string table", i);
		uint32_t n = ld32(b + at);
		if (n == 0)
			return BAD(c, "string %" PRIu32 ": empty tensor name", i);
		if (n > TCZ_ASIC_MAX_TENSOR_NAME)
			return BAD(c, "string %" PRIu32 ": %" PRIu32 " bytes, "
				   "more than %u", i, n, TCZ_ASIC_MAX_TENSOR_NAME);
		if (end - at - 4 < n)
			return BAD(c, "string %" PRIu32 ": past the end of the "
				   "string table", i);
		const unsigned char *s = b + at + 4;
		if (!utf8_ok(s, n))
			return BAD(c, "string %" PRIu32 ": not valid UTF-8", i);
		if (i && cmp_name((const char *)c->names[i - 1],
				  c->name_len[i - 1], (const char *)s, n) >= 0)
			return BAD(c, "string %" PRIu32 " ('%s'): names not "
				   "sorted or not unique", i,
				   show((const char *)s, n).s);
		c->names[i] = s;
		c->name_len[i] = n;
		at += 4 + (uint64_t)n;
	}
	if (at != end)
		return BAD(c, "%" PRIu64 " bytes left over after the string "
			   "table", end - at);
	if (!all_zero(b + end, data_off - end))
		return BAD(c, "padding before the data is not zero");
	return 0;
}

/* One entry on its own: shape, geometry, sizes. */
static int check_entry(ck *c, uint32_t i, const tcz_asic_entry *e,
		       uint32_t reserved)
{
	char lb[128];
	entry_label(c, i, e, lb, sizeof lb);
	if (e->tensor >= c->ns)
		return BAD(c, "%s: tensor %" PRIu32 " is not in the string "
			   "table (%" PRIu32 " strings)", lb, e->tensor, c->ns);
	if (reserved)
		return BAD(c, "%s: reserved field not zero", lb);
	if (e->ncores == 0 || e->ncores > TCZ_ASIC_MAX_TT_CORES)
		return BAD(c, "%s: %" PRIu32 " cores in the tensor (1..%u)", lb,
			   e->ncores, TCZ_ASIC_MAX_TT_CORES);
	if (e->core >= e->ncores)
		return BAD(c, "%s: core index %" PRIu32 " of a tensor of %"
			   PRIu32 " cores", lb, e->core, e->ncores);
	if (e->ncores == 1 && e->r_left != 1)
		return BAD(c, "%s: a dense matrix has r_left 1, not %" PRIu64,
			   lb, e->r_left);
	if (e->ncores > 1 && (!e->r_left || !e->n || !e->r_right))
		return BAD(c, "%s: a TT core with a zero dimension", lb);
	if ((e->n && e->r_left > MAX_ROWS / e->n) || e->r_right > MAX_ROWS)
		return BAD(c, "%s: shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64
			   "] is absurd", lb, e->r_left, e->n, e->r_right);
	geom G = geom_of(&c->p, e->r_right);
	uint64_t mrows = e->r_left * e->n;
	if (e->pitch != G.pitch)
		return BAD(c, "%s: row pitch %" PRIu64 ", expected %" PRIu64, lb,
			   e->pitch, G.pitch);
	if (e->tile_rows != G.g)
		return BAD(c, "%s: %" PRIu32 " rows per tile row, expected %"
			   PRIu32, lb, e->tile_rows, G.g);
	if (mrows == 0 || e->r_right == 0) {
		if (e->row0 || e->rows != mrows || e->device_core !=
		    TCZ_ASIC_UNPLACED || e->sram_offset || e->file_offset ||
		    e->length || e->scale_offset)
			return BAD(c, "%s: an empty matrix must be one unplaced "
				   "entry of no bytes", lb);
		return 0;
	}
	if (e->device_core == TCZ_ASIC_UNPLACED)
		return BAD(c, "%s: a matrix with elements is unplaced", lb);
	if (e->device_core >= c->p.cores)
		return BAD(c, "%s: device core %" PRIu32 " of %" PRIu32, lb,
			   e->device_core, c->p.cores);
	if (e->rows == 0)
		return BAD(c, "%s: no rows", lb);
	if (e->row0 > mrows || e->rows > mrows - e->row0)
		return BAD(c, "%s: rows %" PRIu64 "..%" PRIu64 " past the "
			   "matrix's %" PRIu64, lb, e->row0, e->row0 + e->rows,
			   mrows);
	if (e->row0 % G.g || (e->rows % G.g && e->row0 + e->rows != mrows))
		return BAD(c, "%s: rows %" PRIu64 "..%" PRIu64 " are not whole "
			   "tile rows of %" PRIu32, lb, e->row0,
			   e->row0 + e->rows, G.g);
	if (e->rows > c->p.sram_bytes / G.pitch)
		return BAD(c, "%s: %" PRIu64 " rows of %" PRIu64 " bytes exceed "
			   "a core's SRAM", lb, e->rows, G.pitch);
	uint64_t want = block_bytes(&G, e->rows);
	if (e->length != want)
		return BAD(c, "%s: length %" PRIu64 ", expected %" PRIu64, lb,
			   e->length, want);
	if (e->scale_offset != scale_offset_of(&G, e->rows))
		return BAD(c, "%s: scale offset %" PRIu64 ", expected %" PRIu64,
			   lb, e->scale_offset, scale_offset_of(&G, e->rows));
	return 0;
}

static int cmp_ck(const void *pa, const void *pb)
{
	const ck_entry *a = pa, *b = pb;
	if (a->e.tensor != b->e.tensor)
		return a->e.tensor < b->e.tensor ? -1 : 1;
	if (a->e.core != b->e.core)
		return a->e.core < b->e.core ? -1 : 1;
	if (a->e.row0 != b->e.row0)
		return a->e.row0 < b->e.row0 ? -1 : 1;
	return a->index < b->index ? -1 : a->index > b->index;
}

/* Every tensor's cores 0..d-1, each covered exactly by its entries'
 * rows, with one shape per core and chained ranks. es sorted. */
static int check_cover(ck *c, const ck_entry *es)
{
	uint32_t i = 0;
	for (uint32_t t = 0; t < c->ns; t++) {
		shown nm = show((const char *)c->names[t], c->name_len[t]);
		if (i == c->ne || es[i].e.tensor != t)
			return BAD(c, "string %" PRIu32 " ('%s') is no entry's "
				   "tensor", t, nm.s);
		uint32_t d = es[i].e.ncores;
		uint64_t prev_rr = 1;
		for (uint32_t k = 0; k < d; k++) {
			if (i == c->ne || es[i].e.tensor != t ||
			    es[i].e.core != k)
				return BAD(c, "tensor '%s': core %" PRIu32
					   " has no entry", nm.s, k);
			const tcz_asic_entry *f = &es[i].e;
			if (d > 1 && f->r_left != prev_rr)
				return BAD(c, "tensor '%s': core %" PRIu32
					   " has r_left %" PRIu64 ", the "
					   "previous r_right is %" PRIu64, nm.s,
					   k, f->r_left, prev_rr);
			uint64_t mrows = f->r_left * f->n, at = 0;
			int empty = mrows == 0 || f->r_right == 0;
			while (i < c->ne && es[i].e.tensor == t &&
			       es[i].e.core == k) {
				const tcz_asic_entry *g = &es[i].e;
				if (g->ncores != d || g->r_left != f->r_left ||
				    g->n != f->n || g->r_right != f->r_right)
					return BAD(c, "tensor '%s' core %" PRIu32
						   ": entries disagree on its "
						   "shape", nm.s, k);
				if (empty && g != f)
					return BAD(c, "tensor '%s' core %" PRIu32
						   ": more than one entry for "
						   "an empty matrix", nm.s, k);
				if (!empty && g->row0 != at)
					return BAD(c, "tensor '%s' core %" PRIu32
						   ": rows %" PRIu64 "..%" PRIu64
						   " %s", nm.s, k, at, g->row0,
						   g->row0 < at ? "overlap"
								: "are missing");
				at = g->row0 + g->rows;
				i++;
			}
			if (!empty && at != mrows)
				return BAD(c, "tensor '%s' core %" PRIu32
					   ": rows %" PRIu64 "..%" PRIu64
					   " are missing", nm.s, k, at, mrows);
			prev_rr = f->r_right;
		}
		if (d > 1 && prev_rr != 1)
			return BAD(c, "tensor '%s': the last TT core has "
				   "r_right %" PRIu64 ", not 1", nm.s, prev_rr);
		if (i < c->ne && es[i].e.tensor == t)
			return BAD(c, "tensor '%s': core %" PRIu32 " of a tensor "
				   "of %" PRIu32 " cores", nm.s, es[i].e.core, d);
	}
	return 0;
}

static int scale_ok(tcz_asic_dtype dt, uint32_t bits)
{
	uint32_t ex = bits >> 23 & 0xff, man = bits & 0x7fffff;
	if (bits >> 31 || ex == 0xff)
		return 0; /* negative, infinite or NaN */
	if (dt == TCZ_ASIC_I8)
		return 1;
	/* f16: a power of two, normal or subnormal */
	return ex ? man == 0 : man && (man & (man - 1)) == 0;
}

/* The bytes of a placed entry: padding zero, codes and scales valid. */
static int check_data(ck *c, uint32_t i, const tcz_asic_entry *e)
{
	const unsigned char *d = c->b + e->file_offset;
	uint64_t used = e->r_right * c->es;
	char lb[128];
	for (uint64_t r = 0; r < e->rows; r++) {
		const unsigned char *row = d + r * e->pitch;
		if (!all_zero(row + used, e->pitch - used)) {
			entry_label(c, i, e, lb, sizeof lb);
			return BAD(c, "%s: row %" PRIu64 ": padding not zero", lb,
				   e->row0 + r);
		}
		if (c->p.dtype == TCZ_ASIC_I8 && memchr(row, 0x80, used)) {
			entry_label(c, i, e, lb, sizeof lb);
			return BAD(c, "%s: row %" PRIu64 ": i8 code -128", lb,
				   e->row0 + r);
		}
	}
	uint64_t end = c->q ? e->scale_offset : e->length;
	uint64_t rb = e->rows * e->pitch;
	if (!all_zero(d + rb, end - rb)) {
		entry_label(c, i, e, lb, sizeof lb);
		return BAD(c, "%s: padding after the rows not zero", lb);
	}
	if (!c->q)
		return 0;
	uint64_t ntr = (e->rows + e->tile_rows - 1) / e->tile_rows;
	for (uint64_t j = 0; j < ntr; j++) {
		uint32_t s = ld32(d + e->scale_offset + 4 * j);
		if (!scale_ok(c->p.dtype, s)) {
			float f;
			memcpy(&f, &s, 4);
			entry_label(c, i, e, lb, sizeof lb);
			return BAD(c, "%s: tile row %" PRIu64 ": bad scale %g%s",
				   lb, j, (double)f,
				   c->p.dtype == TCZ_ASIC_F16
					   ? " (f16 scales are powers of two)"
					   : "");
		}
	}
	uint64_t se = e->scale_offset + 4 * ntr;
	if (!all_zero(d + se, e->length - se)) {
		entry_label(c, i, e, lb, sizeof lb);
		return BAD(c, "%s: padding after the scales not zero", lb);
	}
	return 0;
}

static int check_entries(ck *c, uint64_t data_off, uint64_t data_bytes)
{
	ck_entry *es = malloc((c->ne ? c->ne : 1) * sizeof(*es));
	if (!es)
		return errf(-ENOMEM, c->err, c->errlen, "out of memory");
	uint64_t file = data_off, off = 0;
	uint32_t core = 0, used = 0, last_t = 0, last_k = 0;
	int unplaced = 0, rc = 0;
	char lb[128];
	for (uint32_t i = 0; i < c->ne && !rc; i++) {
		tcz_asic_entry *e = &es[i].e;
		uint32_t reserved;
		get_entry(c->b + TCZ_ASIC_HEADER_BYTES +
				  (size_t)TCZ_ASIC_ENTRY_BYTES * i,
			  e, &reserved);
		es[i].index = i;
		rc = check_entry(c, i, e, reserved);
		if (rc)
			break;
		entry_label(c, i, e, lb, sizeof lb);
		if (e->device_core == TCZ_ASIC_UNPLACED) {
			/* empty matrices last, in canonical order */
			if (unplaced && (e->tensor < last_t ||
					 (e->tensor == last_t &&
					  e->core <= last_k))) {
				rc = BAD(c, "%s: empty entries not in tensor "
					 "order", lb);
				break;
			}
			unplaced = 1;
			last_t = e->tensor;
			last_k = e->core;
			continue;
		}
		if (unplaced) {
			rc = BAD(c, "%s: a placed entry after an unplaced one",
				 lb);
			break;
		}
		if (!used || e->device_core != core) {
			if (used && e->device_core < core) {
				rc = BAD(c, "%s: device core %" PRIu32 " after "
					 "core %" PRIu32 " (entries are in file "
					 "order)", lb, e->device_core, core);
				break;
			}
			core = e->device_core;
			off = 0;
			used++;
		}
		if (e->sram_offset % c->p.tile_bytes ||
		    e->file_offset % c->p.tile_bytes)
			rc = BAD(c, "%s: not on a tile boundary", lb);
		else if (e->sram_offset != off)
			rc = BAD(c, "%s: SRAM offset %" PRIu64 ", expected %"
				 PRIu64 " (blocks of a core are contiguous "
				 "from 0)", lb, e->sram_offset, off);
		else if (e->length > c->p.sram_bytes - off)
			rc = BAD(c, "%s: ends at %" PRIu64 ", past the core's "
				 "SRAM (%" PRIu64 " bytes)", lb,
				 off + e->length, c->p.sram_bytes);
		else if (e->file_offset != file)
			rc = BAD(c, "%s: file offset %" PRIu64 ", expected %"
				 PRIu64, lb, e->file_offset, file);
		else if (e->length > data_off + data_bytes - file)
			rc = BAD(c, "%s: past the end of the data", lb);
		off += e->length;
		file += e->length;
	}
	if (!rc && file != data_off + data_bytes)
		rc = BAD(c, "the entries cover %" PRIu64 " of %" PRIu64
			 " data bytes", file - data_off, data_bytes);
	if (!rc && used != ld32(c->b + H_USED))
		rc = BAD(c, "%" PRIu32 " used cores in the header, the entries "
			 "use %" PRIu32, ld32(c->b + H_USED), used);
	for (uint32_t i = 0; i < c->ne && !rc; i++)
		if (es[i].e.device_core != TCZ_ASIC_UNPLACED)
			rc = check_data(c, i, &es[i].e);
	if (!rc) {
		qsort(es, c->ne, sizeof(*es), cmp_ck);
		rc = check_cover(c, es);
	}
	free(es);
	return rc;
}

int tcz_asic_check(const void *img, size_t len, char *err, size_t errlen)
{
	ck c = {.b = img, .len = len, .err = err, .errlen = errlen};
	uint64_t data_off = 0, data_bytes = 0;
	if (!img)
		len = c.len = 0;
	int rc = check_header(&c, &data_off, &data_bytes);
	if (!rc)
		rc = check_strings(&c, data_off);
	if (!rc)
		rc = check_entries(&c, data_off, data_bytes);
	free(c.names);
	free(c.name_len);
	return rc;
}

/* ---- layout.json ---- */

static int set(json_t *o, const char *k, json_t *v)
{
	return v ? json_object_set_new(o, k, v) : -1;
}

static json_t *u64j(uint64_t v)
{
	return json_integer((json_int_t)v); /* every value is below 2^62 */
}

json_t *tcz_asic_layout_json(const tcz_asic_layout *l)
{
	const tcz_asic_profile *p = &l->profile;
	json_t *root = json_object(), *prof = json_object();
	json_t *blocks = json_array(), *names = json_array();
	json_t *cb = json_array(), *cn = json_array();
	int bad = !root || !prof || !blocks || !names || !cb || !cn;
	bad |= set(prof, "name", json_stringn(p->name,
					      strnlen(p->name, sizeof(p->name))));
	bad |= set(prof, "cores", u64j(p->cores));
	bad |= set(prof, "sram_bytes", u64j(p->sram_bytes));
	bad |= set(prof, "tile_bytes", u64j(p->tile_bytes));
	bad |= set(prof, "lanes", u64j(p->lanes));
	bad |= set(prof, "dtype", json_string(tcz_asic_dtype_name(p->dtype)));
	for (uint32_t i = 0; !bad && i < l->nnames; i++)
		bad |= json_array_append_new(names,
			json_stringn(l->names[i].s, l->names[i].len));
	size_t es = tcz_asic_dtype_size(p->dtype);
	for (uint32_t i = 0; !bad && i < l->nentries; i++) {
		const tcz_asic_entry *e = &l->entries[i];
		const tcz_asic_name *nm = &l->names[e->tensor];
		json_t *b = json_object(), *shape = json_array();
		bad |= !b || !shape;
		bad |= json_array_append_new(shape, u64j(e->r_left));
		bad |= json_array_append_new(shape, u64j(e->n));
		bad |= json_array_append_new(shape, u64j(e->r_right));
		bad |= set(b, "entry", u64j(i));
		bad |= set(b, "tensor", json_stringn(nm->s, nm->len));
		bad |= set(b, "core", u64j(e->core));
		bad |= set(b, "tensor_cores", u64j(e->ncores));
		bad |= set(b, "shape", shape);
		bad |= set(b, "row0", u64j(e->row0));
		bad |= set(b, "rows", u64j(e->rows));
		bad |= set(b, "cols", u64j(e->r_right));
		bad |= set(b, "packed_cols", u64j(e->pitch / es));
		bad |= set(b, "pitch", u64j(e->pitch));
		bad |= set(b, "tile_rows", u64j(e->tile_rows));
		bad |= set(b, "device_core",
			   e->device_core == TCZ_ASIC_UNPLACED
				   ? json_null()
				   : u64j(e->device_core));
		bad |= set(b, "sram_offset", u64j(e->sram_offset));
		bad |= set(b, "file_offset", u64j(e->file_offset));
		bad |= set(b, "length", u64j(e->length));
		if (p->dtype != TCZ_ASIC_F32) {
			bad |= set(b, "scale_offset", u64j(e->scale_offset));
			bad |= set(b, "scales",
				   u64j(e->length ? (e->rows + e->tile_rows - 1) /
							    e->tile_rows
						  : 0));
		}
		bad |= json_array_append_new(blocks, b);
	}
	for (uint32_t c = 0; !bad && c < p->cores; c++) {
		bad |= json_array_append_new(cb, u64j(l->core_bytes[c]));
		bad |= json_array_append_new(cn, u64j(l->core_blocks[c]));
	}
	bad |= set(root, "format", json_string("tczfs-asic"));
	bad |= set(root, "version", u64j(TCZ_ASIC_VERSION));
	bad |= set(root, "profile", prof);
	prof = NULL;
	bad |= set(root, "image_bytes", u64j(l->image_bytes));
	bad |= set(root, "data_offset", u64j(l->data_offset));
	bad |= set(root, "data_bytes", u64j(l->data_bytes));
	bad |= set(root, "tensors", names);
	names = NULL;
	bad |= set(root, "blocks", blocks);
	blocks = NULL;
	bad |= set(root, "core_bytes", cb);
	bad |= set(root, "core_blocks", cn);
	cb = cn = NULL;
	bad |= set(root, "used_cores", u64j(l->used_cores));
	bad |= set(root, "max_core_bytes", u64j(l->max_core_bytes));
	bad |= set(root, "mean_core_bytes",
		   json_real(l->used_cores ? (double)l->data_bytes /
						     l->used_cores
					   : 0.0));
	bad |= set(root, "imbalance", json_real(l->imbalance));
	json_decref(prof);
	json_decref(names);
	json_decref(blocks);
	json_decref(cb);
	json_decref(cn);
	if (bad) {
		json_decref(root);
		return NULL;
	}
	return root;
}
