import Core

extension SourceLocation {
    /// `{"file", "line", "column"}`.
    public var json: JSON {
        ["file": .string(file), "line": .int(Int64(line)), "column": .int(Int64(column))]
    }
}

extension Entry {
    /// The entry as events and the admin API show it: `{id, kind, meta, data, location}`.
    public var json: JSON {
        [
            "id": .string(id.description), "kind": .string(kind), "meta": .object(meta), "data": data,
            "location": location.json,
        ]
    }
}

extension RegistryError {
    /// `{code, message, location?, entry?, text}`; `text` is the line people read.
    public var json: JSON {
        var object: [String: JSON] = ["code": .string(code.rawValue), "message": .string(message), "text": .string(description)]
        if let location { object["location"] = location.json }
        if let entry { object["entry"] = .string(entry.description) }
        return .object(object)
    }
}

extension Version {
    /// `{version, time, source, message?, user?, created, updated, deleted}`.
    public var json: JSON {
        var object: [String: JSON] = [
            "version": .int(Int64(number)), "time": .double(time), "source": .string(source.rawValue),
            "created": .int(Int64(created)), "updated": .int(Int64(updated)), "deleted": .int(Int64(deleted)),
        ]
        if let message { object["message"] = .string(message) }
        if let user { object["user"] = .string(user) }
        return .object(object)
    }
}

extension HistoryStore {
    /// The history as the admin API answers it (and `roost registry history` offline):
    /// `{"versions": [version]}`, or with `id`, `{"entry", "versions": [version + "operation"]}`.
    public func versionsJSON(of id: EntryID?) throws(RegistryError) -> JSON {
        guard let id else { return ["versions": .array(try versions().map(\.json))] }
        return [
            "entry": .string(id.description),
            "versions": .array(try history(of: id).map { row in
                guard case .object(var object) = row.version.json else { return row.version.json }
                object["operation"] = .string(row.operation.rawValue)
                return .object(object)
            }),
        ]
    }
}
