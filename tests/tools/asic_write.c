/* Test helper: writes a device image of a generated model, for the
 * reference reader's test (tests/unit/asic_reader.sh).
 *
 *   asic_write DIR DTYPE SEED
 *
 * makes DIR/image.img (read through tcz_asic_read in odd-sized pieces),
 * DIR/layout.json, and the model's values: DIR/NAME.npy (a dense tensor's
 * matrix, rows x cols, f32) or DIR/NAME.core<k>.npy (a TT core,
 * [r_left, n, r_right]), listed in DIR/manifest as "dense NAME" or
 * "tt NAME d" lines. The profile: 8 cores of 32 KiB, 64-byte tiles,
 * 16 lanes, so the largest matrix is split over cores. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec/asic.h"

typedef struct mat {
	const char *name;
	uint32_t core, d;
	uint64_t rl, n, rr;
	float *v;
} mat;

static uint64_t rng;

static double uniform(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	z ^= z >> 31;
	return (double)(z >> 11) * 0x1p-53;
}

static double gauss(void)
{
	double u = uniform() + 0x1p-60, v = uniform();
	return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static mat ms[64];
static size_t nm;

static void add(const char *name, uint32_t core, uint32_t d, uint64_t rl,
		uint64_t n, uint64_t rr, double scale)
{
	mat *m = &ms[nm++];
	size_t cnt = (size_t)(rl * n * rr);
	*m = (mat){.name = name, .core = core, .d = d, .rl = rl, .n = n,
		   .rr = rr};
	m->v = malloc((cnt ? cnt : 1) * sizeof(float));
	if (!m->v)
		exit(1);
	for (size_t i = 0; i < cnt; i++)
		m->v[i] = (float)(gauss() * scale);
}

static int fetch(void *ctx, size_t matrix, uint64_t row0, uint64_t nrows,
		 float *out)
{
	(void)ctx;
	const mat *m = &ms[matrix];
	memcpy(out, m->v + row0 * m->rr,
	       (size_t)(nrows * m->rr) * sizeof(float));
	return 0;
}

static int write_npy(const char *path, const float *v, int ndim,
		     const uint64_t *shape)
{
	char dict[256];
	int k = snprintf(dict, sizeof dict,
			 "{'descr': '<f4', 'fortran_order': False, 'shape': (");
	size_t cnt = 1;
	for (int i = 0; i < ndim; i++) {
		k += snprintf(dict + k, sizeof dict - (size_t)k, "%llu,%s",
			      (unsigned long long)shape[i],
			      i + 1 < ndim ? " " : "");
		cnt *= (size_t)shape[i];
	}
	k += snprintf(dict + k, sizeof dict - (size_t)k, "), }");
	size_t hl = (size_t)k + 1, total = 10 + hl;
	size_t pad = (64 - total % 64) % 64;
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
	uint16_t h = (uint16_t)(hl + pad);
	memcpy(pre + 8, &h, 2);
	fwrite(pre, 1, 10, f);
	fwrite(dict, 1, (size_t)k, f);
	for (size_t i = 0; i < pad; i++)
		fputc(' ', f);
	fputc('\n', f);
	fwrite(v, sizeof(float), cnt, f);
	return fclose(f);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: asic_write DIR f32|f16|i8 SEED\n");
		return 2;
	}
	const char *dir = argv[1];
	tcz_asic_profile p;
	memset(&p, 0, sizeof p);
	memcpy(p.name, "testdev", 8);
	p.cores = 8;
	p.sram_bytes = 32 << 10;
	p.tile_bytes = 64;
	p.lanes = 16;
	if (tcz_asic_dtype_parse(argv[2], &p.dtype)) {
		fprintf(stderr, "asic_write: dtype %s\n", argv[2]);
		return 2;
	}
	rng = strtoull(argv[3], NULL, 10);
	mkdir(dir, 0755);

	uint64_t r, c;
	add("emb", 0, 1, 1, 300, 48, 0.02);       /* split over cores */
	add("layers.0.w", 0, 1, 1, 64, 40, 1.0);
	add("layers.1.w", 0, 1, 1, 17, 3, 100.0);
	add("vec", 0, 1, 1, 1, 37, 0.5);          /* 1-D: one row */
	add("scalar", 0, 1, 1, 1, 1, 3.0);        /* 0-D: 1 x 1 */
	uint64_t cube[3] = {4, 6, 5};
	tcz_asic_dense_matrix(3, cube, &r, &c);
	add("cube", 0, 1, 1, r, c, 1e-3);         /* 4 x 30 */
	add("empty", 0, 1, 1, 0, 7, 1);           /* [0, 7] */
	add("empty2", 0, 1, 1, 5, 0, 1);          /* [5, 0] */
	add("tt3", 0, 3, 1, 6, 3, 1);
	add("tt3", 1, 3, 3, 5, 2, 1);
	add("tt3", 2, 3, 2, 4, 1, 1);
	add("tt2", 0, 2, 1, 50, 4, 0.3);
	add("tt2", 1, 2, 4, 33, 1, 0.3);
	/* zero tile rows (rows 4..7) among others, and a large value */
	memset(ms[1].v + 4 * 40, 0, 4 * 40 * sizeof(float));
	ms[2].v[4] = 5e4f;

	tcz_asic_matrix in[64];
	for (size_t i = 0; i < nm; i++)
		in[i] = (tcz_asic_matrix){
			.name = ms[i].name,
			.name_len = strlen(ms[i].name),
			.core = ms[i].core,
			.r_left = ms[i].rl,
			.n = ms[i].n,
			.r_right = ms[i].rr,
		};
	tcz_asic_layout *l;
	char err[256];
	int rc = tcz_asic_layout_new(&p, in, nm, &l, err, sizeof err);
	if (rc) {
		fprintf(stderr, "asic_write: %s\n", err);
		return 1;
	}
	uint64_t sum;
	if (tcz_asic_checksum(l, fetch, NULL, &sum))
		return 1;
	tcz_asic_set_checksum(l, sum);

	char path[4096];
	snprintf(path, sizeof path, "%s/image.img", dir);
	FILE *f = fopen(path, "wb");
	if (!f)
		return 1;
	unsigned char buf[1000];
	for (uint64_t off = 0; off < l->image_bytes;) {
		size_t k = l->image_bytes - off < 997 ? (size_t)(l->image_bytes - off)
						      : 997;
		if (tcz_asic_read(l, off, k, buf, fetch, NULL))
			return 1;
		fwrite(buf, 1, k, f);
		off += k;
	}
	fclose(f);

	snprintf(path, sizeof path, "%s/layout.json", dir);
	json_t *j = tcz_asic_layout_json(l);
	if (!j || json_dump_file(j, path, JSON_INDENT(1)))
		return 1;
	json_decref(j);

	snprintf(path, sizeof path, "%s/manifest", dir);
	FILE *mf = fopen(path, "w");
	if (!mf)
		return 1;
	for (size_t i = 0; i < nm; i++) {
		const mat *m = &ms[i];
		if (m->d == 1) {
			uint64_t shape[2] = {m->rl * m->n, m->rr};
			snprintf(path, sizeof path, "%s/%s.npy", dir, m->name);
			write_npy(path, m->v, 2, shape);
			fprintf(mf, "dense %s\n", m->name);
		} else {
			uint64_t shape[3] = {m->rl, m->n, m->rr};
			snprintf(path, sizeof path, "%s/%s.core%u.npy", dir,
				 m->name, m->core);
			write_npy(path, m->v, 3, shape);
			if (m->core == 0)
				fprintf(mf, "tt %s %u\n", m->name, m->d);
		}
	}
	fclose(mf);
	printf("%s: %s, %u entries, %llu bytes, imbalance %.3f\n", dir,
	       argv[2], l->nentries, (unsigned long long)l->image_bytes,
	       l->imbalance);
	tcz_asic_layout_free(l);
	for (size_t i = 0; i < nm; i++)
		free(ms[i].v);
	return 0;
}
