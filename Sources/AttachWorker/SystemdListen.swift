#if canImport(Glibc)
import Glibc
#endif
import CSystemd

/// sd_listen_fds(3): the listening socket systemd passes a socket-activated
/// worker (swiftccid-attach@.socket).
public enum SystemdListen {
    public enum Passed: Equatable, Sendable {
        /// Not socket-activated (run by hand): the worker binds its socket itself.
        case none
        case socket(Int32)
        /// Something was passed, but not the one listening stream socket at the path.
        case unusable(String)
    }

    public static func socket(at path: String) -> Passed {
        // 1: unset LISTEN_FDS and LISTEN_PID, so that nothing we start inherits them.
        let count = sd_listen_fds(1)
        guard count > 0 else { return .none }
        guard count == 1 else { return .unusable("systemd passed \(count) sockets, expected one") }
        let fd = SD_LISTEN_FDS_START
        guard sd_is_socket_unix(fd, Int32(SOCK_STREAM.rawValue), 1, path, 0) > 0 else {
            return .unusable("the socket systemd passed is not a listening stream socket at \(path)")
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return .socket(fd)
    }
}
