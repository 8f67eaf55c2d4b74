/* The procfs tier's pure parts: /proc parsers, the cause of a sample, the
 * cputime_adjust split and the exact apportioning of off-CPU time. */
#include <stdlib.h>
#include "cm.h"
#include "check.h"
#include "contactmap.h"
#include "procfs.h"

static void stat_lines(void)
{
	struct cm_pf_stat st;
	/* a real line of /proc/PID/stat, with a comm of spaces and parentheses */
	const char *s = "4242 (a (b) c) S 4200 4242 4200 0 -1 4194560 1234 77 5 1 250 36 3 2 20 0 3 0 "
			"98765 12345678 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 7 0 0 "
			"0 0 0 0 0 0 0 256\n";

	CHECK(cm_pf_parse_stat(s, &st) == 0, "a stat line parses");
	CHECK_STR(st.comm, "a (b) c", "comm up to the last parenthesis");
	CHECK(st.state == 'S', "state S");
	CHECK_U64(st.ppid, 4200, "ppid");
	CHECK_U64(st.minflt, 1234, "minflt");
	CHECK_U64(st.cminflt, 77, "cminflt");
	CHECK_U64(st.majflt, 5, "majflt");
	CHECK_U64(st.utime, 250, "utime");
	CHECK_U64(st.stime, 36, "stime");
	CHECK_U64(st.num_threads, 3, "num_threads");
	CHECK_U64(st.starttime, 98765, "starttime");
	CHECK_U64(st.blkio_ticks, 7, "delayacct_blkio_ticks");
	CHECK(st.has_exit_code && st.exit_code == 256, "exit_code (field 52)");
	CHECK(cm_pf_parse_stat("12 (x) R 1 2 3", &st) != 0, "a short line is refused");
	CHECK(cm_pf_parse_stat("12 x R 1", &st) != 0, "no parentheses is refused");
	CHECK(cm_pf_parse_stat("12 (\x1b[31m) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0", &st) == 0 &&
	      !strchr(st.comm, '\x1b'), "an escape in comm is sanitized");
}

static void other_files(void)
{
	uint64_t a, b, c;
	uid_t r, e;
	struct cm_pf_io io;

	CHECK(cm_pf_parse_schedstat("123456789 42 7\n", &a, &b, &c) == 0 && a == 123456789 && b == 42 && c == 7,
	      "schedstat: exec, run delay, arrivals");
	CHECK(cm_pf_parse_schedstat("garbage", &a, &b, &c) != 0, "bad schedstat is refused");
	CHECK(cm_pf_parse_switches("Name:\tx\nvoluntary_ctxt_switches:\t15\nnonvoluntary_ctxt_switches:\t3\n", &a, &b) == 0 &&
	      a == 15 && b == 3, "switches from status (the key that contains the other is told apart)");
	CHECK(cm_pf_parse_uids("Name:\tx\nUid:\t1000\t1001\t1000\t1000\n", &r, &e) == 0 && r == 1000 && e == 1001,
	      "real and effective uid");
	CHECK(cm_pf_parse_io("rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 0\n"
			     "cancelled_write_bytes: 0\n", &io) == 0 && io.rchar == 10 && io.syscw == 4 &&
	      io.read_bytes == 4096, "io");
	CHECK_U64(cm_pf_parse_syscall("202 0x7f 0x80 0x0 0x0 0x0 0x0 0x7ffd 0x7f12\n"), 202, "syscall nr");
	CHECK(cm_pf_parse_syscall("-1 0x7ffd 0x7f12\n") == CM_PF_SYS_NONE, "blocked outside a syscall");
	CHECK(cm_pf_parse_syscall("running\n") == CM_PF_SYS_RUNNING, "running");
	CHECK(cm_pf_parse_syscall("") == CM_PF_SYS_BAD, "empty is bad");
}

static void causes(void)
{
	int futex = cm_syscall_nr("futex"), rd = cm_syscall_nr("read");

	CHECK(cm_pf_classify('S', futex, "futex_wait_queue") == (uint32_t)futex, "S in futex: syscall:futex");
	CHECK(cm_pf_classify('D', rd, "folio_wait_bit_common") == ((uint32_t)rd | CM_PF_IOWAIT),
	      "D in read: read, in I/O wait");
	CHECK(cm_pf_classify('D', rd, "wait_for_vfork_done") == (uint32_t)rd, "D in vfork's wait: not I/O");
	CHECK(cm_pf_classify('D', CM_PF_SYS_NONE, "filemap_fault") == (CM_PF_FAULT | CM_PF_IOWAIT),
	      "D outside a syscall: a fault, in I/O wait");
	CHECK(cm_pf_classify('S', CM_PF_SYS_NONE, "do_signal_stop") == CM_PF_OTHER, "S outside a syscall: other");
	CHECK(cm_pf_classify('T', futex, "do_signal_stop") == CM_PF_OTHER, "stopped: other");
	CHECK(cm_pf_classify('R', futex, "0") == CM_PF_NOT_BLOCKED, "runnable: no sample");
	CHECK(cm_pf_classify('S', CM_PF_SYS_RUNNING, "") == CM_PF_NOT_BLOCKED, "woke in between: no sample");
	CHECK(cm_pf_classify('S', CM_PF_SYS_BAD, "do_nanosleep") == (uint32_t)cm_syscall_nr("clock_nanosleep"),
	      "syscall refused (Yama): the wait from wchan");
	CHECK(cm_pf_classify('S', 600, "x") == CM_SYS_USED_OTHER, "a large nr goes to the row of large nrs");
}

static void arithmetic(void)
{
	uint64_t out[4], w[4] = { 3, 1, 0, 2 }, sum;

	CHECK_U64(cm_pf_user_part(1000, 0, 0), 1000, "no ticks: all user (as the kernel does)");
	CHECK_U64(cm_pf_user_part(1000, 5, 0), 1000, "no system ticks: all user");
	CHECK_U64(cm_pf_user_part(1000, 0, 5), 0, "no user ticks: all system");
	CHECK_U64(cm_pf_user_part(1000, 3, 1), 750, "3:1 split");
	CHECK_U64(cm_pf_user_part(UINT64_MAX / 2, 1, 1), UINT64_MAX / 2 - UINT64_MAX / 4, "no overflow");

	cm_pf_apportion(1000, w, 4, out);
	sum = out[0] + out[1] + out[2] + out[3];
	CHECK_U64(sum, 1000, "parts add up to the total");
	CHECK(out[0] == 500 && out[1] == 167 && out[2] == 0 && out[3] == 333,
	      "largest remainders: %llu %llu %llu %llu", (unsigned long long)out[0],
	      (unsigned long long)out[1], (unsigned long long)out[2], (unsigned long long)out[3]);
	cm_pf_apportion(7, (uint64_t[]){ 1, 1, 1 }, 3, out);
	CHECK(out[0] + out[1] + out[2] == 7 && out[0] <= 3 && out[2] >= 2, "7 over three equal weights");
	cm_pf_apportion(5, (uint64_t[]){ 0, 0 }, 2, out);
	CHECK(out[0] == 0 && out[1] == 0, "no weights: nothing given");
	cm_pf_apportion(UINT64_MAX, (uint64_t[]){ UINT64_MAX, 1 }, 2, out);
	CHECK(out[0] + out[1] == UINT64_MAX, "huge totals and weights still add up");
}

int main(void)
{
	stat_lines();
	other_files();
	causes();
	arithmetic();
	return check_done();
}
