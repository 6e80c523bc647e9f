import Testing
@testable import MPIBridge

/// Message texts of MPIBridge's errors; no MPI initialisation needed.
struct MPIErrorTests {
    @Test func callFailureNamesCallRankAndMPIText() {
        let error = MPIError.callFailed(call: "MPI_Bcast(root: 9)", rank: 2, code: 8, mpiMessage: "MPI_ERR_ROOT: invalid root")
        #expect(error.description == "MPI_Bcast(root: 9) failed on rank 2: MPI_ERR_ROOT: invalid root (MPI error code 8)")
    }

    @Test func threadSupportErrorSaysWhatToDo() {
        let error = MPIError.insufficientThreadSupport(required: .multiple, provided: .funneled)
        #expect(error.description.contains("MPI_THREAD_MULTIPLE"))
        #expect(error.description.contains("MPI_THREAD_FUNNELED"))
    }

    @Test func threadLevelsAreOrdered() {
        #expect(ThreadLevel.single < .funneled && ThreadLevel.funneled < .serialized && ThreadLevel.serialized < .multiple)
        for level in [ThreadLevel.single, .funneled, .serialized, .multiple] {
            #expect(ThreadLevel(mpiValue: level.mpiValue) == level)
        }
    }
    // MPI's own error text is checked in the multi-rank tests: OpenMPI 4.1 aborts a
    // process that calls MPI_Error_string before MPI_Init, so no test here touches MPI.
}
