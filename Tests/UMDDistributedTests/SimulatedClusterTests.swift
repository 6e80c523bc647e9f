import Foundation
import Testing
import TestSupport
import UMDModel

/// Two "hosts" in network namespaces on a bridge (scripts/simcluster.sh), ranks launched
/// into them by OpenMPI's rsh agent and talking over TCP only. Needs root (CAP_NET_ADMIN)
/// and iproute2; elsewhere the suite is skipped, and says why.
@Suite("simulated cluster", .serialized,
       .enabled(if: Capabilities.networkNamespaces,
                "needs root with CAP_NET_ADMIN, iproute2 and unshare to create network-namespace hosts"))
struct SimulatedClusterTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/simcluster.sh").path
    static let root = ScratchDirectory.make("umd-simcluster-test")
    static func path(_ p: String) -> String { root.appendingPathComponent(p).path }

    static func cluster(_ arguments: [String]) throws -> MPIJob.Result {
        try MPIJob.runProgram("/bin/bash", [script] + arguments, timeout: 60)
    }

    static func mpirunOptions() throws -> [String] {
        try cluster(["mpirun-args"]).stdout.split(whereSeparator: \.isWhitespace).map(String.init)
    }

    @Test func selftestPretrainAndTheLossOfAHost() throws {
        let up = try Self.cluster(["up", "2", "--bandwidth", "10gbit"])
        try #require(up.exitCode == 0, "\(up)")
        defer { _ = try? Self.cluster(["down"]) }
        let options = try Self.mpirunOptions()
        for (kind, dir) in [("roco", "roco")] {
            let r = try MPIJob.runDirect(["synth", "--kind", kind, "--out", Self.path(dir), "--count", "24", "--image-size", "32"])
            try #require(r.exitCode == 0, "\(r)")
        }
        let tok = try MPIJob.runDirect(["tokenizer", "train", "--roco", Self.path("roco"), "--vocab-size", "300",
                                        "--out", Self.path("tok")])
        try #require(tok.exitCode == 0, "\(tok)")

        let selftest = try MPIJob.run(mpirunOptions: options, ranks: 2, ["selftest"])
        #expect(selftest.exitCode == 0 && selftest.stdout.contains("2 ranks on 2 host(s) (umdh1, umdh2)"), "\(selftest)")

        let args = ["pretrain", "--roco", Self.path("roco"), "--tokenizer", Self.path("tok"), "--batch-size", "4",
                    "--log-every", "1", "--stall-timeout", "20"]
        let three = try MPIJob.run(mpirunOptions: options, ranks: 2, args + ["--out", Self.path("three"), "--steps", "3"])
        #expect(three.exitCode == 0, "\(three)")

        // An uninterrupted 2-host run, then one that loses host 2 mid-way and resumes on one rank.
        let steps = ["--steps", "60", "--checkpoint-every", "1"]
        let straight = try MPIJob.run(mpirunOptions: options, ranks: 2, args + ["--out", Self.path("straight")] + steps)
        try #require(straight.exitCode == 0, "\(straight)")
        // (Not through MPIJob: it runs one job at a time, and the run below is that job.)
        // Host 2 dies once the run has checkpointed step 5 of 60 — a fixed delay raced the
        // run's start-up on a busy machine and, with faster steps, its end.
        let fifthCheckpoint = Self.path("lost") + "/checkpoints/step-00000005"
        let job = Thread {
            let deadline = Date().addingTimeInterval(80)
            while !FileManager.default.fileExists(atPath: fifthCheckpoint) && Date() < deadline {
                Thread.sleep(forTimeInterval: 0.02)
            }
            let kill = Process()
            kill.executableURL = URL(fileURLWithPath: "/bin/bash")
            kill.arguments = [Self.script, "kill-host", "umdh2"]
            try? kill.run()
            kill.waitUntilExit()
        }
        job.start()
        let lost = try MPIJob.run(mpirunOptions: options, ranks: 2, args + ["--out", Self.path("lost")] + steps, timeout: 90)
        #expect(!lost.timedOut && lost.exitCode != 0, "the job ends when a host dies: \(lost)")
        #expect(lost.output.contains("10.77.0.2") || lost.output.contains("umdh2"), "the lost host is named: \(lost)")
        let resumed = try MPIJob.run(ranks: 1, args + ["--out", Self.path("lost"), "--resume"] + steps)
        #expect(resumed.exitCode == 0 && resumed.output.contains("saved on 2 rank(s)"), "\(resumed)")
        try EquivalenceTests.compare(URL(fileURLWithPath: Self.path("straight")), URL(fileURLWithPath: Self.path("lost")),
                                     lossNames: ["loss", "mim", "mlm", "feamim", "feamlm", "itm"], maxLR: 2.5e-3, steps: 60,
                                     tolerance: .papersEpsilonAsSeen)
    }
}
