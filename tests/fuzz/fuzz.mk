# tests/fuzz/fuzz.mk: the libFuzzer targets. Run from the repository root (`make fuzz` does):
#   make -f tests/fuzz/fuzz.mk            build every tests/fuzz/fuzz_*.c into build/fuzz/
#   make -f tests/fuzz/fuzz.mk run        run each for FUZZ_SECONDS (default 60) over its corpus
#   make -f tests/fuzz/fuzz.mk run FUZZ_TARGETS=fuzz_config FUZZ_SECONDS=600
# A dictionary tests/fuzz/<target>.dict, when present, is passed with -dict.
# Each target is linked with the library code (base, ccq, model, tokenizer, the CPU kernels) compiled
# here with clang, AddressSanitizer, UndefinedBehaviorSanitizer and libFuzzer's coverage; the library
# is an archive, so a target pulls in only the objects it uses. Seeds live in
# tests/fuzz/corpus/<target>/ and are only read: what a run discovers goes to build/fuzz/corpus/<target>/,
# crashes to build/fuzz/crashes/<target>/.

CLANG ?= clang
CLANGXX ?= clang++
FZ := build/fuzz
SPM := build/deps/spm
FUZZ_SECONDS ?= 60

SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
CPPFLAGS := -I. -I$(SPM)/include -D_GNU_SOURCE -DERNIE_VERSION='"fuzz"' -DERNIE_BUILD_TYPE='"fuzz"'
CFLAGS := -std=c11 -g -O1 -Wall -Wextra $(SAN) -fsanitize=fuzzer-no-link -pthread
CXXFLAGS := -std=c++17 -g -O1 $(SAN) -fsanitize=fuzzer-no-link -pthread

LIB_C := $(wildcard base/*.c ccq/*.c model/*.c kernels/cpu/*.c kernels/nocuda/*.c tokenizer/*.c)
LIB_CC := $(wildcard tokenizer/*.cc)
LIB_OBJ := $(LIB_C:%.c=$(FZ)/obj/%.o) $(LIB_CC:%.cc=$(FZ)/obj/%.o)
TARGET_SRC := $(wildcard tests/fuzz/fuzz_*.c)
TARGETS := $(TARGET_SRC:tests/fuzz/%.c=%)
FUZZ_TARGETS ?= $(TARGETS)
LIBS := $(wildcard $(SPM)/lib/libsentencepiece.a) -ljansson -lxxhash -lm -lpthread

.PHONY: all run clean
all: $(TARGETS:%=$(FZ)/%)

$(FZ)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CLANG) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(FZ)/obj/%.o: %.cc
	@mkdir -p $(@D)
	$(CLANGXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(FZ)/libfuzzlib.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FZ)/%: tests/fuzz/%.c $(FZ)/libfuzzlib.a
	@mkdir -p $(@D)
	$(CLANGXX) $(CPPFLAGS) -x c -std=c11 -g -O1 $(SAN) -fsanitize=fuzzer -c $< -o $@.o
	$(CLANGXX) $(SAN) -fsanitize=fuzzer -pthread $@.o $(FZ)/libfuzzlib.a $(LIBS) -o $@

# One target after the other (they share two cores with everything else); stops at the first crash.
run: all
	@set -e; for t in $(FUZZ_TARGETS); do \
	   mkdir -p $(FZ)/corpus/$$t $(FZ)/crashes/$$t tests/fuzz/corpus/$$t; \
	   echo "fuzzing $$t for $(FUZZ_SECONDS)s"; \
	   dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
	   $(FZ)/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=$(FZ)/crashes/$$t/ $$dict \
	     $(FZ)/corpus/$$t tests/fuzz/corpus/$$t 2>$(FZ)/$$t.log || { tail -40 $(FZ)/$$t.log; exit 1; }; \
	   grep -E "stat::number_of_executed_units|stat::peak_rss_mb" $(FZ)/$$t.log | tr '\n' ' '; echo; \
	 done

clean:
	rm -rf $(FZ)

-include $(shell find $(FZ)/obj -name '*.d' 2>/dev/null)
