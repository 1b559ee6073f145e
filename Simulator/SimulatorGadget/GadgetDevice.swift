#if canImport(Glibc)
import Glibc
#endif
import CCID
import SimulatorCore
import ThreadSupport

/// One simulated reader served as a FunctionFS function: ep0 events and
/// class requests on one thread, bulk-out messages on another, interrupt
/// messages queued for a third (the host polls when it likes). Endpoint files
/// are non-blocking only while the function is disabled (EAGAIN then); once
/// enabled, I/O blocks until the host moves data or the UDC is unbound
/// (ESHUTDOWN), which is how `stop` ends the threads.
/// Unchecked: it owns FunctionFS endpoint file descriptors that its threads
/// read and write directly (the kernel serialises them); `state` guards the rest.
final class GadgetDevice: @unchecked Sendable {
    let bridge: USBDeviceBridge
    private let function: FunctionFS.Function
    private let ep0: Int32
    /// Endpoint file descriptors by endpoint address.
    private let files: [UInt8: Int32]
    private let state = ConditionLock()
    private var enabled = false
    private var stopping = false
    private var threads = 0
    private var interrupts: [[UInt8]] = []
    private var packetSize = 512
    /// The UDC the gadget is bound to, once it is.
    var udc: String? {
        get { state.withLock { boundUDC } }
        set { state.withLock { boundUDC = newValue } }
    }
    private var boundUDC: String?
    private let bulkInLock = Lock()
    private let log: @Sendable (String) -> Void

    /// Opens ep0 in `mountPoint`, writes the descriptors and opens the endpoint files.
    init(bridge: USBDeviceBridge, function: FunctionFS.Function, mountPoint: String,
         log: @escaping @Sendable (String) -> Void) throws(SimulatorError) {
        self.bridge = bridge
        self.function = function
        self.log = log
        let ep0 = open("\(mountPoint)/ep0", O_RDWR | O_CLOEXEC)
        guard ep0 >= 0 else { throw SysFS.error("open \(mountPoint)/ep0") }
        var files: [UInt8: Int32] = [:]
        do throws(SimulatorError) {
            for blob in [FunctionFS.descriptors(function), FunctionFS.noStrings] {
                let n = blob.withUnsafeBufferPointer { write(ep0, $0.baseAddress, $0.count) }
                guard n == blob.count else { throw SysFS.error("FunctionFS refused the descriptors") }
            }
            for (i, address) in function.endpointAddresses.enumerated() {
                let fd = open("\(mountPoint)/ep\(i + 1)", (address & 0x80 != 0 ? O_WRONLY : O_RDONLY) | O_NONBLOCK | O_CLOEXEC)
                guard fd >= 0 else { throw SysFS.error("open \(mountPoint)/ep\(i + 1)") }
                files[address] = fd
            }
        } catch {
            for fd in files.values { close(fd) }
            close(ep0)
            throw error
        }
        self.ep0 = ep0
        self.files = files
    }

    func start() {
        for body in [{ [self] in events() }, { [self] in bulkOut() }, { [self] in interruptWriter() }] as [@Sendable () -> Void] {
            state.withLock { threads += 1 }
            if !startThread({ [self] in body(); state.withLock { threads -= 1; state.broadcast() } }) {
                state.withLock { threads -= 1 }
            }
        }
        bridge.attach { [weak self] endpoint, bytes in self?.send(endpoint, bytes) }
    }

    /// After the UDC is unbound: ends the threads (a bound on the wait: a
    /// thread the kernel never wakes is left, not its files closed under it).
    func stop() {
        bridge.detach()
        let limit = Deadline.after(.seconds(3))
        let done = state.withLock { () -> Bool in
            stopping = true
            state.broadcast()
            while threads > 0 && !limit.hasPassed { _ = state.wait(until: Deadline.min(limit, .after(.milliseconds(50)))) }
            return threads == 0
        }
        guard done else { log("\(bridge.reader.name): gadget threads did not end; files left open"); return }
        for fd in files.values { close(fd) }
        close(ep0)
    }

    private var isStopping: Bool { state.withLock { stopping } }

    /// Waits until the host has configured the function; false when stopping.
    private func waitEnabled() -> Bool {
        state.withLock {
            while !enabled && !stopping { _ = state.wait(until: .after(.milliseconds(200))) }
            return !stopping
        }
    }

    // MARK: ep0

    private func events() {
        var buffer = [UInt8](repeating: 0, count: FunctionFS.eventSize * 4)
        while !isStopping {
            var p = pollfd(fd: ep0, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 200) > 0 else { continue }
            let n = buffer.withUnsafeMutableBufferPointer { read(ep0, $0.baseAddress, $0.count) }
            guard n > 0 else { if n < 0 && errno != EINTR && errno != EAGAIN { usleep(50_000) }; continue }
            for event in FunctionFS.events(buffer[0..<n]) { handle(event) }
        }
    }

    private func handle(_ event: FunctionFS.Event) {
        switch event.type {
        case .enable:
            let packet = maxPacketSize()
            state.withLock { enabled = true; packetSize = packet; state.broadcast() }
        case .disable, .unbind:
            state.withLock { enabled = false; state.broadcast() }
            bridge.reader.hostReleased()
        case .setup:
            setup(event.setup)
        case .bind, .suspend, .resume:
            break
        }
    }

    /// Bulk packets are 512 bytes at high speed, 64 at full speed (we offer no
    /// super-speed descriptors); the UDC says which speed the host chose.
    private func maxPacketSize() -> Int {
        guard let udc else { return 512 }
        return SysFS.read("/sys/class/udc/\(udc)/current_speed") == "full-speed" ? 64 : 512
    }

    /// Class requests to our interface (FunctionFS has mapped wIndex to it).
    /// A read in the wrong direction stalls, as does a write: that is how
    /// FunctionFS says "stall".
    private func setup(_ packet: [UInt8]) {
        let isIn = packet[0] & 0x80 != 0
        let length = Int(packet[6]) | Int(packet[7]) << 8
        var scratch = [UInt8](repeating: 0, count: max(1, length))
        if isIn {
            if let answer = bridge.control(setup: packet, outData: [], capacity: length) {
                let n = min(answer.count, length)
                _ = answer.withUnsafeBufferPointer { write(ep0, $0.baseAddress, n) }
            } else {
                _ = scratch.withUnsafeMutableBufferPointer { read(ep0, $0.baseAddress, 0) }
            }
            return
        }
        var data: [UInt8] = []
        if length > 0 {
            let n = scratch.withUnsafeMutableBufferPointer { read(ep0, $0.baseAddress, length) }
            data = n > 0 ? Array(scratch[0..<n]) : []
            _ = bridge.control(setup: packet, outData: data, capacity: length)
            return
        }
        if bridge.control(setup: packet, outData: [], capacity: 0) != nil {
            _ = scratch.withUnsafeMutableBufferPointer { read(ep0, $0.baseAddress, 0) }
        } else {
            _ = scratch.withUnsafeBufferPointer { write(ep0, $0.baseAddress, 0) }
        }
    }

    // MARK: bulk

    /// Reads one CCID message: the first packet, then the rest its header
    /// announces in one request sized so it cannot run into the next message.
    private func bulkOut() {
        guard let fd = files[bridge.endpoints.bulkOut] else { return }
        let maxMessage = 10 + 65_538
        var buffer = [UInt8](repeating: 0, count: maxMessage)
        while waitEnabled() {
            let packet = state.withLock { packetSize }
            guard let first = transfer(fd, &buffer, offset: 0, count: packet), first > 0 else { continue }
            var have = first
            if have >= 10 {
                let announced = Int(buffer[1]) | Int(buffer[2]) << 8 | Int(buffer[3]) << 16 | Int(buffer[4]) << 24
                let total = min(10 + announced, maxMessage)
                while have < total && have % packet == 0 {
                    let remaining = total - have
                    guard let n = transfer(fd, &buffer, offset: have, count: remaining), n > 0 else { break }
                    have += n
                }
            }
            bridge.dataOut(endpoint: bridge.endpoints.bulkOut, Array(buffer[0..<have]))
        }
    }

    /// One read; nil when the function went away (or is stopping).
    private func transfer(_ fd: Int32, _ buffer: inout [UInt8], offset: Int, count: Int) -> Int? {
        while true {
            let n = buffer.withUnsafeMutableBufferPointer { b -> Int in
                guard let base = b.baseAddress, offset < b.count else { return 0 }
                return read(fd, base + offset, min(count, b.count - offset))
            }
            if n >= 0 { return n }
            if errno == EINTR && !isStopping { continue }
            if errno == EAGAIN { state.withLock { enabled = false } }
            return nil
        }
    }

    private func send(_ endpoint: UInt8, _ bytes: [UInt8]) {
        if endpoint == bridge.endpoints.interruptIn {
            state.withLock {
                // A host that does not poll (or a flooding fault) must not grow the queue without bound.
                if interrupts.count >= 64 { interrupts.removeFirst() }
                interrupts.append(bytes)
                state.broadcast()
            }
            return
        }
        guard let fd = files[endpoint] else { return }
        let packet = state.withLock { packetSize }
        bulkInLock.withLock {
            guard writeAll(fd, bytes) else { return }
            // A reply filling its last packet ends with a zero-length one, as readers do.
            if !bytes.isEmpty && bytes.count % packet == 0 { _ = writeAll(fd, []) }
        }
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        while true {
            let n = bytes.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count) }
            if n == bytes.count { return true }
            if n < 0 && errno == EINTR && !isStopping { continue }
            return false
        }
    }

    private func interruptWriter() {
        guard let address = bridge.endpoints.interruptIn, let fd = files[address] else { return }
        while true {
            let next: [UInt8]? = state.withLock {
                while !stopping && (interrupts.isEmpty || !enabled) { _ = state.wait(until: .after(.milliseconds(200))) }
                return stopping ? nil : interrupts.removeFirst()
            }
            guard let next else { return }
            if !writeAll(fd, next), errno == EAGAIN { state.withLock { enabled = false } }
        }
    }
}
