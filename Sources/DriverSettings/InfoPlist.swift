/// The string values of a bundle's Info.plist, read the way pcsc-lite reads
/// one: the top-level dictionary's `<key>` / `<string>` pairs. Arrays (the
/// reader list) and anything else are skipped. The file is root's, but a
/// malformed one must still not stop the driver: what cannot be read is left
/// out, and the caller uses defaults.
public enum InfoPlist {
    public static func strings(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        var depth = 0            // nesting of <dict> and <array>; the top-level dict is depth 1
        var pendingKey: String? = nil
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "<") {
            if rest[open...].hasPrefix("<!--") {
                // A comment may hold '>' itself: skip to its real end.
                guard let end = range(of: "-->", in: rest[open...]) else { break }
                rest = rest[end.upperBound...]
                continue
            }
            guard let close = rest[open...].firstIndex(of: ">") else { break }
            let tag = rest[rest.index(after: open)..<close]
            rest = rest[rest.index(after: close)...]
            if tag.hasPrefix("?") || tag.hasPrefix("!") || tag.hasSuffix("/") { continue }
            switch tag {
            case "dict", "array": depth += 1; pendingKey = nil
            case "/dict", "/array": depth -= 1; pendingKey = nil
            case "key", "string":
                guard let end = range(of: "</\(tag)>", in: rest) else { return result }
                let value = unescape(rest[..<end.lowerBound])
                rest = rest[end.upperBound...]
                guard depth == 1 else { pendingKey = nil; continue }
                if tag == "key" {
                    pendingKey = value
                } else if let key = pendingKey {
                    result[key] = value
                    pendingKey = nil
                }
            default:
                pendingKey = nil
            }
        }
        return result
    }

    private static func range(of needle: String, in haystack: Substring) -> Range<Substring.Index>? {
        var start = haystack.startIndex
        while start < haystack.endIndex {
            if haystack[start...].hasPrefix(needle) {
                return start..<haystack.index(start, offsetBy: needle.count)
            }
            start = haystack.index(after: start)
        }
        return nil
    }

    private static func unescape(_ s: Substring) -> String {
        guard s.contains("&") else { return String(s) }
        var out = ""
        var rest = s
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semi = rest[amp...].firstIndex(of: ";") else { out += rest[amp...]; return out }
            switch rest[rest.index(after: amp)..<semi] {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default: out += rest[amp...semi]
            }
            rest = rest[rest.index(after: semi)...]
        }
        return out + rest
    }
}
