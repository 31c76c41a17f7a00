import Core
import Glibc
import Testing

@testable import Registry

@Suite struct GlobTests {
    @Test(arguments: [
        ("app:*", "app:hello", true), ("app:*", "app.debug:x", false), ("app.debug:*", "app.debug:x", true),
        ("swiftlet.*", "swiftlet.service", true), ("swiftlet.*", "http.static", false),
        ("app:h?llo", "app:hallo", true), ("app:h?llo", "app:hllo", false), ("*", "", true),
        ("a*b*c", "aXXbYYc", true), ("a*b*c", "aXXbYY", false), ("app:hello", "app:hello", true),
        ("*:*-test", "ns:unit-test", true), ("**", "anything:at-all", true),
    ])
    func globMatchesLikeAShell(pattern: String, text: String, expected: Bool) {
        #expect(Glob(pattern).matches(text) == expected)
    }

    @Test func longPatternsMatchInLinearTime() {
        let text = String(repeating: "a", count: 10_000)
        #expect(!Glob(String(repeating: "*a", count: 50) + "b").matches(text))
    }
}

@Suite struct FinderTests {
    let finder: Finder = {
        let yaml = """
            namespace: app
            meta: {team: web}
            entries:
              - {name: hello, kind: swiftlet.function, meta: {tier: "1"}}
              - {name: clock, kind: swiftlet.service, meta: {team: ops, public: true}}
              - {name: site, kind: http.static}
            """
        let other = "namespace: tools\nentries:\n  - {name: hello, kind: swiftlet.function}\n"
        let load = LoadResult(files: [RegistryFile.parse(yaml, path: "a.yaml"), RegistryFile.parse(other, path: "b.yaml")])
        return Finder(version: 3, entries: Dictionary(uniqueKeysWithValues: load.entries.map { ($0.id, $0) }))
    }()

    func ids(_ query: EntryQuery) -> [String] { finder.find(query).map(\.id.description) }

    @Test func emptyQueryFindsEveryEntryInIdOrder() {
        #expect(ids(EntryQuery()) == ["app:clock", "app:hello", "app:site", "tools:hello"])
    }

    @Test func findsByKindGlobNamespaceIdGlobAndMeta() {
        #expect(ids(EntryQuery(kind: Glob("swiftlet.*"))) == ["app:clock", "app:hello", "tools:hello"])
        #expect(ids(EntryQuery(kind: Glob("swiftlet.*"), namespace: "app")) == ["app:clock", "app:hello"])
        #expect(ids(EntryQuery(id: Glob("*:hello"))) == ["app:hello", "tools:hello"])
        #expect(ids(EntryQuery(id: Glob("app:site"))) == ["app:site"])
        #expect(ids(EntryQuery(id: Glob("app:nothing"))) == [])
        // File meta is inherited, entry meta wins; non-string values match by their JSON text.
        #expect(ids(EntryQuery(meta: ["team": "web"])) == ["app:hello", "app:site"])
        #expect(ids(EntryQuery(meta: ["team": "ops", "public": "true"])) == ["app:clock"])
        #expect(ids(EntryQuery(meta: ["tier": "1"])) == ["app:hello"])
        #expect(ids(EntryQuery(kind: Glob("http.*"), meta: ["team": "ops"])) == [])
        #expect(finder.version == 3)
    }
}

@Suite struct OverrideTests {
    let load = LoadResult(files: [RegistryFile.parse("""
        namespace: app
        entries:
          - {name: hello, kind: registry.entry, port: 8080, limits: {memory: 64}, exec: [a, b]}
        """, path: "app.yaml"), RegistryFile.parse("""
        namespace: app.debug
        entries:
          - {name: trace, kind: registry.entry}
          - {name: dump, kind: registry.entry}
        """, path: "debug.yaml")])

    func adjusted(_ overrides: [String], disabled: [String] = []) throws -> LoadResult {
        FolderAdjustments(overrides: try overrides.map(EntryOverride.init(parsing:)), disabled: disabled.map(Glob.init))
            .apply(to: load)
    }

    @Test func overrideSetsAFieldWithAYamlScalarValue() throws {
        let result = try adjusted([
            "app:hello:port=8081", "app:hello:limits.memory=128", "app:hello:limits.cpu=2s", "app:hello:exec.1=c",
            "app:hello:debug=true", "app:hello:new.deep.field=x=y",
        ])
        #expect(result.errors.isEmpty)
        let data = result.entries.first { $0.id.description == "app:hello" }!.data
        #expect(data["port"] == .int(8081))
        #expect(data["limits"] == ["memory": 128, "cpu": "2s"])
        #expect(data["exec"] == ["a", "c"])
        #expect(data["debug"] == .bool(true))
        #expect(data["new"]?["deep"]?["field"] == .string("x=y"))
    }

    @Test func malformedOverridesAreRefusedWithAReason() {
        for (text, reason) in [
            ("app:hello", "expected namespace:name:path=value"),
            ("app:hello=1", "'app:hello' is not namespace:name:path"),
            ("app:he llo:x=1", "is not namespace:name:path"),
            ("app:hello:a..b=1", "has an empty part"),
        ] {
            #expect {
                try EntryOverride(parsing: text)
            } throws: { error in
                (error as? RegistryError)?.code == .invalidOverride && "\(error)".contains(reason)
            }
        }
    }

    @Test func overrideOfAMissingEntryOrIntoAScalarIsAnApplyError() throws {
        let result = try adjusted(["app:nope:x=1", "app:hello:port.x=1", "app:hello:exec.5=z"])
        #expect(result.errors.map(\.code) == [.invalidOverride, .invalidOverride, .invalidOverride])
        #expect(result.errors.map(\.description) == [
            "app.yaml:3:5: app:hello: override 'app:hello:exec.5=z': '5' is not an index of the list (0..<2)",
            "app.yaml:3:5: app:hello: override 'app:hello:port.x=1': 'x' is inside a value that is neither a mapping nor a list",
            "override 'app:nope:x=1': there is no entry app:nope",
        ])
    }

    @Test func disableLeavesOutMatchingEntries() throws {
        let result = try adjusted([], disabled: ["app.debug:*"])
        #expect(result.entries.map(\.id.description) == ["app:hello"])
        let one = try adjusted([], disabled: ["app.debug:trace"])
        #expect(one.entries.map(\.id.description) == ["app:hello", "app.debug:dump"])
        let overridden = try adjusted(["app.debug:trace:x=1"], disabled: ["app.debug:*"])
        #expect(overridden.errors.map(\.message) == ["override 'app.debug:trace:x=1': there is no entry app.debug:trace (or it is disabled)"])
    }
}

@Suite struct RegistryFolderTests {
    @Test func secondReadParsesOnlyChangedFilesAndSeesNewOnes() throws {
        let folder = TempFolder()
        for i in 0..<5 { folder.write("f\(i).yaml", "namespace: n\(i)\nentries:\n  - {name: e, kind: registry.entry}\n") }
        // No racy margin: every file was written before the read that parsed it.
        let registry = RegistryFolder(root: folder.path, racyMargin: .zero)
        let first = registry.read()
        #expect(first.parsedFiles == 5 && first.load.entries.count == 5 && first.load.isValid)
        let quiet = registry.read()
        #expect(quiet.parsedFiles == 0)
        #expect(quiet.load.entries.map(\.id) == first.load.entries.map(\.id))

        folder.write("f2.yaml", "namespace: n2\nentries:\n  - {name: e, kind: registry.entry, x: 1}\n")
        folder.write("sub/new.yml", "namespace: s\nentries:\n  - {name: e, kind: registry.entry}\n")
        let changed = registry.read()
        #expect(changed.parsedFiles == 2)
        #expect(changed.totalFiles == 6)
        #expect(changed.load.entries.first { $0.id.description == "n2:e" }?.data["x"] == .int(1))
        #expect(changed.folders == [folder.path, folder.path + "/sub"])
        unlink(folder.path + "/f0.yaml")
        #expect(registry.read().load.entries.contains { $0.id.description == "n0:e" } == false)
    }

    @Test func aRewriteWithinOneClockTickIsStillSeen() throws {
        let folder = TempFolder()
        let registry = RegistryFolder(root: folder.path)
        folder.write("a.yaml", "namespace: a\nentries:\n  - {name: e, kind: registry.entry, v: 1}\n")
        #expect(registry.read().load.entries.first?.data["v"] == .int(1))
        // Same size, written at once: the file times may not move, the content does.
        folder.write("a.yaml", "namespace: a\nentries:\n  - {name: e, kind: registry.entry, v: 2}\n")
        #expect(registry.read().load.entries.first?.data["v"] == .int(2))
    }
}

@Suite struct RegistryFolderIncrementalTests {
    /// Random edits of a folder: after each, the read must equal a cold load with the same
    /// adjustments (entries and errors), and every id outside `changedIDs` must be unchanged.
    @Test func incrementalReadsEqualColdLoadsAndNameEveryChangedID() throws {
        let folder = TempFolder()
        let adjustments = FolderAdjustments(
            overrides: [try EntryOverride(parsing: "ns1:e1:port=9")], disabled: [Glob("ns2:e2")])
        let registry = RegistryFolder(root: folder.path, adjustments: adjustments)
        var generator = SplitMix64(seed: 5)
        var previous: RegistryFolder.Snapshot?
        var quick = 0, clean = 0
        // The override's entry and the disabled one live in a file that rarely changes.
        let base = "namespace: ns1\nentries:\n  - {name: e1, kind: registry.entry}\n  - {name: e2, kind: registry.entry}\n"
        folder.write("base.yaml", base)
        for round in 0..<150 {
            let index = generator.next() % 6
            let file = "f\(index).yaml"
            switch generator.next() % 20 {
            case 0:
                unlink(folder.path + "/" + file)
            case 1:
                folder.write("sub/" + file, "namespace: sub\nentries:\n  - {name: e\(generator.next() % 3), kind: registry.entry}\n")
            case 2:
                folder.write(file, "namespace: ns1\nentries: [")  // broken
            case 3:
                unlink(folder.path + "/base.yaml")  // the override names no entry now
            case 4:
                folder.write("base.yaml", base.replacingOccurrences(of: "ns1", with: "ns2"))  // e2 disabled now
            case 5, 6:
                folder.write("base.yaml", base)
            default:
                // Mostly a namespace per file; sometimes a shared one, so duplicates come and go.
                let namespace = generator.next() % 6 == 0 ? "shared" : "ns_f\(index)"
                var text = "namespace: \(namespace)\nentries:\n"
                for e in 0..<Int(generator.next() % 3) {
                    text += "  - {name: e\(e), kind: registry.entry, v: \(generator.next() % 4)}\n"
                }
                if !text.hasSuffix(":\n") { folder.write(file, text) } else { folder.write(file, text + "  []\n") }
            }
            let read = registry.read()
            let cold = adjustments.apply(to: RegistryLoader.load(root: folder.path))
            #expect(read.errors == cold.errors, "round \(round)")
            if cold.errors.isEmpty {
                clean += 1
                #expect(read.load.entries == cold.entries, "round \(round)")
            }
            if let previous, let changed = read.changedIDs {
                quick += 1
                #expect(read.basedOn == previous.generation)
                for (id, entry) in read.entries where !changed.contains(id) {
                    #expect(previous.entries[id] == entry, "round \(round): \(id) changed but is not named")
                }
                for id in previous.entries.keys where read.entries[id] == nil {
                    #expect(changed.contains(id), "round \(round): \(id) removed but not named")
                }
            }
            previous = read
        }
        #expect(quick > 20 && clean > quick / 2, "the incremental path ran \(quick) times, \(clean) clean reads")
    }
}
