import Foundation
import UMDCore

/// One rank's inputs of one training step, ready for the model.
public enum StepBatch: Sendable {
    case pretrain(PretrainBatch)
    case classification(ClassificationBatch)
    case retrieval(RetrievalBatch)
}

/// What a stage's step needs from the data: MR-Pretrain (with ITM pairs), TD-Calib (the
/// same without ITM), VQA/classification fine-tuning, or retrieval fine-tuning.
public enum BatchKind: Sendable, Equatable {
    case pretrain(itm: Bool)
    case classification
    case retrieval
}

/// Where the inputs of one global batch come from. Position p in [0, G) is a sample's place
/// in the step's global batch; a rank asks only for the positions it needs (its own, and
/// the ITM partners or retrieval texts its samples are paired with).
public protocol BatchSource {
    /// G.
    var globalBatch: Int { get }
    /// The data-set index of position p: keys the sample's masks and dropout.
    func datasetIndex(_ p: Int) -> Int
    /// Normalised pixels of the positions, [n, 3, H, H].
    func pixels(_ positions: [Int]) throws -> [Float]
    /// Token ids and attention of the positions' texts, [n, L] each.
    func tokens(_ positions: [Int]) -> (ids: [Int32], attention: [Int32])
    /// Answer or class index of position p.
    func label(_ p: Int) -> Int32
}
