# contactmap — build into .output/, quiet unless V=1.
OUTPUT ?= .output
CLANG ?= clang
BPFTOOL ?= $(shell command -v bpftool || echo /usr/sbin/bpftool)
CC ?= cc
ARCH := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
PYTHON ?= /usr/bin/python3
PREFIX ?= /usr/local
# CUDA headers build the CUPTI agent and the GPU test fakes; without them both
# are left out and the GPU tests skip, saying why.
CUDA_HOME ?= /usr/local/cuda
HAVE_CUDA := $(if $(wildcard $(CUDA_HOME)/include/cupti.h),1,)

CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Iinclude -I$(OUTPUT) -D_GNU_SOURCE \
	-DCM_PREFIX='"$(PREFIX)"'
# -ldw: DWARF unwinding (elfutils); -lstdc++: __cxa_demangle for C++ frames;
# -pthread: the observer-cost sampling thread (src/observer.c); -lprotobuf-c:
# --pprof's profile.proto (zlib gzips it). --serve's libmicrohttpd is
# dlopen()ed when asked for (src/exporter.c): its headers only at build time
LDLIBS += -lbpf -ldw -lelf -lz -ljson-c -lm -lstdc++ -pthread -lprotobuf-c
PROTOC_C ?= protoc-c
# -mcpu=v3: atomics that return the old value (thread generation numbers);
# kernels 5.12 and up, below the 5.18 contactmap needs anyway
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Ivmlinux/$(ARCH) -Iinclude \
	-Wall -Wno-unused-function -Wno-compare-distinct-pointer-types
# clang's own system includes for the BPF target (libbpf-bootstrap's trick)
CLANG_BPF_SYS_INCLUDES := $(shell $(CLANG) -v -E - </dev/null 2>&1 \
	| sed -n '/<...> search starts here:/,/End of search list./{ s| \(/.*\)|-idirafter \1|p }')

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

BPF_SRCS := $(wildcard bpf/*.bpf.c)
# maps.bpf.o defines what the others declare extern; the linker wants it first
BPF_OBJS := $(OUTPUT)/bpf/maps.bpf.o $(filter-out $(OUTPUT)/bpf/maps.bpf.o,$(patsubst bpf/%.bpf.c,$(OUTPUT)/bpf/%.bpf.o,$(BPF_SRCS)))
SRCS := $(wildcard src/*.c)
# generated sources: the syscall table, and the C of proto/profile.proto
GEN_OBJS := $(OUTPUT)/syscall_table.o $(OUTPUT)/profile.pb-c.o
OBJS := $(patsubst src/%.c,$(OUTPUT)/%.o,$(SRCS)) $(GEN_OBJS)
LIB_OBJS := $(filter-out $(OUTPUT)/main.o,$(OBJS))

.PHONY: all clean test test-bins unit demo check install gpu-bench bench bench-quick microbenches study study-quick
.DELETE_ON_ERROR:

AGENT := $(if $(HAVE_CUDA),$(OUTPUT)/libcontactmap-cupti.so)
MARK := $(OUTPUT)/libcontactmap-mark.so
# the LD_PRELOAD shim of `contactmap experiment --knob prefault`
PREFAULT := $(OUTPUT)/libcontactmap-prefault.so

all: $(OUTPUT)/contactmap contactmap $(AGENT) $(MARK) $(PREFAULT)

# The request markers a program calls (include/contactmap_mark.h); contactmap
# probes them. No dependencies: a program links it whether traced or not.
$(MARK): lib/contactmap_mark.c include/contactmap_mark.h | $(OUTPUT)
	$(call msg,LIB,$@)
	$(Q)$(CC) -O2 -g -Wall -Wextra -fPIC -shared -Iinclude -Wl,-soname,libcontactmap-mark.so $< -o $@

contactmap: $(OUTPUT)/contactmap
	$(Q)ln -sf $(OUTPUT)/contactmap $@

$(OUTPUT) $(OUTPUT)/bpf $(OUTPUT)/tests $(OUTPUT)/gpu_fakes $(OUTPUT)/microbenches:
	$(Q)mkdir -p $@

$(OUTPUT)/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.h) $(wildcard include/*.h) | $(OUTPUT)/bpf
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) $(CLANG_BPF_SYS_INCLUDES) -c $< -o $@

$(OUTPUT)/contactmap.bpf.o: $(BPF_OBJS)
	$(call msg,LINK-BPF,$@)
	$(Q)$(BPFTOOL) gen object $@ $^

$(OUTPUT)/contactmap.skel.h: $(OUTPUT)/contactmap.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name contactmap_bpf > $@

$(OUTPUT)/syscall_table.c: maps/syscalls_$(shell uname -m).tsv scripts/gen-syscall-table.sh | $(OUTPUT)
	$(call msg,GEN,$@)
	$(Q)sh scripts/gen-syscall-table.sh $< > $@

$(OUTPUT)/syscall_table.o: $(OUTPUT)/syscall_table.c include/cm.h
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(OUTPUT)/profile.pb-c.c $(OUTPUT)/profile.pb-c.h &: proto/profile.proto | $(OUTPUT)
	$(call msg,PROTOC,$@)
	$(Q)$(PROTOC_C) --proto_path=proto --c_out=$(OUTPUT) $<

$(OUTPUT)/profile.pb-c.o: $(OUTPUT)/profile.pb-c.c $(OUTPUT)/profile.pb-c.h
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(OUTPUT)/pprof.o: $(OUTPUT)/profile.pb-c.h

$(OUTPUT)/%.o: src/%.c $(wildcard include/*.h src/*.h) $(OUTPUT)/contactmap.skel.h | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(OUTPUT)/contactmap: $(OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

# The CUPTI agent: loaded into wrapped CUDA programs (CUDA_INJECTION64_PATH).
# No link-time dependency on libcupti: it is dlopen'ed at run time.
AGENT_CFLAGS := -O2 -g -std=gnu11 -Wall -Wextra -Wno-unused-parameter -fPIC -fvisibility=hidden \
	-Iinclude -isystem $(CUDA_HOME)/include -D_GNU_SOURCE
AGENT_SRCS := agent/cupti_agent.c agent/cupti_calls.c agent/cupti_records.c
$(OUTPUT)/libcontactmap-cupti.so: $(AGENT_SRCS) agent/agent.h include/contactmap_gpu.h include/contactmap.h | $(OUTPUT)
	$(call msg,AGENT,$@)
	$(Q)$(CC) $(AGENT_CFLAGS) -shared -Wl,-soname,libcontactmap-cupti.so $(AGENT_SRCS) -ldl -lpthread -o $@

$(PREFAULT): preload/prefault.c | $(OUTPUT)
	$(call msg,SHIM,$@)
	$(Q)$(CC) -O2 -g -std=gnu11 -Wall -Wextra -fPIC -fvisibility=hidden -shared \
		-Wl,-soname,libcontactmap-prefault.so $< -ldl -o $@

# --- tests -----------------------------------------------------------------
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(OUTPUT)/tests/%,$(UNIT_SRCS))
WL_SRCS := $(wildcard tests/workloads/*.c)
WL_BINS := $(patsubst tests/workloads/%.c,$(OUTPUT)/tests/%,$(WL_SRCS))

# unit tests build with sanitizers against the user-space objects
$(OUTPUT)/tests/test_%: tests/unit/test_%.c $(wildcard tests/unit/*.h) $(LIB_OBJS) | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -Isrc -fsanitize=address,undefined $< $(patsubst $(OUTPUT)/%.o,src/%.c,$(filter-out $(GEN_OBJS),$(LIB_OBJS))) $(patsubst %.o,%.c,$(GEN_OBJS)) $(LDLIBS) -o $@

# the library test_sym dlopen()s: no frame pointers, and its .symtab moved into
# a separate file found through .gnu_debuglink, as distributions ship them
$(OUTPUT)/tests/libcmtest.so: tests/unit/libcmtest.c | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) -O2 -g -fPIC -shared -fomit-frame-pointer -Wall $< -o $@
	$(Q)objcopy --only-keep-debug $@ $@.debug
	$(Q)strip --strip-all $@
	$(Q)objcopy --add-gnu-debuglink=$@.debug $@

$(OUTPUT)/tests/test_sym: $(OUTPUT)/tests/libcmtest.so

# contactmap itself with sanitizers: the fuzz pass of `report` and `diff`
# (tests/test_robustness.py) runs it over mutated reports
$(OUTPUT)/tests/contactmap-asan: $(SRCS) $(patsubst %.o,%.c,$(GEN_OBJS)) $(wildcard include/*.h src/*.h) $(OUTPUT)/contactmap.skel.h $(OUTPUT)/profile.pb-c.h | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -fsanitize=address,undefined $(SRCS) $(patsubst %.o,%.c,$(GEN_OBJS)) $(LDLIBS) -o $@

$(OUTPUT)/tests/%: tests/workloads/%.c $(wildcard tests/workloads/*.h) | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) -O1 -g -Wall -D_GNU_SOURCE $< -lpthread -o $@

# workloads that mark requests: linked against the marker library, found
# next to them at run time
$(OUTPUT)/tests/handoff $(OUTPUT)/tests/chain $(OUTPUT)/tests/markers: $(OUTPUT)/tests/%: tests/workloads/%.c tests/workloads/wl.h $(MARK) | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) -O1 -g -Wall -D_GNU_SOURCE -Iinclude $< -L$(OUTPUT) -lcontactmap-mark \
		-Wl,-rpath,'$$ORIGIN/..' -lpthread -o $@

# the stack workload twice: frame pointers kept, and omitted (DWARF only)
$(OUTPUT)/tests/stackwl_fp: tests/workloads/stackwl.c tests/workloads/wl.h | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) -O1 -g -fno-omit-frame-pointer -Wall -D_GNU_SOURCE $< -lpthread -ldl -o $@

$(OUTPUT)/tests/stackwl: tests/workloads/stackwl.c tests/workloads/wl.h | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) -O1 -g -fomit-frame-pointer -Wall -D_GNU_SOURCE $< -lpthread -ldl -o $@

$(OUTPUT)/tests/libstackwl.so: tests/workloads/lib/libstackwl.c | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) -O1 -g -fomit-frame-pointer -shared -fPIC -Wall $< -o $@


# GPU fakes (tests/gpu_fakes/): a libcuda.so.1, a libcupti.so.13 and a
# libcupti.so.12 (CUDA 12 record layouts) with the real SONAMEs, and programs
# with known GPU work.
GF := $(OUTPUT)/gpu_fakes
GPU_FAKES := $(if $(HAVE_CUDA),$(GF)/libcuda.so.1 $(GF)/libcupti.so.13 $(GF)/libcupti.so.12 \
	$(GF)/gpu_app $(GF)/hookbench)
FAKE_CFLAGS := -O2 -g -std=gnu11 -Wall -Wno-unused-parameter -fPIC -Iinclude \
	-isystem $(CUDA_HOME)/include -D_GNU_SOURCE

$(GF)/libcuda.so.1: tests/gpu_fakes/fake_cuda.c | $(GF)
	$(call msg,CC,$@)
	$(Q)$(CC) $(FAKE_CFLAGS) -shared -Wl,-soname,libcuda.so.1 $< -ldl -lpthread -o $@

$(GF)/libcupti.so.13: tests/gpu_fakes/fake_cupti.c | $(GF)
	$(call msg,CC,$@)
	$(Q)$(CC) $(FAKE_CFLAGS) -shared -Wl,-soname,libcupti.so.13 $< -ldl -lpthread -o $@

$(GF)/libcupti.so.12: tests/gpu_fakes/fake_cupti.c | $(GF)
	$(call msg,CC,$@)
	$(Q)$(CC) $(FAKE_CFLAGS) -DFAKE_CUPTI_MAJOR=12 -shared -Wl,-soname,libcupti.so.12 $< -ldl \
		-lpthread -o $@

$(GF)/gpu_app: tests/gpu_fakes/gpu_app.c $(GF)/libcuda.so.1 | $(GF)
	$(call msg,CC,$@)
	$(Q)$(CC) $(FAKE_CFLAGS) $< $(GF)/libcuda.so.1 -L$(CUDA_HOME)/lib64 -lcudart \
		-Wl,-rpath,'$$ORIGIN' -Wl,-rpath,$(CUDA_HOME)/lib64 -ldl -lpthread -o $@

$(GF)/hookbench: tests/gpu_fakes/hookbench.c $(GF)/libcuda.so.1 | $(GF)
	$(call msg,CC,$@)
	$(Q)$(CC) $(FAKE_CFLAGS) $< $(GF)/libcuda.so.1 -Wl,-rpath,'$$ORIGIN' -ldl -o $@


# --- microbenchmarks (microbenches/X.c -> .output/microbenches/X) ---------------
# The GPU ones (.cu) are built only where nvcc exists (PATH or /usr/local/cuda);
# without it they are left out, never an error.
ifeq ($(origin NVCC),undefined)
NVCC := $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
endif
NVCCFLAGS ?= -O2
MB_SRCS := $(wildcard microbenches/*.c)
MB_BINS := $(patsubst microbenches/%.c,$(OUTPUT)/microbenches/%,$(MB_SRCS))
MB_GPU_BINS := $(if $(NVCC),$(patsubst microbenches/%.cu,$(OUTPUT)/microbenches/%,$(wildcard microbenches/*.cu)))
# Static: with no ld.so in the process, every read/write/... the report
# counts is one the benchmark made itself (ld.so reads libc's ELF header).
$(OUTPUT)/microbenches/%: microbenches/%.c microbenches/mb.h | $(OUTPUT)/microbenches
	$(call msg,CC,$@)
	$(Q)$(CC) -O2 -g -Wall -Wextra -D_GNU_SOURCE -static $< -lpthread -o $@

$(OUTPUT)/microbenches/%: microbenches/%.cu | $(OUTPUT)/microbenches
	$(call msg,NVCC,$@)
	$(Q)$(NVCC) $(NVCCFLAGS) $< -o $@

microbenches: $(MB_BINS) $(MB_GPU_BINS)
ifeq ($(NVCC),)
	@echo "  microbenches: no nvcc found: gpu_copy and gpu_launch not built"
endif

test-bins: $(UNIT_BINS) $(WL_BINS) $(OUTPUT)/tests/stackwl_fp $(OUTPUT)/tests/libstackwl.so \
	$(OUTPUT)/tests/contactmap-asan \
	$(GPU_FAKES) microbenches

unit: $(UNIT_BINS)
	$(Q)for t in $(UNIT_BINS); do $$t || exit 1; done

test: all test-bins
	$(PYTHON) -m pytest -q tests

# The per-event cost of the GPU hook transport and of the driver uprobes.
gpu-bench: all test-bins
	scripts/gpu-bench.sh

demo: all
	./contactmap -o $(OUTPUT)/demo.json -- $(PYTHON) examples/infer.py

# the study (examples/study/study.py): docs/study.md from a real run, ~4-5 min;
# study-quick: one load level into .output/study-quick/, ~1 min
study: all
	$(PYTHON) examples/study/study.py

study-quick: all
	$(PYTHON) examples/study/study.py --quick

# the overhead benchmark against the untraced run and the peers (bench/README.md)
bench: all
	$(MAKE) -C bench run

bench-quick: all
	$(MAKE) -C bench quick

install: all
	install -D -m 0755 $(OUTPUT)/contactmap $(DESTDIR)$(PREFIX)/bin/contactmap
	$(if $(AGENT),install -D -m 0755 $(AGENT) $(DESTDIR)$(PREFIX)/lib/contactmap/libcontactmap-cupti.so)
	install -D -m 0755 $(MARK) $(DESTDIR)$(PREFIX)/lib/libcontactmap-mark.so
	install -D -m 0644 include/contactmap_mark.h $(DESTDIR)$(PREFIX)/include/contactmap_mark.h
	install -D -m 0644 python/contactmap_mark.py $(DESTDIR)$(PREFIX)/lib/python3/dist-packages/contactmap_mark.py
	install -D -m 0755 $(PREFAULT) $(DESTDIR)$(PREFIX)/lib/contactmap/libcontactmap-prefault.so

clean:
	$(call msg,CLEAN)
	$(Q)rm -rf $(OUTPUT) contactmap
