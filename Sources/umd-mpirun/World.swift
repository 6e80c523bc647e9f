import ArgumentParser
import MPIBridge
import UMDCore

/// Runs `body` on MPI_COMM_WORLD and ends MPI cleanly.
///
/// An error thrown on one rank is printed with the rank and then aborts the whole job
/// (MPI_Abort), because the other ranks may already be waiting in a collective and would
/// otherwise hang. A single-rank run just exits non-zero.
func runOnWorld(_ body: (Communicator) throws -> Void) throws {
    let world: Communicator
    do {
        world = try Communicator.initializeWorld()
    } catch {
        writeToStandardError("umd-mpirun: error: \(error)\n")
        throw ExitCode(2)
    }
    do {
        try body(world)
    } catch let exit as ExitCode {
        try? world.finalize()
        throw exit
    } catch {
        if world.size > 1 { world.abort(message: "error: \(error)") }
        writeToStandardError("umd-mpirun: error: \(error)\n")
        try? world.finalize()
        throw ExitCode.failure
    }
    try world.finalize()
}

/// Prints on rank 0 only (other ranks print warnings and errors only).
func printOnRoot(_ world: Communicator, _ text: String) {
    if world.rank == 0 { print(text) }
}
