import Testing
// Only Collective: MPIBridge's names must reach this file through Collective's re-export
// (a file that imports MPIBridge itself could not fail this test).
import Collective

/// Collective re-exports MPIBridge, so its users need one import.
struct ReExportTests {
    @Test func reductionOperationsAreReExported() {
        #expect(ReductionOp.allCases.map(\.description) == ["MPI_SUM", "MPI_MAX", "MPI_MIN"])
        let _: Communicator.Type = Communicator.self
    }
}
