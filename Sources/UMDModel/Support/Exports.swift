// CounterRandom lives in UMDCore, shared with UMDData; re-exported for the model code.
@_exported import UMDCore
