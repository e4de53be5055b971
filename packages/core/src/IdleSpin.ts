/**
 * Keeps an event loop polling for a short window after it last worked, instead of blocking at once.
 *
 * An event loop with nothing to do blocks in `epoll_wait`; on a virtual machine the CPU then halts,
 * and the next message wakes a CPU whose caches went cold: measured here (`bench/src/rrFloor.ts`,
 * a 2-vCPU VM), the same SQLite transaction took 25 us back to back and 53 us after 200 us idle,
 * and a request-reply round trip spends more time waking than working. Low-latency runtimes poll
 * a little before they park for that reason (Go's spinning threads, Aeron's idle strategies, the
 * KVM guests' halt polling). Here `touch()` (the runtime calls it when it publishes a reply to a
 * request: its requester is likely to ask again at once) starts a chain of `setImmediate` turns,
 * each of which lets libuv poll its sockets without blocking; `seen()` (a client's socket has
 * data) only extends a chain that runs. The chain lasts while the loop keeps working and ends `windowUs` after the last turn
 * in which something else ran: a gap between two turns longer than `busyGapUs` in which this
 * thread was on a CPU for at least half of it (`process.threadCpuUsage`). A gap in which it was
 * not (the thread preempted by another process, on a busy machine) does not extend the window: a
 * contended machine does not keep it polling. It never starts on its own: an idle runtime stays
 * idle, and a runtime that is never idle (a burst) has no quiet gap to poll in. What it costs is at
 * most `windowUs` of one core per quiet gap, counted by `spentMs()`.
 *
 * And it learns whether polling pays: a window that ends with nothing new is a miss; data that
 * arrives while the loop polls idle is a hit (a wake-up saved). After `missesToRest` misses in a
 * row (requesters that think longer than the window between their requests) it starts only every
 * `probeEvery`-th time, until a hit: a requester asking back to back keeps it polling, one that
 * pauses costs a window in `probeEvery` replies. Traffic without replies never starts it.
 */
export interface Options {
  /** How long the loop keeps polling after its last work, in microseconds; 0: never. */
  readonly windowUs: number
  /** A gap between two turns longer than this means something else ran in between (default 20 us). */
  readonly busyGapUs?: number
  /** Milliseconds of a monotonic clock (`performance.now`). */
  readonly now?: () => number
  /** Microseconds of CPU this thread has used (`process.threadCpuUsage`, user and system). */
  readonly cpu?: () => number
  /** Runs a callback in the loop's next turn (`setImmediate`). */
  readonly schedule?: (turn: () => void) => void
  /** Windows in a row that ended with nothing new after which it mostly rests (default 4). */
  readonly missesToRest?: number
  /** While resting, it starts on one touch in this many (default 16). */
  readonly probeEvery?: number
}

export interface IdleSpin {
  /** Work that more is likely to follow (a reply sent): polls on until `windowUs` after the loop's last work. */
  readonly touch: () => void
  /** A client's data arrived: extends a chain that runs (a hit when the loop was polling idle); never starts one. */
  readonly seen: () => void
  /** Milliseconds spent polling with nothing else to do, since it was made. */
  readonly spentMs: () => number
  /** Whether a chain of turns is running now. */
  readonly spinning: () => boolean
  /** Chains started, and data caught while polling idle (wake-ups saved). */
  readonly stats: () => { readonly chains: number; readonly hits: number }
  /** Ends the chain at its next turn and ignores later touches (at shutdown). */
  readonly stop: () => void
}

export const make = (options: Options): IdleSpin => {
  const windowMs = options.windowUs / 1000
  const busyGapMs = (options.busyGapUs ?? 20) / 1000
  const now = options.now ?? (() => performance.now())
  // Without `process.threadCpuUsage` (Node before 23.9), every long gap counts as this thread's work.
  const cpu =
    options.cpu ??
    (typeof process !== "undefined" && typeof process.threadCpuUsage === "function"
      ? () => {
          const used = process.threadCpuUsage()
          return used.user + used.system
        }
      : () => now() * 1000)
  const schedule = options.schedule ?? ((turn: () => void) => void setImmediate(turn))
  const missesToRest = options.missesToRest ?? 4
  const probeEvery = options.probeEvery ?? 16
  let until = 0
  let last = 0
  let lastCpu = 0
  let running = false
  let stopped = windowMs <= 0
  let spent = 0
  /** The last turn found nothing else had run: the loop is polling idle. */
  let idle = false
  let misses = 0
  let skipped = 0
  let chains = 0
  let hits = 0
  const turn = () => {
    const at = now()
    const used = cpu()
    const gap = at - last
    const ran = (used - lastCpu) / 1000
    last = at
    lastCpu = used
    // Something else ran between the two turns (this thread on a CPU for most of the gap, not
    // preempted): the window starts again from here.
    if (gap > busyGapMs) {
      if (ran >= gap / 2) until = at + windowMs
      idle = false
    } else {
      spent += gap
      idle = true
    }
    if (!stopped && at < until) schedule(turn)
    else {
      running = false
      // The window passed with nothing new: polling did not pay this time.
      if (!stopped) misses++
    }
  }
  return {
    seen: () => {
      if (!running) return
      until = now() + windowMs
      // Data while the loop polled idle: a wake-up saved.
      if (idle) {
        hits++
        misses = 0
        idle = false
      }
    },
    touch: () => {
      if (stopped) return
      const at = now()
      if (running) {
        until = at + windowMs
        return
      }
      // Resting after misses in a row: one start in `probeEvery`, to notice when polling pays again.
      if (misses >= missesToRest && ++skipped % probeEvery !== 0) return
      until = at + windowMs
      running = true
      idle = false
      chains++
      last = at
      lastCpu = cpu()
      schedule(turn)
    },
    spentMs: () => spent,
    spinning: () => running,
    stats: () => ({ chains, hits }),
    stop: () => {
      stopped = true
    }
  }
}

/** A spin that never runs (`windowUs` 0), for callers without one. */
export const off: IdleSpin = make({ windowUs: 0 })
