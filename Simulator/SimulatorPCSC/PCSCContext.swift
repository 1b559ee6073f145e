import CPCSCClient

/// A PC/SC client context of the pcscd that `PCSCLITE_CSOCK_NAME` names (the
/// system's by default): thin calls into libpcsclite, errors as `PCSCError`.
struct PCSCContext: Sendable {
    let handle: SCARDCONTEXT
    let library: PCSCLibrary

    static func establish() throws(PCSCError) -> PCSCContext {
        let library: PCSCLibrary
        switch PCSCLibrary.shared {
        case .success(let l): library = l
        case .failure(let e): throw e
        }
        var handle: SCARDCONTEXT = 0
        try PCSCError.check(library.establishContext(PCSC.scopeSystem, nil, nil, &handle), "SCardEstablishContext")
        return PCSCContext(handle: handle, library: library)
    }

    func release() { _ = library.releaseContext(handle) }

    /// Wakes a thread blocked in `waitForChange`.
    func cancel() { _ = library.cancel(handle) }

    func readers() -> [String] {
        var length: DWORD = 0
        guard library.listReaders(handle, nil, nil, &length) == PCSC.success, length > 0 else { return [] }
        var buffer = [CChar](repeating: 0, count: Int(length))
        guard library.listReaders(handle, nil, &buffer, &length) == PCSC.success else { return [] }
        return buffer.split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    }

    /// The reader's state once it differs from `known` (or after `timeoutMs`): (event state, ATR).
    func waitForChange(reader: String, known: DWORD, timeoutMs: DWORD) throws(PCSCError) -> (state: DWORD, atr: [UInt8]) {
        let (rv, state) = reader.withCString { name in
            var state = SCARD_READERSTATE()
            state.szReader = name
            state.dwCurrentState = known
            let rv = library.getStatusChange(handle, timeoutMs, &state, 1)
            return (rv, state)
        }
        if rv == PCSC.timeout { return (known, []) }
        try PCSCError.check(rv, "SCardGetStatusChange")
        let atr = withUnsafeBytes(of: state.rgbAtr) { Array($0.prefix(Int(min(state.cbAtr, 33)))) }
        return (state.dwEventState & ~PCSC.stateChanged, atr)
    }
}

struct PCSCError: Error, CustomStringConvertible {
    let call: String
    let code: LONG
    var description: String {
        let text = PCSCLibrary.loaded.flatMap { $0.stringifyError(code) }.map { String(cString: $0) } ?? "error"
        return "\(call): \(text) (0x\(String(UInt32(truncatingIfNeeded: code), radix: 16)))"
    }

    static func check(_ rv: LONG, _ call: String) throws(PCSCError) {
        guard rv == PCSC.success else { throw PCSCError(call: call, code: rv) }
    }
}

/// pcsc-lite's constants whose C macros carry casts Swift does not import.
enum PCSC {
    static let success: LONG = 0
    static let timeout = LONG(0x8010_000A)
    static let cancelled = LONG(0x8010_0002)
    static let noService = LONG(0x8010_001D)
    static let scopeSystem: DWORD = 0x0002
    static let shareShared: DWORD = 2
    static let protocolT0: DWORD = 1, protocolT1: DWORD = 2
    static let leaveCard: DWORD = 0, resetCard: DWORD = 1, unpowerCard: DWORD = 2
    static let stateChanged: DWORD = 0x0002, stateUnknown: DWORD = 0x0004, stateEmpty: DWORD = 0x0010
    static let statePresent: DWORD = 0x0020
    static let infinite: DWORD = 0xFFFF_FFFF
}
