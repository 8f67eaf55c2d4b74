/* Unwinding and symbolization against ground truth, no mocks: this process's
 * own stack (functions built without frame pointers, through a dlopen()ed
 * library whose symbols live in a separate debug file), a child that exits
 * before its addresses are named, a python3 stopped with ptrace, kallsyms,
 * C++ names and a JIT perf map. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "sym.h"
#include "check.h"

#define NAMELEN 256
#ifdef __SANITIZE_ADDRESS__
#define ASAN_NOTE " (ASan build: far slower than -O2)"
#define REPS 300
#else
#define ASAN_NOTE ""
#define REPS 2000
#endif
#define MAXF 128

/* the chain under test: compiled without frame pointers whatever CFLAGS say */
#define CHAIN __attribute__((noipa, optimize("omit-frame-pointer")))

static struct cm_user_regs cap_regs;
static unsigned char cap_stack[64 << 10];	/* static: not on the stack it copies */
static size_t cap_len;
static uint64_t stack_end;			/* end of this thread's [stack] mapping */
static int (*lib_entry)(int (*)(int), int);
static volatile int sink;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* What a BPF program would deliver: the registers at one instruction and the
 * stack above sp, taken here at the leaf of the chain. */
CHAIN static int leaf_c(int x)
{
	__asm__ volatile(
		"lea 0(%%rip), %%rax\n\t"	/* ip: the next instruction, same sp */
		"mov %%rax, %c[ip](%[r])\n\t"
		"mov %%rsp, %c[sp](%[r])\n\t"
		"mov %%rbp, %c[bp](%[r])\n\t"
		"mov %%rbx, %c[bx](%[r])\n\t"
		"mov %%r12, %c[r12](%[r])\n\t"
		"mov %%r13, %c[r13](%[r])\n\t"
		"mov %%r14, %c[r14](%[r])\n\t"
		"mov %%r15, %c[r15](%[r])\n\t"
		:
		: [r] "r"(&cap_regs), [ip] "i"(offsetof(struct cm_user_regs, ip)),
		  [sp] "i"(offsetof(struct cm_user_regs, sp)), [bp] "i"(offsetof(struct cm_user_regs, bp)),
		  [bx] "i"(offsetof(struct cm_user_regs, bx)), [r12] "i"(offsetof(struct cm_user_regs, r12)),
		  [r13] "i"(offsetof(struct cm_user_regs, r13)), [r14] "i"(offsetof(struct cm_user_regs, r14)),
		  [r15] "i"(offsetof(struct cm_user_regs, r15))
		: "rax", "memory");
	size_t n = stack_end - cap_regs.sp;
	if (n > sizeof(cap_stack))
		n = sizeof(cap_stack);
	cap_len = n;
	void *dst = cap_stack;
	const void *src = (const void *)(uintptr_t)cap_regs.sp;
	/* rep movsb, not memcpy: ASan would stop at the other frames' redzones */
	__asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
	sink = x;
	return x + 1;
}

CHAIN static int middle_b(int x)
{
	int r = leaf_c(x + 1);

	sink = r;	/* work after each call, so none becomes a tail call */
	return r + sink;
}

CHAIN static int outer_a(int x)
{
	int r = lib_entry(middle_b, x + 1);

	sink = r;
	return r + sink;
}

/* End of the mapping of pid that holds addr (0 if none). */
static uint64_t mapping_end(int pid, uint64_t addr, char *name, size_t namesz)
{
	char path[64], line[512];
	uint64_t lo, hi, end = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	if (!(f = fopen(path, "r")))
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%" SCNx64 "-%" SCNx64, &lo, &hi) == 2 && addr >= lo && addr < hi) {
			end = hi;
			if (name) {
				char *p = strchr(line, '/');
				snprintf(name, namesz, "%s", p ? p : "");
				name[strcspn(name, "\n")] = '\0';
			}
			break;
		}
	fclose(f);
	return end;
}

static bool clean_name(const char *n)
{
	for (; *n; n++)
		if (*n == ';' || (unsigned char)*n < 0x20 || (unsigned char)*n >= 0x7f)
			return false;
	return true;
}

static int nclean_failures;

static void name_stack(struct cm_sym *s, int pid, const uint64_t *ips, int n,
		       char (*names)[NAMELEN], const char *title)
{
	printf("  %s (%d frames):\n", title, n);
	for (int i = 0; i < n; i++) {
		cm_sym_user_frame(s, pid, ips[i], i > 0, names[i], NAMELEN);
		nclean_failures += !clean_name(names[i]);
		printf("    #%-2d 0x%012" PRIx64 " %s\n", i, ips[i], names[i]);
	}
}

static int find(char (*names)[NAMELEN], int n, int from, const char *want)
{
	for (int i = from; i < n; i++)
		if (!strcmp(names[i], want))
			return i;
	return -1;
}

/* each name found after the previous one; returns how many were */
static int in_order(char (*names)[NAMELEN], int n, const char *const *want, int nwant)
{
	int at = 0, k;

	for (k = 0; k < nwant; k++) {
		int i = find(names, n, at, want[k]);
		if (i < 0)
			break;
		at = i + 1;
	}
	return k;
}

static const char *const chain[] = {
	"leaf_c", "middle_b", "cmtest::Widget::poke(int (*)(int), int)",
	"lib_static_hop", "cmtest_entry", "outer_a", "main",
};
#define NCHAIN (int)(sizeof(chain) / sizeof(chain[0]))

static void test_self(struct cm_sym *s, const char *libpath)
{
	static uint64_t ips[MAXF];
	static char names[MAXF][NAMELEN];
	const char *method = NULL;
	bool trunc = true;
	int pid = getpid();

	void *h = dlopen(libpath, RTLD_NOW | RTLD_LOCAL);
	CHECK(h != NULL, "dlopen %s (%s)", libpath, h ? "ok" : dlerror());
	if (!h)
		return;
	lib_entry = (int (*)(int (*)(int), int))dlsym(h, "cmtest_entry");
	stack_end = mapping_end(pid, (uint64_t)(uintptr_t)&h, NULL, 0);
	CHECK(lib_entry && stack_end, "cmtest_entry and the stack mapping found");
	CHECK_U64(cm_sym_add_process(s, pid), 0, "cm_sym_add_process(self)");
	outer_a(1);
	CHECK(cap_len > 256, "stack snapshot of %zu bytes from sp 0x%" PRIx64, cap_len, cap_regs.sp);

	int n = cm_sym_unwind(s, pid, &cap_regs, cap_stack, cap_len, ips, MAXF, &method, &trunc);
	name_stack(s, pid, ips, n, names, "DWARF unwind of this process");
	CHECK(n > 0 && ips[0] == cap_regs.ip, "ips[0] is regs->ip");
	int got = in_order(names, n, chain, NCHAIN);
	CHECK(got == NCHAIN, "chain leaf_c > middle_b > cmtest::Widget::poke > lib_static_hop > "
	      "cmtest_entry > outer_a > main in order (%d of %d; stopped before \"%s\")",
	      got, NCHAIN, got < NCHAIN ? chain[got] : "-");
	CHECK_STR(method, "dwarf", "unwind method");
	CHECK(!trunc, "not truncated: reached the outermost frame");
	CHECK(n > 0 && !strcmp(names[n - 1], "_start"), "outermost frame is _start (\"%s\")",
	      n ? names[n - 1] : "");
	/* libc6-dbg gives libc's local symbols through /usr/lib/debug/.build-id */
	int m = find(names, n, 0, "main");
	if (m >= 0 && m + 1 < n) {
		bool dbg = !strcmp(names[m + 1], "__libc_start_call_main");
		CHECK(dbg || !strncmp(names[m + 1], "libc.so.6+0x", 12),
		      "main's caller: %s (%s)", names[m + 1],
		      dbg ? "local symbol from libc's build-id debug file" : "libc6-dbg not installed");
	}
	CHECK(find(names, n, 0, "lib_static_hop") >= 0,
	      "static function named from libcmtest.so.debug (.gnu_debuglink)");

	/* The same snapshot with only the frame-pointer chain: rbp is a general
	 * register in these functions, so the walk cannot get from leaf_c to main */
	static uint64_t fips[MAXF];
	static char fnames[MAXF][NAMELEN];
	bool ftrunc;
	int nf = cm_sym_unwind_fp(&cap_regs, cap_stack, cap_len, fips, MAXF, &ftrunc);
	name_stack(s, pid, fips, nf, fnames, "frame pointers only, same snapshot");
	int fgot = in_order(fnames, nf, chain, NCHAIN);
	CHECK(fgot < NCHAIN, "frame pointers alone lose the chain (%d of %d functions, %d frames)",
	      fgot, NCHAIN, nf);

	/* a snapshot too short for the whole stack */
	int ns = cm_sym_unwind(s, pid, &cap_regs, cap_stack, 64, ips, MAXF, &method, &trunc);
	CHECK(trunc && ns < n, "64-byte snapshot: truncated after %d frames (of %d)", ns, n);
	ns = cm_sym_unwind(s, pid, &cap_regs, cap_stack, cap_len, ips, 3, &method, &trunc);
	CHECK(ns == 3 && trunc, "max 3 frames: %d, truncated", ns);

	/* cost, for the integrator */
	int reps = REPS;
	double t0 = now_s();
	for (int i = 0; i < reps; i++)
		cm_sym_unwind(s, pid, &cap_regs, cap_stack, cap_len, ips, MAXF, NULL, NULL);
	double per = (now_s() - t0) / reps * 1e6;
	n = cm_sym_unwind(s, pid, &cap_regs, cap_stack, cap_len, ips, MAXF, NULL, NULL);
	t0 = now_s();
	char buf[NAMELEN];
	for (int i = 0; i < reps; i++)
		for (int k = 0; k < n; k++)
			cm_sym_user_frame(s, pid, ips[k], k > 0, buf, sizeof(buf));
	double sym = (now_s() - t0) / reps / n * 1e6;
	CHECK(per < 2000, "cost: %.1f us per %d-frame DWARF unwind, %.2f us per frame named%s",
	      per, n, sym, ASAN_NOTE);
	dlclose(h);
}

/* A thread: its stack is an anonymous mapping and ends in clone3. */
static void *thread_main(void *arg)
{
	stack_end = mapping_end(getpid(), (uint64_t)(uintptr_t)&arg, NULL, 0);
	outer_a(1);
	return NULL;
}

static void test_thread(struct cm_sym *s, const char *libpath)
{
	static uint64_t ips[MAXF];
	static char names[MAXF][NAMELEN];
	const char *method = NULL;
	bool trunc = true;
	pthread_t t;
	int pid = getpid();
	void *h = dlopen(libpath, RTLD_NOW | RTLD_LOCAL);

	lib_entry = h ? (int (*)(int (*)(int), int))dlsym(h, "cmtest_entry") : NULL;
	if (!lib_entry || pthread_create(&t, NULL, thread_main, NULL)) {
		CHECK(0, "thread with the chain started");
		return;
	}
	pthread_join(t, NULL);
	stack_end = mapping_end(pid, (uint64_t)(uintptr_t)&t, NULL, 0);	/* main's again */
	cm_sym_add_process(s, pid);	/* the thread's stack came after the last snapshot */
	int n = cm_sym_unwind(s, pid, &cap_regs, cap_stack, cap_len, ips, MAXF, &method, &trunc);
	name_stack(s, pid, ips, n, names, "DWARF unwind of a thread");
	static const char *const want[] = { "leaf_c", "outer_a", "thread_main", "start_thread" };
	CHECK(in_order(names, n, want, 4) == 4, "thread: leaf_c > outer_a > thread_main > start_thread");
	CHECK(!trunc && !strcmp(method, "dwarf"), "thread: %s, %s the outermost frame (%s)", method,
	      trunc ? "did not reach" : "reached", n ? names[n - 1] : "");
	dlclose(h);
}

/* JIT-like code: a stub in an anonymous executable mapping, with a frame
 * pointer and no CFI, named only by a perf map, between two CFI frames. */
static int (*jit_stub)(int (*)(int), int);

CHAIN static int jit_outer(int x)
{
	int r = jit_stub(middle_b, x + 1);

	sink = r;
	return r + sink;
}

static void test_jit(struct cm_sym *s)
{
	static const unsigned char code[] = {
		0x55,			/* push %rbp */
		0x48, 0x89, 0xe5,	/* mov %rsp,%rbp */
		0x48, 0x89, 0xf8,	/* mov %rdi,%rax */
		0x89, 0xf7,		/* mov %esi,%edi */
		0xff, 0xd0,		/* call *%rax */
		0x5d,			/* pop %rbp */
		0xc3,			/* ret */
	};
	static uint64_t ips[MAXF];
	static char names[MAXF][NAMELEN];
	char path[64];
	const char *method = NULL;
	bool trunc = true;
	int pid = getpid();
	unsigned char *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (mem == MAP_FAILED) {
		CHECK(1, "JIT stub: skipped, no anonymous executable memory (%s)", strerror(errno));
		return;
	}
	memcpy(mem, code, sizeof(code));
	jit_stub = (int (*)(int (*)(int), int))(void *)mem;
	snprintf(path, sizeof(path), "/tmp/perf-%d.map", pid);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "%" PRIx64 " %zx jit_stub\n", (uint64_t)(uintptr_t)mem, sizeof(code));
		fclose(f);
	}
	cm_sym_add_process(s, pid);
	jit_outer(1);
	int n = cm_sym_unwind(s, pid, &cap_regs, cap_stack, cap_len, ips, MAXF, &method, &trunc);
	name_stack(s, pid, ips, n, names, "DWARF, frame pointer through JIT code");
	static const char *const want[] = { "leaf_c", "middle_b", "jit_stub", "jit_outer", "main" };
	CHECK(in_order(names, n, want, 5) == 5, "chain leaf_c > middle_b > jit_stub > jit_outer > main");
	CHECK_STR(method, "mixed", "unwind method through code without CFI");
	CHECK(!trunc, "not truncated");
	unlink(path);
	munmap(mem, 4096);
}

/* A library whose file is deleted while mapped: named through map_files. */
static void test_deleted(struct cm_sym *s, const char *libpath)
{
	char dir[] = "/tmp/cmtest-XXXXXX", copy[64], cmd[PATH_MAX + 128];
	char buf[NAMELEN];

	if (!mkdtemp(dir)) {
		CHECK(0, "mkdtemp: %s", strerror(errno));
		return;
	}
	snprintf(copy, sizeof(copy), "%s/libcmtest-copy.so", dir);
	snprintf(cmd, sizeof(cmd), "cp %s %s", libpath, copy);
	if (system(cmd)) {
		CHECK(0, "%s failed", cmd);
		return;
	}
	void *h = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
	void *fn = h ? dlsym(h, "cmtest_entry") : NULL;
	unlink(copy);
	rmdir(dir);
	CHECK(fn != NULL, "dlopen a copy of libcmtest.so, then delete it");
	if (!fn)
		return;
	cm_sym_add_process(s, getpid());
	cm_sym_user(s, getpid(), (uint64_t)(uintptr_t)fn + 2, buf, sizeof(buf));
	CHECK_STR(buf, "cmtest_entry", "function in a deleted library");
	dlclose(h);
}

/* A child: its maps are captured while it lives, its addresses named after it
 * has exited and been reaped. */
static void test_child(struct cm_sym *s)
{
	char buf[NAMELEN], want[64], libcname[PATH_MAX], line[512], path[64];
	uint64_t libc_base = 0, exe_text = 0, exe_pgoff = 0;
	int pfd[2];

	Dl_info di;
	void *fn = dlsym(RTLD_DEFAULT, "clock_nanosleep");
	if (!fn || !dladdr(fn, &di)) {
		CHECK(0, "clock_nanosleep in this process's libc");
		return;
	}
	uint64_t fn_off = (uint64_t)(uintptr_t)fn - (uint64_t)(uintptr_t)di.dli_fbase;
	mapping_end(getpid(), (uint64_t)(uintptr_t)fn, libcname, sizeof(libcname));

	if (pipe2(pfd, O_CLOEXEC))
		return;
	pid_t pid = fork();
	if (!pid) {
		execl("/bin/sleep", "sleep", "0.5", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	while (read(pfd[0], buf, 1) < 0 && errno == EINTR)
		;	/* EOF: exec happened */
	close(pfd[0]);
	/* ld.so maps libc just after exec (a reservation first, then the
	 * segments): wait for its code */
	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	bool libc_text = false;
	for (int tries = 0; tries < 500 && !libc_text; tries++) {
		FILE *f = fopen(path, "r");
		libc_base = 0;
		while (f && fgets(line, sizeof(line), f)) {
			uint64_t lo, hi, off;
			char perms[8];
			if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64, &lo, &hi, perms, &off) != 4)
				continue;
			if (strstr(line, libcname) && off == 0 && !libc_base)
				libc_base = lo;
			if (strstr(line, libcname) && perms[2] == 'x')
				libc_text = true;
			if (strstr(line, "/sleep") && perms[2] == 'x') {
				exe_text = lo;
				exe_pgoff = off;
			}
		}
		if (f)
			fclose(f);
		if (!libc_text)
			usleep(1000);
	}
	CHECK(libc_base && exe_text, "child %d (/bin/sleep) mapped libc at 0x%" PRIx64, pid, libc_base);
	CHECK_U64(cm_sym_add_process(s, pid), 0, "cm_sym_add_process(child)");
	int st;
	waitpid(pid, &st, 0);
	CHECK(kill(pid, 0) == -1 && errno == ESRCH, "child exited and was reaped");
	cm_sym_user(s, pid, libc_base + fn_off + 4, buf, sizeof(buf));
	CHECK(strstr(buf, "clock_nanosleep") && !strchr(buf, '@'),
	      "libc address of the exited child: \"%s\" (want *clock_nanosleep*, no @version)", buf);
	/* /bin/sleep is stripped: its own code has no symbol, only a file offset */
	cm_sym_user(s, pid, exe_text + 0x10, buf, sizeof(buf));
	snprintf(want, sizeof(want), "sleep+0x%" PRIx64, exe_pgoff + 0x10);
	CHECK_STR(buf, want, "stripped code of the exited child");
	cm_sym_user(s, pid, 0x10, buf, sizeof(buf));
	CHECK_STR(buf, "[unknown]", "unmapped address of the exited child");
}

/* python3 (Debian builds it without frame pointers) stopped in its eval loop. */
static void test_python(struct cm_sym *s)
{
	static const char prog[] =
		"import os\n"
		"def spin():\n    os.write(1, b'r')\n    while True: pass\n"
		"def rec(n):\n    return rec(n - 1) if n else spin()\n"
		"rec(30)\n";
	static uint64_t ips[MAXF];
	static char names[MAXF][NAMELEN];
	static unsigned char stack[16 << 10];
	struct user_regs_struct ur;
	struct cm_user_regs regs;
	const char *method = NULL;
	bool trunc = true;
	int st;

	if (access("/usr/bin/python3", X_OK)) {
		CHECK(1, "python3 unwind: skipped (no /usr/bin/python3)");
		return;
	}
	int pfd[2];
	char c;
	if (pipe(pfd))
		return;
	pid_t pid = fork();
	if (!pid) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execl("/usr/bin/python3", "python3", "-c", prog, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	bool ready = read(pfd[0], &c, 1) == 1;	/* it writes 'r', then spins */
	close(pfd[0]);
	CHECK(ready, "python3 %d started and spins in its eval loop", pid);
	usleep(20000);
	if (ptrace(PTRACE_SEIZE, pid, 0, 0) || ptrace(PTRACE_INTERRUPT, pid, 0, 0) ||
	    waitpid(pid, &st, __WALL) != pid || ptrace(PTRACE_GETREGS, pid, 0, &ur)) {
		CHECK(0, "ptrace python3: %s", strerror(errno));
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		return;
	}
	/* user_regs_struct starts with pt_regs' fields in pt_regs' order */
	_Static_assert(offsetof(struct user_regs_struct, ss) == offsetof(struct cm_user_regs, ss),
		       "cm_user_regs follows pt_regs");
	memcpy(&regs, &ur, sizeof(regs));
	cm_sym_add_process(s, pid);
	uint64_t end = mapping_end(pid, regs.sp, NULL, 0);
	size_t len = end - regs.sp < sizeof(stack) ? end - regs.sp : sizeof(stack);
	struct iovec local = { stack, len }, remote = { (void *)(uintptr_t)regs.sp, len };
	CHECK(process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)len,
	      "python3 %d stopped, %zu bytes of stack read", pid, len);

	int n = cm_sym_unwind(s, pid, &regs, stack, len, ips, MAXF, &method, &trunc);
	name_stack(s, pid, ips, n, names, "DWARF unwind of python3");
	static const char *const py[] = { "_PyEval_EvalFrameDefault", "Py_BytesMain" };
	CHECK(in_order(names, n, py, 2) == 2, "python3: _PyEval_EvalFrameDefault ... Py_BytesMain");
	CHECK_STR(method, "dwarf", "python3 unwind method");
	CHECK(!trunc && n > 0 && !strcmp(names[n - 1], "_start"),
	      "python3: whole stack to _start, not truncated");
	int nf = cm_sym_unwind_fp(&regs, stack, len, ips, MAXF, NULL);
	printf("  python3: frame pointers alone give %d frames, DWARF %d\n", nf, n);

	int reps = REPS;
	double t0 = now_s();
	for (int i = 0; i < reps; i++)
		cm_sym_unwind(s, pid, &regs, stack, len, ips, MAXF, NULL, NULL);
	CHECK(1, "cost: %.1f us per %d-frame python3 unwind%s", (now_s() - t0) / reps * 1e6, n,
	      ASAN_NOTE);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

static void test_kernel(struct cm_sym *s)
{
	char line[512], name[256], buf[NAMELEN];
	uint64_t addr = 0, a;
	char t;
	FILE *f = fopen("/proc/kallsyms", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%" SCNx64 " %c %255s", &a, &t, name) == 3 &&
		    (t == 'T' || t == 't') && !strcmp(name, "schedule")) {
			addr = a;
			break;
		}
	if (f)
		fclose(f);
	if (!addr) {
		CHECK(1, "kernel symbols: skipped, /proc/kallsyms hides addresses (not root?)");
		return;
	}
	CHECK_STR(cm_sym_kernel(s, addr + 4, buf, sizeof(buf)), "schedule", "kernel schedule+4");
	CHECK_STR(cm_sym_kernel(s, addr, buf, sizeof(buf)), "schedule", "kernel schedule+0");
	CHECK_STR(cm_sym_kernel(s, 0x1000, buf, sizeof(buf)), "[unknown]", "kernel 0x1000");
}

static void test_demangle(struct cm_sym *s)
{
	char buf[NAMELEN];

	CHECK_STR(cm_sym_demangle("_ZNSt6vectorIiSaIiEE9push_backERKi", buf, sizeof(buf)),
		  "std::vector<int, std::allocator<int> >::push_back(int const&)", "demangle");
	CHECK(cm_sym_demangle("main", buf, sizeof(buf)) == NULL, "\"main\" is not mangled");
	CHECK(cm_sym_demangle("_Zgarbage", buf, sizeof(buf)) == NULL, "\"_Zgarbage\" does not demangle");
}

/* JIT code named from /tmp/perf-PID.map, with the bytes folded stacks forbid. */
static void test_perfmap(struct cm_sym *s)
{
	char path[64], buf[NAMELEN];
	int pid = getpid();
	unsigned char *code = mmap(NULL, 8192, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (code == MAP_FAILED)
		return;
	uint64_t base = (uint64_t)(uintptr_t)code;
	snprintf(path, sizeof(path), "/tmp/perf-%d.map", pid);
	FILE *f = fopen(path, "w");
	if (!f) {
		CHECK(0, "write %s: %s", path, strerror(errno));
		return;
	}
	fprintf(f, "%" PRIx64 " 40 py::jit_fn;bad\tname\n0x%" PRIx64 " 20 second_fn\n", base, base + 0x100);
	/* code freed and the memory reused: the later line is the live one */
	fprintf(f, "%" PRIx64 " 80 old_fn\n%" PRIx64 " 80 new_fn\n", base + 0x400, base + 0x400);
	fclose(f);
	cm_sym_add_process(s, pid);
	CHECK_STR(cm_sym_user(s, pid, base + 0x10, buf, sizeof(buf)), "py::jit_fn:bad?name",
		  "JIT function (';' and tab replaced)");
	CHECK_STR(cm_sym_user(s, pid, base + 0x110, buf, sizeof(buf)), "second_fn",
		  "JIT function with 0x address");
	CHECK_STR(cm_sym_user(s, pid, base + 0x420, buf, sizeof(buf)), "new_fn",
		  "JIT address reused: the later entry");
	CHECK_STR(cm_sym_user(s, pid, base + 0x200, buf, sizeof(buf)), "[unknown]",
		  "JIT region outside every entry");
	unlink(path);
	munmap(code, 8192);
}

static void test_misc(struct cm_sym *s)
{
	char buf[NAMELEN], tiny[8];

	CHECK(cm_sym_add_process(s, 0x3fffffff) == -ESRCH, "cm_sym_add_process(no such pid) = -ESRCH");
	CHECK_STR(cm_sym_user(s, 0x3fffffff, 0x401000, buf, sizeof(buf)), "[unknown]",
		  "address of a process never seen");
	cm_sym_user(s, getpid(), (uint64_t)(uintptr_t)&test_misc, tiny, sizeof(tiny));
	CHECK(memchr(tiny, '\0', sizeof(tiny)) && !strncmp(tiny, "test_mi", 7),
	      "tiny buffer: \"%s\", terminated", tiny);
	struct cm_user_regs r = { .ip = 0x1234, .sp = 0x7000, .bp = 0 };
	uint64_t ips[4];
	const char *method;
	bool trunc;
	int n = cm_sym_unwind(s, 0x3fffffff, &r, NULL, 0, ips, 4, &method, &trunc);
	CHECK(n == 1 && ips[0] == 0x1234, "unwind without a snapshot: just ip (%d frame, %s)", n, method);
}

int main(int argc, char **argv)
{
	char exe[PATH_MAX], lib[PATH_MAX + 32];
	ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (l <= 0)
		return 1;
	exe[l] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(lib, sizeof(lib), "%s/libcmtest.so", exe);
	double t0 = now_s();
	struct cm_sym *s = cm_sym_new();
	test_self(s, lib);
	test_thread(s, lib);
	test_jit(s);
	test_deleted(s, lib);
	test_child(s);
	test_python(s);
	test_kernel(s);
	test_demangle(s);
	test_perfmap(s);
	test_misc(s);
	CHECK(nclean_failures == 0, "every frame name printable, without ';'");
	struct cm_sym_stats st;
	cm_sym_get_stats(s, &st);
	printf("  caches: %u processes, %u files, %u symbol tables (%u from debug files), "
	       "%" PRIu64 " symbols, %" PRIu64 " kernel symbols, ~%" PRIu64 " KiB\n",
	       st.processes, st.files, st.symtabs, st.debug_files, st.symbols, st.kernel_symbols,
	       st.heap_bytes >> 10);
	cm_sym_free(s);
	CHECK(now_s() - t0 < 10, "whole test in %.2f s", now_s() - t0);
	return check_done();
}
