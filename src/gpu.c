// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * GPU tiers in user space: the CUPTI agent's hook (wrap mode), uprobes on the
 * CUDA libraries a process maps (attach mode, and wrap mode when the agent
 * cannot use CUPTI), reading the GPU maps back and the report's "gpu" object.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "cm.h"
#include "tracer.h"
#include "gpu.h"
#include "contactmap_gpu.h"
#include "contactmap.skel.h"

#define J_INT(o, k, v) json_object_object_add(o, k, json_object_new_int64((int64_t)(v)))
#define J_STR(o, k, v) json_object_object_add(o, k, json_object_new_string(v))

/* ---- the API table ---------------------------------------------------------- */

static const struct {
	const char *name;
	enum cm_gpu_class cls;
	int lib;
} apis[CM_GA_COUNT] = {
#define X(n, c, l) [CM_GA_##n] = { #n, CM_GPU_CLASS_##c, CM_GPU_LIB_##l },
	CM_GPU_APIS(X)
#undef X
};

const char *cm_gpu_api_name(unsigned api)
{
	return api < CM_GA_COUNT && apis[api].name ? apis[api].name : "unknown";
}

int cm_gpu_api_class(unsigned api)
{
	return api < CM_GA_COUNT ? (int)apis[api].cls : CM_GPU_CLASS_OTHER;
}

const char *cm_gpu_copy_kind_name(unsigned k)
{
	static const char *const n[CM_COPY_NKINDS] = {
		"unknown", "HtoD", "DtoH", "HtoA", "AtoH", "AtoA", "AtoD", "DtoA", "DtoD",
		"HtoH", "PtoP", "default",
	};
	return k < CM_COPY_NKINDS ? n[k] : "unknown";
}

const char *cm_gpu_mem_name(unsigned m)
{
	static const char *const n[CM_MEM_NKINDS] = {
		"unknown", "pageable", "pinned", "device", "array", "managed",
		"device_static", "managed_static",
	};
	return m < CM_MEM_NKINDS ? n[m] : "unknown";
}

/*
 * The functions probed in the uprobe tier. Every variant a library may export
 * (_v2, per-thread default stream _ptsz/_ptds) maps to its family's id.
 * barg: 1-based size argument (<< bshift); karg: cudaMemcpyKind argument;
 * kind: fixed direction; parg: host pointer argument (pinned or pageable).
 */
static const struct probe_def {
	const char *sym;
	enum cm_gpu_api api;
	unsigned char barg, bshift, karg, kind, parg;
} probes[] = {
#define L(s, a) { #s, CM_GA_##a, 0, 0, 0, 0, 0 }
#define C(s, a, kind, parg) { #s, CM_GA_##a, 3, 0, 0, CM_COPY_##kind, parg }
#define M(s, a, shift) { #s, CM_GA_##a, 3, shift, 0, 0, 0 }
#define A(s, a, barg, parg) { #s, CM_GA_##a, barg, 0, 0, 0, parg }
	L(cuLaunchKernel, cuLaunchKernel), L(cuLaunchKernel_ptsz, cuLaunchKernel),
	L(cuLaunchKernelEx, cuLaunchKernelEx), L(cuLaunchKernelEx_ptsz, cuLaunchKernelEx),
	L(cuLaunchCooperativeKernel, cuLaunchCooperativeKernel),
	L(cuLaunchCooperativeKernel_ptsz, cuLaunchCooperativeKernel),
	L(cuGraphLaunch, cuGraphLaunch), L(cuGraphLaunch_ptsz, cuGraphLaunch),
	C(cuMemcpy, cuMemcpy, DEFAULT, 0), C(cuMemcpy_ptds, cuMemcpy, DEFAULT, 0),
	C(cuMemcpyAsync, cuMemcpyAsync, DEFAULT, 0), C(cuMemcpyAsync_ptsz, cuMemcpyAsync, DEFAULT, 0),
	C(cuMemcpyHtoD_v2, cuMemcpyHtoD, HTOD, 2), C(cuMemcpyHtoD_v2_ptds, cuMemcpyHtoD, HTOD, 2),
	C(cuMemcpyHtoDAsync_v2, cuMemcpyHtoDAsync, HTOD, 2),
	C(cuMemcpyHtoDAsync_v2_ptsz, cuMemcpyHtoDAsync, HTOD, 2),
	C(cuMemcpyDtoH_v2, cuMemcpyDtoH, DTOH, 1), C(cuMemcpyDtoH_v2_ptds, cuMemcpyDtoH, DTOH, 1),
	C(cuMemcpyDtoHAsync_v2, cuMemcpyDtoHAsync, DTOH, 1),
	C(cuMemcpyDtoHAsync_v2_ptsz, cuMemcpyDtoHAsync, DTOH, 1),
	C(cuMemcpyDtoD_v2, cuMemcpyDtoD, DTOD, 0), C(cuMemcpyDtoD_v2_ptds, cuMemcpyDtoD, DTOD, 0),
	C(cuMemcpyDtoDAsync_v2, cuMemcpyDtoDAsync, DTOD, 0),
	C(cuMemcpyDtoDAsync_v2_ptsz, cuMemcpyDtoDAsync, DTOD, 0),
	/* (dst, dstCtx, src, srcCtx, bytes): device to device across GPUs. The 2D
	 * and batched copies take their sizes through pointers the probe does not
	 * follow: not probed, rather than rows without bytes */
	{ "cuMemcpyPeer", CM_GA_cuMemcpyPeer, 5, 0, 0, CM_COPY_PTOP, 0 },
	{ "cuMemcpyPeer_ptds", CM_GA_cuMemcpyPeer, 5, 0, 0, CM_COPY_PTOP, 0 },
	{ "cuMemcpyPeerAsync", CM_GA_cuMemcpyPeerAsync, 5, 0, 0, CM_COPY_PTOP, 0 },
	{ "cuMemcpyPeerAsync_ptsz", CM_GA_cuMemcpyPeerAsync, 5, 0, 0, CM_COPY_PTOP, 0 },
	M(cuMemsetD8_v2, cuMemsetD8, 0), M(cuMemsetD8_v2_ptds, cuMemsetD8, 0),
	M(cuMemsetD16_v2, cuMemsetD16, 1), M(cuMemsetD16_v2_ptds, cuMemsetD16, 1),
	M(cuMemsetD32_v2, cuMemsetD32, 2), M(cuMemsetD32_v2_ptds, cuMemsetD32, 2),
	M(cuMemsetD8Async, cuMemsetD8Async, 0), M(cuMemsetD8Async_ptsz, cuMemsetD8Async, 0),
	M(cuMemsetD16Async, cuMemsetD16Async, 1), M(cuMemsetD16Async_ptsz, cuMemsetD16Async, 1),
	M(cuMemsetD32Async, cuMemsetD32Async, 2), M(cuMemsetD32Async_ptsz, cuMemsetD32Async, 2),
	L(cuCtxSynchronize, cuCtxSynchronize), L(cuCtxSynchronize_v2, cuCtxSynchronize),
	L(cuStreamSynchronize, cuStreamSynchronize), L(cuStreamSynchronize_ptsz, cuStreamSynchronize),
	L(cuEventSynchronize, cuEventSynchronize),
	A(cuMemAlloc_v2, cuMemAlloc, 2, 0), A(cuMemAllocHost_v2, cuMemAllocHost, 2, 1),
	A(cuMemHostAlloc, cuMemHostAlloc, 2, 1), A(cuMemAllocManaged, cuMemAllocManaged, 2, 0),
	A(cuMemAllocAsync, cuMemAllocAsync, 2, 0), A(cuMemAllocAsync_ptsz, cuMemAllocAsync, 2, 0),
	A(cuMemHostRegister_v2, cuMemHostRegister, 2, 1),
	A(cuMemFree_v2, cuMemFree, 0, 0), A(cuMemFreeHost, cuMemFreeHost, 0, 1),
	A(cuMemFreeAsync, cuMemFreeAsync, 0, 0), A(cuMemFreeAsync_ptsz, cuMemFreeAsync, 0, 0),
	A(cuMemHostUnregister, cuMemHostUnregister, 0, 1),

	L(cudaLaunchKernel, cudaLaunchKernel), L(cudaLaunchKernel_ptsz, cudaLaunchKernel),
	L(cudaLaunchKernelExC, cudaLaunchKernelExC), L(cudaLaunchKernelExC_ptsz, cudaLaunchKernelExC),
	L(cudaLaunchCooperativeKernel, cudaLaunchCooperativeKernel),
	L(cudaLaunchCooperativeKernel_ptsz, cudaLaunchCooperativeKernel),
	L(cudaGraphLaunch, cudaGraphLaunch), L(cudaGraphLaunch_ptsz, cudaGraphLaunch),
	{ "cudaMemcpy", CM_GA_cudaMemcpy, 3, 0, 4, 0, 2 },
	{ "cudaMemcpy_ptds", CM_GA_cudaMemcpy, 3, 0, 4, 0, 2 },
	{ "cudaMemcpyAsync", CM_GA_cudaMemcpyAsync, 3, 0, 4, 0, 2 },
	{ "cudaMemcpyAsync_ptsz", CM_GA_cudaMemcpyAsync, 3, 0, 4, 0, 2 },
	{ "cudaMemcpyPeer", CM_GA_cudaMemcpyPeer, 5, 0, 0, CM_COPY_PTOP, 0 },
	{ "cudaMemcpyPeerAsync", CM_GA_cudaMemcpyPeerAsync, 5, 0, 0, CM_COPY_PTOP, 0 },
	M(cudaMemset, cudaMemset, 0), M(cudaMemset_ptds, cudaMemset, 0),
	M(cudaMemsetAsync, cudaMemsetAsync, 0), M(cudaMemsetAsync_ptsz, cudaMemsetAsync, 0),
	L(cudaDeviceSynchronize, cudaDeviceSynchronize),
	L(cudaStreamSynchronize, cudaStreamSynchronize),
	L(cudaStreamSynchronize_ptsz, cudaStreamSynchronize),
	L(cudaEventSynchronize, cudaEventSynchronize),
	A(cudaMalloc, cudaMalloc, 2, 0), A(cudaMallocHost, cudaMallocHost, 2, 1),
	A(cudaHostAlloc, cudaHostAlloc, 2, 1), A(cudaMallocManaged, cudaMallocManaged, 2, 0),
	A(cudaMallocAsync, cudaMallocAsync, 2, 0), A(cudaMallocAsync_ptsz, cudaMallocAsync, 2, 0),
	A(cudaHostRegister, cudaHostRegister, 2, 1),
	A(cudaFree, cudaFree, 0, 0), A(cudaFreeHost, cudaFreeHost, 0, 1),
	A(cudaFreeAsync, cudaFreeAsync, 0, 0), A(cudaFreeAsync_ptsz, cudaFreeAsync, 0, 0),
	A(cudaHostUnregister, cudaHostUnregister, 0, 1),
#undef L
#undef C
#undef M
#undef A
};
#define NPROBES (sizeof(probes) / sizeof(probes[0]))

/* ---- state ------------------------------------------------------------------ */

struct gpu_lib {
	pid_t pid;
	dev_t dev;
	ino_t ino;
};

struct cm_gpu_state {
	struct bpf_link **links;	/* perf-event uprobes (kernels before 6.6) */
	size_t nlinks, linkcap;
	int *fds;			/* uprobe_multi links */
	size_t nfds, fdcap;
	bool multi;
	size_t ready_off;		/* the agent's contactmap_gpu_ready() */
	struct gpu_lib *libs;		/* (pid, file) pairs already probed */
	size_t nlibs, libcap;
	pid_t *watch;			/* processes rescanned for new libraries */
	size_t nwatch;
	uint64_t last_scan_ns;
	bool watch_wrapped;		/* wrap mode without the agent: every traced process */
	bool watched;			/* some process was watched */
	int epfd;			/* what the run loop polls: the ring buffer, and */
	int timerfd;			/* the rescan period while watching wrapped processes */
	struct ring_buffer *rb;
	char agent[PATH_MAX];		/* the agent injected in wrap mode, "" if none */
	enum cm_gpu_mode mode;
	unsigned probes;		/* uprobes attached (entry + return = 2) */
	unsigned requests;		/* agents that asked for the uprobe tier */
};

static int push_link(struct cm_gpu_state *g, struct bpf_link *l)
{
	if (g->nlinks == g->linkcap) {
		size_t cap = g->linkcap ? g->linkcap * 2 : 64;
		struct bpf_link **n = realloc(g->links, cap * sizeof(*n));

		if (!n)
			return -1;
		g->links = n;
		g->linkcap = cap;
	}
	g->links[g->nlinks++] = l;
	return 0;
}

static int push_fd(struct cm_gpu_state *g, int fd)
{
	if (g->nfds == g->fdcap) {
		size_t cap = g->fdcap ? g->fdcap * 2 : 16;
		int *n = realloc(g->fds, cap * sizeof(*n));

		if (!n)
			return -1;
		g->fds = n;
		g->fdcap = cap;
	}
	g->fds[g->nfds++] = fd;
	return 0;
}

/*
 * BPF_LINK_CREATE of a uprobe_multi link, by hand: libbpf 1.1 and the build
 * machine's <linux/bpf.h> predate it. The layout is union bpf_attr's
 * link_create with its uprobe_multi member (Linux 6.6).
 */
struct link_create_uprobe_multi {
	__u32 prog_fd, target_fd, attach_type, flags;
	__u64 path, offsets, ref_ctr_offsets, cookies;
	__u32 cnt, multi_flags, pid, pad;
};
#define CM_BPF_F_UPROBE_MULTI_RETURN 1

static int link_uprobe_multi(struct bpf_program *prog, const char *path, const unsigned long *offs,
			     const __u64 *cookies, unsigned cnt, bool ret, pid_t pid)
{
	struct link_create_uprobe_multi a;
	int fd;

	memset(&a, 0, sizeof(a));
	a.prog_fd = bpf_program__fd(prog);
	a.attach_type = CM_BPF_TRACE_UPROBE_MULTI;
	a.path = (__u64)(uintptr_t)path;
	a.offsets = (__u64)(uintptr_t)offs;
	a.cookies = (__u64)(uintptr_t)cookies;
	a.cnt = cnt;
	a.multi_flags = ret ? CM_BPF_F_UPROBE_MULTI_RETURN : 0;
	a.pid = pid > 0 ? (__u32)pid : 0;
	fd = (int)syscall(__NR_bpf, BPF_LINK_CREATE, &a, sizeof(a));
	return fd < 0 ? -errno : fd;
}

/* One or many probes of one program on one file, whichever way this kernel has. */
static int attach_probes(struct cm_tracer *tr, struct bpf_program *prog, pid_t pid, const char *path,
			 const unsigned long *offs, const __u64 *cookies, unsigned cnt, bool ret)
{
	struct cm_gpu_state *g = tr->gpu;
	unsigned n = 0;

	if (!cnt)
		return 0;
	if (g->multi) {
		int fd = link_uprobe_multi(prog, path, offs, cookies, cnt, ret, pid);

		if (fd < 0) {
			cm_info("GPU: uprobe_multi link on %s: %s", path, strerror(-fd));
			return fd;
		}
		if (push_fd(g, fd)) {
			close(fd);
			return -ENOMEM;
		}
		return (int)cnt;
	}
	for (unsigned i = 0; i < cnt; i++) {
		LIBBPF_OPTS(bpf_uprobe_opts, uo, .bpf_cookie = cookies[i], .retprobe = ret);
		struct bpf_link *l = bpf_program__attach_uprobe_opts(prog, pid > 0 ? pid : -1, path,
								     offs[i], &uo);

		if (!l) {
			cm_info("GPU: uprobe at %s+0x%lx: %s", path, offs[i], strerror(errno));
			continue;
		}
		if (push_link(g, l)) {
			bpf_link__destroy(l);
			return -ENOMEM;
		}
		n++;
	}
	return (int)n;
}

/* ---- ELF symbols --------------------------------------------------------------- */

/*
 * File offsets of the probed functions in the library at path (what a uprobe
 * is attached at): st_value moved from its section's address to its section's
 * file offset. Fills off[NPROBES] (0 = absent); returns how many were found.
 */
static int resolve_probes(const char *path, size_t *off)
{
	Elf *elf = NULL;
	Elf_Scn *scn = NULL;
	int fd, found = 0;

	memset(off, 0, NPROBES * sizeof(*off));
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf)
		goto out;
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB))
			continue;
		data = elf_getdata(scn, NULL);
		for (size_t i = 0; data && sh.sh_entsize && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			GElf_Shdr tsh;
			Elf_Scn *tscn;
			const char *name;

			if (!gelf_getsym(data, (int)i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
			    sym.st_shndx == SHN_UNDEF || !sym.st_value)
				continue;
			name = elf_strptr(elf, sh.sh_link, sym.st_name);
			if (!name || name[0] != 'c' || name[1] != 'u')
				continue;
			tscn = elf_getscn(elf, sym.st_shndx);
			if (!tscn || !gelf_getshdr(tscn, &tsh))
				continue;
			for (size_t k = 0; k < NPROBES; k++) {
				if (!off[k] && !strcmp(name, probes[k].sym)) {
					off[k] = sym.st_value - tsh.sh_addr + tsh.sh_offset;
					found++;
					break;
				}
			}
		}
	}
out:
	if (elf)
		elf_end(elf);
	close(fd);
	return found;
}

/* The offset of one symbol (any name) in path; 0 if absent. */
static size_t symbol_offset(const char *path, const char *name)
{
	Elf *elf = NULL;
	Elf_Scn *scn = NULL;
	size_t off = 0;
	int fd;

	if (elf_version(EV_CURRENT) == EV_NONE)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	while (elf && !off && (scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh, tsh;
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB))
			continue;
		data = elf_getdata(scn, NULL);
		for (size_t i = 0; data && sh.sh_entsize && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			const char *n;
			Elf_Scn *tscn;

			if (!gelf_getsym(data, (int)i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
			    sym.st_shndx == SHN_UNDEF)
				continue;
			n = elf_strptr(elf, sh.sh_link, sym.st_name);
			if (!n || strcmp(n, name))
				continue;
			tscn = elf_getscn(elf, sym.st_shndx);
			if (tscn && gelf_getshdr(tscn, &tsh))
				off = sym.st_value - tsh.sh_addr + tsh.sh_offset;
			break;
		}
	}
	if (elf)
		elf_end(elf);
	close(fd);
	return off;
}

/* ---- uprobe tier ------------------------------------------------------------------ */

/* libcuda.so*, libcudart.so* (the names CUDA's libraries have in any install) */
static bool is_cuda_lib(const char *path)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	return !strncmp(base, "libcuda.so", 10) || !strncmp(base, "libcudart.so", 12);
}

static int attach_lib(struct cm_tracer *tr, pid_t pid, const char *path)
{
	struct cm_gpu_state *g = tr->gpu;
	size_t off[NPROBES];
	unsigned long offs[NPROBES + 1];
	__u64 cookies[NPROBES];
	unsigned cnt = 0;
	int in, out;

	if (resolve_probes(path, off) <= 0) {
		cm_info("GPU: no CUDA functions to probe in %s", path);
		return 0;
	}
	/*
	 * cuCtxSynchronize last: a test program that waits for the int3 there
	 * (gpu_app --wait-probes) then finds the others in place. Entries go
	 * in before returns; a call caught between the two is dropped by
	 * gpu_api_enter's stack check, never left open.
	 */
	for (size_t i = 0; i <= NPROBES; i++) {
		size_t k = i;

		if (i < NPROBES && !strcmp(probes[i].sym, "cuCtxSynchronize"))
			continue;
		if (i == NPROBES)
			for (k = 0; k < NPROBES && strcmp(probes[k].sym, "cuCtxSynchronize"); k++)
				;
		if (k >= NPROBES || !off[k])
			continue;
		offs[cnt] = off[k];
		cookies[cnt++] = CM_GPU_COOKIE(probes[k].api, apis[probes[k].api].cls, probes[k].barg,
					       probes[k].bshift, probes[k].karg, probes[k].kind,
					       probes[k].parg);
	}
	in = attach_probes(tr, tr->skel->progs.gpu_api_enter, pid, path, offs, cookies, cnt, false);
	out = in > 0 ? attach_probes(tr, tr->skel->progs.gpu_api_exit, pid, path, offs, cookies, cnt, true) : 0;
	if (in <= 0 || out <= 0) {
		cm_warn("cannot probe the CUDA functions in %s (%s): GPU calls there are not traced",
			path, strerror(in < 0 ? -in : out < 0 ? -out : ENOENT));
		return 0;
	}
	g->probes += (unsigned)(in + out);
	cm_info("GPU: %u functions probed in %s for pid %d", cnt, path, pid);
	return (int)cnt;
}

/* Probes the CUDA libraries pid maps now and has not had probed yet. */
int cm_gpu_attach_pid(struct cm_tracer *tr, pid_t pid)
{
	struct cm_gpu_state *g = tr->gpu;
	char maps[64], line[PATH_MAX + 256], (*paths)[PATH_MAX] = NULL;
	size_t npaths = 0;
	int n = 0;
	FILE *fp;

	if (!g)
		return 0;
	snprintf(maps, sizeof(maps), "/proc/%d/maps", pid);
	fp = fopen(maps, "re");
	if (!fp)
		return -1;
	while (fgets(line, sizeof(line), fp)) {
		char *path = strchr(line, '/'), (*np)[PATH_MAX];
		bool dup = false;

		if (!path)
			continue;
		path[strcspn(path, "\n")] = 0;
		if (!is_cuda_lib(path) || strlen(path) >= PATH_MAX - 32)
			continue;
		for (size_t i = 0; i < npaths; i++)
			dup |= !strcmp(paths[i], path);
		if (dup || !(np = realloc(paths, (npaths + 1) * sizeof(*paths))))
			continue;
		paths = np;
		snprintf(paths[npaths++], PATH_MAX, "%s", path);
	}
	fclose(fp);
	/* the runtime first, then the driver, whose cuCtxSynchronize is the
	 * last probe placed (see attach_lib) */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < npaths; i++) {
			const char *base = strrchr(paths[i], '/') + 1;
			char root[PATH_MAX + 64];
			struct stat st;
			bool seen = false;

			if ((pass == 0) != !strncmp(base, "libcudart", 9))
				continue;
			/* through the process's root: the file it maps (containers) */
			snprintf(root, sizeof(root), "/proc/%d/root%s", pid, paths[i]);
			if (stat(root, &st))
				continue;
			for (size_t k = 0; k < g->nlibs; k++)
				if (g->libs[k].pid == pid && g->libs[k].dev == st.st_dev &&
				    g->libs[k].ino == st.st_ino)
					seen = true;
			if (seen)
				continue;
			if (g->nlibs == g->libcap) {
				size_t cap = g->libcap ? g->libcap * 2 : 16;
				struct gpu_lib *nl = realloc(g->libs, cap * sizeof(*nl));

				if (!nl)
					break;
				g->libs = nl;
				g->libcap = cap;
			}
			g->libs[g->nlibs++] = (struct gpu_lib){ pid, st.st_dev, st.st_ino };
			if (attach_lib(tr, pid, root) > 0)
				n++;
		}
	}
	free(paths);
	return n;
}

void cm_gpu_watch_pid(struct cm_tracer *tr, pid_t pid)
{
	struct cm_gpu_state *g = tr->gpu;
	pid_t *w;

	if (!g || g->mode == CM_GPU_OFF || g->mode == CM_GPU_CUPTI)
		return;
	for (size_t i = 0; i < g->nwatch; i++)
		if (g->watch[i] == pid)
			return;
	w = realloc(g->watch, (g->nwatch + 1) * sizeof(*w));
	if (!w)
		return;
	g->watch = w;
	g->watch[g->nwatch++] = pid;
	g->watched = true;
	cm_gpu_attach_pid(tr, pid);
}

static int on_gpu_event(void *ctx, void *data, size_t size)
{
	struct cm_tracer *tr = ctx;
	const struct cm_gpu_event *ev = data;

	if (size < sizeof(*ev))
		return 0;
	tr->gpu->requests++;
	if (tr->gpu->mode == CM_GPU_CUPTI) {
		cm_info("GPU: pid %u cannot use CUPTI (%s); --gpu=cupti: no uprobes",
			ev->pid, cm_gpu_status_name(ev->status));
		return 0;
	}
	cm_info("GPU: pid %u: %s; probing its CUDA libraries", ev->pid, cm_gpu_status_name(ev->status));
	if (cm_gpu_attach_pid(tr, ev->pid) <= 0)
		cm_info("GPU: pid %u maps no CUDA library to probe", ev->pid);
	/* the agent waits for an int3 on its contactmap_gpu_ready(): all set */
	if (tr->gpu->agent[0] && tr->gpu->ready_off) {
		unsigned long off = tr->gpu->ready_off;
		__u64 cookie = 0;

		if (attach_probes(tr, tr->skel->progs.gpu_hook, (pid_t)ev->pid, tr->gpu->agent, &off,
				  &cookie, 1, false) <= 0)
			cm_info("GPU: cannot signal the agent of pid %u; it goes on after its timeout", ev->pid);
	}
	return 0;
}

int cm_gpu_poll_fd(struct cm_tracer *tr)
{
	struct cm_gpu_state *g = tr->gpu;

	if (!g)
		return -1;
	return g->epfd >= 0 ? g->epfd : g->rb ? ring_buffer__epoll_fd(g->rb) : -1;
}

/* The traced processes (their leaders' bits in traced_tids) are watched too. */
static void watch_traced(struct cm_tracer *tr)
{
	DIR *d = opendir("/proc");
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);

		if (*end || pid <= 0 || (size_t)pid / 64 >= tr->tid_bits_len / sizeof(uint64_t) ||
		    !(__atomic_load_n(&tr->tid_bits[pid / 64], __ATOMIC_RELAXED) & (1ULL << (pid % 64))))
			continue;
		cm_gpu_watch_pid(tr, (pid_t)pid);
	}
	if (d)
		closedir(d);
}

/* Serves agents' requests for the uprobe tier; rescans watched processes
 * for CUDA libraries loaded since: every 500 ms in attach mode, every
 * WRAP_SCAN_MS in wrap mode without the agent (libcudart opens libcuda only
 * at the program's first CUDA call, so what it calls first is missed). */
#define WRAP_SCAN_MS 100
void cm_gpu_poll(struct cm_tracer *tr)
{
	struct cm_gpu_state *g = tr->gpu;
	uint64_t ticks;

	if (!g)
		return;
	if (g->rb)
		ring_buffer__consume(g->rb);
	if (g->timerfd >= 0 && read(g->timerfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		cm_info("GPU: rescan timer: %s", strerror(errno));
	if ((g->nwatch || g->watch_wrapped) &&
	    cm_now_ns() - g->last_scan_ns > (g->watch_wrapped ? WRAP_SCAN_MS - 5 : 500) * 1000000ULL) {
		g->last_scan_ns = cm_now_ns();
		if (g->watch_wrapped)
			watch_traced(tr);
		for (size_t i = 0; i < g->nwatch;) {
			/* gone (its maps unreadable): forget it, the pid may come back */
			if (cm_gpu_attach_pid(tr, g->watch[i]) < 0 && kill(g->watch[i], 0) && errno == ESRCH) {
				g->watch[i] = g->watch[--g->nwatch];
				continue;
			}
			i++;
		}
	}
}

/*
 * Wrap mode without the agent (not installed, or CUDA_INJECTION64_PATH taken
 * by another tool): no agent will ask for uprobes, so the wrapped processes'
 * mappings are watched for CUDA libraries, as attach mode does. The run loop
 * polls g->epfd, which a timerfd makes readable every WRAP_SCAN_MS.
 */
static void watch_wrapped(struct cm_tracer *tr)
{
	struct cm_gpu_state *g = tr->gpu;
	struct itimerspec its = { .it_interval.tv_nsec = WRAP_SCAN_MS * 1000000L,
				  .it_value.tv_nsec = WRAP_SCAN_MS * 1000000L };
	struct epoll_event ev = { .events = EPOLLIN };

	if (g->mode == CM_GPU_CUPTI)
		return;
	g->watch_wrapped = true;
	g->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (g->timerfd < 0 || g->epfd < 0 || timerfd_settime(g->timerfd, 0, &its, NULL) ||
	    epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->timerfd, &ev)) {
		cm_warn("GPU: no rescan timer (%s): CUDA libraries of wrapped programs are probed only "
			"when something else wakes contactmap", strerror(errno));
		return;
	}
	cm_info("GPU: no CUPTI agent: the wrapped processes' CUDA libraries get uprobes as they map them");
}

/* ---- set-up --------------------------------------------------------------------------- */

/* The agent next to the binary (.output/), or where `make install` puts it. */
static bool find_agent(char *out, size_t sz)
{
	char exe[PATH_MAX], dir[PATH_MAX];
	const char *env = getenv("CONTACTMAP_CUPTI_AGENT");
	ssize_t n;

	if (env && *env) {
		if (!realpath(env, out) || access(out, R_OK)) {
			cm_warn("CONTACTMAP_CUPTI_AGENT=%s: %s", env, strerror(errno));
			return false;
		}
		return true;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return false;
	exe[n] = 0;
	snprintf(dir, sizeof(dir), "%s", dirname(exe));
	const char *cands[] = { "%s/libcontactmap-cupti.so", "%s/../lib/contactmap/libcontactmap-cupti.so" };
	for (size_t i = 0; i < 2; i++) {
		char p[PATH_MAX + 64];

		snprintf(p, sizeof(p), cands[i], dir);
		if (!access(p, R_OK) && realpath(p, out))
			return true;
	}
	return false;
}

bool cm_gpu_agent_found(void)
{
	char p[PATH_MAX];

	return find_agent(p, sizeof(p));
}

int cm_gpu_start(struct cm_tracer *tr, const struct cm_tracer_opts *o)
{
	struct cm_gpu_state *g;

	if (!tr->feat.gpu || o->gpu_mode == CM_GPU_OFF)
		return 0;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -1;
	tr->gpu = g;
	g->mode = o->gpu_mode;
	g->multi = tr->feat.uprobe_multi;
	g->timerfd = -1;
	g->epfd = epoll_create1(EPOLL_CLOEXEC);
	g->rb = ring_buffer__new(bpf_map__fd(tr->skel->maps.gpu_events), on_gpu_event, tr, NULL);
	if (!g->rb)
		cm_info("GPU: no ring buffer (%s): agents cannot ask for uprobes", strerror(errno));
	if (g->rb && g->epfd >= 0) {
		struct epoll_event ev = { .events = EPOLLIN };

		if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, ring_buffer__epoll_fd(g->rb), &ev))
			cm_info("GPU: cannot poll the ring buffer (%s)", strerror(errno));
	}
	return 0;
}

int cm_gpu_wrap_prepare(struct cm_tracer *tr)
{
	struct cm_gpu_state *g = tr->gpu;
	const char *prev = getenv("CUDA_INJECTION64_PATH");
	unsigned long off;
	__u64 cookie = 0;
	int err;

	if (!g)
		return 0;
	if (!find_agent(g->agent, sizeof(g->agent))) {
		g->agent[0] = 0;
		cm_info("GPU: the CUPTI agent libcontactmap-cupti.so is not installed next to contactmap: no device times for wrapped CUDA programs");
		watch_wrapped(tr);
		return 0;
	}
	if (prev && *prev && strcmp(prev, g->agent)) {
		cm_warn("CUDA_INJECTION64_PATH is already set (%s): contactmap's CUPTI agent is not injected, %s", prev,
			g->mode == CM_GPU_CUPTI ? "GPU work is not traced" : "GPU calls are seen through uprobes");
		g->agent[0] = 0;
		watch_wrapped(tr);
		return 0;
	}
	off = symbol_offset(g->agent, CM_GPU_HOOK_SYMBOL);
	if (!off) {
		cm_warn("%s has no %s(): not contactmap's agent? GPU calls are seen through uprobes only", g->agent, CM_GPU_HOOK_SYMBOL);
		g->agent[0] = 0;
		watch_wrapped(tr);
		return 0;
	}
	g->ready_off = symbol_offset(g->agent, "contactmap_gpu_ready");
	/* every process (-1): a wrapped program's children load the agent too;
	 * the program keeps to traced threads */
	err = attach_probes(tr, tr->skel->progs.gpu_hook, -1, g->agent, &off, &cookie, 1, false);
	if (err == -ENOMEM)
		return -1;
	if (err <= 0) {
		cm_warn("cannot attach to the CUPTI agent's hook (%s): GPU calls are seen through uprobes only",
			strerror(err < 0 ? -err : errno));
		g->agent[0] = 0;
		watch_wrapped(tr);
	}
	return 0;
}

/* In the child, before exec: what makes libcuda load the agent. */
void cm_gpu_child_env(struct cm_tracer *tr)
{
	struct cm_gpu_state *g = tr->gpu;

	if (!g || !g->agent[0])
		return;
	setenv("CUDA_INJECTION64_PATH", g->agent, 1);
	/* tells the agent that contactmap reads its hook, and the tier asked for */
	setenv("CONTACTMAP_GPU", g->mode == CM_GPU_UPROBES ? "uprobes" : "cupti", 1);
}

void cm_gpu_detach(struct cm_tracer *tr)
{
	struct cm_gpu_state *g = tr->gpu;

	if (!g)
		return;
	if (g->rb)
		ring_buffer__consume(g->rb);
	for (size_t i = 0; i < g->nlinks; i++)
		bpf_link__destroy(g->links[i]);
	g->nlinks = 0;
	for (size_t i = 0; i < g->nfds; i++)
		close(g->fds[i]);
	g->nfds = 0;
}

void cm_gpu_close(struct cm_tracer *tr)
{
	struct cm_gpu_state *g = tr->gpu;

	if (!g)
		return;
	cm_gpu_detach(tr);
	ring_buffer__free(g->rb);
	if (g->timerfd >= 0)
		close(g->timerfd);
	if (g->epfd >= 0)
		close(g->epfd);
	free(g->links);
	free(g->fds);
	free(g->libs);
	free(g->watch);
	free(g);
	tr->gpu = NULL;
}

/* ---- reading back ------------------------------------------------------------------ */

static int read_map(int fd, size_t ksz, size_t vsz, void **keys, void **vals, size_t *n)
{
	char prev[64], next[64];
	size_t cap = 0;
	bool first = true;

	*keys = *vals = NULL;
	*n = 0;
	for (;;) {
		if (bpf_map_get_next_key(fd, first ? NULL : prev, next))
			break;
		first = false;
		memcpy(prev, next, ksz);
		if (*n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			void *nk = realloc(*keys, nc * ksz), *nv;

			if (!nk)
				return -1;
			*keys = nk;
			nv = realloc(*vals, nc * vsz);
			if (!nv)
				return -1;
			*vals = nv;
			cap = nc;
		}
		if (!bpf_map_lookup_elem(fd, next, (char *)*vals + *n * vsz)) {
			memcpy((char *)*keys + *n * ksz, next, ksz);
			(*n)++;
		}
	}
	return 0;
}

int cm_gpu_read(struct cm_tracer *tr, struct cm_snapshot *s)
{
	struct contactmap_bpf *skel = tr->skel;

	s->gpu_loaded = tr->feat.gpu;
	if (!tr->feat.gpu)
		return 0;
	s->gpu_counters = skel->bss->gpu_counters;
	s->gpu_probes = tr->gpu ? tr->gpu->probes : 0;
	s->gpu_agent = tr->gpu && tr->gpu->agent[0];
	if (read_map(bpf_map__fd(skel->maps.gpu_api), sizeof(struct cm_gpu_api_key),
		     sizeof(struct cm_gpu_api_stat), (void **)&s->gapi_keys, (void **)&s->gapi, &s->ngapi) ||
	    read_map(bpf_map__fd(skel->maps.gpu_kern), sizeof(struct cm_gpu_kern_key),
		     sizeof(struct cm_gpu_kern_stat), (void **)&s->gkern_keys, (void **)&s->gkern, &s->ngkern) ||
	    read_map(bpf_map__fd(skel->maps.gpu_copy), sizeof(struct cm_gpu_copy_key),
		     sizeof(struct cm_gpu_copy_stat), (void **)&s->gcopy_keys, (void **)&s->gcopy, &s->ngcopy) ||
	    read_map(bpf_map__fd(skel->maps.gpu_procs), sizeof(uint32_t),
		     sizeof(struct cm_gpu_proc), (void **)&s->gproc_pids, (void **)&s->gproc, &s->ngproc))
		return -1;
	return 0;
}

/* The run's GPU set-up: what was loaded, injected and attached. */
json_object *cm_gpu_report_json(const struct cm_tracer *tr, const struct cm_snapshot *s)
{
	json_object *o = json_object_new_object();
	const char *mode[] = { "auto", "off", "cupti", "uprobes" };
	const struct cm_gpu_state *g = tr->gpu;

	json_object_object_add(o, "programs", json_object_new_boolean(tr->feat.gpu));
	if (!tr->feat.gpu && tr->feat.gpu_error[0])
		J_STR(o, "error", tr->feat.gpu_error);
	J_STR(o, "mode", g ? mode[g->mode] : "off");
	json_object_object_add(o, "agent", json_object_new_boolean(s->gpu_agent));
	if (g && g->agent[0])
		J_STR(o, "agent_path", g->agent);
	J_INT(o, "uprobes_attached", s->gpu_probes);
	J_INT(o, "uprobe_requests", g ? g->requests : 0);
	/* where uprobes come from without an agent's request */
	J_STR(o, "watch", !g ? "none" : g->watch_wrapped ? "wrapped" : g->watched ? "attached" : "none");
	return o;
}
