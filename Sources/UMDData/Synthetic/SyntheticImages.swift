import Foundation
import UMDCore

/// What a synthetic radiology image shows. Captions, questions, answers and labels are
/// derived from it, so pretraining, retrieval, VQA and classification can really be learned.
/// `contrast` is not visible in the image: it exists only in the text, so some labels need
/// both modalities.
public struct SyntheticFinding: Sendable, Equatable {
    public enum Modality: String, CaseIterable, Sendable { case ct = "ct", mri = "mri", xray = "x-ray" }
    public enum Organ: String, CaseIterable, Sendable { case brain, chest, abdomen }
    public enum Plane: String, CaseIterable, Sendable { case axial, coronal, sagittal }
    public enum Side: String, CaseIterable, Sendable { case left, right }
    public enum Size: String, CaseIterable, Sendable { case small, large }

    public var modality: Modality
    public var organ: Organ
    public var plane: Plane
    public var lesion: Bool
    public var side: Side
    public var size: Size
    public var contrast: Bool

    /// The finding of sample `index` of a set generated with `seed`.
    public static func draw(seed: UInt64, index: Int) -> SyntheticFinding {
        let key = CounterRandom.key(CounterRandom.key(seed, CounterRandom.hash("synth.finding")), UInt64(index))
        func pick<T>(_ options: [T], _ slot: UInt64) -> T { options[Int(CounterRandom.bits(key, slot) % UInt64(options.count))] }
        return SyntheticFinding(modality: pick(Modality.allCases, 0), organ: pick(Organ.allCases, 1),
                                plane: pick(Plane.allCases, 2), lesion: CounterRandom.uniform(key, 3) < 0.6,
                                side: pick(Side.allCases, 4), size: pick(Size.allCases, 5),
                                contrast: CounterRandom.uniform(key, 6) < 0.5)
    }

    /// Grey-level image, [size, size], drawn from the finding plus seeded noise.
    public func render(size n: Int, seed: UInt64, index: Int) -> [UInt8] {
        let key = CounterRandom.key(CounterRandom.key(seed, CounterRandom.hash("synth.pixels")), UInt64(index))
        var image = [Float](repeating: 8, count: n * n)
        let s = Float(n)
        // Body outline by plane: axial is wide, coronal tall, sagittal tall and off-centre.
        let (cx, cy, rx, ry): (Float, Float, Float, Float) = {
            switch plane {
            case .axial: return (0.5, 0.5, 0.44, 0.34)
            case .coronal: return (0.5, 0.5, 0.32, 0.45)
            case .sagittal: return (0.44, 0.5, 0.36, 0.45)
            }
        }()
        let (body, rim, inner): (Float, Float, Float) = {
            switch modality {
            case .ct: return (95, 235, 70)        // bright bone rim, darker interior
            case .mri: return (120, 60, 175)      // dark rim, bright interior
            case .xray: return (200, 220, 40)     // bright body, dark air-filled parts
            }
        }()
        for y in 0..<n {
            for x in 0..<n {
                let u = (Float(x) + 0.5) / s, v = (Float(y) + 0.5) / s
                let d = ((u - cx) / rx) * ((u - cx) / rx) + ((v - cy) / ry) * ((v - cy) / ry)
                guard d <= 1 else { continue }
                var value = d > 0.8 ? rim : body
                switch organ {
                case .brain:   // inner ellipse (brain tissue) with a midline
                    if d < 0.6 { value = inner }
                    if abs(u - cx) < 0.012 && d < 0.6 { value = rim * 0.8 }
                case .chest:   // two lung fields
                    for lx in [cx - rx * 0.45, cx + rx * 0.45] {
                        let e = ((u - lx) / (rx * 0.33)) * ((u - lx) / (rx * 0.33)) + ((v - cy) / (ry * 0.6)) * ((v - cy) / (ry * 0.6))
                        if e < 1 { value = inner * 0.5 }
                    }
                case .abdomen: // a large organ on the image's left, a small one on the right
                    let e1 = ((u - (cx - rx * 0.35)) / (rx * 0.4)) * ((u - (cx - rx * 0.35)) / (rx * 0.4))
                        + ((v - cy) / (ry * 0.45)) * ((v - cy) / (ry * 0.45))
                    let e2 = ((u - (cx + rx * 0.45)) / (rx * 0.18)) * ((u - (cx + rx * 0.45)) / (rx * 0.18))
                        + ((v - (cy + ry * 0.1)) / (ry * 0.25)) * ((v - (cy + ry * 0.1)) / (ry * 0.25))
                    if e1 < 1 { value = inner } else if e2 < 1 { value = (inner + rim) / 2 }
                }
                image[y * n + x] = value
            }
        }
        if lesion {
            // Radiological convention: the patient's left is on the image's right.
            let lx = side == .left ? cx + rx * 0.45 : cx - rx * 0.45
            let ly = cy - ry * 0.25
            let r: Float = size == .large ? 0.13 : 0.06
            let bright: Float = modality == .xray ? 20 : 250
            for y in 0..<n {
                for x in 0..<n {
                    let u = (Float(x) + 0.5) / s, v = (Float(y) + 0.5) / s
                    if (u - lx) * (u - lx) + (v - ly) * (v - ly) < r * r { image[y * n + x] = bright }
                }
            }
        }
        return (0..<(n * n)).map {
            let noisy = image[$0] + 7 * Float(CounterRandom.normal(key, UInt64($0)))
            return UInt8(max(0, min(255, noisy.rounded())))
        }
    }

    /// Expands grey to RGB.
    public static func rgb(_ grey: [UInt8]) -> [UInt8] { grey.flatMap { [$0, $0, $0] } }

    // MARK: Text

    var modalityName: String {
        switch modality { case .ct: "CT"; case .mri: "MRI"; case .xray: "X-ray" }
    }

    /// A caption in one of several phrasings (the variant is seeded too).
    public func caption(variant: Int) -> String {
        let technique = contrast ? "contrast-enhanced " : "non-contrast "
        let finding = lesion ? "a \(size.rawValue) lesion in the \(side.rawValue) \(organ == .brain ? "hemisphere" : "side")"
            : "no focal lesion"
        switch variant % 4 {
        case 0: return "\(plane.rawValue.capitalized) \(technique)\(modalityName) of the \(organ.rawValue) showing \(finding)."
        case 1: return "\(technique.capitalized)\(modalityName) image, \(plane.rawValue) view of the \(organ.rawValue): \(finding)."
        case 2: return "\(modalityName) \(organ.rawValue), \(plane.rawValue) plane, \(technique)study, with \(finding)."
        default:
            return lesion ? "There is a \(size.rawValue) \(side.rawValue)-sided lesion on this \(plane.rawValue) \(technique)\(modalityName) of the \(organ.rawValue)."
                : "\(plane.rawValue.capitalized) \(modalityName) of the \(organ.rawValue) (\(technique)) without abnormality."
        }
    }

    /// A caption that leaves the modality out (MELINDA): the method label then needs the
    /// image for the modality and the text for the technique.
    public func captionWithoutModality(variant: Int) -> String {
        let technique = contrast ? "contrast-enhanced" : "non-contrast"
        let finding = lesion ? "a \(size.rawValue) \(side.rawValue) lesion" : "no focal lesion"
        switch variant % 2 {
        case 0: return "\(plane.rawValue.capitalized) \(technique) study of the \(organ.rawValue) showing \(finding)."
        default: return "The \(organ.rawValue), \(plane.rawValue) view, \(technique) acquisition: \(finding)."
        }
    }

    /// Questions with their answers; `closed` questions are yes/no. Several need the image
    /// and the question together (which side, which modality is asked about).
    public func questions() -> [(question: String, answer: Any, closed: Bool)] {
        var q: [(String, Any, Bool)] = [
            ("is there a lesion?", lesion ? "yes" : "no", true),
            ("what imaging modality is this?", modality.rawValue, false),
            ("what organ is shown?", organ.rawValue, false),
            ("in which plane is this image taken?", plane.rawValue, false),
            ("how many lesions are there?", lesion ? 1 : 0, false),
        ]
        for side in Side.allCases {
            q.append(("is the lesion on the \(side.rawValue) side?", lesion && self.side == side ? "yes" : "no", true))
        }
        for m in Modality.allCases {
            q.append(("is this \(m == .xray ? "an x-ray" : m == .mri ? "an mri" : "a ct scan")?", modality == m ? "yes" : "no", true))
        }
        if lesion {
            q.append(("which side is the lesion on?", side.rawValue, false))
            q.append(("how large is the lesion?", size.rawValue, false))
        }
        return q
    }
}
