// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * --pprof FILE: the stacks of the folded file as a gzipped profile.proto, the
 * format `go tool pprof`, Pyroscope and Parca read. The stacks come from
 * cm_stacks_foreach, the iteration the folded writer uses too, so both files
 * hold the same frames. A frame is a name (pprof's Function), with no address
 * or mapping: symbolization is already done, and a store must not redo it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include "cm.h"
#include "pprof.h"
#include "profile.pb-c.h"
#include "stacks.h"

/* Strings interned into the string table; frame names get one Function and
 * one Location each, whose ids are both the name's table index. */
struct strtab {
	char **v;
	size_t n, cap;
	int64_t *slot;		/* open addressing over v: index + 1, 0 = empty */
	size_t nslot;
	bool *is_frame;		/* per string: a Function and Location exist */
	size_t nframes;
};

struct pp {
	struct strtab st;
	Perftools__Profiles__Sample **samples;
	size_t nsamples, capsamples;
	int64_t period_ns;
	int64_t k_pid, k_tid, k_comm, k_cause;
	bool oom;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static int rehash(struct strtab *t, size_t nslot)
{
	int64_t *ns = calloc(nslot, sizeof(*ns));

	if (!ns)
		return -1;
	for (size_t i = 0; i < t->n; i++) {
		size_t j = hash_str(t->v[i]) & (nslot - 1);

		while (ns[j])
			j = (j + 1) & (nslot - 1);
		ns[j] = (int64_t)i + 1;
	}
	free(t->slot);
	t->slot = ns;
	t->nslot = nslot;
	return 0;
}

/* Index of s in the table, added if new; -1 when out of memory. */
static int64_t intern(struct strtab *t, const char *s)
{
	size_t j;

	if ((t->n + 1) * 2 > t->nslot && rehash(t, t->nslot ? t->nslot * 2 : 256))
		return -1;
	for (j = hash_str(s) & (t->nslot - 1); t->slot[j]; j = (j + 1) & (t->nslot - 1))
		if (!strcmp(t->v[t->slot[j] - 1], s))
			return t->slot[j] - 1;
	if (t->n == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 256;
		char **nv = realloc(t->v, nc * sizeof(*nv));
		bool *nf = realloc(t->is_frame, nc * sizeof(*nf));

		if (nv)
			t->v = nv;
		if (nf)
			t->is_frame = nf;
		if (!nv || !nf)
			return -1;
		t->cap = nc;
	}
	t->v[t->n] = strdup(s);
	if (!t->v[t->n])
		return -1;
	t->is_frame[t->n] = false;
	t->slot[j] = (int64_t)t->n + 1;
	return (int64_t)t->n++;
}

/* The Location id of a frame name (its string index; 0 is "", never a frame). */
static uint64_t frame_id(struct pp *p, const char *name)
{
	int64_t i = intern(&p->st, *name ? name : "[unknown]");

	if (i < 0)
		return 0;
	if (!p->st.is_frame[i]) {
		p->st.is_frame[i] = true;
		p->st.nframes++;
	}
	return (uint64_t)i;
}

static Perftools__Profiles__Label *label(int64_t key, int64_t str, int64_t num)
{
	Perftools__Profiles__Label *l = malloc(sizeof(*l));

	if (l) {
		perftools__profiles__label__init(l);
		l->key = key;
		l->str = str;
		l->num = num;
	}
	return l;
}

static void free_sample(Perftools__Profiles__Sample *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_label; i++)
		free(s->label[i]);
	free(s->label);
	free(s->location_id);
	free(s->value);
	free(s);
}

static int add_row(const struct cm_stack_row *r, void *ctx)
{
	struct pp *p = ctx;
	Perftools__Profiles__Sample *s = calloc(1, sizeof(*s));
	char cause[128];
	size_t n = r->nframes + (r->cause ? 1 : 0);

	if (!s)
		goto oom;
	perftools__profiles__sample__init(s);
	s->location_id = calloc(n + 1, sizeof(*s->location_id));
	s->value = calloc(2, sizeof(*s->value));
	s->label = calloc(4, sizeof(*s->label));
	if (!s->location_id || !s->value || !s->label)
		goto oom;
	/* leaf first; off-CPU stacks end in the folded file's cause frame */
	if (r->cause) {
		snprintf(cause, sizeof(cause), "[off-cpu:%s]", r->cause);
		s->location_id[s->n_location_id++] = frame_id(p, cause);
	}
	for (size_t k = r->nframes; k-- > 0;)
		s->location_id[s->n_location_id++] = frame_id(p, r->frames[k]);
	s->n_value = 2;
	s->value[0] = r->oncpu ? (int64_t)r->weight * p->period_ns : 0;
	s->value[1] = r->oncpu ? 0 : (int64_t)r->weight;
	s->label[s->n_label++] = label(p->k_pid, 0, r->pid);
	s->label[s->n_label++] = label(p->k_tid, 0, r->tid);
	s->label[s->n_label++] = label(p->k_comm, intern(&p->st, *r->comm ? r->comm : "[unknown]"), 0);
	if (r->cause)
		s->label[s->n_label++] = label(p->k_cause, intern(&p->st, r->cause), 0);
	for (size_t i = 0; i < s->n_label; i++)
		if (!s->label[i] || s->label[i]->str < 0)
			goto oom;
	for (size_t i = 0; i < s->n_location_id; i++)
		if (!s->location_id[i])
			goto oom;
	if (p->nsamples == p->capsamples) {
		size_t nc = p->capsamples ? p->capsamples * 2 : 256;
		Perftools__Profiles__Sample **ns = realloc(p->samples, nc * sizeof(*ns));

		if (!ns)
			goto oom;
		p->samples = ns;
		p->capsamples = nc;
	}
	p->samples[p->nsamples++] = s;
	return 0;
oom:
	free_sample(s);
	p->oom = true;
	return -1;
}

static int64_t realtime_of(uint64_t mono_ns)
{
	struct timespec rt;

	clock_gettime(CLOCK_REALTIME, &rt);
	return (int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec - (int64_t)(cm_now_ns() - mono_ns);
}

/* The packed profile, gzipped (zlib's gzip wrapper), to fp; 0 or -1. */
static int write_gz(FILE *fp, const uint8_t *buf, size_t len)
{
	z_stream z = { 0 };
	uint8_t out[65536];
	int rc = 0, zr;

	/* windowBits 15 + 16: a gzip header and trailer rather than zlib's */
	if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	z.next_in = (uint8_t *)buf;
	z.avail_in = (uInt)len;	/* a profile is far below 4 GiB */
	do {
		z.next_out = out;
		z.avail_out = sizeof(out);
		zr = deflate(&z, Z_FINISH);
		if (zr == Z_STREAM_ERROR ||
		    fwrite(out, 1, sizeof(out) - z.avail_out, fp) != sizeof(out) - z.avail_out)
			rc = -1;
	} while (!rc && zr != Z_STREAM_END);
	deflateEnd(&z);
	return rc;
}

static int emit(struct pp *p, FILE *fp, const struct cm_pprof_info *info)
{
	Perftools__Profiles__Profile prof = PERFTOOLS__PROFILES__PROFILE__INIT;
	Perftools__Profiles__ValueType vt[3], *vtp[2];
	Perftools__Profiles__Function *fn = NULL, **fnp = NULL;
	Perftools__Profiles__Location *loc = NULL, **locp = NULL;
	Perftools__Profiles__Line *line = NULL, **linep = NULL;
	Perftools__Profiles__Mapping map = PERFTOOLS__PROFILES__MAPPING__INIT, *mapp = &map;
	int64_t comment[2];
	char buf[160];
	uint8_t *packed = NULL;
	size_t nf = 0, len;
	int rc = -1;

	for (int i = 0; i < 3; i++)
		perftools__profiles__value_type__init(&vt[i]);
	vt[0].type = intern(&p->st, "cpu");
	vt[0].unit = intern(&p->st, "nanoseconds");
	vt[1].type = intern(&p->st, "off_cpu");
	vt[1].unit = vt[0].unit;
	vt[2] = vt[0];		/* period_type */
	vtp[0] = &vt[0];
	vtp[1] = &vt[1];
	snprintf(buf, sizeof(buf), "contactmap %s", CM_VERSION);
	comment[0] = intern(&p->st, buf);
	snprintf(buf, sizeof(buf), "off_cpu: blocks of %llu us or longer; cpu: %u Hz samples",
		 (unsigned long long)(info->min_block_ns / 1000), info->sample_hz);
	comment[1] = intern(&p->st, buf);

	fn = calloc(p->st.nframes + 1, sizeof(*fn));
	fnp = calloc(p->st.nframes + 1, sizeof(*fnp));
	loc = calloc(p->st.nframes + 1, sizeof(*loc));
	locp = calloc(p->st.nframes + 1, sizeof(*locp));
	line = calloc(p->st.nframes + 1, sizeof(*line));
	linep = calloc(p->st.nframes + 1, sizeof(*linep));
	if (p->oom || !fn || !fnp || !loc || !locp || !line || !linep || vt[0].type < 0 ||
	    vt[0].unit < 0 || vt[1].type < 0 || comment[0] < 0 || comment[1] < 0) {
		cm_err("out of memory writing the pprof profile");
		goto out;
	}
	for (size_t i = 0; i < p->st.n; i++) {
		if (!p->st.is_frame[i])
			continue;
		perftools__profiles__function__init(&fn[nf]);
		fn[nf].id = i;
		fn[nf].name = (int64_t)i;
		fn[nf].system_name = (int64_t)i;
		perftools__profiles__line__init(&line[nf]);
		line[nf].function_id = i;
		linep[nf] = &line[nf];
		perftools__profiles__location__init(&loc[nf]);
		loc[nf].id = i;
		loc[nf].mapping_id = 1;
		loc[nf].n_line = 1;
		loc[nf].line = &linep[nf];
		fnp[nf] = &fn[nf];
		locp[nf] = &loc[nf];
		nf++;
	}
	prof.n_sample_type = 2;
	prof.sample_type = vtp;
	prof.n_sample = p->nsamples;
	prof.sample = p->samples;
	/* one mapping for every frame, saying they are symbolized already, so
	 * readers do not look for binaries to symbolize addresses in */
	map.id = 1;
	map.filename = intern(&p->st, "[symbolized by contactmap]");
	map.has_functions = true;
	prof.n_mapping = 1;
	prof.mapping = &mapp;
	prof.n_location = nf;
	prof.location = locp;
	prof.n_function = nf;
	prof.function = fnp;
	prof.n_string_table = p->st.n;
	prof.string_table = p->st.v;
	prof.time_nanos = realtime_of(info->start_ns);
	prof.duration_nanos = (int64_t)info->duration_ns;
	prof.period_type = &vt[2];
	prof.period = p->period_ns;
	prof.n_comment = 2;
	prof.comment = comment;
	prof.default_sample_type = info->which & CM_FOLD_ONCPU ? vt[0].type : vt[1].type;

	len = perftools__profiles__profile__get_packed_size(&prof);
	packed = malloc(len ? len : 1);
	if (!packed) {
		cm_err("out of memory writing the pprof profile");
		goto out;
	}
	perftools__profiles__profile__pack(&prof, packed);

	if (write_gz(fp, packed, len)) {
		cm_err("cannot compress the pprof profile (out of memory?)");
		goto out;
	}
	rc = 0;
out:
	free(packed);
	free(fn);
	free(fnp);
	free(loc);
	free(locp);
	free(line);
	free(linep);
	return rc;
}

int cm_pprof_write(struct cm_stacks *s, FILE *fp, const struct cm_pprof_info *info)
{
	struct pp p = { .period_ns = info->sample_hz ? (1000000000 + info->sample_hz / 2) / info->sample_hz : 0 };
	int rc = -1;

	/* string_table[0] is "" by the format's rule */
	if (intern(&p.st, "") == 0) {
		p.k_pid = intern(&p.st, "pid");
		p.k_tid = intern(&p.st, "tid");
		p.k_comm = intern(&p.st, "comm");
		p.k_cause = intern(&p.st, "cause");
		if (p.k_pid > 0 && p.k_tid > 0 && p.k_comm > 0 && p.k_cause > 0)
			cm_stacks_foreach(s, info->which, add_row, &p);
		else
			p.oom = true;
		rc = emit(&p, fp, info);
	} else {
		cm_err("out of memory writing the pprof profile");
	}
	for (size_t i = 0; i < p.nsamples; i++)
		free_sample(p.samples[i]);
	free(p.samples);
	for (size_t i = 0; i < p.st.n; i++)
		free(p.st.v[i]);
	free(p.st.v);
	free(p.st.slot);
	free(p.st.is_frame);
	return rc;
}
