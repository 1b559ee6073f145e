#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ThreadSupport

/// A thin typed wrapper over a stream socket descriptor: calls C, turns
/// errno into `SocketError`, no policy. The relay's are UNIX sockets (made
/// here); the simulator adds TCP for its card sockets.
public struct StreamSocket: Sendable {
    public let fd: Int32

    public init(fd: Int32) { self.fd = fd }

    public static func connect(path: String) throws(SocketError) -> StreamSocket {
        let s = try make()
        var (addr, len) = try address(path)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s.fd, $0, len) }
        }
        if rc != 0 {
            let e = errno
            s.close()
            throw SocketError(operation: "connect \(path)", errno: e)
        }
        return s
    }

    /// Binds and listens at `path` (replacing a stale socket file), then sets its mode.
    public static func listen(path: String, mode: mode_t) throws(SocketError) -> StreamSocket {
        let s = try make()
        var (addr, len) = try address(path)
        unlink(path)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s.fd, $0, len) }
        }
        if rc != 0 {
            let e = errno
            s.close()
            throw SocketError(operation: "bind \(path)", errno: e)
        }
        chmod(path, mode)
        if Glibc.listen(s.fd, 16) != 0 {
            let e = errno
            s.close()
            throw SocketError(operation: "listen \(path)", errno: e)
        }
        return s
    }

    private static func make() throws(SocketError) -> StreamSocket {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(operation: "socket", errno: errno) }
        return StreamSocket(fd: fd)
    }

    private static func address(_ path: String) throws(SocketError) -> (sockaddr_un, socklen_t) {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw SocketError(operation: "socket path of \(bytes.count) bytes (limit \(capacity - 1))", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return (addr, socklen_t(MemoryLayout<sockaddr_un>.size))
    }

    public func accept() throws(SocketError) -> StreamSocket {
        while true {
            let fd = Glibc.accept(self.fd, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                return StreamSocket(fd: fd)
            }
            if errno == EINTR { continue }
            throw SocketError(operation: "accept", errno: errno)
        }
    }

    /// Reads what is available (blocking); 0 means the peer closed.
    public func read(into buffer: inout [UInt8]) throws(SocketError) -> Int {
        try read(into: &buffer, wait: true) ?? 0
    }

    /// Reads what is available without blocking: nil if nothing is, 0 if the peer closed.
    public func readAvailable(into buffer: inout [UInt8]) throws(SocketError) -> Int? {
        try read(into: &buffer, wait: false)
    }

    /// Reads into `buffer` from `offset` on: what is available, blocking for
    /// it if `wait` (else nil when nothing is); 0 means the peer closed.
    public func read(into buffer: inout [UInt8], at offset: Int = 0, wait: Bool) throws(SocketError) -> Int? {
        let outcome = buffer.withUnsafeMutableBytes { raw in
            Result { () throws(SocketError) -> Int? in
                try read(into: UnsafeMutableRawBufferPointer(rebasing: raw[min(offset, raw.count)...]), wait: wait)
            }
        }
        return try outcome.get()
    }

    private func read(into buffer: UnsafeMutableRawBufferPointer, wait: Bool) throws(SocketError) -> Int? {
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, wait ? 0 : Int32(MSG_DONTWAIT))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if !wait, errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            throw SocketError(operation: "read", errno: errno)
        }
    }

    public func writeAll(_ bytes: [UInt8]) throws(SocketError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress.map { $0 + offset }, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw SocketError(operation: "write", errno: errno)
            }
            offset += n
        }
    }

    /// `first` then `second`, in one sendmsg where the socket takes them at once.
    public func writeAll(_ first: [UInt8], _ second: [UInt8]) throws(SocketError) {
        let total = first.count + second.count
        var offset = 0
        while offset < total {
            let n: Int = first.withUnsafeBytes { a in
                second.withUnsafeBytes { b in
                    // What is left of each part, from `offset` on.
                    let skipA = min(offset, a.count), skipB = offset - skipA
                    var parts = [iovec(iov_base: UnsafeMutableRawPointer(mutating: a.baseAddress.map { $0 + skipA }),
                                       iov_len: a.count - skipA),
                                 iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress.map { $0 + skipB }),
                                       iov_len: b.count - skipB)]
                    return parts.withUnsafeMutableBufferPointer { iov in
                        var message = msghdr()
                        message.msg_iov = iov.baseAddress
                        message.msg_iovlen = iov.count
                        return sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
                    }
                }
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw SocketError(operation: "write", errno: errno)
            }
            offset += n
        }
    }

    /// Waits until the socket is readable or the deadline passes; false on timeout.
    public func waitReadable(until deadline: Deadline) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let ms = deadline == .distantFuture ? -1 : Int32(clamping: (deadline.remaining.milliseconds) + 1)
            let rc = poll(&p, 1, ms)
            if rc > 0 { return true }
            if rc == 0 { return deadline.hasPassed ? false : true }
            if errno != EINTR { return true }
        }
    }

    public struct PeerCredentials: Sendable { public var pid: pid_t; public var uid: uid_t; public var gid: gid_t }

    public func peerCredentials() -> PeerCredentials? {
        // struct ucred (Linux ABI: pid, uid, gid); Glibc hides it behind _GNU_SOURCE.
        var cred = (pid: pid_t(0), uid: uid_t(0), gid: gid_t(0))
        var len = socklen_t(MemoryLayout<(pid_t, uid_t, gid_t)>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 else { return nil }
        return PeerCredentials(pid: cred.pid, uid: cred.uid, gid: cred.gid)
    }

    /// Wakes a thread blocked in read on this socket (it then reads 0).
    public func shutdown() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
    public func close() { _ = Glibc.close(fd) }
}

public struct SocketError: Error, Equatable, Sendable, CustomStringConvertible {
    public var operation: String
    public var errno: Int32
    public init(operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }
    public var description: String { "\(operation): \(String(cString: strerror(errno)))" }
}
