import Testing
import Collective

/// Collective re-exports MPIBridge, so its users need one import. The bucket engine's
/// tests arrive with the distributed-training issue.
struct CollectiveTests {
    @Test func reductionOperationsAreReExported() {
        #expect(ReductionOp.allCases.map(\.description) == ["MPI_SUM", "MPI_MAX", "MPI_MIN"])
    }
}
