/* Block-quantized planes + zstd. Blob layout: docs/draft-gguf.md.
 *
 * A plane is one field of the block format (a byte range of the block)
 * gathered over every block of the run. f16 scales are split into their
 * high byte (sign, exponent, 2 mantissa bits: few distinct values, which
 * Huffman codes well) and their low byte (nearly uniform); sub-block
 * scales, high-bit masks and packed quants each get a plane of their own,
 * so zstd sees one statistical source at a time. */
#include "codec/blockq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "codec/ggml.h"

#define BQ_MAGIC 0x425a4354u /* "TCZB" read as a little-endian u32 */
#define BQ_VERSION 1
#define BQ_HDR 24
#define BQ_ENTRY 5 /* method u8 + stored length u32 */
#define BQ_MAX_PLANES 12

enum { BQ_MODE_RAW = 0, BQ_MODE_ZSTD = 1, BQ_MODE_PLANES = 2 };
enum { BQ_M_RAW = 0, BQ_M_ZSTD = 1 };

/* One plane: bytes [off, off + len) of every block. */
typedef struct {
	uint16_t off, len;
} seg;

typedef struct {
	uint32_t type;
	uint8_t n;
	seg s[BQ_MAX_PLANES];
} layout;

/* Version 1 plane layouts (docs/draft-gguf.md). An f16 at offset o is
 * two planes, {o + 1, 1} (high byte) then {o, 1}. Each layout tiles its
 * block exactly (checked by the unit test). */
static const layout layouts[] = {
	{TCZ_GGML_Q4_0, 3, {{1, 1}, {0, 1}, {2, 16}}},
	{TCZ_GGML_Q4_1, 5, {{1, 1}, {0, 1}, {3, 1}, {2, 1}, {4, 16}}},
	{TCZ_GGML_Q5_0, 4, {{1, 1}, {0, 1}, {2, 4}, {6, 16}}},
	{TCZ_GGML_Q5_1, 6, {{1, 1}, {0, 1}, {3, 1}, {2, 1}, {4, 4}, {8, 16}}},
	{TCZ_GGML_Q8_0, 3, {{1, 1}, {0, 1}, {2, 32}}},
	{TCZ_GGML_Q8_1, 5, {{1, 1}, {0, 1}, {3, 1}, {2, 1}, {4, 32}}},
	{TCZ_GGML_Q2_K, 6, {{81, 1}, {80, 1}, {83, 1}, {82, 1}, {0, 16},
			    {16, 64}}},
	{TCZ_GGML_Q3_K, 5, {{109, 1}, {108, 1}, {96, 12}, {0, 32}, {32, 64}}},
	{TCZ_GGML_Q4_K, 6, {{1, 1}, {0, 1}, {3, 1}, {2, 1}, {4, 12},
			    {16, 128}}},
	{TCZ_GGML_Q5_K, 7, {{1, 1}, {0, 1}, {3, 1}, {2, 1}, {4, 12}, {16, 32},
			    {48, 128}}},
	{TCZ_GGML_Q6_K, 5, {{209, 1}, {208, 1}, {192, 16}, {128, 64},
			    {0, 128}}},
	{TCZ_GGML_Q8_K, 6, {{3, 1}, {2, 1}, {1, 1}, {0, 1}, {260, 32},
			    {4, 256}}},
	{TCZ_GGML_IQ2_XXS, 3, {{1, 1}, {0, 1}, {2, 64}}},
	{TCZ_GGML_IQ2_XS, 4, {{1, 1}, {0, 1}, {66, 8}, {2, 64}}},
	{TCZ_GGML_IQ3_XXS, 4, {{1, 1}, {0, 1}, {66, 32}, {2, 64}}},
	{TCZ_GGML_IQ1_S, 4, {{1, 1}, {0, 1}, {34, 16}, {2, 32}}},
	{TCZ_GGML_IQ4_NL, 3, {{1, 1}, {0, 1}, {2, 16}}},
	{TCZ_GGML_IQ3_S, 6, {{1, 1}, {0, 1}, {106, 4}, {66, 8}, {74, 32},
			     {2, 64}}},
	{TCZ_GGML_IQ2_S, 6, {{1, 1}, {0, 1}, {74, 8}, {66, 8}, {34, 32},
			     {2, 32}}},
	{TCZ_GGML_IQ4_XS, 5, {{1, 1}, {0, 1}, {2, 2}, {4, 4}, {8, 128}}},
	{TCZ_GGML_IQ1_M, 3, {{48, 8}, {32, 16}, {0, 32}}},
	{TCZ_GGML_TQ1_0, 4, {{53, 1}, {52, 1}, {48, 4}, {0, 48}}},
	{TCZ_GGML_TQ2_0, 3, {{65, 1}, {64, 1}, {0, 64}}},
	{TCZ_GGML_MXFP4, 2, {{0, 1}, {1, 16}}},
	{TCZ_GGML_NVFP4, 2, {{0, 4}, {4, 32}}},
	{TCZ_GGML_Q1_0, 3, {{1, 1}, {0, 1}, {2, 16}}},
};

static const layout *find_layout(uint32_t type)
{
	for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
		if (layouts[i].type == type)
			return &layouts[i];
	return NULL;
}

struct tcz_blockq_ctx {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	unsigned char *scratch; /* one plane */
	size_t scratch_cap;
	unsigned char *alt; /* the whole-run zstd candidate */
	size_t alt_cap;
};

tcz_blockq_ctx *tcz_blockq_ctx_create(void)
{
	tcz_blockq_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return NULL;
	ctx->cctx = ZSTD_createCCtx();
	ctx->dctx = ZSTD_createDCtx();
	if (!ctx->cctx || !ctx->dctx) {
		tcz_blockq_ctx_free(ctx);
		return NULL;
	}
	return ctx;
}

void tcz_blockq_ctx_free(tcz_blockq_ctx *ctx)
{
	if (!ctx)
		return;
	ZSTD_freeCCtx(ctx->cctx);
	ZSTD_freeDCtx(ctx->dctx);
	free(ctx->scratch);
	free(ctx->alt);
	free(ctx);
}

static int grow(unsigned char **buf, size_t *cap, size_t need)
{
	if (*cap >= need)
		return 0;
	unsigned char *p = malloc(need ? need : 1);
	if (!p)
		return -ENOMEM;
	free(*buf);
	*buf = p;
	*cap = need;
	return 0;
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* FNV-1a 32 over header bytes 0..19 and the plane table (as in the
 * lossless blob: any single changed byte changes it). */
static uint32_t header_check(const unsigned char *hdr, const unsigned char *tab,
			     size_t tab_len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < 20; i++)
		h = (h ^ hdr[i]) * 16777619u;
	for (size_t i = 0; i < tab_len; i++)
		h = (h ^ tab[i]) * 16777619u;
	return h;
}

static void put_header(unsigned char *d, int mode, unsigned planes,
		       uint32_t type, uint64_t n, const unsigned char *tab,
		       size_t tab_len)
{
	put32(d, BQ_MAGIC);
	d[4] = BQ_VERSION;
	d[5] = (unsigned char)mode;
	d[6] = (unsigned char)planes;
	d[7] = 0;
	put32(d + 8, type);
	put64(d + 12, n);
	put32(d + 20, header_check(d, tab, tab_len));
}

/* Block bytes of a type with a plane layout, 0 for any other type. */
static size_t block_bytes(uint32_t type, const layout **lo)
{
	tcz_ggml_info t;
	*lo = find_layout(type);
	if (!*lo || tcz_ggml_type(type, &t))
		return 0;
	return t.block_bytes;
}

size_t tcz_blockq_bound(uint32_t type, size_t n_blocks)
{
	const layout *lo;
	size_t bb = block_bytes(type, &lo);
	if (!bb || n_blocks > (SIZE_MAX - BQ_HDR) / bb)
		return 0;
	return BQ_HDR + n_blocks * bb;
}

/* ---- plane gather / scatter ---------------------------------------------- */

static void gather(const unsigned char *src, size_t n, size_t bb, seg s,
		   unsigned char *pl)
{
	src += s.off;
	if (s.len == 1) {
		for (size_t i = 0; i < n; i++)
			pl[i] = src[i * bb];
		return;
	}
	for (size_t i = 0; i < n; i++)
		memcpy(pl + i * s.len, src + i * bb, s.len);
}

static void scatter(const unsigned char *pl, size_t n, size_t bb, seg s,
		    unsigned char *dst)
{
	dst += s.off;
	if (s.len == 1) {
		for (size_t i = 0; i < n; i++)
			dst[i * bb] = pl[i];
		return;
	}
	for (size_t i = 0; i < n; i++)
		memcpy(dst + i * bb, pl + i * s.len, s.len);
}

/* ---- encoder ------------------------------------------------------------- */

/* zstd result -> coded size, or 0 when it failed or did not fit (the
 * caller then keeps another candidate, which is always correct). */
static size_t zsize(size_t r)
{
	return ZSTD_isError(r) ? 0 : r;
}

/* Writes a planes blob into dst and sets *out to its size, or to 0 when
 * it would not be smaller than `limit` bytes. */
static int encode_planes(tcz_blockq_ctx *ctx, const layout *lo, size_t bb,
			 const unsigned char *src, size_t n, unsigned char *dst,
			 size_t limit, size_t *out)
{
	size_t tab_len = (size_t)lo->n * BQ_ENTRY, pos = BQ_HDR + tab_len;
	size_t maxlen = 0;
	int rc;

	*out = 0;
	if (pos >= limit)
		return 0;
	for (unsigned p = 0; p < lo->n; p++)
		if (lo->s[p].len > maxlen)
			maxlen = lo->s[p].len;
	if ((rc = grow(&ctx->scratch, &ctx->scratch_cap, n * maxlen)))
		return rc;
	unsigned char *ent = dst + BQ_HDR;
	for (unsigned p = 0; p < lo->n; p++, ent += BQ_ENTRY) {
		size_t pn = n * lo->s[p].len, room = limit - 1 - pos, z = 0;
		size_t cap = pn - 1 < room ? pn - 1 : room;
		gather(src, n, bb, lo->s[p], ctx->scratch);
		if (cap)
			z = zsize(ZSTD_compress2(ctx->cctx, dst + pos, cap,
						 ctx->scratch, pn));
		if (z) {
			ent[0] = BQ_M_ZSTD;
		} else {
			if (pn > room)
				return 0;
			memcpy(dst + pos, ctx->scratch, pn);
			z = pn;
			ent[0] = BQ_M_RAW;
		}
		put32(ent + 1, (uint32_t)z);
		pos += z;
	}
	put_header(dst, BQ_MODE_PLANES, lo->n, lo->type, n, dst + BQ_HDR,
		   tab_len);
	*out = pos;
	return 0;
}

static int encode(tcz_blockq_ctx *ctx, const layout *lo, size_t bb,
		  const unsigned char *src, size_t n, int level, int mode,
		  unsigned char *dst, size_t dst_cap, size_t *out_len)
{
	size_t raw = BQ_HDR + n * bb, best = raw, planes = 0;
	int rc;

	ZSTD_CCtx_reset(ctx->cctx, ZSTD_reset_session_and_parameters);
	if (ZSTD_isError(ZSTD_CCtx_setParameter(ctx->cctx,
						ZSTD_c_compressionLevel, level)))
		return -EINVAL;
	/* table entries hold u32 lengths: planes mode only for runs under
	 * 4 GiB (the importer's chunks are 1 MiB) */
	if ((mode == TCZ_BLOCKQ_BEST || mode == TCZ_BLOCKQ_PLANES) &&
	    n * bb < UINT32_MAX) {
		size_t limit = mode == TCZ_BLOCKQ_PLANES ? dst_cap + 1 : raw;
		rc = encode_planes(ctx, lo, bb, src, n, dst, limit, &planes);
		if (rc)
			return rc;
		if (mode == TCZ_BLOCKQ_PLANES) {
			if (!planes)
				return -ENOBUFS;
			*out_len = planes;
			return 0;
		}
		if (planes)
			best = planes;
	}
	if (mode == TCZ_BLOCKQ_BEST || mode == TCZ_BLOCKQ_ZSTD) {
		/* plain zstd of the whole run must beat the best so far */
		size_t cap = mode == TCZ_BLOCKQ_ZSTD ? dst_cap - BQ_HDR
						     : best - BQ_HDR - 1;
		if (mode == TCZ_BLOCKQ_BEST &&
		    (rc = grow(&ctx->alt, &ctx->alt_cap, cap)))
			return rc;
		unsigned char *to = mode == TCZ_BLOCKQ_ZSTD ? dst + BQ_HDR
							    : ctx->alt;
		size_t z = cap ? zsize(ZSTD_compress2(ctx->cctx, to, cap, src,
						      n * bb))
			       : 0;
		if (mode == TCZ_BLOCKQ_ZSTD && !z)
			return -ENOBUFS;
		if (z) {
			put_header(dst, BQ_MODE_ZSTD, 0, lo->type, n, NULL, 0);
			if (to != dst + BQ_HDR)
				memcpy(dst + BQ_HDR, to, z);
			*out_len = BQ_HDR + z;
			return 0;
		}
	}
	if (best < raw) {
		*out_len = best;
		return 0;
	}
	put_header(dst, BQ_MODE_RAW, 0, lo->type, n, NULL, 0);
	memcpy(dst + BQ_HDR, src, n * bb);
	*out_len = raw;
	return 0;
}

int tcz_blockq_encode_mode(tcz_blockq_ctx *ctx, uint32_t type,
			   const void *src, size_t n_blocks, int level,
			   int mode, void *dst, size_t dst_cap,
			   size_t *out_len)
{
	const layout *lo;
	size_t bb = block_bytes(type, &lo);
	tcz_blockq_ctx *own = NULL;
	int rc;

	if (!bb || level < 1 || level > ZSTD_maxCLevel() || !out_len || !dst ||
	    (n_blocks && !src) || mode < TCZ_BLOCKQ_BEST ||
	    mode > TCZ_BLOCKQ_PLANES ||
	    (mode > TCZ_BLOCKQ_RAW && n_blocks == 0))
		return -EINVAL;
	size_t bound = tcz_blockq_bound(type, n_blocks);
	if (!bound || dst_cap < bound ||
	    (mode > TCZ_BLOCKQ_RAW &&
	     dst_cap - bound < TCZ_BLOCKQ_FORCE_SLACK))
		return -ENOBUFS;
	if (n_blocks == 0) {
		put_header(dst, BQ_MODE_RAW, 0, type, 0, NULL, 0);
		*out_len = BQ_HDR;
		return 0;
	}
	if (!ctx && !(ctx = own = tcz_blockq_ctx_create()))
		return -ENOMEM;
	rc = encode(ctx, lo, bb, src, n_blocks, level, mode, dst, dst_cap,
		    out_len);
	tcz_blockq_ctx_free(own);
	return rc;
}

int tcz_blockq_encode(tcz_blockq_ctx *ctx, uint32_t type, const void *src,
		      size_t n_blocks, int level, void *dst, size_t dst_cap,
		      size_t *out_len)
{
	return tcz_blockq_encode_mode(ctx, type, src, n_blocks, level,
				      TCZ_BLOCKQ_BEST, dst, dst_cap, out_len);
}

/* ---- decoder ------------------------------------------------------------- */

struct bq_hdr {
	const layout *lo;
	size_t bb;
	int mode;
	size_t n;    /* blocks */
	size_t dlen; /* decoded bytes */
	const unsigned char *tab;
	size_t data; /* offset of the first stored byte */
};

/* Fuzzers cannot forge the check; let them past it (never defined in a
 * real build), as codec/lossless.c does. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CHECK_OK(got, want) ((void)(got), (void)(want), 1)
#else
#define CHECK_OK(got, want) ((got) == (want))
#endif

/* Validates everything outside the coded data: header fields, the check,
 * and that the stored lengths tile the rest of the blob exactly. */
static int parse(const unsigned char *s, size_t len, struct bq_hdr *h)
{
	if (!s || len < BQ_HDR || get32(s) != BQ_MAGIC || s[4] != BQ_VERSION ||
	    s[7] != 0)
		return -EBADMSG;
	memset(h, 0, sizeof(*h));
	h->bb = block_bytes(get32(s + 8), &h->lo);
	if (!h->bb)
		return -EBADMSG;
	h->mode = s[5];
	uint64_t n = get64(s + 12);
	if (n > (SIZE_MAX - BQ_HDR) / h->bb)
		return -EBADMSG;
	h->n = (size_t)n;
	h->dlen = h->n * h->bb;
	h->data = BQ_HDR;
	switch (h->mode) {
	case BQ_MODE_RAW:
		if (s[6] || !CHECK_OK(get32(s + 20), header_check(s, NULL, 0)) ||
		    len - BQ_HDR != h->dlen)
			return -EBADMSG;
		return 0;
	case BQ_MODE_ZSTD:
		if (s[6] || !h->n || len == BQ_HDR ||
		    !CHECK_OK(get32(s + 20), header_check(s, NULL, 0)))
			return -EBADMSG;
		return 0;
	case BQ_MODE_PLANES:
		break;
	default:
		return -EBADMSG;
	}
	size_t tab_len = (size_t)h->lo->n * BQ_ENTRY;
	if (s[6] != h->lo->n || !h->n || len - BQ_HDR < tab_len)
		return -EBADMSG;
	h->tab = s + BQ_HDR;
	if (!CHECK_OK(get32(s + 20), header_check(s, h->tab, tab_len)))
		return -EBADMSG;
	h->data = BQ_HDR + tab_len;
	size_t pos = h->data;
	for (unsigned p = 0; p < h->lo->n; p++) {
		const unsigned char *e = h->tab + p * BQ_ENTRY;
		size_t z = get32(e + 1), pn = h->n * h->lo->s[p].len;
		if (e[0] > BQ_M_ZSTD || (e[0] == BQ_M_RAW && z != pn) ||
		    (e[0] == BQ_M_ZSTD && z == 0) || z > len - pos)
			return -EBADMSG;
		pos += z;
	}
	return pos == len ? 0 : -EBADMSG;
}

int tcz_blockq_peek(const void *src, size_t len, uint32_t *type,
		    uint64_t *n_blocks, size_t *decoded_len)
{
	struct bq_hdr h;
	int rc = parse(src, len, &h);
	if (rc)
		return rc;
	if (type)
		*type = h.lo->type;
	if (n_blocks)
		*n_blocks = h.n;
	if (decoded_len)
		*decoded_len = h.dlen;
	return 0;
}

/* Decodes zstd frames of exactly n bytes. */
static int unzstd(ZSTD_DCtx *dctx, unsigned char *dst, size_t n,
		  const unsigned char *src, size_t z)
{
	size_t r = ZSTD_decompressDCtx(dctx, dst, n, src, z);
	if (ZSTD_isError(r))
		return ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation
			       ? -ENOMEM
			       : -EBADMSG;
	return r == n ? 0 : -EBADMSG;
}

static int decode_planes(tcz_blockq_ctx *ctx, const struct bq_hdr *h,
			 const unsigned char *src, unsigned char *dst)
{
	const layout *lo = h->lo;
	size_t pos = h->data, maxlen = 0;
	int rc;

	for (unsigned p = 0; p < lo->n; p++)
		if (lo->s[p].len > maxlen)
			maxlen = lo->s[p].len;
	if ((rc = grow(&ctx->scratch, &ctx->scratch_cap, h->n * maxlen)))
		return rc;
	for (unsigned p = 0; p < lo->n; p++) {
		const unsigned char *e = h->tab + p * BQ_ENTRY;
		size_t z = get32(e + 1), pn = h->n * lo->s[p].len;
		const unsigned char *pl = src + pos;
		if (e[0] == BQ_M_ZSTD) {
			rc = unzstd(ctx->dctx, ctx->scratch, pn, pl, z);
			if (rc)
				return rc;
			pl = ctx->scratch;
		}
		scatter(pl, h->n, h->bb, lo->s[p], dst);
		pos += z;
	}
	return 0;
}

int tcz_blockq_decode(tcz_blockq_ctx *ctx, const void *src, size_t len,
		      void *dst, size_t dst_len)
{
	const unsigned char *s = src;
	tcz_blockq_ctx *own = NULL;
	struct bq_hdr h;
	int rc = parse(src, len, &h);

	if (rc)
		return rc;
	if (h.dlen != dst_len || (dst_len && !dst))
		return -EINVAL;
	if (h.mode == BQ_MODE_RAW) {
		if (dst_len)
			memcpy(dst, s + BQ_HDR, dst_len);
		return 0;
	}
	if (!ctx && !(ctx = own = tcz_blockq_ctx_create()))
		return -ENOMEM;
	if (h.mode == BQ_MODE_ZSTD)
		rc = unzstd(ctx->dctx, dst, dst_len, s + BQ_HDR, len - BQ_HDR);
	else
		rc = decode_planes(ctx, &h, s, dst);
	tcz_blockq_ctx_free(own);
	return rc;
}
