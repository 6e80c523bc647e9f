# umd: the single entry point. `make deps demo` on a fresh machine, `make test` for the tests.
SWIFT   ?= swift
RANKS   ?= 2
# OpenMPI refuses to run as root without these; harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
# One OpenBLAS thread per rank when ranks share the cores (set cores / ranks per node).
export OPENBLAS_NUM_THREADS ?= 1

DEBUG_BIN   := .build/debug/umd-mpirun
RELEASE_BIN := .build/release/umd-mpirun
MPIRUN      := mpirun --oversubscribe

.PHONY: ablation deps build release test readme-check demo bench bench-allreduce bench-kernels bench-elementwise bench-data bench-step bench-checkpoint bench-cluster clean

deps:             ## install the system packages (apt-get; sudo when not root)
	bash scripts/install-deps.sh

# DWARF 4 for every C target, dependencies' too (Yams' CYaml): valgrind 3.19, used by the
# allocation test, cannot read clang's default DWARF 5.
CFLAGS_DWARF := -Xcc -gdwarf-4

# The commit a binary is built from, beside it (umd-build-info; BuildInfo reads it): a file
# rather than a compile flag, so that a new commit does not rebuild every module.
BUILD_INFO = (git rev-parse HEAD 2>/dev/null || echo unknown) | tr -d '\n' > $(1)/umd-build-info; \
	git diff --quiet HEAD 2>/dev/null || printf -- '-dirty' >> $(1)/umd-build-info

build:            ## debug build of everything, tests included
	$(SWIFT) build --build-tests $(CFLAGS_DWARF)
	@$(call BUILD_INFO,$(shell $(SWIFT) build --show-bin-path))

# The release build targets this machine's CPU (what clang's -march=native picks, e.g.
# znver3, sapphirerapids): the element-wise SIMD kernels then use AVX2/AVX-512. Building on
# a login node for compute nodes of another kind: `make release TARGET_CPU=x86-64-v3` (or
# the nodes' CPU name); `TARGET_CPU=` builds for any x86-64 (slower kernels without FMA; activations
# differ from an FMA build's in the last bits, see README "Step speed").
TARGET_CPU ?= $(shell clang -march=native -E -v - </dev/null 2>&1 | grep -o 'target-cpu [a-z0-9_-]*' | head -n 1 | cut -d' ' -f2)
CPU_FLAGS  := $(if $(TARGET_CPU),-Xswiftc -target-cpu -Xswiftc $(TARGET_CPU) -Xcc -march=$(TARGET_CPU))

release:          ## optimised build for real runs and benchmarks
	$(SWIFT) build -c release --product umd-mpirun $(CPU_FLAGS)
	@$(call BUILD_INFO,$(shell $(SWIFT) build -c release --show-bin-path))

test: build       ## the whole test suite (multi-rank tests spawn mpirun themselves), then the README's commands
	$(SWIFT) test --skip-build
	bash scripts/readme-commands.sh $$($(SWIFT) build --show-bin-path)/umd-mpirun

readme-check: build  ## run the README's commands as written, at tiny, in a scratch directory (~2 min)
	bash scripts/readme-commands.sh $$($(SWIFT) build --show-bin-path)/umd-mpirun

demo: release     ## end to end on generated data: 2-rank pretrain -> calib -> finetune -> eval, plots
	$(MPIRUN) -np $(RANKS) $(RELEASE_BIN) selftest
	RANKS=$(RANKS) bash scripts/demo.sh $(RELEASE_BIN) demo-out

ablation: release  ## the paper's Table 4 in miniature: 11 settings x 5 seeds on 2 ranks, ablation-out/ablation.md (~18 min)
	bash scripts/ablation.sh $(RELEASE_BIN) ablation-out

bench: bench-allreduce bench-kernels bench-elementwise bench-data bench-step bench-checkpoint

bench-allreduce: release   ## allreduce latency/bandwidth, 4 KB..64 MB
	$(MPIRUN) -np $(RANKS) $(RELEASE_BIN) bench allreduce

bench-kernels: release     ## block forward+backward GFLOP/s vs plain sgemm, 1 thread
	OPENBLAS_NUM_THREADS=1 $(RELEASE_BIN) bench kernels --threads 1

bench-elementwise: release  ## element-wise kernels (GELU, softmax, LayerNorm) in ns per element, in L1 and from memory
	$(RELEASE_BIN) bench elementwise

bench-data: release        ## JPEG decode+preprocess images/s, prefetcher overlap
	$(RELEASE_BIN) bench data

bench-step: release        ## pretrain and GM-Coord steps: phases, matmul utilisation, weak scaling, sync bandwidth
	OPENBLAS_NUM_THREADS=1 $(MPIRUN) -np $(RANKS) $(RELEASE_BIN) bench step --preset small --phases
	OPENBLAS_NUM_THREADS=1 $(MPIRUN) -np $(RANKS) $(RELEASE_BIN) bench step --preset small --phases --stage finetune

bench-checkpoint: release  ## save/load MB/s and compression of the base preset's state (needs ~12 GB RAM)
	$(MPIRUN) -np $(RANKS) $(RELEASE_BIN) bench checkpoint --preset base

bench-cluster: release    ## bench step across 2 and 4 simulated hosts (network namespaces, root) at 1/10/25 Gbit/s; base on 2 hosts
	for hosts in 2 4; do for bw in 1gbit 10gbit 25gbit; do \
	  bash scripts/simcluster.sh up $$hosts --bandwidth $$bw && echo "== $$hosts hosts, links $$bw" && \
	  OPENBLAS_NUM_THREADS=1 mpirun $$(bash scripts/simcluster.sh mpirun-args) -np $$hosts -x OPENBLAS_NUM_THREADS \
	    -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM $(CURDIR)/$(RELEASE_BIN) bench step --preset small --steps 3; \
	done; done
	for bw in 10gbit 1gbit; do \
	  bash scripts/simcluster.sh up 2 --bandwidth $$bw && echo "== base, 2 hosts, links $$bw" && \
	  OPENBLAS_NUM_THREADS=1 mpirun $$(bash scripts/simcluster.sh mpirun-args) -np 2 -x OPENBLAS_NUM_THREADS \
	    -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM $(CURDIR)/$(RELEASE_BIN) bench step --preset base \
	    --local-batch 2 --steps 2; \
	done; bash scripts/simcluster.sh down

clean:
	rm -rf .build
