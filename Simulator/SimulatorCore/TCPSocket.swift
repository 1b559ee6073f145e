#if canImport(Glibc)
import Glibc
#endif
import Relay
import ThreadSupport

/// TCP for the simulator's card sockets (vpcd protocol): the same stream
/// socket wrapper as the relay's, made over IPv4. Only the simulator needs
/// TCP, so it lives here and not in the driver's bundle.
extension StreamSocket {
    /// Listens on `host`:`port` (an IPv4 address; vpcd's default is the loopback).
    public static func listenTCP(host: String = "127.0.0.1", port: UInt16) throws(SocketError) -> StreamSocket {
        let s = try makeTCP()
        var yes: Int32 = 1
        setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = try ipv4(host, port)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 || Glibc.listen(s.fd, 4) != 0 {
            let e = errno
            s.close()
            throw SocketError(operation: "listen on \(host):\(port)", errno: e)
        }
        return s
    }

    /// Connects to `host` (a name or an IPv4 address) on `port`.
    public static func connectTCP(host: String, port: UInt16) throws(SocketError) -> StreamSocket {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>? = nil
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else {
            throw SocketError(operation: "resolve \(host)", errno: EHOSTUNREACH)
        }
        defer { freeaddrinfo(list) }
        let s = try makeTCP()
        if Glibc.connect(s.fd, first.pointee.ai_addr, first.pointee.ai_addrlen) != 0 {
            let e = errno
            s.close()
            throw SocketError(operation: "connect \(host):\(port)", errno: e)
        }
        s.setNoDelay()
        return s
    }

    /// The port a listening socket is bound to (the kernel's choice for port 0).
    public var localPort: UInt16? {
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return rc == 0 ? UInt16(bigEndian: addr.sin_port) : nil
    }

    /// Small request/response frames: no Nagle delay.
    public func setNoDelay() {
        var yes: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Reads exactly `count` bytes by `deadline`, never more; nil if the
    /// peer closed, the socket failed or the deadline passed.
    public func readExactly(_ count: Int, until deadline: Deadline) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            guard waitReadable(until: deadline) else { return nil }
            var buffer = [UInt8](repeating: 0, count: count - out.count)
            let got: Int?
            do throws(SocketError) { got = try readAvailable(into: &buffer) } catch { return nil }
            guard let n = got else {
                if deadline.hasPassed { return nil }
                continue
            }
            if n == 0 { return nil }
            out += buffer[0..<n]
        }
        return out
    }

    /// Waits until the peer hangs up (or the socket fails or is shut down),
    /// ignoring data it sends; false if the deadline passed first.
    public func waitHangUp(until deadline: Deadline) -> Bool {
        // POLLRDHUP (Linux): the peer closed its side; Glibc hides the name behind _GNU_SOURCE.
        let rdhup: Int16 = 0x2000
        var p = pollfd(fd: fd, events: rdhup, revents: 0)
        let ms = Int32(clamping: deadline.remaining.milliseconds + 1)
        let rc = poll(&p, 1, ms)
        if rc > 0 { return p.revents & (rdhup | Int16(POLLHUP) | Int16(POLLERR) | Int16(POLLNVAL)) != 0 }
        return rc < 0 && errno != EINTR
    }

    private static func makeTCP() throws(SocketError) -> StreamSocket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(operation: "socket", errno: errno) }
        return StreamSocket(fd: fd)
    }

    private static func ipv4(_ host: String, _ port: UInt16) throws(SocketError) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            throw SocketError(operation: "listen address \(host) (an IPv4 address)", errno: EINVAL)
        }
        return addr
    }
}
