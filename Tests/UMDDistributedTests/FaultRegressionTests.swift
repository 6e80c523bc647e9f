import Foundation
import Testing
import TestSupport
import UMDData
import UMDModel
@testable import UMDDistributed
#if canImport(Glibc)
import Glibc
#endif

/// Issue 24: the defects fault injection and a first-time user found — wrong results with
/// exit 0, lost history, crashes on hostile input — each reproduced here as it was reported
/// (numbers in the test names' comments are the issue's items).
@Suite("fault regressions", .serialized)
struct FaultRegressionTests {
    static let root = ScratchDirectory.make("umd-faults")
    static func path(_ p: String) -> String { root.appendingPathComponent(p).path }

    static func prepare() throws {
        try SyntheticFixture.make(in: root, datasets: [("roco", "roco"), ("vqa-rad", "vqa")])
    }

    static var pretrain: [String] {
        ["pretrain", "--roco", path("roco"), "--tokenizer", path("tok"), "--batch-size", "4"]
    }
    static var finetune: [String] {
        ["finetune", "--task", "vqa-rad", "--data", path("vqa"), "--tokenizer", path("tok"), "--batch-size", "4"]
    }

    static func rows(_ run: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path("\(run)/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }

    static func sha(_ p: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path(p))) }

    // 1. export dropped the class list; eval rebuilt it from the evaluated data.
    // 2. the tokenizer was not tied to the weights.
    @Test func exportsCarryClassesAndTokenizerAndEvalChecksBoth() throws {
        try Self.prepare()
        let ft = try MPIJob.run(ranks: 1, Self.finetune + ["--out", Self.path("ft"), "--steps", "3", "--checkpoint-every", "3"])
        try #require(ft.exitCode == 0, "\(ft)")
        try FileManager.default.createDirectory(atPath: Self.path("elsewhere"), withIntermediateDirectories: true)
        let export = try MPIJob.runDirect(["export", "--checkpoint", Self.path("ft"), "--out", Self.path("elsewhere/ft.safetensors")])
        try #require(export.exitCode == 0, "\(export)")
        let final = try Safetensors.read(URL(fileURLWithPath: Self.path("ft/final.safetensors")))
        let exported = try Safetensors.read(URL(fileURLWithPath: Self.path("elsewhere/ft.safetensors")))
        #expect(final.metadata["classes"] != nil && exported.metadata["classes"] == final.metadata["classes"])
        #expect(final.metadata[WeightsDescription.tokenizerKey] == TokenizerIdentity.hash(URL(fileURLWithPath: Self.path("tok"))))
        #expect(exported.metadata[WeightsDescription.tokenizerKey] == final.metadata[WeightsDescription.tokenizerKey])
        // The export, alone in another folder, scores what final.safetensors scores.
        func overall(_ weights: String, tokenizer: String = Self.path("tok")) throws -> (MPIJob.Result, String?) {
            let r = try MPIJob.run(ranks: 1, ["eval", "--task", "vqa-rad", "--data", Self.path("vqa"), "--tokenizer", tokenizer,
                                              "--checkpoint", weights])
            return (r, r.stdout.split(separator: "\n").first { $0.hasPrefix("eval vqa-rad test:") }.map(String.init))
        }
        let (a, scoreFinal) = try overall(Self.path("ft/final.safetensors"))
        let (b, scoreExport) = try overall(Self.path("elsewhere/ft.safetensors"))
        #expect(a.exitCode == 0 && b.exitCode == 0 && scoreFinal != nil && scoreFinal == scoreExport, "\(a)\n\(b)")
        // Weights without a class list are refused for a classifier task, not given a list
        // rebuilt from the data.
        let pre = try MPIJob.run(ranks: 1, Self.pretrain + ["--out", Self.path("pre"), "--steps", "1"])
        try #require(pre.exitCode == 0, "\(pre)")
        let (noClasses, _) = try overall(Self.path("pre/final.safetensors"))
        #expect(noClasses.exitCode != 0 && noClasses.output.contains("carries no answer/class list"), "\(noClasses)")
        // A tokenizer whose ids are permuted (same size, loads fine): refused by eval, encode and --init.
        let permuted = Self.root.appendingPathComponent("tok-permuted")
        try FileManager.default.createDirectory(at: permuted, withIntermediateDirectories: true)
        var vocab = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.path("tok/vocab.json"))))
            as! [String: Int]
        let swap = vocab.filter { $0.value >= 4 && $0.value < vocab.count - 1 }.keys.sorted().prefix(2)
        (vocab[swap.first!], vocab[swap.last!]) = (vocab[swap.last!], vocab[swap.first!])
        try JSONSerialization.data(withJSONObject: vocab).write(to: permuted.appendingPathComponent("vocab.json"))
        try FileManager.default.copyItem(atPath: Self.path("tok/merges.txt"), toPath: permuted.appendingPathComponent("merges.txt").path)
        let (wrongTokenizer, _) = try overall(Self.path("elsewhere/ft.safetensors"), tokenizer: permuted.path)
        #expect(wrongTokenizer.exitCode != 0 && wrongTokenizer.output.contains("was trained with another tokenizer"), "\(wrongTokenizer)")
        let initRun = try MPIJob.run(ranks: 1, ["calib", "--task", "vqa-rad", "--data", Self.path("vqa"), "--tokenizer", permuted.path,
                                                "--init", Self.path("pre"), "--out", Self.path("calib-permuted"), "--steps", "1",
                                                "--batch-size", "4"])
        #expect(initRun.exitCode != 0 && initRun.output.contains("was trained with another tokenizer"), "\(initRun)")
        let encode = try MPIJob.runDirect(["encode", "--weights", Self.path("ft"), "--tokenizer", permuted.path,
                                           "--texts", "is there a fracture", "--out", Self.path("enc.safetensors")])
        #expect(encode.exitCode != 0 && encode.output.contains("was trained with another tokenizer"), "\(encode)")
        // Fine-tuning from weights whose head stands for another class list: refused, not remapped.
        let other = try MPIJob.runDirect(["synth", "--kind", "vqa-rad", "--out", Self.path("vqa-other"), "--count", "24",
                                          "--image-size", "32", "--seed", "7"])
        try #require(other.exitCode == 0, "\(other)")
        let headInit = try MPIJob.run(ranks: 1, ["finetune", "--task", "vqa-rad", "--data", Self.path("vqa-other"), "--tokenizer",
                                                 Self.path("tok"), "--init", Self.path("ft"), "--out", Self.path("ft-other"),
                                                 "--steps", "1", "--batch-size", "4"])
        #expect(headInit.exitCode != 0 && headInit.output.contains("holds a task head for another class list"), "\(headInit)")
        // Importing only the vision side does not need the text's tokenizer.
        let visionOnly = try MPIJob.run(ranks: 1, ["calib", "--task", "vqa-rad", "--data", Self.path("vqa"), "--tokenizer", permuted.path,
                                                   "--init", Self.path("pre"), "--init-only", "vision.", "--out",
                                                   Self.path("calib-vision"), "--steps", "1", "--batch-size", "4"])
        #expect(visionOnly.exitCode == 0, "\(visionOnly)")
    }

    // 3. an edited manifest resumed onto another trajectory while `inspect --verify` said "intact".
    @Test func anEditedManifestIsCaughtAndResumeFallsBackToTheSameTrajectory() throws {
        try Self.prepare()
        let args = Self.pretrain + ["--steps", "4", "--checkpoint-every", "1", "--keep-checkpoints", "3"]
        let straight = try MPIJob.run(ranks: 1, args + ["--out", Self.path("straight")])
        try #require(straight.exitCode == 0, "\(straight)")
        let stopped = try MPIJob.run(ranks: 1, args + ["--out", Self.path("edited"), "--debug-stop-after", "3"])
        try #require(stopped.exitCode == 143, "\(stopped)")
        let manifest = Self.path("edited/checkpoints/step-00000003/manifest.json")
        let text = try String(contentsOfFile: manifest, encoding: .utf8)
        try #require(text.contains("\"optimizerSteps\" : 3"))
        try text.replacingOccurrences(of: "\"optimizerSteps\" : 3", with: "\"optimizerSteps\" : 2")
            .write(toFile: manifest, atomically: true, encoding: .utf8)
        let verify = try MPIJob.runDirect(["inspect", "--verify", Self.path("edited/checkpoints/step-00000003")])
        #expect(verify.exitCode != 0 && verify.output.contains("checksum does not match"), "\(verify)")
        let resumed = try MPIJob.run(ranks: 1, args + ["--out", Self.path("edited"), "--resume"])
        #expect(resumed.exitCode == 0 && resumed.output.contains("checksum does not match")
                && resumed.output.contains("resumed from \(Self.path("edited/checkpoints/step-00000002"))"), "\(resumed)")
        #expect(try Self.sha("edited/final.safetensors") == Self.sha("straight/final.safetensors"))
    }

    // 4. best.safetensors was replaced by a worse model after a resume, patience restarted,
    //    and a resumed early-stopped run trained on. 24. "done: 200 steps" after 10.
    @Test func validationStateSurvivesAResume() throws {
        try Self.prepare()
        // lr 1e-12: the weights do not move, every validation scores the same, so only the
        // first is "better": the best stays step 1's across the resume.
        let args = Self.finetune + ["--out", Self.path("best"), "--steps", "8", "--eval-every", "1", "--checkpoint-every", "1",
                                    "--keep-best", "loss", "--early-stop", "2", "--lr", "1e-12", "--log-every", "1"]
        let first = try MPIJob.run(ranks: 1, args + ["--debug-stop-after", "2"], timeout: 180)
        try #require(first.exitCode == 143, "\(first)")
        let resumed = try MPIJob.run(ranks: 1, args + ["--resume"], timeout: 180)
        #expect(resumed.exitCode == 0 && resumed.output.contains("early stop: 2 validation(s) without a better loss"), "\(resumed)")
        #expect(resumed.output.contains("done: 1 steps"), "\(resumed)")
        let best = try Safetensors.read(URL(fileURLWithPath: Self.path("best/best.safetensors")))
        #expect(best.metadata["best_step"] == "1", "\(best.metadata)")
        #expect(best.metadata[WeightsDescription.tokenizerKey] == TokenizerIdentity.hash(URL(fileURLWithPath: Self.path("tok"))))
        #expect(best.metadata["classes"] != nil)
        let validations = try Self.rows("best").filter { $0["stage"] as? String == "validation" }
            .compactMap { ($0["step"] as? NSNumber)?.intValue }
        #expect(validations == [1, 2, 3], "patience counts across the resume: \(validations)")
        // Resuming a run that early stopping ended trains nothing more.
        let again = try MPIJob.run(ranks: 1, args + ["--resume"], timeout: 180)
        #expect(again.exitCode == 0 && again.output.contains("nothing is left to train"), "\(again)")
        #expect(try Self.rows("best").compactMap { ($0["step"] as? NSNumber)?.intValue }.max() == 3)
    }

    // 5. `--on-nonfinite skip-step` never gave up (593 skipped steps, exit 0, diverged weights).
    @Test func skippingGivesUpAfterTheLimit() throws {
        try Self.prepare()
        let r = try MPIJob.run(ranks: 1, Self.pretrain + ["--out", Self.path("diverged"), "--steps", "60", "--lr", "1e3",
                                                          "--on-nonfinite", "skip-step", "--max-skipped-steps", "3"])
        #expect(r.exitCode != 0 && r.output.contains("4 steps in a row were skipped"), "\(r)")
        #expect(!FileManager.default.fileExists(atPath: Self.path("diverged/final.safetensors")))
    }

    // 6. `--init-only nosuchprefix.` imported nothing, silently.
    @Test func anInitPrefixThatMatchesNothingIsAnError() throws {
        try Self.prepare()
        let pre = try MPIJob.run(ranks: 1, Self.pretrain + ["--out", Self.path("pre6"), "--steps", "1"])
        try #require(pre.exitCode == 0, "\(pre)")
        let r = try MPIJob.run(ranks: 1, ["calib", "--task", "vqa-rad", "--data", Self.path("vqa"), "--tokenizer", Self.path("tok"),
                                          "--init", Self.path("pre6"), "--init-only", "nosuchprefix.", "--out", Self.path("c6"),
                                          "--steps", "1", "--batch-size", "4"])
        #expect(r.exitCode != 0 && r.output.contains("--init-only nosuchprefix.: no tensor of the model starts with"), "\(r)")
    }

    // 7. a refused start deleted the other run's metrics.jsonl.
    @Test func aRefusedStartKeepsTheOtherRunsHistory() throws {
        try Self.prepare()
        let first = try MPIJob.run(ranks: 1, Self.pretrain + ["--out", Self.path("r7"), "--steps", "2"])
        try #require(first.exitCode == 0, "\(first)")
        let metrics = try Self.sha("r7/metrics.jsonl")
        let refused = try MPIJob.run(ranks: 1, Self.pretrain + ["--out", Self.path("r7"), "--steps", "1", "--seed", "9"])
        #expect(refused.exitCode != 0 && refused.output.contains("holds another run"), "\(refused)")
        #expect(try Self.sha("r7/metrics.jsonl") == metrics, "the refused start left the run's history alone")
    }

    // Session 13: a refused --resume (another configuration) rewrote config.json with the
    // refused settings, so the run's record no longer said how its checkpoints were made.
    @Test func aRefusedResumeKeepsTheRunsRecord() throws {
        try Self.prepare()
        let first = try MPIJob.run(ranks: 1, Self.pretrain + ["--out", Self.path("r13"), "--steps", "3", "--lr", "1e-3",
                                                              "--debug-stop-after", "1"])
        try #require(first.exitCode == 143, "\(first)")
        let (config, metrics, vocabulary) = (try Self.sha("r13/config.json"), try Self.sha("r13/metrics.jsonl"),
                                             try Self.sha("r13/tokenizer/vocab.json"))
        let refused = try MPIJob.run(ranks: 1, Self.pretrain + ["--out", Self.path("r13"), "--steps", "3", "--lr", "2e-3",
                                                                "--resume"])
        #expect(refused.exitCode != 0 && refused.output.contains("saved for another configuration: lr 0.001 (now 0.002)"),
                "\(refused)")
        #expect(try Self.sha("r13/config.json") == config, "the refused resume rewrote config.json")
        #expect(try Self.sha("r13/metrics.jsonl") == metrics)
        #expect(try Self.sha("r13/tokenizer/vocab.json") == vocabulary)
        let resumed = try MPIJob.run(ranks: 1, Self.pretrain + ["--out", Self.path("r13"), "--steps", "3", "--lr", "1e-3",
                                                                "--resume"])
        #expect(resumed.exitCode == 0, "\(resumed)")
        let recorded = try JSONSerialization.jsonObject(with: Self.sha("r13/config.json")) as? [String: Any]
        #expect((recorded?["lr"] as? Double) == 1e-3 && (recorded?["resume"] as? String)?.isEmpty == false,
                "\(String(describing: recorded))")
    }

    // 8. no lock on a run directory: two jobs wrote one metrics.jsonl.
    @Test func aLiveRunsDirectoryIsLocked() throws {
        try Self.prepare()
        let first = try MPIJob.run(ranks: 1, Self.pretrain + ["--out", Self.path("r8"), "--steps", "2", "--checkpoint-every", "1"])
        try #require(first.exitCode == 0, "\(first)")
        let metrics = try Self.sha("r8/metrics.jsonl")
        // A live run holds the lock (here: this test process); every kind of start is refused, naming it.
        let lock = try RunDirectoryLock.acquire(URL(fileURLWithPath: Self.path("r8")))
        for extra in [["--resume"], ["--overwrite"], []] {
            let busy = try MPIJob.run(ranks: 1, Self.pretrain + ["--out", Self.path("r8"), "--steps", "2"] + extra)
            #expect(busy.exitCode != 0 && busy.output.contains("is in use by another run (pid \(getpid()) on host"), "\(busy)")
        }
        lock.release()
        #expect(try Self.sha("r8/metrics.jsonl") == metrics)
        let resumed = try MPIJob.run(ranks: 1, Self.pretrain + ["--out", Self.path("r8"), "--steps", "2", "--resume"])
        #expect(resumed.exitCode == 0, "the lock goes with its holder: \(resumed)")
    }

    // 11. a kill during the first checkpoint left a directory nothing could start in.
    // 14. `--out ""` wrote the run into the current directory.
    @Test func aDirectoryWithoutSavedWeightsCanBeStartedFresh() throws {
        try Self.prepare()
        let killed = Self.path("r11/checkpoints/step-00000001")
        try FileManager.default.createDirectory(atPath: killed, withIntermediateDirectories: true)
        try Data("partial".utf8).write(to: URL(fileURLWithPath: killed + "/shard-00000-of-00001.zst.tmp"))
        try Data("{}".utf8).write(to: URL(fileURLWithPath: Self.path("r11/config.json")))
        let restarted = try MPIJob.run(ranks: 1, Self.pretrain + ["--out", Self.path("r11"), "--steps", "1"])
        #expect(restarted.exitCode == 0, "\(restarted)")
        let empty = try MPIJob.run(ranks: 1, Self.pretrain + ["--out", "", "--steps", "1"])
        #expect(empty.exitCode != 0 && empty.output.contains("--out") && empty.output.contains("must not be empty"), "\(empty)")
    }

    // 12. `--overwrite` twice in one second failed: the backup name had one-second resolution.
    @Test func overwritingTwiceInOneSecondKeepsBothOldRuns() throws {
        let base = Self.root.appendingPathComponent("r12")
        var config = RunConfiguration()
        config.overwrite = true
        for n in 0..<3 {
            try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
            try Data("run \(n)".utf8).write(to: base.appendingPathComponent("final.safetensors"))
            #expect(try Trainer.previousRun(at: base, config: config) == false)
        }
        let aside = try FileManager.default.contentsOfDirectory(atPath: Self.root.path).filter { $0.hasPrefix("r12.old-") }
        #expect(aside.count == 3, "\(aside)")
    }

    // 9. orphaned ranks trained on after their launcher died. Checked with a launcher this
    // test controls: a shell that starts the program and exits, leaving it with parent pid 1
    // (an mpirun killed with -9 leaves its ranks the same way; see the next test).
    @Test func aProcessWhoseLauncherDiedStopsWithoutSaving() throws {
        try Self.prepare()
        let out = Self.path("orphan-watch"), pidFile = Self.path("orphan.pid"), log = Self.path("orphan.log")
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        shell.arguments = ["-c", "\"$0\" \"$@\" < /dev/null > \(log) 2>&1 & echo $! > \(pidFile); sleep 4", try MPIJob.binary().path]
            + Self.pretrain + ["--out", out, "--steps", "100000", "--log-every", "100000"]
        shell.environment = MPIJob.environment(extra: ["UMD_LAUNCHER_WATCH": "1"])
        try shell.run()
        let launched = Date()
        while shell.isRunning && Date().timeIntervalSince(launched) < 20 { usleep(100_000) }
        let pid = try #require(Int32(String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        let orphaned = Date()
        while Date().timeIntervalSince(orphaned) < 30 && FileManager.default.fileExists(atPath: "/proc/\(pid)") { usleep(200_000) }
        let alive = FileManager.default.fileExists(atPath: "/proc/\(pid)")
        if alive { kill(pid, SIGKILL) }
        #expect(!alive, "the program ran on 30 s after its launcher exited")
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("the launcher (pid") && text.contains("stopping without saving"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: out + "/final.safetensors"))
    }

    // 9. after `kill -9` of mpirun the orphaned ranks trained on (here OpenMPI's own lost
    // connection handling also ends them; the watch above makes it certain).
    @Test func ranksStopWhenTheirLauncherIsKilled() throws {
        try Self.prepare()
        let out = Self.path("orphans")
        let mpirun = Process()
        mpirun.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        mpirun.arguments = ["mpirun", "-np", "2", "--oversubscribe", try MPIJob.binary().path] + Self.pretrain
            + ["--out", out, "--steps", "100000", "--log-every", "100000"]
        mpirun.environment = MPIJob.environment()
        mpirun.standardOutput = FileHandle.nullDevice
        mpirun.standardError = FileHandle.nullDevice
        try mpirun.run()
        func ranks() -> [Int32] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return names.compactMap { Int32($0) }.filter { pid in
                guard let cmd = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")) else { return false }
                let line = String(decoding: cmd, as: UTF8.self).replacingOccurrences(of: "\0", with: " ")
                return line.contains("umd-mpirun pretrain") && line.contains(out) && !line.contains("mpirun -np")
            }
        }
        // Wait until the ranks train, then kill the launcher only. They write nothing while
        // training (no log line is due), so no broken pipe would stop them either.
        let start = Date()
        while Date().timeIntervalSince(start) < 60 && !FileManager.default.fileExists(atPath: out + "/config.json") {
            usleep(200_000)
        }
        sleep(3)
        let before = ranks()
        kill(mpirun.processIdentifier, SIGKILL)
        mpirun.waitUntilExit()
        let killed = Date()
        while Date().timeIntervalSince(killed) < 30 && !ranks().isEmpty { usleep(200_000) }
        let left = ranks()
        for pid in left { kill(pid, SIGKILL) }
        #expect(before.count == 2, "\(before)")
        #expect(left.isEmpty, "ranks still alive 30 s after their launcher died: \(left)")
    }

    // 13. eval threw the score away when its result file could not be written.
    @Test func evalPrintsTheScoreBeforeWritingIt() throws {
        try Self.prepare()
        let ft = try MPIJob.run(ranks: 1, Self.finetune + ["--out", Self.path("ft13"), "--steps", "1"])
        try #require(ft.exitCode == 0, "\(ft)")
        let blocker = Self.path("not-a-directory")
        try Data("x".utf8).write(to: URL(fileURLWithPath: blocker))
        let r = try MPIJob.run(ranks: 1, ["eval", "--task", "vqa-rad", "--data", Self.path("vqa"), "--tokenizer", Self.path("tok"),
                                          "--checkpoint", Self.path("ft13/final.safetensors"), "--out", blocker])
        #expect(r.exitCode != 0 && r.stdout.contains("eval vqa-rad test: overall") && r.output.contains("Pass --out DIR"), "\(r)")
    }

    // 16, 17, 23: settings that trapped, had no bound, or failed only after training.
    @Test func badSettingsAreRefusedAtStart() throws {
        try Self.prepare()
        let cases: [([String], String)] = [
            (Self.pretrain + ["--warmup", "1e30"], "--warmup"),
            (Self.pretrain + ["--image-size", "100000"], "--image-size"),
            (Self.finetune + ["--keep-best", "acc", "--eval-every", "2"],
             "--keep-best acc is not a vqa-rad validation metric; choose one of overall, closed, open, loss"),
            (Self.finetune + ["--keep-best", "loss"], "--keep-best needs --eval-every"),
        ]
        for (args, expected) in cases {
            let r = try MPIJob.run(ranks: 1, args + ["--out", Self.path("bad-settings"), "--steps", "2"])
            #expect(r.exitCode != 0 && r.output.contains(expected), "\(args): \(r)")
            #expect(!r.output.contains("Fatal error") && !r.output.contains("Illegal instruction"), "\(r)")
            #expect(!FileManager.default.fileExists(atPath: Self.path("bad-settings/final.safetensors")))
        }
    }

    // 18. a FIFO as weights hung in open().
    @Test func aFIFOAsWeightsIsRefused() throws {
        try Self.prepare()
        let fifo = Self.path("weights.fifo")
        try #require(mkfifo(fifo, 0o644) == 0)
        let r = try MPIJob.runDirect(["export", "--checkpoint", fifo, "--out", Self.path("x.safetensors")], timeout: 30)
        #expect(!r.timedOut && r.exitCode != 0 && r.output.contains("a FIFO (named pipe)"), "\(r)")
        let i = try MPIJob.run(ranks: 1, Self.pretrain + ["--init", fifo, "--out", Self.path("fifo-init"), "--steps", "1"], timeout: 30)
        #expect(!i.timedOut && i.exitCode != 0 && i.output.contains("a FIFO (named pipe)"), "\(i)")
    }

    // 10. TensorBoard kept the killed run's rows past the resumed step (metrics.jsonl drops them).
    @Test func tensorBoardShowsEachStepOnceAfterAResume() throws {
        try Self.prepare()
        let args = Self.pretrain + ["--out", Self.path("tb"), "--steps", "5", "--checkpoint-every", "2", "--log-every", "1"]
        let first = try MPIJob.run(ranks: 1, args)
        try #require(first.exitCode == 0, "\(first)")
        // As if killed after step 5 with step 2's checkpoint the last complete one.
        for name in ["final.safetensors", "checkpoints/step-00000004", "checkpoints/step-00000005"] {
            try? FileManager.default.removeItem(atPath: Self.path("tb/\(name)"))
        }
        let resumed = try MPIJob.run(ranks: 1, args + ["--resume"])
        try #require(resumed.exitCode == 0 && resumed.output.contains("step-00000002"), "\(resumed)")
        let shown = try TensorBoardTests.shown(URL(fileURLWithPath: Self.path("tb"))).filter { $0.1 == "pretrain/loss" }
        let logged = try Self.rows("tb").map { (($0["step"] as? NSNumber)?.intValue ?? -1, Float(($0["loss"] as? Double) ?? .nan)) }
        #expect(shown.map(\.0) == [1, 2, 3, 4, 5], "\(shown)")
        #expect(shown.map(\.2) == logged.map(\.1), "TensorBoard shows what metrics.jsonl holds: \(shown) vs \(logged)")
    }

    // 15. a safetensors shape whose element count overflows trapped (Illegal instruction).
    @Test func hostileWeightsFilesAreNamedNotCrashedOn() throws {
        try Self.prepare()
        let url = URL(fileURLWithPath: Self.path("hostile.safetensors"))
        var json = Data(#"{"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,16]}}"#.utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        try (withUnsafeBytes(of: UInt64(json.count).littleEndian) { Data($0) } + json + Data(count: 16)).write(to: url)
        let r = try MPIJob.runDirect(["export", "--checkpoint", url.path, "--out", Self.path("y.safetensors")])
        #expect(r.exitCode == 1 && r.output.contains("overflows"), "\(r)")
    }

    // 19. one 200 KB token in a caption: 4.2 GB and > 150 s of tokenizer training.
    // 20. one record naming a missing subfolder aborted the whole data set.
    // 21. a header claiming 20000x20000 passed the read check and stopped the run at step 1.
    @Test func hostileRecordsAreSkippedAndBounded() throws {
        try Self.prepare()
        let roco = Self.root.appendingPathComponent("roco-hostile")
        try? FileManager.default.removeItem(at: roco)
        try FileManager.default.copyItem(at: URL(fileURLWithPath: Self.path("roco")), to: roco)
        let images = roco.appendingPathComponent("train/radiology/images")
        let png = try ImageCodec.encode([UInt8](repeating: 50, count: 16 * 16 * 3), width: 16, height: 16, channels: 3, as: .png)
        var lying = [UInt8](png)
        lying.replaceSubrange(16..<24, with: [0, 0, 0x4E, 0x20, 0, 0, 0x4E, 0x20])       // 20000 x 20000
        try Data(lying).write(to: images.appendingPathComponent("ROCO_90001.jpg"))
        let captions = roco.appendingPathComponent("train/radiology/captions.txt")
        // 200 KB of pseudo-random letters: no spaces, few repeats (a repeated pattern merges away quickly).
        var state: UInt64 = 12345
        let blob = String((0..<200_000).map { _ -> Character in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Character(Unicode.Scalar(UInt8(97 + (state >> 33) % 26)))
        })
        try (String(contentsOf: captions, encoding: .utf8) + "nosuchdir/ROCO_00018\ta caption\nROCO_90001\ta huge image\n"
             + "ROCO_90002\tthe word \(blob) is long\n").write(to: captions, atomically: true, encoding: .utf8)
        try png.write(to: images.appendingPathComponent("ROCO_90002.jpg"))
        // The default vocabulary (8000): with it the blob once took minutes and gigabytes.
        let t = try MPIJob.runDirect(["tokenizer", "train", "--roco", roco.path, "--out", Self.path("tok-hostile")], timeout: 90)
        #expect(!t.timedOut && t.exitCode == 0, "\(t)")
        let r = try MPIJob.run(ranks: 1, ["pretrain", "--roco", roco.path, "--tokenizer", Self.path("tok-hostile"), "--out",
                                          Self.path("hostile-run"), "--steps", "6", "--batch-size", "8"], timeout: 90)
        #expect(r.exitCode == 0 && r.output.contains("nosuchdir") && r.output.contains("declares 20000x20000 pixels"), "\(r)")
    }

    // 24. `tokenizer train` dropped bad records without a count.
    @Test func tokenizerTrainingCountsWhatItSkipped() throws {
        try Self.prepare()
        let roco = Self.root.appendingPathComponent("roco-bad")
        try? FileManager.default.removeItem(at: roco)
        try FileManager.default.copyItem(at: URL(fileURLWithPath: Self.path("roco")), to: roco)
        let captions = roco.appendingPathComponent("train/radiology/captions.txt")
        try (String(contentsOf: captions, encoding: .utf8) + "a line without a tab\n").write(to: captions, atomically: true, encoding: .utf8)
        let r = try MPIJob.runDirect(["tokenizer", "train", "--roco", roco.path, "--vocab-size", "280", "--out", Self.path("tok-bad")])
        #expect(r.exitCode == 0 && r.stdout.contains("1 skipped") && r.output.contains("no tab between"), "\(r)")
    }
}
