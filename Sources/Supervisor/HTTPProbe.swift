import Core

/// The `readiness: {http: URL}` probe: an HTTP/1.0 GET of a plain `http://host[:port]/path` URL
/// that answers with a 2xx status line. Deliberately small (the HTTP module builds on this one,
/// not the other way round).
enum HTTPProbe {
    static func get(_ url: String, loop: EventLoop) async -> Bool {
        guard let target = parse(url) else { return false }
        guard let channel = try? await StreamChannel.connect(on: loop, host: target.host, port: target.port) else { return false }
        defer { Task { await channel.close() } }
        let request = "GET \(target.path) HTTP/1.0\r\nHost: \(target.host)\r\nUser-Agent: roost-probe\r\n\r\n"
        guard (try? await channel.write(Array(request.utf8))) != nil else { return false }
        var head: [UInt8] = []
        while head.count < 64, !head.contains(10), let chunk = try? await channel.read() { head += chunk }
        let line = String(decoding: head.prefix { $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else { return false }
        return (200..<300).contains(status)
    }

    static func parse(_ url: String) -> (host: String, port: Int, path: String)? {
        guard url.hasPrefix("http://") else { return nil }
        let rest = url.dropFirst(7)
        let authority = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(authority.count)
        var host = String(authority)
        var port = 80
        if let colon = authority.lastIndex(of: ":") {
            guard let number = Int(authority[authority.index(after: colon)...]) else { return nil }
            host = String(authority[..<colon])
            port = number
        }
        return host.isEmpty ? nil : (host, port, path.isEmpty ? "/" : String(path))
    }
}
