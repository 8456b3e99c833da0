/* Lossless codec: byte planes, Huffman-coded exponents, zstd where it
 * pays. Blob layout: docs/formats.md.
 *
 * The input is cut into blocks of LL_BLOCK_BYTES bytes, each decodable on
 * its own (tcz_lossless_decode_block), so that a 4 KiB read of a chunk
 * reads and decodes ~16 KiB instead of the whole chunk. Measured on the
 * models in ../shared/models with 128 KiB chunks (import ratio, 64 Ki
 * elements per block -> 16 KiB): retsim.bf16 1.484x -> 1.481x, retsim.f32
 * 1.194x -> 1.191x, stories260K.f32 1.219x -> 1.215x, stories260K.bf16
 * 1.595x -> 1.600x; only silero_vad_16k.f32, whose mantissa planes
 * repeat, lost (1.258x -> 1.186x): LZ reaches repeats further back in a
 * longer block. So a chunk that shows repeats is coded with long blocks
 * too and the smaller coding kept (tcz_lossless_encode): silero 1.221x. */
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_compressSequences */
#include "codec/lossless.h"
#include "codec/huff.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>
#include <zstd_errors.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define LL_MAGIC 0x4c5a4354u /* "TCZL" read as a little-endian u32 */
/* Version 1: planes raw or zstd. Version 2 adds Huffman planes under one
 * of 1..LL_CODES codes per blob (the codes follow the plane table). The
 * encoder writes 2 only when a plane uses them; both decode. */
#define LL_VERSION 1
#define LL_VERSION_HUFF 2
/* Version 3 adds shifted Huffman planes (LL_M_SHIFT); written only when a
 * block uses one. */
#define LL_VERSION_SHIFT 3
#define LL_HDR 24	  /* fixed header; the plane table follows */
#define LL_ENTRY 5	  /* method u8 + stored length u32 */
#define LL_MAX_BLOCK (1u << 24) /* decoder's cap on block_len (scratch) */

#ifndef LL_BLOCK_BYTES
#define LL_BLOCK_BYTES 16384u
#endif
/* The long blocks tried for chunks with repeats (elements per block) */
#define LL_BLOCK_ELEMS_LONG 65536u
/* Long blocks are kept only when they save at least 1/LL_LONG_GAIN of
 * the short coding: short blocks are what makes small reads cheap. */
#define LL_LONG_GAIN 256u
/* Single-byte dtypes need no transposition, hence no scratch: only the
 * LZ reach matters, so they go in one piece per MiB. */
#define LL_BLOCK_BYTES1 (1u << 20)
/* Exponent planes get a fresh Huffman table every LL_EXP_SUB bytes: the
 * exponent distribution moves from tensor to tensor and the tables are
 * cheap (retsim.bf16: 1.479x against 1.466x with 64 KiB tables). */
#define LL_EXP_SUB 8192
#define LL_EXP_SEQS ((LL_BLOCK_ELEMS_LONG + LL_EXP_SUB - 1) / LL_EXP_SUB)
/* From this level on, exponent planes always try LZ matching too; below
 * it only blocks that show exact repeats do (retry_exponent_lz). Literals
 * alone encode 3-5x faster and are as small on trained weights. */
#define LL_EXP_LZ_LEVEL 6
/* zstd codes an exponent plane instead of the blob's Huffman code only
 * when it is 1/LL_HUFF_PREF smaller */
#define LL_HUFF_PREF 32
/* A code that decodes at least this many exponents in one call (the
 * blocks of a blob that use it, or one block) gets the multi-symbol
 * table too: ~6 us that pay from here on */
#ifndef LL_HUFF_MULTI
#define LL_HUFF_MULTI 16384
#endif

enum { LL_MODE_RAW = 0, LL_MODE_PLANES = 1 };
enum { LL_XF_NONE = 0, LL_XF_ROTL1 = 1 };
/* LL_M_HUFF + k: Huffman under the blob's code k; LL_M_SHIFT + k: the
 * same after the shift below (version 3) */
enum { LL_M_RAW = 0, LL_M_ZSTD = 1, LL_M_HUFF = 2, LL_M_SHIFT = 6 };
/* Codes per blob: the blocks of a chunk that mixes tensors (or rows of
 * different scales) pick the code that fits them. */
#define LL_CODES 4
#define LL_SEC_MAX (1 + LL_CODES * 130)
/* Another code must save 1/LL_CODE_GAIN of the plane's bits: each one
 * costs the decoder a table (~1-5 us), and on i.i.d. weights more codes
 * only fit noise (K = 2..4 in 70 % of chunks, for < 0.1 %). */
#define LL_CODE_GAIN 128
#define LL_DT_CACHE 8 /* decoding tables kept per context (13 KiB each) */
/* Shifted planes: the block's exponents in segments of 2^s values
 * (LL_SHIFT_MIN <= s <= LL_SHIFT_MAX), each exponent replaced by its
 * distance below the segment's maximum, the maxima stored in w bits each
 * above their least. Rows of a weight matrix often differ in scale (the
 * rows of retsim's proj1, the kernels of silero's convolutions): an
 * order-0 code over the whole block pays for every scale at once, the
 * distances do not. A block is shifted when the estimate saves
 * 1/LL_SHIFT_GAIN of its exponent bits (the side information included);
 * on i.i.d. weights the distances code no smaller and nothing changes. */
#define LL_SHIFT_MIN 4
#define LL_SHIFT_MAX 8
#define LL_SHIFT_HDR 3 /* s, least maximum, w */
#ifndef LL_SHIFT_GAIN /* measurements: -DLL_SHIFT_GAIN=1 never shifts */
#define LL_SHIFT_GAIN 32
#endif

struct tcz_lossless_ctx {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	unsigned char *scratch; /* planes of one block */
	size_t scratch_cap;
	unsigned char *alt; /* second candidate coding of one plane */
	size_t alt_cap;
	/* encoder: the blob's exponent codes, each block's, histograms */
	tcz_huff_code code[LL_CODES];
	unsigned ncodes, max_bits;
	unsigned char *pick;
	unsigned char *shift; /* per block: s, 0 when not shifted */
	uint32_t (*hist)[256];
	size_t blocks_cap;
	/* encoder: one block's exponents, distances, segment maxima at each
	 * s, and its shifted coding */
	unsigned char *eb;
	size_t eb_cap;
	/* decoder: tables of the codes seen last, by their serialized
	 * bytes (the chunks of a tensor often share codes) */
	struct ll_dt {
		tcz_huff_dtable *t;
		unsigned char key[130];
		size_t klen;
		uint64_t last; /* LRU stamp */
	} dt[LL_DT_CACHE];
	uint64_t dt_clock;
};

tcz_lossless_ctx *tcz_lossless_ctx_create(void)
{
	tcz_lossless_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return NULL;
	ctx->cctx = ZSTD_createCCtx();
	ctx->dctx = ZSTD_createDCtx();
	if (!ctx->cctx || !ctx->dctx) {
		tcz_lossless_ctx_free(ctx);
		return NULL;
	}
	return ctx;
}

void tcz_lossless_ctx_free(tcz_lossless_ctx *ctx)
{
	if (!ctx)
		return;
	ZSTD_freeCCtx(ctx->cctx);
	ZSTD_freeDCtx(ctx->dctx);
	free(ctx->scratch);
	free(ctx->alt);
	for (int k = 0; k < LL_DT_CACHE; k++)
		free(ctx->dt[k].t);
	free(ctx->pick);
	free(ctx->shift);
	free(ctx->hist);
	free(ctx->eb);
	free(ctx);
}

static int grow(unsigned char **buf, size_t *cap, size_t need)
{
	if (*cap >= need)
		return 0;
	unsigned char *p = malloc(need);
	if (!p)
		return -ENOMEM;
	free(*buf);
	*buf = p;
	*cap = need;
	return 0;
}

size_t tcz_lossless_bound(size_t len)
{
	return len > SIZE_MAX - LL_HDR ? SIZE_MAX : len + LL_HDR;
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

/* FNV-1a over the header and the plane table. Each step is a bijection of
 * the state for a fixed byte, so any single changed byte changes the
 * result: a flipped header byte is always caught. */
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

/* ---- plane split / merge ------------------------------------------------
 * Plane j holds byte (es-1-j) of every (transformed) element: the most
 * significant byte first, which for floats is the exponent plane. With
 * rot, each element is rotated left by one bit before the split (sign moves
 * to bit 0) and rotated back after the merge. */

static uint64_t load_le(const unsigned char *p, size_t es)
{
	uint64_t x = 0;
	for (size_t b = 0; b < es; b++)
		x |= (uint64_t)p[b] << (8 * b);
	return x;
}

static uint64_t rotl(uint64_t x, size_t es)
{
	unsigned bits = (unsigned)(8 * es);
	uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
	return ((x << 1) | (x >> (bits - 1))) & mask;
}

static uint64_t rotr(uint64_t x, size_t es)
{
	unsigned bits = (unsigned)(8 * es);
	uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
	return ((x >> 1) | (x << (bits - 1))) & mask;
}

static void split_tail(const unsigned char *s, size_t es, size_t i, size_t n,
		       int rot, unsigned char *const *pl)
{
	for (; i < n; i++) {
		uint64_t x = load_le(s + i * es, es);
		if (rot)
			x = rotl(x, es);
		for (size_t j = 0; j < es; j++)
			pl[j][i] = (unsigned char)(x >> (8 * (es - 1 - j)));
	}
}

static void merge_tail(const unsigned char *const *pl, size_t es, size_t i,
		       size_t n, int rot, unsigned char *d)
{
	for (; i < n; i++) {
		uint64_t x = 0;
		for (size_t j = 0; j < es; j++)
			x |= (uint64_t)pl[j][i] << (8 * (es - 1 - j));
		if (rot)
			x = rotr(x, es);
		for (size_t b = 0; b < es; b++)
			d[i * es + b] = (unsigned char)(x >> (8 * b));
	}
}

#ifdef __SSE2__
#define LD(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define ST(p, v) _mm_storeu_si128((__m128i *)(void *)(p), (v))

/* 16 u16 lanes (a: elements 0-7, b: 8-15) -> high bytes, low bytes */
static inline void split16(__m128i a, __m128i b, __m128i *hi, __m128i *lo)
{
	const __m128i ff = _mm_set1_epi16(0xff);
	*hi = _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8));
	*lo = _mm_packus_epi16(_mm_and_si128(a, ff), _mm_and_si128(b, ff));
}

/* 16 u32 lanes in a[0..3] -> the 4 byte planes, most significant first.
 * The 32 -> 16 step uses signed packs on sign-extended halves, which is
 * exact, because SSE2 has no unsigned 32-bit pack. */
static inline void split32(const __m128i a[4], __m128i out[4])
{
	__m128i h0 = _mm_packs_epi32(_mm_srai_epi32(a[0], 16),
				     _mm_srai_epi32(a[1], 16));
	__m128i h1 = _mm_packs_epi32(_mm_srai_epi32(a[2], 16),
				     _mm_srai_epi32(a[3], 16));
	__m128i l0 = _mm_packs_epi32(
		_mm_srai_epi32(_mm_slli_epi32(a[0], 16), 16),
		_mm_srai_epi32(_mm_slli_epi32(a[1], 16), 16));
	__m128i l1 = _mm_packs_epi32(
		_mm_srai_epi32(_mm_slli_epi32(a[2], 16), 16),
		_mm_srai_epi32(_mm_slli_epi32(a[3], 16), 16));
	split16(h0, h1, &out[0], &out[1]);
	split16(l0, l1, &out[2], &out[3]);
}

/* Inverse of split32: 4 planes (16 bytes each) -> 16 u32 lanes. */
static inline void merge32(const __m128i p[4], __m128i a[4])
{
	__m128i h0 = _mm_unpacklo_epi8(p[1], p[0]);
	__m128i h1 = _mm_unpackhi_epi8(p[1], p[0]);
	__m128i l0 = _mm_unpacklo_epi8(p[3], p[2]);
	__m128i l1 = _mm_unpackhi_epi8(p[3], p[2]);
	a[0] = _mm_unpacklo_epi16(l0, h0);
	a[1] = _mm_unpackhi_epi16(l0, h0);
	a[2] = _mm_unpacklo_epi16(l1, h1);
	a[3] = _mm_unpackhi_epi16(l1, h1);
}

static size_t split2_sse2(const unsigned char *s, size_t n, int rot,
			  unsigned char *const *pl)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m128i a = LD(s + 2 * i), b = LD(s + 2 * i + 16), hi, lo;
		if (rot) {
			a = _mm_or_si128(_mm_slli_epi16(a, 1),
					 _mm_srli_epi16(a, 15));
			b = _mm_or_si128(_mm_slli_epi16(b, 1),
					 _mm_srli_epi16(b, 15));
		}
		split16(a, b, &hi, &lo);
		ST(pl[0] + i, hi);
		ST(pl[1] + i, lo);
	}
	return i;
}

static size_t merge2_sse2(const unsigned char *const *pl, size_t n, int rot,
			  unsigned char *d)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m128i hi = LD(pl[0] + i), lo = LD(pl[1] + i);
		__m128i a = _mm_unpacklo_epi8(lo, hi);
		__m128i b = _mm_unpackhi_epi8(lo, hi);
		if (rot) {
			a = _mm_or_si128(_mm_srli_epi16(a, 1),
					 _mm_slli_epi16(a, 15));
			b = _mm_or_si128(_mm_srli_epi16(b, 1),
					 _mm_slli_epi16(b, 15));
		}
		ST(d + 2 * i, a);
		ST(d + 2 * i + 16, b);
	}
	return i;
}

static size_t split4_sse2(const unsigned char *s, size_t n, int rot,
			  unsigned char *const *pl)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m128i a[4], o[4];
		for (int k = 0; k < 4; k++) {
			a[k] = LD(s + 4 * i + 16 * k);
			if (rot)
				a[k] = _mm_or_si128(_mm_slli_epi32(a[k], 1),
						    _mm_srli_epi32(a[k], 31));
		}
		split32(a, o);
		for (int k = 0; k < 4; k++)
			ST(pl[k] + i, o[k]);
	}
	return i;
}

static size_t merge4_sse2(const unsigned char *const *pl, size_t n, int rot,
			  unsigned char *d)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m128i p[4], a[4];
		for (int k = 0; k < 4; k++)
			p[k] = LD(pl[k] + i);
		merge32(p, a);
		for (int k = 0; k < 4; k++) {
			if (rot)
				a[k] = _mm_or_si128(_mm_srli_epi32(a[k], 1),
						    _mm_slli_epi32(a[k], 31));
			ST(d + 4 * i + 16 * k, a[k]);
		}
	}
	return i;
}

static size_t split8_sse2(const unsigned char *s, size_t n, int rot,
			  unsigned char *const *pl)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m128i hi[4], lo[4], o[4];
		for (int k = 0; k < 4; k++) {
			__m128i x = LD(s + 8 * i + 32 * k);
			__m128i y = LD(s + 8 * i + 32 * k + 16);
			if (rot) {
				x = _mm_or_si128(_mm_slli_epi64(x, 1),
						 _mm_srli_epi64(x, 63));
				y = _mm_or_si128(_mm_slli_epi64(y, 1),
						 _mm_srli_epi64(y, 63));
			}
			/* dwords [lo0 hi0 lo1 hi1] -> [lo0 lo1 hi0 hi1] */
			x = _mm_shuffle_epi32(x, _MM_SHUFFLE(3, 1, 2, 0));
			y = _mm_shuffle_epi32(y, _MM_SHUFFLE(3, 1, 2, 0));
			lo[k] = _mm_unpacklo_epi64(x, y);
			hi[k] = _mm_unpackhi_epi64(x, y);
		}
		split32(hi, o);
		for (int k = 0; k < 4; k++)
			ST(pl[k] + i, o[k]);
		split32(lo, o);
		for (int k = 0; k < 4; k++)
			ST(pl[4 + k] + i, o[k]);
	}
	return i;
}

static size_t merge8_sse2(const unsigned char *const *pl, size_t n, int rot,
			  unsigned char *d)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m128i p[4], hi[4], lo[4];
		for (int k = 0; k < 4; k++)
			p[k] = LD(pl[k] + i);
		merge32(p, hi);
		for (int k = 0; k < 4; k++)
			p[k] = LD(pl[4 + k] + i);
		merge32(p, lo);
		for (int k = 0; k < 4; k++) {
			__m128i x = _mm_unpacklo_epi32(lo[k], hi[k]);
			__m128i y = _mm_unpackhi_epi32(lo[k], hi[k]);
			if (rot) {
				x = _mm_or_si128(_mm_srli_epi64(x, 1),
						 _mm_slli_epi64(x, 63));
				y = _mm_or_si128(_mm_srli_epi64(y, 1),
						 _mm_slli_epi64(y, 63));
			}
			ST(d + 8 * i + 32 * k, x);
			ST(d + 8 * i + 32 * k + 16, y);
		}
	}
	return i;
}
#endif

static void split_planes(const unsigned char *s, size_t es, size_t n, int rot,
			 unsigned char *const *pl)
{
	size_t i = 0;
#ifdef __SSE2__
	if (es == 2)
		i = split2_sse2(s, n, rot, pl);
	else if (es == 4)
		i = split4_sse2(s, n, rot, pl);
	else if (es == 8)
		i = split8_sse2(s, n, rot, pl);
#endif
	split_tail(s, es, i, n, rot, pl);
}

static void merge_planes(const unsigned char *const *pl, size_t es, size_t n,
			 int rot, unsigned char *d)
{
	size_t i = 0;
#ifdef __SSE2__
	if (es == 2)
		i = merge2_sse2(pl, n, rot, d);
	else if (es == 4)
		i = merge4_sse2(pl, n, rot, d);
	else if (es == 8)
		i = merge8_sse2(pl, n, rot, d);
#endif
	merge_tail(pl, es, i, n, rot, d);
}

/* ---- encoder ------------------------------------------------------------ */

static void top_bytes(const unsigned char *s, size_t n, size_t es,
		      unsigned char *e);
static void byte_counts(const unsigned char *e, size_t n, uint32_t cnt[256]);
static unsigned pick_shift(const unsigned char *e, size_t n,
			   unsigned char *mx, uint32_t h[256]);

static inline uint32_t le32toh_(uint32_t x)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	return __builtin_bswap32(x);
#else
	return x;
#endif
}

/* Bits of the block histogram h (symbols lo..hi) under code c;
 * UINT64_MAX when h has a symbol c lacks. */
static uint64_t code_cost(const tcz_huff_code *c, const uint32_t *h,
			  unsigned lo, unsigned hi)
{
	uint64_t bits = 0;
	for (unsigned s = lo; s <= hi; s++) {
		if (!h[s])
			continue;
		if (!c->len[s] && c->nsym > 1)
			return UINT64_MAX;
		if (c->nsym == 1 && s != c->first)
			return UINT64_MAX;
		bits += (uint64_t)h[s] * c->len[s];
	}
	return bits;
}

/* Codes built from the blocks that picked them, then every block moves
 * to the code that codes it smallest (its own code always codes it, so
 * a block never lacks one); *bits gets the total, code sections
 * included. */
static void refine(tcz_lossless_ctx *ctx, size_t nb, unsigned k,
		   unsigned lo, unsigned hi, tcz_huff_code *codes,
		   unsigned char *pick, uint64_t *bits)
{
	for (int round = 0; round < 2; round++) {
		unsigned used = 0, map[LL_CODES];
		for (unsigned c = 0; c < k; c++) {
			uint32_t cnt[256] = {0};
			int any = 0;
			for (size_t b = 0; b < nb; b++)
				if (pick[b] == c) {
					any = 1;
					for (unsigned s = lo; s <= hi; s++)
						cnt[s] += ctx->hist[b][s];
				}
			map[c] = used;
			if (any)
				tcz_huff_build(cnt, ctx->max_bits,
					       &codes[used++]);
		}
		for (size_t b = 0; b < nb; b++)
			pick[b] = (unsigned char)map[pick[b]];
		k = used;
		*bits = 0;
		for (size_t b = 0; b < nb; b++) {
			uint64_t best = code_cost(&codes[pick[b]], ctx->hist[b],
						  lo, hi);
			for (unsigned c = 0; c < k && k > 1; c++) {
				uint64_t x = code_cost(&codes[c], ctx->hist[b],
						       lo, hi);
				if (x < best)
					best = x, pick[b] = (unsigned char)c;
			}
			*bits += best;
		}
	}
	/* drop codes no block picks any more */
	unsigned used = 0, map[LL_CODES];
	for (unsigned c = 0; c < k; c++) {
		int any = 0;
		for (size_t b = 0; b < nb && !any; b++)
			any = pick[b] == c;
		map[c] = used;
		if (any)
			codes[used++] = codes[c];
	}
	for (size_t b = 0; b < nb; b++)
		pick[b] = (unsigned char)map[pick[b]];
	ctx->ncodes = used;
	for (unsigned c = 0; c < used; c++)
		*bits += 8 * tcz_huff_code_size(&codes[c]);
}

/* k codes to start from: runs of consecutive blocks, the shifted blocks
 * (whose distances look nothing like exponents) and the others in runs
 * of their own, the codes shared out by their numbers. */
static void initial_runs(const unsigned char *shift, size_t nb, unsigned k,
			 unsigned char *pk)
{
	size_t ns = 0;
	for (size_t b = 0; b < nb; b++)
		ns += shift[b] != 0;
	if (k < 2 || ns == 0 || ns == nb) {
		for (size_t b = 0; b < nb; b++)
			pk[b] = (unsigned char)(b * k / nb);
		return;
	}
	size_t ks = (k * ns + nb / 2) / nb;
	ks = ks < 1 ? 1 : ks > k - 1 ? k - 1 : ks;
	size_t is = 0, ip = 0, kp = k - ks;
	for (size_t b = 0; b < nb; b++)
		pk[b] = (unsigned char)(shift[b] ? kp + is++ * ks / ns
						 : ip++ * kp / (nb - ns));
}

/* The exponent codes of a blob: 1 to LL_CODES, each block of the blob
 * picking one (ctx->code, ctx->ncodes, ctx->pick). Starting from k runs
 * of consecutive blocks (a chunk that mixes tensors holds them in runs)
 * for each k, a larger k is kept when it saves 1/LL_CODE_GAIN of the
 * bits of the best so far; the search ends at a k that saves nothing. */
static int choose_codes(tcz_lossless_ctx *ctx, const unsigned char *src,
			size_t len, size_t es, size_t blk, size_t nb)
{
	if (ctx->blocks_cap < nb) {
		unsigned char *p = malloc(nb), *sh = malloc(nb);
		uint32_t(*h)[256] = malloc(nb * sizeof *h);
		if (!p || !sh || !h) {
			free(p);
			free(sh);
			free(h);
			return -ENOMEM;
		}
		free(ctx->pick);
		free(ctx->shift);
		free(ctx->hist);
		ctx->pick = p;
		ctx->shift = sh;
		ctx->hist = h;
		ctx->blocks_cap = nb;
	}
	size_t ne = blk / es;
	int rc = grow(&ctx->eb, &ctx->eb_cap, 4 * ne + 64);
	if (rc)
		return rc;
	/* Shorter codes for small blobs: the decoder's tables have 2^(the
	 * longest code) entries, and building them is most of the cost of
	 * decoding a blob of a few thousand values */
	size_t nsym = len / es;
	ctx->max_bits = nsym >= 32768 ? 11 : nsym >= 8192 ? 10 : 9;
	unsigned lo = 255, hi = 0;
	for (size_t b = 0; b < nb; b++) {
		size_t bl = len - b * blk < blk ? len - b * blk : blk;
		memset(ctx->hist[b], 0, sizeof ctx->hist[b]);
		top_bytes(src + b * blk, bl / es, es, ctx->eb);
		byte_counts(ctx->eb, bl / es, ctx->hist[b]);
		ctx->shift[b] = (unsigned char)pick_shift(
			ctx->eb, bl / es, ctx->eb + 2 * ne, ctx->hist[b]);
		for (unsigned s = 0; s < 256; s++)
			if (ctx->hist[b][s]) {
				lo = s < lo ? s : lo;
				hi = s > hi ? s : hi;
			}
	}
	tcz_huff_code try[LL_CODES];
	unsigned char *pick = ctx->pick, tpick[256];
	uint64_t best = UINT64_MAX;
	unsigned kmax = nb < LL_CODES ? (unsigned)nb : LL_CODES;
	if (nb > sizeof tpick)
		kmax = 1; /* long blobs: one code (not from the encoder) */
	for (unsigned k = 1; k <= kmax; k++) {
		uint64_t bits;
		unsigned char *pk = k == 1 ? pick : tpick;
		initial_runs(ctx->shift, nb, k, pk);
		unsigned saved = ctx->ncodes;
		refine(ctx, nb, k, lo, hi, k == 1 ? ctx->code : try, pk,
		       &bits);
		if (k == 1 || bits < best - best / LL_CODE_GAIN) {
			if (k > 1) {
				memcpy(ctx->code, try,
				       ctx->ncodes * sizeof *try);
				memcpy(pick, tpick, nb);
			}
			best = bits;
		} else {
			ctx->ncodes = saved;
			if (bits >= best)
				break; /* no gain at all: more codes rarely
					* find one */
		}
	}
	return 0;
}

/* The exponent-plane byte (the top byte after the rotation) of n
 * elements: bits 8*es-9 .. 8*es-2 of each. */
static void top_bytes(const unsigned char *s, size_t n, size_t es,
		      unsigned char *e)
{
	unsigned sh = (unsigned)(8 * es - 9);
	size_t i = 0;
#if defined(__SSE2__) && !(defined(__BYTE_ORDER__) &&                        \
			   __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
	const __m128i ff = _mm_set1_epi16(0xff);
	if (es == 2) {
		for (; i + 16 <= n; i += 16) {
			__m128i a = _mm_loadu_si128((const __m128i *)(s + 2 * i));
			__m128i b = _mm_loadu_si128(
				(const __m128i *)(s + 2 * i + 16));
			a = _mm_and_si128(_mm_srli_epi16(a, 7), ff);
			b = _mm_and_si128(_mm_srli_epi16(b, 7), ff);
			_mm_storeu_si128((__m128i *)(e + i),
					 _mm_packus_epi16(a, b));
		}
	} else if (es == 4) {
		const __m128i f32 = _mm_set1_epi32(0xff);
		for (; i + 16 <= n; i += 16) {
			__m128i v[4];
			for (int k = 0; k < 4; k++)
				v[k] = _mm_and_si128(
					_mm_srli_epi32(
						_mm_loadu_si128((const __m128i *)(s + 4 * i + 16 * k)),
						23),
					f32);
			_mm_storeu_si128(
				(__m128i *)(e + i),
				_mm_packus_epi16(_mm_packs_epi32(v[0], v[1]),
						 _mm_packs_epi32(v[2], v[3])));
		}
	}
#endif
	if (es == 2) {
		for (; i < n; i++)
			e[i] = (unsigned char)(s[2 * i] >> 7 | s[2 * i + 1] << 1);
	} else if (es == 4) {
		for (; i < n; i++) {
			uint32_t x;
			memcpy(&x, s + 4 * i, 4);
			e[i] = (unsigned char)(le32toh_(x) >> 23);
		}
	}
	for (; i < n; i++)
		e[i] = (unsigned char)(load_le(s + i * es, es) >> sh);
}

/* Adds the counts of n bytes to cnt; four tables summed at the end, so
 * that runs of one value do not wait on one counter. */
static void byte_counts(const unsigned char *e, size_t n, uint32_t cnt[256])
{
	uint32_t c[4][256];
	size_t i = 0;
	memset(c, 0, sizeof c);
	for (; i + 4 <= n; i += 4)
		for (int j = 0; j < 4; j++)
			c[j][e[i + j]]++;
	for (; i < n; i++)
		c[0][e[i]]++;
	for (unsigned k = 0; k < 256; k++)
		cnt[k] += c[0][k] + c[1][k] + c[2][k] + c[3][k];
}

/* log2(x) for x >= 1 within ~0.005: an estimate's precision (the
 * polynomial gives 1 + log2 of the mantissa) */
static float flog2(float x)
{
	union {
		float f;
		uint32_t u;
	} v = {x};
	float e = (float)((int)(v.u >> 23) - 128);
	v.u = (v.u & 0x7fffffu) | 0x3f800000u;
	return e + (-0.34484843f * v.f + 2.02466578f) * v.f - 0.67487759f;
}

/* Order-0 bits of the counts h (symbols lo..hi), tot of them: the sum of
 * c * log2(tot / c) */
static float est_bits(const uint32_t h[256], unsigned lo, unsigned hi,
		      uint32_t tot)
{
	float b = 0, lt = flog2((float)tot);
	for (unsigned s = lo; s <= hi; s++)
		if (h[s])
			b += (float)h[s] * (lt - flog2((float)h[s]));
	return b;
}

static unsigned char umax(unsigned char a, unsigned char b)
{
	return a > b ? a : b;
}

/* Maxima of e (n > 0 bytes) over segments of 2^s, into mx */
static size_t seg_maxima(const unsigned char *e, size_t n, unsigned s,
			 unsigned char *mx)
{
	size_t seg = (size_t)1 << s, k = 0, a = 0;
#ifdef __SSE2__
	/* whole segments: 16 bytes at a time, then across the vector */
	for (; a + seg <= n; a += seg, k++) {
		__m128i m = _mm_loadu_si128((const __m128i *)(e + a));
		for (size_t j = 16; j < seg; j += 16)
			m = _mm_max_epu8(m, _mm_loadu_si128(
						    (const __m128i *)(e + a + j)));
		m = _mm_max_epu8(m, _mm_srli_si128(m, 8));
		m = _mm_max_epu8(m, _mm_srli_si128(m, 4));
		m = _mm_max_epu8(m, _mm_srli_si128(m, 2));
		m = _mm_max_epu8(m, _mm_srli_si128(m, 1));
		mx[k] = (unsigned char)_mm_cvtsi128_si32(m);
	}
#endif
	for (; a < n; a += seg, k++) {
		size_t b = n - a < seg ? n - a : seg;
		unsigned char m = 0;
		for (size_t j = 0; j < b; j++)
			m = umax(m, e[a + j]);
		mx[k] = m;
	}
	return k;
}

/* Least of the k maxima and the bits their spread above it needs */
static unsigned spread_bits(const unsigned char *mx, size_t k,
			    unsigned *least)
{
	unsigned lo = 255, hi = 0, w = 0;
	for (size_t i = 0; i < k; i++) {
		lo = mx[i] < lo ? mx[i] : lo;
		hi = mx[i] > hi ? mx[i] : hi;
	}
	while ((1u << w) <= hi - lo)
		w++;
	*least = lo;
	return w;
}

/* Whether the block's exponents e (n of them, histogram h) are coded
 * shifted, and by which s (0: not). Estimated on every eighth group of
 * 2^LL_SHIFT_MIN values (every fourth, or all of them, in small blocks):
 * the search costs less than one more pass over the exponents. A shifted
 * block's h becomes the distances' histogram. mx: room for 2n/16 + 8
 * maxima, then n bytes. */
static unsigned pick_shift(const unsigned char *e, size_t n,
			   unsigned char *mx, uint32_t h[256])
{
	enum { L = LL_SHIFT_MAX - LL_SHIFT_MIN + 1, G = 1 << LL_SHIFT_MIN };
	if (n < 4 * G)
		return 0;
	unsigned char *lv[L];
	size_t ng[L];
	lv[0] = mx;
	ng[0] = seg_maxima(e, n, LL_SHIFT_MIN, mx);
	for (int l = 1; l < L; l++) {
		lv[l] = lv[l - 1] + ng[l - 1];
		ng[l] = (ng[l - 1] + 1) / 2;
		for (size_t i = 0; i < ng[l]; i++)
			lv[l][i] = 2 * i + 1 < ng[l - 1]
				? umax(lv[l - 1][2 * i], lv[l - 1][2 * i + 1])
				: lv[l - 1][2 * i];
	}
	size_t step = ng[0] >= 128 ? 8 : ng[0] >= 64 ? 4 : 1;
	uint32_t hs[L][2][256], h0[256] = {0}, ns = 0;
	unsigned lo = 255, hi = lv[L - 1][0];
	for (size_t i = 1; i < ng[L - 1]; i++)
		hi = umax((unsigned char)hi, lv[L - 1][i]);
	memset(hs, 0, sizeof hs);
	for (size_t g = 0; g < ng[0]; g += step) {
		size_t a = g * G, b = n - a < G ? n : a + G;
		for (size_t j = a; j < b; j++) {
			h0[e[j]]++;
			lo = e[j] < lo ? e[j] : lo;
		}
		/* two tables: a run of one value would otherwise wait on
		 * its own counter at every step */
		for (int l = 0; l < L; l++) {
			unsigned char m = lv[l][g >> l];
			size_t j = a;
			for (; j + 2 <= b; j += 2) {
				hs[l][0][(unsigned char)(m - e[j])]++;
				hs[l][1][(unsigned char)(m - e[j + 1])]++;
			}
			if (j < b)
				hs[l][0][(unsigned char)(m - e[j])]++;
		}
		ns += (uint32_t)(b - a);
	}
	for (int l = 0; l < L; l++)
		for (unsigned k = 0; k <= hi - lo; k++)
			hs[l][0][k] += hs[l][1][k];
	float scale = (float)n / (float)ns;
	float plain = est_bits(h0, lo, hi, ns) * scale, best = plain;
	int pick = -1;
	for (int l = 0; l < L; l++) {
		unsigned least;
		unsigned w = spread_bits(lv[l], ng[l], &least);
		float c = est_bits(hs[l][0], 0, hi - lo, ns) * scale +
			  (float)(8 * LL_SHIFT_HDR + w * ng[l]);
		if (c < best)
			best = c, pick = l;
	}
	if (pick < 0 || best > plain - plain / LL_SHIFT_GAIN)
		return 0;
	unsigned char *d = lv[L - 1] + ng[L - 1]; /* n bytes of room */
	for (size_t j = 0; j < n; j++)
		d[j] = (unsigned char)(lv[pick][j >> (LL_SHIFT_MIN + pick)] - e[j]);
	memset(h, 0, 256 * sizeof *h);
	byte_counts(d, n, h);
	return LL_SHIFT_MIN + (unsigned)pick;
}

/* Codes the exponents e (n) shifted by s under code c into dst (cap
 * bytes): s, the least maximum, w, the maxima above it in w bits each
 * (LSB first), then the distances' Huffman streams. d and mx: room for
 * n distances and n/16 + 1 maxima. Returns the size, or 0 when it does
 * not fit. */
static size_t shift_encode(const tcz_huff_code *c, const unsigned char *e,
			   size_t n, unsigned s, unsigned char *d,
			   unsigned char *mx, unsigned char *dst, size_t cap)
{
	size_t k = seg_maxima(e, n, s, mx);
	unsigned least, w = spread_bits(mx, k, &least);
	size_t side = (k * w + 7) / 8, at = LL_SHIFT_HDR + side;
	if (cap <= at)
		return 0;
	dst[0] = (unsigned char)s;
	dst[1] = (unsigned char)least;
	dst[2] = (unsigned char)w;
	memset(dst + LL_SHIFT_HDR, 0, side);
	for (size_t i = 0; i < k && w; i++) {
		size_t bit = i * w;
		unsigned v = (unsigned)(mx[i] - least) << (bit & 7);
		dst[LL_SHIFT_HDR + bit / 8] |= (unsigned char)v;
		if ((bit & 7) + w > 8)
			dst[LL_SHIFT_HDR + bit / 8 + 1] |= (unsigned char)(v >> 8);
	}
	for (size_t j = 0; j < n; j++)
		d[j] = (unsigned char)(mx[j >> s] - e[j]);
	size_t z = tcz_huff_encode(c, d, n, dst + at, cap - at);
	return z ? at + z : 0;
}

static size_t block_len_for(size_t es, int long_blocks)
{
	if (es == 1)
		return LL_BLOCK_BYTES1;
	return long_blocks ? LL_BLOCK_ELEMS_LONG * es
			   : LL_BLOCK_BYTES / es * es;
}

/* zstd result -> coded size, or 0 when it failed or did not fit; the
 * caller then keeps another candidate or a raw plane, which is always
 * correct. Error codes are not told apart: ZSTD_compressSequences reports
 * a too small dst with assorted codes (1.5.4 gave even memory_allocation
 * for it), and a real allocation failure only costs compression here. */
static size_t zsize(size_t r)
{
	return ZSTD_isError(r) ? 0 : r;
}

/* Codes one plane into dst (capacity cap, which is below the plane size).
 * Sets *out to the coded size, or 0 when no coding fits in cap.
 *
 * Exponent planes are noise-like at the byte level: LZ matches there are
 * short and cost more than the literals they replace, so a literals-only
 * frame (Huffman, one table per LL_EXP_SUB bytes) usually wins: retsim.bf16
 * exponents take 2.83 bits/byte that way against 3.39 with level-3
 * matching. Tensors that repeat do gain from LZ, so dense levels try both
 * and keep the smaller. Mantissa planes go through plain zstd, which finds
 * the repeats and stores near-random bytes quickly. */
static void code_plane(tcz_lossless_ctx *ctx, const unsigned char *p, size_t n,
		      int exponent, const tcz_huff_code *code, int level,
		      unsigned char *dst, size_t cap, size_t *out, int *method)
{
	size_t lit, lz;

	*out = 0;
	*method = LL_M_ZSTD;
	if (exponent && code) {
		size_t h = tcz_huff_encode(code, p, n, dst, cap);
		if (h) {
			*out = h;
			*method = LL_M_HUFF;
			/* zstd's own tables per 8 KiB must win clearly: the
			 * shared code decodes faster */
			cap = h - 1 - h / LL_HUFF_PREF;
			if (!cap || level < LL_EXP_LZ_LEVEL)
				return;
		}
	}
	if (exponent) {
		ZSTD_Sequence seq[LL_EXP_SEQS];
		size_t ns = 0;
		for (size_t o = 0; o < n; o += LL_EXP_SUB, ns++) {
			memset(&seq[ns], 0, sizeof(seq[ns]));
			seq[ns].litLength =
				(unsigned)(n - o < LL_EXP_SUB ? n - o
							      : LL_EXP_SUB);
		}
		/* Full room (alt holds a compress bound): the sequence API's
		 * handling of a short dst is the least exercised part of
		 * zstd, so it is kept out of that path. */
		ZSTD_CCtx_reset(ctx->cctx, ZSTD_reset_session_only);
		lit = zsize(ZSTD_compressSequences(ctx->cctx, ctx->alt,
						   ctx->alt_cap, seq, ns, p,
						   n));
		if (lit && lit <= cap) {
			memcpy(dst, ctx->alt, lit);
			*out = lit;
			*method = LL_M_ZSTD;
			cap = lit - 1; /* LZ must beat it */
		}
		if (level < LL_EXP_LZ_LEVEL || !cap)
			return;
	}
	/* a failed attempt may leave bytes behind: keep it off dst when dst
	 * already holds the literal coding */
	unsigned char *lz_dst = *out ? ctx->alt : dst;
	lz = zsize(ZSTD_compress2(ctx->cctx, lz_dst, cap, p, n));
	if (lz) {
		if (lz_dst != dst)
			memcpy(dst, lz_dst, lz);
		*out = lz;
		*method = LL_M_ZSTD;
	}
}

/* The lowest mantissa byte of trained weights is noise; when zstd could
 * shrink it, the block holds exact repeats (tiled or duplicated rows,
 * tables) and LZ usually pays on the exponent plane too, so it is tried
 * there after all, and the block's later planes slide down if it wins.
 * This keeps the default level at literal-only speed on ordinary weights
 * (retsim) while small repetitive models keep most of the LZ gain. */
static void retry_exponent_lz(tcz_lossless_ctx *ctx, const unsigned char *p,
			     size_t n, unsigned char *dst, unsigned char *ent,
			     size_t bpos, size_t *pos)
{
	size_t old = get32(ent + 1), lz;

	if (old < 2)
		return;
	lz = zsize(ZSTD_compress2(ctx->cctx, ctx->alt, old - 1, p, n));
	if (!lz)
		return;
	memmove(dst + bpos + lz, dst + bpos + old, *pos - bpos - old);
	memcpy(dst + bpos, ctx->alt, lz);
	ent[0] = LL_M_ZSTD;
	put32(ent + 1, (uint32_t)lz);
	*pos -= old - lz;
}

/* A shifted exponent plane p (n values, by s, under code) into dst (cap
 * bytes) as code_plane does; ne: the elements of a whole block (the
 * layout of ctx->eb). zstd is tried too at dense levels, and alone when
 * the shifted coding does not fit (the code lacks the plain exponents). */
static void shift_plane(tcz_lossless_ctx *ctx, const unsigned char *p,
			size_t n, unsigned s, const tcz_huff_code *code,
			int level, size_t ne, unsigned char *dst, size_t cap,
			size_t *out, int *method)
{
	unsigned char *d = ctx->eb + ne, *mx = ctx->eb + 2 * ne;
	unsigned char *sb = mx + ne / 8 + 8;
	size_t z = shift_encode(code, p, n, s, d, mx, sb, cap);

	if (z && level >= LL_EXP_LZ_LEVEL) /* z >= 9: a cap is left */
		code_plane(ctx, p, n, 1, NULL, level, dst,
			   z - 1 - z / LL_HUFF_PREF, out, method);
	else if (!z)
		code_plane(ctx, p, n, 1, NULL, level, dst, cap, out, method);
	else
		*out = 0;
	if (z && !*out) {
		memcpy(dst, sb, z);
		*out = z;
		*method = LL_M_SHIFT;
	}
}

/* Writes a planes-mode blob and sets *out to its size, or to 0 when it
 * would not be smaller than the raw blob (len + LL_HDR). */
static int encode_planes(tcz_lossless_ctx *ctx, tcz_dtype dt,
			 const unsigned char *src, size_t len, int level,
			 int long_blocks, unsigned char *dst, size_t *out,
			 int *repeats)
{
	size_t es = tcz_dtype_size(dt);
	int rot = tcz_dtype_is_float(dt);
	size_t blk = block_len_for(es, long_blocks);
	size_t nblocks = (len + blk - 1) / blk;
	size_t limit = len + LL_HDR; /* the blob must end below this */
	size_t tab_len, pos, sec = 0;
	const tcz_huff_code *code = NULL;
	int rc, huffs = 0, shifts = 0;

	*out = 0;
	*repeats = 0;
	if (nblocks > (limit - LL_HDR) / (LL_ENTRY * es))
		return 0; /* the table alone would not pay */
	tab_len = nblocks * es * LL_ENTRY;
	if (rot) {
		if ((rc = choose_codes(ctx, src, len, es, blk, nblocks)))
			return rc;
		sec = 1;
		for (unsigned k = 0; k < ctx->ncodes; k++)
			sec += tcz_huff_code_size(&ctx->code[k]);
	}
	pos = LL_HDR + tab_len + sec;
	if (pos >= limit)
		return 0;

	if (es > 1 && (rc = grow(&ctx->scratch, &ctx->scratch_cap, blk)))
		return rc;
	if (rot && (rc = grow(&ctx->alt, &ctx->alt_cap,
			      ZSTD_compressBound(blk / es))))
		return rc;
	/* The delimiters setting only affects ZSTD_compressSequences. */
	ZSTD_CCtx_reset(ctx->cctx, ZSTD_reset_session_and_parameters);
	if (ZSTD_isError(ZSTD_CCtx_setParameter(
		    ctx->cctx, ZSTD_c_compressionLevel, level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(
		    ctx->cctx, ZSTD_c_blockDelimiters,
		    ZSTD_sf_explicitBlockDelimiters)))
		return -EINVAL;

	unsigned char *ent = dst + LL_HDR;
	for (size_t off = 0; off < len; off += blk) {
		size_t bl = len - off < blk ? len - off : blk;
		size_t n = bl / es;
		const unsigned char *pl[8];
		unsigned char *w[8];
		size_t bpos = pos;

		if (es == 1) {
			pl[0] = src + off;
		} else {
			for (size_t j = 0; j < es; j++)
				pl[j] = w[j] = ctx->scratch + j * n;
			split_planes(src + off, es, n, rot, w);
		}
		if (rot)
			code = &ctx->code[ctx->pick[off / blk]];
		for (size_t j = 0; j < es; j++) {
			size_t room = limit - 1 - pos, z = 0;
			size_t cap = n - 1 < room ? n - 1 : room;
			int method = LL_M_ZSTD;
			unsigned sh = rot && j == 0 ? ctx->shift[off / blk] : 0;
			if (cap && sh) {
				shift_plane(ctx, pl[0], n, sh, code, level,
					    blk / es, dst + pos, cap, &z,
					    &method);
			} else if (cap) {
				code_plane(ctx, pl[j], n, rot && j == 0,
					   code, level, dst + pos, cap, &z,
					   &method);
			}
			if (z) {
				unsigned k = rot ? ctx->pick[off / blk] : 0;
				ent[0] = (unsigned char)(
					method == LL_M_HUFF    ? LL_M_HUFF + k
					: method == LL_M_SHIFT ? LL_M_SHIFT + k
							       : (unsigned)method);
			} else {
				if (n > room)
					return 0;
				memcpy(dst + pos, pl[j], n);
				z = n;
				ent[0] = LL_M_RAW;
			}
			put32(ent + 1, (uint32_t)z);
			/* a compressible lowest byte: exact repeats */
			*repeats |= es > 1 && j == es - 1 && ent[0] == LL_M_ZSTD;
			ent += LL_ENTRY;
			pos += z;
		}
		if (rot && level < LL_EXP_LZ_LEVEL &&
		    ent[-LL_ENTRY] == LL_M_ZSTD) {
			retry_exponent_lz(ctx, pl[0], n, dst,
					  ent - es * LL_ENTRY, bpos, &pos);
		}
		huffs += ent[-(ptrdiff_t)es * LL_ENTRY] >= LL_M_HUFF;
		shifts += ent[-(ptrdiff_t)es * LL_ENTRY] >= LL_M_SHIFT;
	}

	if (sec && !huffs) { /* no plane uses the code: a version-1 blob */
		memmove(dst + LL_HDR + tab_len, dst + LL_HDR + tab_len + sec,
			pos - LL_HDR - tab_len - sec);
		pos -= sec;
		sec = 0;
	}
	if (sec) {
		unsigned char *w = dst + LL_HDR + tab_len;
		*w++ = (unsigned char)ctx->ncodes;
		for (unsigned k = 0; k < ctx->ncodes; k++) {
			tcz_huff_code_write(&ctx->code[k], w);
			w += tcz_huff_code_size(&ctx->code[k]);
		}
	}
	put32(dst, LL_MAGIC);
	dst[4] = shifts ? LL_VERSION_SHIFT : sec ? LL_VERSION_HUFF : LL_VERSION;
	dst[5] = (unsigned char)dt;
	dst[6] = LL_MODE_PLANES;
	dst[7] = rot ? LL_XF_ROTL1 : LL_XF_NONE;
	put64(dst + 8, len);
	put32(dst + 16, (uint32_t)blk);
	put32(dst + 20, header_check(dst, dst + LL_HDR, tab_len + sec));
	*out = pos;
	return 0;
}

int tcz_lossless_encode(tcz_lossless_ctx *ctx, tcz_dtype dt, const void *src,
			size_t len, int level, void *dst, size_t dst_cap,
			size_t *out_len)
{
	size_t es = tcz_dtype_size(dt);
	unsigned char *d = dst;
	tcz_lossless_ctx *own = NULL;
	size_t r = 0;
	int rc;

	if (!es || len % es || level < 1 || level > ZSTD_maxCLevel() ||
	    !out_len || (len && !src) || !dst)
		return -EINVAL;
	if (len > SIZE_MAX - LL_HDR || dst_cap < tcz_lossless_bound(len))
		return -ENOBUFS;

	if (len) {
		if (!ctx && !(ctx = own = tcz_lossless_ctx_create()))
			return -ENOMEM;
		int repeats = 0;
		rc = encode_planes(ctx, dt, src, len, level, 0, d, &r,
				   &repeats);
		if (rc == 0 && repeats && len > block_len_for(es, 0)) {
			/* LZ may reach further in long blocks: a second
			 * coding behind the first, kept if it pays */
			size_t need = len + LL_HDR, r2 = 0;
			unsigned char *alt = dst_cap / 2 >= need ? d + need
								 : malloc(need);
			int rep2;
			/* optional: a failure here keeps the first coding */
			if (alt && encode_planes(ctx, dt, src, len, level, 1, alt,
						 &r2, &rep2) == 0 &&
			    r2 && (!r || r2 < r - r / LL_LONG_GAIN)) {
				memmove(d, alt, r2);
				r = r2;
			}
			if (alt != d + need)
				free(alt);
		}
		tcz_lossless_ctx_free(own);
		if (rc)
			return rc;
	}
	if (r) {
		*out_len = r;
		return 0;
	}
	put32(d, LL_MAGIC);
	d[4] = LL_VERSION;
	d[5] = (unsigned char)dt;
	d[6] = LL_MODE_RAW;
	d[7] = LL_XF_NONE;
	put64(d + 8, len);
	put32(d + 16, 0);
	put32(d + 20, header_check(d, NULL, 0));
	if (len)
		memcpy(d + LL_HDR, src, len);
	*out_len = len + LL_HDR;
	return 0;
}

/* ---- decoder ------------------------------------------------------------ */

struct ll_hdr {
	tcz_dtype dt;
	size_t es;
	int mode, rot;
	size_t dlen;	/* decoded length */
	size_t blk;	/* planes mode: bytes per block */
	size_t nblocks;
	const unsigned char *tab; /* planes mode: entry table */
	const unsigned char *sec; /* versions 2, 3: the codes' section */
	size_t sec_len;		  /*   (0 in version 1) */
	unsigned ncodes;
	size_t code_off[LL_CODES]; /* code k: sec + code_off[k], */
	size_t code_len[LL_CODES]; /*   code_len[k] bytes */
	size_t data;	/* offset of the first stored byte */
};

/* Fuzzers cannot forge the check; let them past it to reach the rest (the
 * usual libFuzzer convention, never defined in a real build). */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CHECK_OK(got, want) ((void)(got), (void)(want), 1)
#else
#define CHECK_OK(got, want) ((got) == (want))
#endif

/* The codes' section of a version-2 blob at s (len bytes available): a
 * count (1..LL_CODES), then that many codes. */
static int codes_check(const unsigned char *s, size_t len, struct ll_hdr *h)
{
	if (len < 1 || s[0] < 1 || s[0] > LL_CODES)
		return -EBADMSG;
	size_t at = 1, u;
	for (unsigned k = 0; k < s[0]; k++, at += u) {
		if (tcz_huff_code_check(s + at, len - at, &u))
			return -EBADMSG;
		h->code_off[k] = at;
		h->code_len[k] = u;
	}
	h->sec_len = at;
	h->ncodes = s[0];
	return 0;
}

/* Validates the header fields, the check and the table entries of a blob
 * of which len bytes are at s (all of it, or a prefix holding at least
 * the header and the table); *total is the whole blob's length. */
static int parse_prefix(const unsigned char *s, size_t len, struct ll_hdr *h,
			size_t *total)
{
	if (!s || len < LL_HDR || get32(s) != LL_MAGIC ||
	    s[4] < LL_VERSION || s[4] > LL_VERSION_SHIFT)
		return -EBADMSG;
	memset(h, 0, sizeof(*h));
	if (s[5] >= TCZ_DT_COUNT)
		return -EBADMSG;
	h->dt = (tcz_dtype)s[5];
	h->es = tcz_dtype_size(h->dt);
	h->mode = s[6];
	if (s[7] > LL_XF_ROTL1 ||
	    (s[7] == LL_XF_ROTL1 && !tcz_dtype_is_float(h->dt)))
		return -EBADMSG;
	h->rot = s[7] == LL_XF_ROTL1;
	uint64_t dlen = get64(s + 8);
	uint32_t blk = get32(s + 16);
	if (dlen > SIZE_MAX || dlen % h->es)
		return -EBADMSG;
	h->dlen = (size_t)dlen;

	if (h->mode == LL_MODE_RAW) {
		if (blk || h->rot || s[4] != LL_VERSION ||
		    !CHECK_OK(get32(s + 20), header_check(s, NULL, 0)) ||
		    h->dlen > SIZE_MAX - LL_HDR)
			return -EBADMSG;
		h->data = LL_HDR;
		*total = LL_HDR + h->dlen;
		return 0;
	}
	if (h->mode != LL_MODE_PLANES || !blk || blk % h->es ||
	    blk > LL_MAX_BLOCK || !h->dlen)
		return -EBADMSG;
	h->blk = blk;
	h->nblocks = h->dlen / blk + (h->dlen % blk != 0);
	size_t room = len - LL_HDR;
	if (h->nblocks > room / LL_ENTRY / h->es)
		return -EBADMSG;
	size_t tab_len = h->nblocks * h->es * LL_ENTRY;
	h->tab = s + LL_HDR;
	if (s[4] >= LL_VERSION_HUFF) {
		h->sec = h->tab + tab_len;
		if (codes_check(h->sec, len - LL_HDR - tab_len, h))
			return -EBADMSG;
	}
	if (!CHECK_OK(get32(s + 20),
		      header_check(s, h->tab, tab_len + h->sec_len)))
		return -EBADMSG;
	h->data = LL_HDR + tab_len + h->sec_len;

	size_t pos = h->data;
	const unsigned char *e = h->tab;
	for (size_t b = 0; b < h->nblocks; b++) {
		size_t bl = b + 1 < h->nblocks ? blk : h->dlen - b * blk;
		size_t n = bl / h->es;
		for (size_t j = 0; j < h->es; j++, e += LL_ENTRY) {
			size_t z = get32(e + 1);
			if ((e[0] == LL_M_RAW && z != n) ||
			    (e[0] == LL_M_ZSTD && z == 0) ||
			    (e[0] >= LL_M_HUFF && e[0] < LL_M_SHIFT &&
			     (e[0] - LL_M_HUFF >= (int)h->ncodes ||
			      z < TCZ_HUFF_STREAM_HDR)) ||
			    (e[0] >= LL_M_SHIFT &&
			     (s[4] < LL_VERSION_SHIFT ||
			      e[0] - LL_M_SHIFT >= (int)h->ncodes ||
			      z < LL_SHIFT_HDR + TCZ_HUFF_STREAM_HDR)) ||
			    z > SIZE_MAX - pos)
				return -EBADMSG;
			pos += z;
		}
	}
	*total = pos;
	return 0;
}

/* A whole blob: the prefix checks, and the table's lengths tile the rest
 * of the blob exactly. */
static int parse(const unsigned char *s, size_t len, struct ll_hdr *h)
{
	size_t total;
	int rc = parse_prefix(s, len, h, &total);
	return rc ? rc : total == len ? 0 : -EBADMSG;
}

int tcz_lossless_decoded_size(const void *src, size_t len, size_t *out)
{
	struct ll_hdr h;
	int rc = parse(src, len, &h);
	if (rc)
		return rc;
	*out = h.dlen;
	return 0;
}

/* Decodes one zstd plane of exactly n bytes. */
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

/* The decoding tables of h's code k, from ctx's cache or built into it;
 * n: the symbols the caller decodes with it (whether the multi-symbol
 * table pays). */
static int code_tables(tcz_lossless_ctx *ctx, const struct ll_hdr *h,
		       unsigned k, size_t n, const tcz_huff_dtable **out)
{
	const unsigned char *key = h->sec + h->code_off[k];
	size_t klen = h->code_len[k];
	int multi = n >= LL_HUFF_MULTI;
	struct ll_dt *d = NULL, *old = &ctx->dt[0];
	for (int i = 0; i < LL_DT_CACHE && !d; i++) {
		struct ll_dt *c = &ctx->dt[i];
		if (c->t && c->klen == klen && memcmp(c->key, key, klen) == 0)
			d = c;
		else if (c->last < old->last)
			old = c;
	}
	if (!d) {
		tcz_huff_code c;
		size_t used;
		if (klen > sizeof old->key ||
		    tcz_huff_code_read(key, klen, &c, &used))
			return -EBADMSG; /* parse_prefix checked it */
		if (!old->t && !(old->t = malloc(sizeof *old->t)))
			return -ENOMEM;
		tcz_huff_dtable_build(&c, old->t, multi);
		memcpy(old->key, key, klen);
		old->klen = klen;
		d = old;
	} else if (multi) {
		tcz_huff_dtable_multi(d->t);
	}
	d->last = ++ctx->dt_clock;
	*out = d->t;
	return 0;
}

/* A shifted plane (shift_encode) of n values from the z bytes at src.
 * Errors: -EBADMSG s or w out of range, truncated, a maximum above 255,
 * a distance above its maximum, set padding bits after the maxima, or
 * the streams' own errors. */
static int shift_decode(const tcz_huff_dtable *t, const unsigned char *src,
			size_t z, unsigned char *dst, size_t n)
{
	unsigned s = src[0], least = src[1], w = src[2];
	if (s < LL_SHIFT_MIN || s > LL_SHIFT_MAX || w > 8)
		return -EBADMSG;
	size_t seg = (size_t)1 << s, k = (n + seg - 1) >> s;
	size_t side = (k * w + 7) / 8, at = LL_SHIFT_HDR + side;
	if (z < at)
		return -EBADMSG;
	int rc = tcz_huff_decode(t, src + at, z - at, dst, n);
	if (rc)
		return rc;
	const unsigned char *sd = src + LL_SHIFT_HDR;
	unsigned bad = 0;
	for (size_t i = 0; i < k; i++) {
		unsigned v = 0;
		if (w) {
			size_t bit = i * w, by = bit / 8;
			unsigned x = sd[by];
			if (by + 1 < side)
				x |= (unsigned)sd[by + 1] << 8;
			v = (x >> (bit & 7)) & ((1u << w) - 1);
		}
		if (least + v > 255)
			return -EBADMSG;
		unsigned char m = (unsigned char)(least + v);
		size_t j = i << s, b = n - j < seg ? n : j + seg;
#ifdef __SSE2__
		__m128i vm = _mm_set1_epi8((char)m), ok = _mm_set1_epi8(-1);
		for (; j + 16 <= b; j += 16) {
			__m128i x = _mm_loadu_si128((const __m128i *)(dst + j));
			ok = _mm_and_si128(
				ok, _mm_cmpeq_epi8(_mm_max_epu8(x, vm), vm));
			_mm_storeu_si128((__m128i *)(dst + j),
					 _mm_sub_epi8(vm, x));
		}
		bad |= _mm_movemask_epi8(ok) != 0xffff;
#endif
		for (; j < b; j++) {
			bad |= dst[j] > m;
			dst[j] = (unsigned char)(m - dst[j]);
		}
	}
	/* the bits after the last maximum are zero: one coding per plane */
	if ((k * w) % 8 && sd[side - 1] >> ((k * w) % 8))
		return -EBADMSG;
	return bad ? -EBADMSG : 0;
}

/* Decodes one block of n elements whose table entries are at e and whose
 * stored planes start at src, into dst (n * es bytes); ctx->scratch holds
 * n * es bytes when es > 1. call_n[k]: the symbols the caller decodes
 * with code k in all (how much building decoding tables pays). */
static int decode_block(tcz_lossless_ctx *ctx, const struct ll_hdr *h,
			const unsigned char *e, const unsigned char *src,
			size_t n, const size_t *call_n, unsigned char *dst)
{
	size_t es = h->es, pos = 0;
	const unsigned char *pl[8];
	int rc;

	for (size_t j = 0; j < es; j++, e += LL_ENTRY) {
		size_t z = get32(e + 1);
		/* single-byte planes are the output itself */
		unsigned char *to = es == 1 ? dst : ctx->scratch + j * n;
		if (e[0] == LL_M_RAW) {
			if (es == 1)
				memcpy(to, src + pos, n);
			pl[j] = src + pos; /* merged from in place */
		} else if (e[0] >= LL_M_HUFF) {
			int shifted = e[0] >= LL_M_SHIFT;
			unsigned k = e[0] - (shifted ? LL_M_SHIFT : LL_M_HUFF);
			const tcz_huff_dtable *t;
			if ((rc = code_tables(ctx, h, k, call_n[k], &t)) ||
			    (rc = shifted ? shift_decode(t, src + pos, z, to, n)
					  : tcz_huff_decode(t, src + pos, z,
							    to, n)))
				return rc;
			pl[j] = to;
		} else {
			rc = unzstd(ctx->dctx, to, n, src + pos, z);
			if (rc)
				return rc;
			pl[j] = to;
		}
		pos += z;
	}
	if (es > 1)
		merge_planes(pl, es, n, h->rot, dst);
	return 0;
}

static int decode_planes(tcz_lossless_ctx *ctx, const struct ll_hdr *h,
			 const unsigned char *src, unsigned char *dst)
{
	size_t es = h->es, pos = h->data;
	const unsigned char *e = h->tab;
	int rc;

	if (es > 1 && (rc = grow(&ctx->scratch, &ctx->scratch_cap,
				 h->blk < h->dlen ? h->blk : h->dlen)))
		return rc;
	size_t per_code[LL_CODES] = {0};
	for (size_t b = 0; b < h->nblocks; b++) {
		unsigned m = h->tab[b * es * LL_ENTRY];
		if (m >= LL_M_HUFF)
			per_code[m - (m >= LL_M_SHIFT ? LL_M_SHIFT : LL_M_HUFF)] +=
				h->blk / es;
	}
	for (size_t off = 0; off < h->dlen; off += h->blk, e += es * LL_ENTRY) {
		size_t bl = h->dlen - off < h->blk ? h->dlen - off : h->blk;
		if ((rc = decode_block(ctx, h, e, src + pos, bl / es, per_code,
				       dst + off)))
			return rc;
		for (size_t j = 0; j < es; j++)
			pos += get32(e + j * LL_ENTRY + 1);
	}
	return 0;
}

/* ---- blocks one at a time ----------------------------------------------- */

int tcz_lossless_prefix_len(const void *src, size_t len, size_t *out)
{
	const unsigned char *s = src;
	if (!s || len < LL_HDR || get32(s) != LL_MAGIC ||
	    s[4] < LL_VERSION || s[4] > LL_VERSION_SHIFT ||
	    s[5] >= TCZ_DT_COUNT)
		return -EBADMSG;
	if (s[6] != LL_MODE_PLANES)
		return s[6] == LL_MODE_RAW ? -ENOTSUP : -EBADMSG;
	size_t es = tcz_dtype_size((tcz_dtype)s[5]);
	uint64_t dlen = get64(s + 8);
	uint32_t blk = get32(s + 16);
	if (!blk || blk % es || blk > LL_MAX_BLOCK || !dlen || dlen % es)
		return -EBADMSG;
	uint64_t nb = dlen / blk + (dlen % blk != 0);
	if (nb > (SIZE_MAX - LL_HDR - LL_SEC_MAX) / LL_ENTRY / es)
		return -EBADMSG;
	size_t at = LL_HDR + (size_t)nb * es * LL_ENTRY;
	if (s[4] >= LL_VERSION_HUFF) {
		/* and the codes: a count, then first, last, nibbles each */
		if (len <= at || s[at] < 1 || s[at] > LL_CODES)
			return -EBADMSG;
		unsigned k = s[at++];
		while (k--) {
			if (len < at + 2 || s[at] > s[at + 1])
				return -EBADMSG;
			at += 2 + ((size_t)(s[at + 1] - s[at]) + 2) / 2;
		}
	}
	*out = at;
	return 0;
}

/* The prefix alone (header + table), checked; *total the blob's length. */
static int parse_planes_prefix(const void *prefix, size_t plen,
			       struct ll_hdr *h, size_t *total)
{
	size_t want;
	int rc = tcz_lossless_prefix_len(prefix, plen, &want);
	if (rc)
		return rc;
	if (plen != want)
		return -EBADMSG;
	return parse_prefix(prefix, plen, h, total);
}

/* Where block i (< h->nblocks) of a parsed blob lies. */
static void locate_block(const struct ll_hdr *h, size_t i,
			 tcz_lossless_block *b)
{
	size_t pos = h->data;
	const unsigned char *e = h->tab;
	for (size_t k = 0; k <= i; k++)
		for (size_t j = 0; j < h->es; j++, e += LL_ENTRY) {
			size_t z = get32(e + 1);
			if (k == i) {
				if (j == 0)
					b->data_off = pos, b->data_len = 0;
				b->data_len += z;
			}
			pos += z;
		}
	b->dec_off = i * h->blk;
	b->dec_len = i + 1 < h->nblocks ? h->blk : h->dlen - i * h->blk;
}

int tcz_lossless_block_at(const void *prefix, size_t plen, size_t i,
			  tcz_lossless_block *b, size_t *nblocks)
{
	struct ll_hdr h;
	size_t total;
	int rc = parse_planes_prefix(prefix, plen, &h, &total);
	if (rc)
		return rc;
	if (nblocks)
		*nblocks = h.nblocks;
	if (i >= h.nblocks)
		return -ERANGE;
	locate_block(&h, i, b);
	return 0;
}

int tcz_lossless_decode_block(tcz_lossless_ctx *ctx, const void *prefix,
			      size_t plen, size_t i, const void *data,
			      size_t data_len, void *dst, size_t dst_len)
{
	struct ll_hdr h;
	tcz_lossless_block b;
	tcz_lossless_ctx *own = NULL;
	size_t total;
	/* the prefix is parsed once: a random read's path */
	int rc = parse_planes_prefix(prefix, plen, &h, &total);
	if (rc)
		return rc;
	if (i >= h.nblocks)
		return -ERANGE;
	locate_block(&h, i, &b);
	if (b.data_len != data_len || b.dec_len != dst_len || !data || !dst)
		return -EINVAL;
	if (!ctx && !(ctx = own = tcz_lossless_ctx_create()))
		return -ENOMEM;
	if (h.es > 1)
		rc = grow(&ctx->scratch, &ctx->scratch_cap, dst_len);
	size_t n = dst_len / h.es, per_code[LL_CODES];
	for (int k = 0; k < LL_CODES; k++)
		per_code[k] = n;
	if (rc == 0)
		rc = decode_block(ctx, &h, h.tab + i * h.es * LL_ENTRY, data,
				  n, per_code, dst);
	tcz_lossless_ctx_free(own);
	return rc;
}

int tcz_lossless_decode(tcz_lossless_ctx *ctx, const void *src, size_t len,
			void *dst, size_t dst_len)
{
	struct ll_hdr h;
	tcz_lossless_ctx *own = NULL;
	int rc = parse(src, len, &h);

	if (rc)
		return rc;
	if (h.dlen != dst_len || (dst_len && !dst))
		return -EINVAL;
	if (h.mode == LL_MODE_RAW) {
		if (dst_len)
			memcpy(dst, (const unsigned char *)src + h.data, dst_len);
		return 0;
	}
	if (!ctx && !(ctx = own = tcz_lossless_ctx_create()))
		return -ENOMEM;
	rc = decode_planes(ctx, &h, src, dst);
	tcz_lossless_ctx_free(own);
	return rc;
}
