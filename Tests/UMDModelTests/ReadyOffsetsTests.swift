import Testing
@testable import UMDModel

/// Backward reports its progress at offsets derived from the declaration order (issue 26):
/// they must be the lowest offsets of the fusion layers (poolers excluded), the text
/// encoder and the vision encoder — what the earlier name-prefix rule computed — and every
/// tensor of a later module must lie below them (so a bucket below is final).
struct ReadyOffsetsTests {
    @Test("ready offsets from the layout", arguments: [TaskHead.none, .classifier(outputs: 7), .retrieval])
    func readyOffsetsAreTheModulesLowestOffsets(head: TaskHead) throws {
        let params = UMDParameters(ModelConfig(preset: .tiny, vocabularySize: 300, head: head))
        let store = ParameterStore(layout: params.layout)
        func lowest(_ accept: (String) -> Bool) -> Int { store.views.filter { accept($0.name) }.map(\.offset).min()! }
        let ready = params.readyOffsets(store)
        #expect(ready.fusion == lowest { $0.hasPrefix("fusion.") && !$0.contains("_pooler.") })
        #expect(ready.text == lowest { $0.hasPrefix("text.") })
        #expect(ready.vision == lowest { $0.hasPrefix("vision.") })
        #expect(ready.fusion < ready.text && ready.text < ready.vision)
        // Everything below the fusion layers is what backward finishes before them.
        for view in store.views where view.offset < ready.fusion {
            #expect(!view.name.hasPrefix("text.") && !view.name.hasPrefix("vision.")
                    && (!view.name.hasPrefix("fusion.") || view.name.contains("_pooler.")), "\(view.name)")
        }
    }
}
