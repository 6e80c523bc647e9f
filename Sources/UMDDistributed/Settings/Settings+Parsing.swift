import Foundation
import UMDModel
import Yams

/// Reading settings from a stage's command line and from a config file.
extension Settings {
    /// The configuration of `stage` from its command-line arguments (everything after the
    /// subcommand): defaults < `--config FILE` < flags, whatever the order on the line.
    public static func configuration(stage: Stage, arguments: [String]) throws -> RunConfiguration {
        var defaults = RunConfiguration()
        defaults.stage = stage
        return try configuration(.stage(stage), arguments: arguments, defaults: defaults)
    }

    /// The configuration a command of `scope` reads from its arguments, starting from the
    /// command's `defaults`. A tool's `--stage` is applied first: it decides which of the
    /// other settings belong (`--alpha` to pretrain and calib, `--beta` to finetune, …).
    public static func configuration(_ scope: SettingsScope, arguments: [String],
                                     defaults: RunConfiguration) throws -> RunConfiguration {
        var c = defaults
        var configFile: String? = nil
        var given: [(setting: Setting, spelled: String, value: String)] = []
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            guard argument.hasPrefix("--"), argument.count > 2 else {
                throw RunError("unexpected argument '\(argument)'; settings are given as --name VALUE (see --help)")
            }
            let body = argument.dropFirst(2)
            let name = String(body.prefix { $0 != "=" })
            let inline = body.contains("=") ? String(body.drop { $0 != "=" }.dropFirst()) : nil
            let next = i + 1 < arguments.count ? arguments[i + 1] : nil
            i += 1
            if name == "config" {
                guard let path = inline ?? next else { throw RunError("--config needs a file") }
                if inline == nil { i += 1 }
                configFile = path
                continue
            }
            let setting = try find(name, scope: scope, where: "--\(name)")
            let value: String
            if let inline {
                value = inline
            } else if setting.form == .flag {
                // `--strict` alone is on; `--gm-coord off` (a following on/off word) is read too.
                if let next, Bool(settingText: next) != nil { value = next; i += 1 } else { value = "on" }
            } else if setting.name == "resume" && (next == nil || next!.hasPrefix("--")) {
                value = "latest"          // `--resume` alone: the newest checkpoint of --out
            } else {
                guard let next else { throw RunError("--\(name) needs a value (\(setting.placeholder))") }
                value = next
                i += 1
            }
            given.append((setting, name, value))
        }
        if let configFile { c = try ConfigFile.apply(configFile, scope: scope, to: c) }
        for (setting, spelled, value) in given where setting.name == "stage" {
            try assign(setting, value, to: &c, where: "--\(spelled)")
        }
        for (setting, spelled, value) in given where setting.name != "stage" {
            try requireTakes(setting, spelled: spelled, scope: scope, stage: c.stage, where: "--\(spelled)")
            try assign(setting, value, to: &c, where: "--\(spelled)")
        }
        return c
    }

    /// The setting called (or aliased) `name`; unknown names get the close ones suggested.
    static func find(_ name: String, scope: SettingsScope, where place: String) throws -> Setting {
        guard let setting = named(name) else {
            let close = all.filter { !$0.hidden && ($0.name.hasPrefix(name.prefix(3)) || name.hasPrefix($0.name.prefix(3))) }
            let hint = close.isEmpty ? "" : " (did you mean \(close.map { "`\($0.name)`" }.joined(separator: " or "))?)"
            throw RunError("\(place): unknown setting `\(name)`\(hint); `umd-mpirun \(scope.command) --help` lists them")
        }
        return setting
    }

    /// Refuses a setting the scope does not take at `stage`, naming who does take it.
    static func requireTakes(_ setting: Setting, spelled name: String, scope: SettingsScope, stage: Stage,
                             where place: String) throws {
        guard !takes(setting, scope, stage) else { return }
        let owners = Stage.allCases.filter { setting.stages.contains($0) }.map(\.rawValue)
        if case .tool(let tool) = scope, setting.tools.contains(tool) {
            throw RunError("\(place): `\(name)` is a setting of \(owners.joined(separator: ", ")) steps, not of a "
                           + "\(stage.rawValue) step")
        }
        // Training stages are named when they take it; a tool's own setting names its tools.
        let takers = owners.isEmpty ? setting.tools.map(\.rawValue).sorted() : owners
        throw RunError("\(place): `\(name)` is a setting of \(takers.joined(separator: ", ")), not of \(scope.command)")
    }

    /// A stage's setting by name (config files of a training stage).
    static func lookUp(_ name: String, scope: SettingsScope, stage: Stage, where place: String) throws -> Setting {
        let setting = try find(name, scope: scope, where: place)
        try requireTakes(setting, spelled: name, scope: scope, stage: stage, where: place)
        return setting
    }

    static func assign(_ setting: Setting, _ text: String, to c: inout RunConfiguration, where place: String) throws {
        if let problem = setting.assign(&c, text) {
            throw RunError("\(place): '\(text)' is not allowed: \(problem)")
        }
    }
}

/// A config file: YAML, or JSON (recognised by its first character, `{`). Keys are the
/// setting names (`batch-size: 8`); a key that is not a setting and holds a mapping is a
/// section that only groups settings (`optim: {lr: 1e-4}`); `init-only` takes a list.
/// Anything else — an unknown key, a setting of another stage, a list or section where a
/// value belongs — is an error naming the key's path and line.
enum ConfigFile {
    static func apply(_ path: String, scope: SettingsScope, to base: RunConfiguration) throws -> RunConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RunError("\(path): cannot read the config file")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw RunError("\(path): not UTF-8 text") }
        let trimmed = text.drop { $0.isWhitespace }
        if trimmed.first == "{" {
            // JSON: checked by a JSON parser first, so a JSON mistake is reported as one.
            do { _ = try JSONSerialization.jsonObject(with: data) } catch {
                throw RunError("\(path): not valid JSON (\(error.localizedDescription))")
            }
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw RunError("\(path): not valid YAML: \(error)")
        }
        guard let root else { return base }                 // an empty file sets nothing
        guard case .mapping(let mapping) = root else {
            throw RunError("\(path): expected settings as `name: value` lines (a mapping) at the top level")
        }
        var c = base
        // A tool's file may choose the stage; the other keys are then checked against it.
        if case .tool = scope, let stage = mapping.first(where: { $0.key.string == "stage" }) {
            try Settings.assign(Settings.named("stage")!, stage.value.string ?? "", to: &c,
                                where: "\(path):\(line(stage.key)): stage")
        }
        try apply(mapping, prefix: "", file: path, scope: scope, to: &c)
        return c
    }

    static func apply(_ mapping: Node.Mapping, prefix: String, file: String, scope: SettingsScope,
                      to c: inout RunConfiguration) throws {
        for (keyNode, value) in mapping {
            guard let key = keyNode.string else { throw RunError("\(file):\(line(keyNode)): a key must be text") }
            let path = prefix + key
            let place = "\(file):\(line(keyNode)): \(path)"
            if key == "umd" && prefix.isEmpty { continue }            // which umd wrote a config.json
            if key == "stage" {
                if case .tool = scope { continue }          // applied first (above)
                guard value.string == c.stage.rawValue else {
                    throw RunError("\(place): this file is for stage \(value.string ?? "?"), but the command is "
                                   + "\(c.stage.rawValue); the stage is chosen by the command")
                }
                continue
            }
            guard Settings.named(key) != nil else {
                if case .mapping(let section) = value {
                    try apply(section, prefix: path + ".", file: file, scope: scope, to: &c)
                    continue
                }
                _ = try Settings.find(key, scope: scope, where: place)   // throws: unknown setting
                continue
            }
            let setting = try Settings.lookUp(key, scope: scope, stage: c.stage, where: place)
            switch value {
            case .scalar(let scalar):
                // `key:`, `key: ~` and `key: null` set nothing (the default stays).
                if scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string) { continue }
                try Settings.assign(setting, scalar.string, to: &c, where: place)
            case .sequence(let items):
                guard setting.form == .list else {
                    throw RunError("\(place): expected one value, got a list")
                }
                let texts = try items.map { item -> String in
                    guard case .scalar(let s) = item else { throw RunError("\(place): list items must be plain values") }
                    return s.string
                }
                try Settings.assign(setting, texts.joined(separator: ","), to: &c, where: place)
            case .mapping:
                throw RunError("\(place): expected a value, got a section")
            case .alias:
                throw RunError("\(place): YAML aliases are not supported; write the value")
            }
        }
    }

    static func line(_ node: Node) -> Int { node.mark?.line ?? 0 }
}
