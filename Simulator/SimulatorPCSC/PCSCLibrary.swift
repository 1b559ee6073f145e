#if canImport(Glibc)
import Glibc
#endif
import CPCSCClient

/// libpcsclite, opened the first time a `pcsc:` card is asked for, so that
/// ccid-sim needs the PC/SC client library only for those cards (and its
/// package, and the containers and guests it runs in, do not). The types come
/// from pcsc-lite's headers; the calls through these pointers.
struct PCSCLibrary: @unchecked Sendable {
    // @unchecked: C function pointers from dlsym, set once and never changed.
    let establishContext: @convention(c) (DWORD, UnsafeRawPointer?, UnsafeRawPointer?, UnsafeMutablePointer<SCARDCONTEXT>?) -> LONG
    let releaseContext: @convention(c) (SCARDCONTEXT) -> LONG
    let cancel: @convention(c) (SCARDCONTEXT) -> LONG
    let listReaders: @convention(c) (SCARDCONTEXT, UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<DWORD>?) -> LONG
    let getStatusChange: @convention(c) (SCARDCONTEXT, DWORD, UnsafeMutablePointer<SCARD_READERSTATE>?, DWORD) -> LONG
    let connect: @convention(c) (SCARDCONTEXT, UnsafePointer<CChar>?, DWORD, DWORD, UnsafeMutablePointer<SCARDHANDLE>?,
                                 UnsafeMutablePointer<DWORD>?) -> LONG
    let reconnect: @convention(c) (SCARDHANDLE, DWORD, DWORD, DWORD, UnsafeMutablePointer<DWORD>?) -> LONG
    let disconnect: @convention(c) (SCARDHANDLE, DWORD) -> LONG
    let status: @convention(c) (SCARDHANDLE, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<DWORD>?, UnsafeMutablePointer<DWORD>?,
                                UnsafeMutablePointer<DWORD>?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<DWORD>?) -> LONG
    let transmit: @convention(c) (SCARDHANDLE, UnsafePointer<SCARD_IO_REQUEST>?, UnsafePointer<UInt8>?, DWORD,
                                  UnsafeMutablePointer<SCARD_IO_REQUEST>?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<DWORD>?) -> LONG
    let stringifyError: @convention(c) (LONG) -> UnsafePointer<CChar>?

    static let soname = "libpcsclite.so.1"

    /// The library, or why it cannot be had (loaded once, on first use).
    static let shared: Result<PCSCLibrary, PCSCError> = load()

    private static func load() -> Result<PCSCLibrary, PCSCError> {
        guard let handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "not found"
            return .failure(PCSCError(call: "dlopen \(soname): \(why)", code: PCSC.noService))
        }
        func symbol<T>(_ name: String, _: T.Type) -> T? {
            dlsym(handle, name).map { unsafeBitCast($0, to: T.self) }
        }
        guard let establish = symbol("SCardEstablishContext", (@convention(c) (DWORD, UnsafeRawPointer?, UnsafeRawPointer?, UnsafeMutablePointer<SCARDCONTEXT>?) -> LONG).self),
              let release = symbol("SCardReleaseContext", (@convention(c) (SCARDCONTEXT) -> LONG).self),
              let cancel = symbol("SCardCancel", (@convention(c) (SCARDCONTEXT) -> LONG).self),
              let list = symbol("SCardListReaders", (@convention(c) (SCARDCONTEXT, UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<DWORD>?) -> LONG).self),
              let change = symbol("SCardGetStatusChange", (@convention(c) (SCARDCONTEXT, DWORD, UnsafeMutablePointer<SCARD_READERSTATE>?, DWORD) -> LONG).self),
              let connect = symbol("SCardConnect", (@convention(c) (SCARDCONTEXT, UnsafePointer<CChar>?, DWORD, DWORD, UnsafeMutablePointer<SCARDHANDLE>?, UnsafeMutablePointer<DWORD>?) -> LONG).self),
              let reconnect = symbol("SCardReconnect", (@convention(c) (SCARDHANDLE, DWORD, DWORD, DWORD, UnsafeMutablePointer<DWORD>?) -> LONG).self),
              let disconnect = symbol("SCardDisconnect", (@convention(c) (SCARDHANDLE, DWORD) -> LONG).self),
              let status = symbol("SCardStatus", (@convention(c) (SCARDHANDLE, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<DWORD>?, UnsafeMutablePointer<DWORD>?, UnsafeMutablePointer<DWORD>?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<DWORD>?) -> LONG).self),
              let transmit = symbol("SCardTransmit", (@convention(c) (SCARDHANDLE, UnsafePointer<SCARD_IO_REQUEST>?, UnsafePointer<UInt8>?, DWORD, UnsafeMutablePointer<SCARD_IO_REQUEST>?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<DWORD>?) -> LONG).self),
              let stringify = symbol("pcsc_stringify_error", (@convention(c) (LONG) -> UnsafePointer<CChar>?).self) else {
            return .failure(PCSCError(call: "\(soname) lacks a PC/SC function", code: PCSC.noService))
        }
        return .success(PCSCLibrary(establishContext: establish, releaseContext: release, cancel: cancel, listReaders: list,
                                    getStatusChange: change, connect: connect, reconnect: reconnect, disconnect: disconnect,
                                    status: status, transmit: transmit, stringifyError: stringify))
    }

    /// For calls made once a context exists (so the library loaded).
    static var loaded: PCSCLibrary? { try? shared.get() }
}
