import Foundation
import Testing
import TestSupport

/// Every collective of MPIBridge on 1, 2, 3 and 4 ranks (odd counts matter: ring and tree
/// algorithms have special cases for them), through `umd-mpirun selftest` jobs.
@Suite("multi-rank collectives", .serialized)
struct MultiRankCollectiveTests {
    static let cases = [
        "ranks", "barrier", "broadcast-typed", "broadcast-data", "broadcast-codable",
        "allreduce-large-float-sum", "allreduce-in-place", "allreduce-out-of-place", "allreduce-scalar",
        "allreduce-nonblocking-wait", "allreduce-nonblocking-test", "allreduce-nonblocking-out-of-place",
        "allgather", "allgather-variable", "gather", "gather-variable",
    ]

    @Test("selftest passes every case", arguments: [1, 2, 3, 4])
    func selftest(ranks: Int) throws {
        // 1 Mi floats keeps four oversubscribed ranks quick on two cores.
        let result = try MPIJob.run(ranks: ranks, ["selftest", "--verbose", "--allreduce-elements", "1048577"])
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.stdout.contains("selftest ok: \(ranks) ranks"), "\(result)")
        for name in Self.cases {
            #expect(result.stdout.contains("case \(name) ok\n"), "case \(name) missing on \(ranks) ranks:\n\(result)")
        }
    }

    @Test("selftest runs as an MPI singleton without mpirun")
    func singleton() throws {
        let result = try MPIJob.runDirect(["selftest"])
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.stdout.contains("selftest ok: 1 ranks"), "\(result)")
    }

    @Test("a broadcast from a rank that does not exist is a clear error on every rank count", arguments: [1, 2, 3])
    func badRoot(ranks: Int) throws {
        let result = ranks == 1
            ? try MPIJob.runDirect(["selftest", "--inject-error", "bad-root"], timeout: 60)
            : try MPIJob.run(ranks: ranks, ["selftest", "--inject-error", "bad-root"], timeout: 60)
        #expect(!result.timedOut, "\(result)")
        #expect(result.exitCode != 0, "\(result)")
        #expect(result.output.contains("MPI_Bcast(root: \(ranks)"), "\(result)")
        #expect(result.output.contains("MPI_ERR_ROOT"), "MPI's own error string missing:\n\(result)")
        #expect(result.output.contains("failed on rank "), "\(result)")
    }

    @Test("a wrong call on one rank takes the whole job down instead of hanging", arguments: [2, 3])
    func wrongCallOnOneRank(ranks: Int) throws {
        let result = try MPIJob.run(ranks: ranks, ["selftest", "--inject-error", "bad-root-one-rank"], timeout: 60)
        #expect(!result.timedOut, "the healthy ranks hung:\n\(result)")
        #expect(result.exitCode != 0, "\(result)")
        #expect(result.output.contains("failed on rank \(ranks - 1): MPI_ERR_ROOT"), "\(result)")
    }

    @Test("ranks that pass different counts to allgather get a clear error")
    func countMismatch() throws {
        let result = try MPIJob.run(ranks: 3, ["selftest", "--inject-error", "count-mismatch"], timeout: 60)
        #expect(!result.timedOut, "\(result)")
        #expect(result.exitCode != 0, "\(result)")
        #expect(result.output.contains("MPI_Allgather on rank"), "\(result)")
        #expect(result.output.contains("ranks contribute between 1 and 3 elements"), "\(result)")
    }

    @Test("the allreduce benchmark prints one row per size")
    func allreduceBenchmark() throws {
        let result = try MPIJob.run(ranks: 2, ["bench", "allreduce", "--max-bytes", "65536",
                                               "--bytes-per-size", "1048576"])
        #expect(result.exitCode == 0, "\(result)")
        let rows = result.stdout.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.contains("size(B)") }
        #expect(rows.count == 5, "sizes 4 KiB..64 KiB expected:\n\(result)")
        for row in rows {
            let fields = row.split(separator: " ").compactMap { Double($0) }
            #expect(fields.count == 8, "\(row)")
            // Bandwidths are positive and busbw = algbw * 2(n-1)/n = algbw for 2 ranks.
            if fields.count == 8 {
                #expect(fields[4] > 0 && abs(fields[5] - fields[4]) <= 0.0015 + 1e-3 * fields[4], "\(row)")
            }
        }
    }
}

/// `launch` builds the mpirun line (binding, thread budget, exports) and runs it.
@Suite("launch", .serialized)
struct LaunchTests {
    static let noThreads = ["OPENBLAS_NUM_THREADS": ""]

    @Test func dryRunPrintsTheMpirunCommand() throws {
        let r = try MPIJob.runDirect(["launch", "-np", "4", "--cores-per-node", "8", "--dry-run", "--", "selftest"],
                                     environment: Self.noThreads)
        #expect(r.exitCode == 0, "\(r)")
        #expect(r.stdout.contains("OPENBLAS_NUM_THREADS=2 mpirun -np 4 --map-by ppr:4:node:PE=2 --bind-to core"), "\(r)")
        #expect(r.stdout.contains("-x OPENBLAS_NUM_THREADS") && r.stdout.hasSuffix("umd-mpirun selftest\n"), "\(r)")
        let over = try MPIJob.runDirect(["launch", "-np", "4", "--cores-per-node", "2", "--dry-run", "--", "selftest"],
                                        environment: Self.noThreads)
        #expect(over.stdout.contains("OPENBLAS_NUM_THREADS=1 mpirun -np 4 --oversubscribe --bind-to none"), "\(over)")
        // Was: a set OPENBLAS_NUM_THREADS was overridden.
        let set = try MPIJob.runDirect(["launch", "-np", "2", "--cores-per-node", "8", "--dry-run", "--", "selftest"],
                                       environment: ["OPENBLAS_NUM_THREADS": "3"])
        #expect(set.stdout.contains("OPENBLAS_NUM_THREADS=3 mpirun -np 2 --map-by ppr:2:node:PE=3 --bind-to core"), "\(set)")
    }

    /// Was: with a hostfile the login machine's cores sized the ranks (oversubscribe, 1 thread).
    @Test func aHostfileGivesRanksPerNodeFromItsSlots() throws {
        let hostfile = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("hostfiles/cluster.example").path
        let r = try MPIJob.runDirect(["launch", "-np", "16", "--hostfile", hostfile, "--cores-per-node", "32", "--dry-run",
                                      "--", "pretrain"], environment: Self.noThreads)
        #expect(r.stdout.contains("OPENBLAS_NUM_THREADS=8 mpirun -np 16 --hostfile \(hostfile) --map-by ppr:4:node:PE=8 --bind-to core"),
                "\(r)")
        let unknown = try MPIJob.runDirect(["launch", "-np", "16", "--hostfile", hostfile, "--dry-run", "--", "pretrain"],
                                           environment: Self.noThreads)
        #expect(!unknown.stdout.contains("--oversubscribe") && unknown.stderr.contains("pass --cores-per-node"), "\(unknown)")
    }

    /// Issue 25: without -np the hostfile's slots are the ranks; a misspelled subcommand or
    /// setting is refused once, before mpirun starts (not by every rank, interleaved).
    @Test func hostfileSlotsAreTheRanksAndTheSubcommandIsCheckedFirst() throws {
        let hostfile = FileManager.default.temporaryDirectory.appendingPathComponent("umd-hosts-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: hostfile) }
        try "node1 slots=4\nnode2 slots=4  # a comment\n# node9 slots=64\nnode3\n".write(to: hostfile, atomically: true,
                                                                                      encoding: .utf8)
        let r = try MPIJob.runDirect(["launch", "--hostfile", hostfile.path, "--cores-per-node", "8", "--dry-run", "--",
                                      "selftest"], environment: Self.noThreads)
        #expect(r.exitCode == 0 && r.stdout.contains("mpirun -np 9 --hostfile"), "\(r)")
        let typo = try MPIJob.runDirect(["launch", "-np", "2", "--", "pretrian", "--preset", "tiny"], environment: Self.noThreads)
        #expect(typo.exitCode != 0 && typo.stderr.contains("unknown subcommand `pretrian` (did you mean `pretrain`"), "\(typo)")
        let setting = try MPIJob.runDirect(["launch", "-np", "2", "--", "pretrain", "--presett", "tiny"], environment: Self.noThreads)
        #expect(setting.exitCode != 0 && setting.stderr.contains("unknown setting `presett`")
                && setting.stderr.components(separatedBy: "unknown setting").count == 2, "\(setting)")
    }

    /// Inside a SLURM allocation the ranks and threads come from SLURM_*.
    @Test func underSlurmTheAllocationSizesTheJob() throws {
        let slurm = ["OPENBLAS_NUM_THREADS": "", "SLURM_JOB_ID": "42", "SLURM_NNODES": "2", "SLURM_NTASKS": "8",
                     "SLURM_TASKS_PER_NODE": "4(x2)", "SLURM_CPUS_PER_TASK": "6"]
        let r = try MPIJob.runDirect(["launch", "--dry-run", "--", "pretrain"], environment: slurm)
        #expect(r.stdout.contains("OPENBLAS_NUM_THREADS=6 mpirun -np 8 --map-by ppr:4:node:PE=6 --bind-to core"), "\(r)")
        let s = try MPIJob.runDirect(["launch", "--srun", "--dry-run", "--", "pretrain"], environment: slurm)
        #expect(s.stdout.contains("srun --ntasks=8 --ntasks-per-node=4 --cpus-per-task=6 --cpu-bind=cores --mpi=pmix "
                                  + "--export=ALL,OPENBLAS_NUM_THREADS=6"), "\(s)")
    }

    @Test func launchRunsTheSubcommandOnEveryRank() throws {
        let r = try MPIJob.runDirect(["launch", "-np", "2", "--", "selftest"], timeout: 120)
        #expect(r.exitCode == 0 && r.stdout.contains("selftest ok: 2 ranks"), "\(r)")
    }
}
