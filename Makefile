# ernie: the one entry point.
#   make             set up (Debian packages, SentencePiece) once, then build bin/ernie
#   make test        build and run every test that needs no GPU; ends with "N passed, N failed"
#   make test SAN=1  the same with AddressSanitizer and UndefinedBehaviorSanitizer (build/san/)
#   make test-gpu    the CUDA tests (on a machine with an NVIDIA GPU; NOBUILD=1 runs binaries built here)
#   make bench       the benchmarks: codecs everywhere, kernels where a GPU is present
#   make chat        build and start chatting with the built-in demo model
#   make fuzz        build the libFuzzer targets (clang) into build/fuzz/
#   make install     copy bin/ernie to $(PREFIX)/bin
#   O=DIR            build into DIR instead of build/rel (the binary too: DIR/ernie)
# Variables: CUDA=0 builds without the CUDA backend; CUDA_HOME (default /usr/local/cuda) is searched
# when nvcc is not on PATH; ERNIE_NO_APT=1 forbids installing Debian packages.

SHELL := /bin/bash
.DEFAULT_GOAL := all
VERSION := 0.1.0

CC ?= gcc
CXX ?= g++
ifeq ($(origin CC),default)
CC := gcc
endif
ifeq ($(origin CXX),default)
CXX := g++
endif
CUDA_HOME ?= /usr/local/cuda
SAN ?= 0
PREFIX ?= /usr/local

NVCC := $(shell command -v nvcc 2>/dev/null || { test -x $(CUDA_HOME)/bin/nvcc && echo $(CUDA_HOME)/bin/nvcc; })
ifeq ($(SAN),1)
  CUDA ?= 0
  VARIANT := san
else
  VARIANT := rel
endif
ifeq ($(NVCC),)
  CUDA := 0
endif
CUDA ?= 1
CUDA_LIB := $(firstword $(wildcard $(dir $(NVCC))../lib64 $(CUDA_HOME)/lib64))

# O=DIR puts every object and the binary under DIR (parallel work trees sharing one checkout).
O ?=
B := $(if $(O),$(O),build/$(VARIANT))
ifneq ($(O)$(filter san,$(VARIANT)),)
  BIN := $(B)/ernie
else
  BIN := bin/ernie
endif
DEPS_STAMP := build/.deps-ok
SPM := build/deps/spm
SPM_LIB := $(SPM)/lib/libsentencepiece.a

# Architectures: Ampere, Ada, Hopper machine code, plus Hopper PTX for anything newer.
# CUDA_ARCHS=90 on the command line builds Hopper only (faster kernel iteration).
CUDA_ARCHS ?= 80 89 90
PTX_ARCH := $(lastword $(CUDA_ARCHS))
NVCC_GENCODE := $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) -gencode arch=compute_$(PTX_ARCH),code=compute_$(PTX_ARCH)
CUDA_ARCH_STR := $(foreach a,$(CUDA_ARCHS),sm_$(a)) + compute_$(PTX_ARCH) PTX

WARN := -Wall -Wextra
CPPFLAGS := -I. -I$(SPM)/include -D_GNU_SOURCE -DERNIE_VERSION='"$(VERSION)"' -MMD -MP
ifeq ($(VARIANT),san)
  # -fexpensive-optimizations: GCC inserts vzeroupper after AVX code only with it (on at -O2), and a
  # missing one slows every later SSE instruction (tests/test_ccq_simd.c checks the state)
  OPT := -O1 -fexpensive-optimizations -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  CPPFLAGS += -DERNIE_BUILD_TYPE='"sanitize"'
else
  OPT := -O2 -g
  CPPFLAGS += -DERNIE_BUILD_TYPE='"release"'
endif
ifeq ($(CUDA),1)
  CPPFLAGS += -DERNIE_CUDA=1 -DERNIE_CUDA_ARCHS='"$(CUDA_ARCH_STR)"' -I$(CUDA_HOME)/include
endif
CFLAGS := -std=c11 $(OPT) $(WARN) -pthread
CXXFLAGS := -std=c++17 $(OPT) $(WARN) -pthread
NVCCFLAGS := -O3 -std=c++17 $(NVCC_GENCODE) -Xcompiler -Wall,-Wextra -I. -lineinfo
# kernels/cuda/qgemm.cu uses wgmma, which exists only in the arch-specific sm_90a target: its Hopper
# machine code is built for sm_90a instead of sm_90 (the driver then loads it on sm_90 GPUs).
comma := ,
$(B)/kernels/cuda/qgemm.o: NVCCFLAGS := $(subst arch=compute_90$(comma)code=sm_90,arch=compute_90a$(comma)code=sm_90a,$(NVCCFLAGS))

# Sources: every .c of the library folders; app/main.c is the only one the tests leave out.
LIB_C := $(wildcard base/*.c ccq/*.c model/*.c kernels/*.c kernels/cpu/*.c tokenizer/*.c app/*.c)
LIB_C := $(filter-out app/main.c,$(LIB_C))
LIB_CC := $(wildcard tokenizer/*.cc)
ifeq ($(CUDA),1)
  LIB_CU := $(wildcard kernels/cuda/*.cu)
  LIB_C += $(wildcard kernels/cuda/*.c)
else
  LIB_C += $(wildcard kernels/nocuda/*.c)
endif
ASSETS := $(wildcard assets/*.ernie)
TEST_C := $(wildcard tests/*.c)
GPU_TEST_C := $(wildcard tests/gpu/*.c)

LIB_OBJ := $(LIB_C:%.c=$(B)/%.o) $(LIB_CC:%.cc=$(B)/%.o) $(LIB_CU:%.cu=$(B)/%.o) $(ASSETS:%=$(B)/%.o)
MAIN_OBJ := $(B)/app/main.o $(B)/app/version_info.o
TEST_OBJ := $(TEST_C:%.c=$(B)/%.o)
GPU_TEST_OBJ := $(GPU_TEST_C:%.c=$(B)/%.o)
LIBA := $(B)/libernie.a

# Everything but glibc is linked statically: archives by path or under -Bstatic.
STATIC_LIBS := $(SPM_LIB) -Wl,-Bstatic -lxxhash -ljansson -ledit -ltinfo -lbsd -lmd -Wl,-Bdynamic
ifeq ($(CUDA),1)
  STATIC_LIBS += $(CUDA_LIB)/libcudart_static.a
endif
LDFLAGS := $(OPT) -pthread -static-libstdc++ -static-libgcc
LDLIBS := $(STATIC_LIBS) -ldl -lrt -lm

.PHONY: all test test-gpu bench chat fuzz install clean distclean FORCE
all: $(BIN)

$(DEPS_STAMP): tools/deps.sh
	@mkdir -p $(@D)
	@bash tools/deps.sh
	@touch $@

$(SPM_LIB): tools/build-spm.sh | $(DEPS_STAMP)
	@bash tools/build-spm.sh $(SPM)
	@touch $@

# The git revision goes into one small generated file that is rewritten only when it changes, so a
# second `make` rebuilds nothing.
$(B)/version_info.c: FORCE
	@mkdir -p $(@D)
	@rev=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown); \
	 git diff --quiet HEAD 2>/dev/null || rev="$$rev+dirty"; \
	 printf 'const char *ernie_git_rev = "%s";\n' "$$rev" > $@.tmp; \
	 cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(B)/app/version_info.o: $(B)/version_info.c $(B)/.flags
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

# Every object depends on the flags it was built with: a stamp rewritten only when their text changes,
# so a changed OPT, SAN or CUDA_ARCHS rebuilds everything and a second `make` still nothing (the SAN
# build once kept -O1 objects from before a flag change).
FLAGS_TEXT := $(CC) $(CPPFLAGS) $(CFLAGS) / $(CXX) $(CXXFLAGS) / $(NVCC) $(NVCCFLAGS)
# (make expands a recipe before running it, so the folder is made during the expansion, before $(file))
$(B)/.flags: FORCE
	$(shell mkdir -p $(@D))$(file >$@.tmp,$(FLAGS_TEXT))
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

$(B)/%.o: %.c $(B)/.flags | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(B)/%.o: %.cc $(SPM_LIB) $(B)/.flags | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(B)/%.o: %.cu $(B)/.flags | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

# A model file embedded as read-only data, 64-byte aligned like a mapped file (tensor data stays
# aligned): symbols ernie_asset_NAME_start / _end.
$(B)/assets/%.ernie.o: assets/%.ernie
	@mkdir -p $(@D)
	printf '.section .rodata\n.balign 64\n.globl ernie_asset_%s_start\nernie_asset_%s_start:\n.incbin "%s"\n.globl ernie_asset_%s_end\nernie_asset_%s_end:\n.section .note.GNU-stack,"",@progbits\n' \
	  $* $* $< $* $* > $(@:.o=.s)
	$(CC) -c $(@:.o=.s) -o $@

$(LIBA): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(MAIN_OBJ) $(LIBA) $(SPM_LIB)
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) -o $@ $(MAIN_OBJ) $(LIBA) $(LDLIBS)

$(B)/run_tests: $(TEST_OBJ) $(LIBA) $(SPM_LIB) $(B)/app/version_info.o
	$(CXX) $(LDFLAGS) -o $@ $(TEST_OBJ) $(B)/app/version_info.o $(LIBA) $(LDLIBS)

$(B)/run_gpu_tests: $(GPU_TEST_OBJ) $(B)/tests/harness.o $(LIBA) $(SPM_LIB) $(B)/app/version_info.o
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

test: $(BIN) $(B)/run_tests
	@echo "running tests ($(VARIANT) build)"
	@$(B)/run_tests --bin $(BIN) --fixtures tests/fixtures $(TESTS)

# NOBUILD=1 runs binaries built elsewhere (a GPU machine without the build's Debian packages).
test-gpu: $(if $(filter 1,$(NOBUILD)),,$(BIN) $(B)/run_gpu_tests)
	@if ! $(BIN) --version 2>/dev/null | grep -q '^GPU 0:'; then \
	   echo "make test-gpu: no CUDA GPU found on this machine; the CUDA tests need one (0 tests run)"; exit 1; fi
	@$(B)/run_gpu_tests --bin $(BIN) --fixtures tests/fixtures $(TESTS)

bench: $(BIN)
	$(BIN) bench quant
	$(BIN) bench cpu
	@if $(BIN) --version 2>/dev/null | grep -q '^GPU 0:'; then $(BIN) bench kernels && $(BIN) bench kernels gemm; \
	 else echo "make bench: no CUDA GPU found: kernel benchmarks skipped"; fi

chat: $(BIN)
	$(BIN) chat

fuzz: | $(DEPS_STAMP)
	@$(MAKE) --no-print-directory -f tests/fuzz/fuzz.mk

install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/ernie

clean:
	rm -rf build/rel build/san build/fuzz bin

distclean:
	rm -rf build bin

FORCE:

-include $(shell find $(B) -name '*.d' 2>/dev/null)
