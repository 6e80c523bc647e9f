import MPIBridge

// The gradient-bucket allreduce engine lands with the distributed-training issue.
// For now this module re-exports the communicator so callers depend on one layer.
@_exported import MPIBridge
