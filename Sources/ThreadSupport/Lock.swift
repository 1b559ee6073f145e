#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// A pthread mutex with a condition variable on CLOCK_MONOTONIC, so waits
/// can end at a `Deadline`. Used where several pcscd threads meet one reader.
/// Unchecked: it is the primitive (pthread mutex and condition); Mutex has no condition variable.
public final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }

    /// Typed throws: a section that throws `DriverError` throws `DriverError`.
    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    /// Wakes every waiter; they re-check their condition.
    public func broadcast() { pthread_cond_broadcast(cond) }

    /// Waits (lock held) until woken or the deadline passes. Returns false on timeout.
    @discardableResult
    public func wait(until deadline: Deadline) -> Bool {
        if deadline == .distantFuture {
            pthread_cond_wait(cond, mutex)
            return true
        }
        var ts = timespec()
        ts.tv_sec = Int(clamping: deadline.nanoseconds / 1_000_000_000)
        ts.tv_nsec = Int(deadline.nanoseconds % 1_000_000_000)
        return pthread_cond_timedwait(cond, mutex, &ts) == 0
    }
}

/// A plain mutex for short critical sections.
/// Unchecked: a pthread mutex, for the C-edge types that keep raw handles beside their state.
public final class Lock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    public init() { pthread_mutex_init(mutex, nil) }
    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
    /// Typed throws: a section that throws `DriverError` throws `DriverError`.
    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Runs `body` only if the lock is free right now.
    public func withLockIfAvailable<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// Starts a detached pthread running `body`. Swift's structured concurrency
/// is not used inside pcscd: its threads are pcscd's, not a cooperative pool.
public func startThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        guard let raw else { return nil }
        let box = Unmanaged<AnyObject>.fromOpaque(raw).takeRetainedValue() as? Box
        box?.body()
        return nil
    }, box)
    if rc != 0 {
        Unmanaged<AnyObject>.fromOpaque(box).release()
        return false
    }
    pthread_detach(thread)
    return true
}

/// A binary event a thread sleeps on until another signals it or a deadline
/// passes. State kept in a `Mutex` elsewhere stays checked by the compiler; this
/// only carries the "look again" between threads, so a signal sent before
/// the wait starts is not lost.
public final class Wakeup: Sendable {
    private let condition = ConditionLock()
    // Guarded by `condition`'s mutex, which the wait releases atomically: the
    // one piece of state a Swift Mutex cannot hold (it has no condition variable).
    nonisolated(unsafe) private var signalled = false

    public init() {}

    public func signal() {
        condition.withLock {
            signalled = true
            condition.broadcast()
        }
    }

    /// Returns true if signalled, false once the deadline passed.
    @discardableResult
    public func wait(until deadline: Deadline) -> Bool {
        condition.withLock {
            while !signalled {
                if !condition.wait(until: deadline), deadline.hasPassed { return false }
            }
            signalled = false
            return true
        }
    }
}

/// "Something changed, look again", for any number of waiters: a generation
/// counter. A waiter reads `generation`, checks its condition (state kept in a
/// `Mutex`), and if it must wait, waits for the generation to move on — a
/// broadcast between the check and the wait is not lost.
public final class Signal: Sendable {
    private let counter = Atomic<UInt64>(0)
    private let condition = ConditionLock()

    public init() {}

    public var generation: UInt64 { counter.load(ordering: .acquiring) }

    public func broadcast() {
        counter.add(1, ordering: .releasing)
        condition.withLock { condition.broadcast() }
    }

    /// Returns once the generation differs from `seen` (true) or the deadline passed (false).
    @discardableResult
    public func wait(after seen: UInt64, until deadline: Deadline) -> Bool {
        condition.withLock {
            while counter.load(ordering: .acquiring) == seen {
                if !condition.wait(until: deadline), deadline.hasPassed { return false }
            }
            return true
        }
    }
}
