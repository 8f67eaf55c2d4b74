"""Two code objects at one address, one after the other (tests/test_python.py).

The same source is compiled as firstK.py and run by run_first, on the CPU
for --first seconds, with globals of its own; then it is freed and the
source made again as secondK.py (compiled, or copied from a template), which
the allocator puts where firstK.py's code object was (as an imported
module's body is freed and a program's function made in its place), and run
by run_second with new globals for --second seconds (first's are kept). Up to ATTEMPTS rounds
until the address is reused. Samples under run_second must be named
secondK.py, never firstK.py. The last line of stdout is the ground truth as
JSON: pid, the round whose address was reused (-1: none), the spin's line.
"""
import argparse
import json
import os
import time

SRC = "import time\nwhile time.monotonic() < deadline:\n    pass\n"
SPIN_LINE = 2
ATTEMPTS = 6


# first's globals stay alive, as an imported module's dict does in sys.modules
# (one dict made again at a freed dict's address is a case contactmap only
# tells apart by age)
KEPT = []


def run_first(code, secs):
    KEPT.append({"deadline": time.monotonic() + secs})
    exec(code, KEPT[-1])


def run_second(code, secs):
    exec(code, {"deadline": time.monotonic() + secs})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--first", type=float, default=0.3)
    ap.add_argument("--second", type=float, default=0.1)
    a = ap.parse_args()
    reused = -1
    for k in range(ATTEMPTS):
        template = compile(SRC, f"second{k}.py", "exec")
        code = compile(SRC, f"first{k}.py", "exec")
        first_id = id(code)
        run_first(code, a.first)
        del code
        # which of the two lands on the freed block depends on the version
        if k % 2 == 0:
            code = compile(SRC, f"second{k}.py", "exec")
        else:
            code = template.replace(co_name="<module>")
        del template
        if id(code) == first_id:
            run_second(code, a.second)
            reused = k
            break
    print(json.dumps({"pid": os.getpid(), "reused": reused, "spin_line": SPIN_LINE}))


if __name__ == "__main__":
    main()
