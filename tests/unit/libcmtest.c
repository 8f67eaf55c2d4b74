/* The shared library test_sym dlopen()s: three frames of the unwound chain.
 * The Makefile builds it without frame pointers, moves its .symtab into
 * libcmtest.so.debug (found through .gnu_debuglink) and strips it, so:
 *   cmtest_entry      - exported: .dynsym
 *   lib_static_hop    - static: only in the separate debug file
 *   cmtest::Widget::poke(int (*)(int), int) - exported under a C++ name
 * noipa keeps each a real frame with its own name (no inlining, no clones,
 * no tail calls turned into jumps across the chain). */
#define NOIPA __attribute__((noipa))

typedef int (*cmtest_cb)(int);

static volatile int sink;

NOIPA int cmtest_poke(cmtest_cb cb, int x) __asm__("_ZN6cmtest6Widget4pokeEPFiiEi");

NOIPA int cmtest_poke(cmtest_cb cb, int x)
{
	int r = cb(x + 1);

	sink = r;	/* work after the call: it cannot become a tail call */
	return r + sink;
}

NOIPA static int lib_static_hop(cmtest_cb cb, int x)
{
	int r = cmtest_poke(cb, x + 1);

	sink = r;
	return r + sink;
}

NOIPA int cmtest_entry(cmtest_cb cb, int x)
{
	int r = lib_static_hop(cb, x + 1);

	sink = r;
	return r + sink;
}
