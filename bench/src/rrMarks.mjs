/**
 * Preloaded into a runtime (`node --import bench/src/rrMarks.mjs`) by `rrProfile.ts timeline`:
 * marks what the runtime's event loop does in a request-reply round trip, in the clock and the
 * format of `BATON_TIMELINE` (a code, the monotonic clock in µs, a number), written to
 * `$BATON_TIMELINE.io` on SIGUSR2 beside the runtime's own marks: each socket read and write
 * ("R"/"W" and the MQTT packet type of its first byte, or "pipe" for stdout/stderr; the number is
 * its bytes), when a socket's buffered writes go to the kernel ("X writev" or "X write", the
 * number of chunks or bytes: a corked socket's writes leave together once the tick queue runs,
 * which is after every microtask queued before it, so this is when the reply really leaves), each
 * setImmediate scheduled and run ("setImmediate", "immediate"), and each SQLite statement of the
 * main thread ("Q:" and its text's start; the number is its µs).
 */
import fs from "node:fs"
import net from "node:net"
import { StatementSync } from "node:sqlite"

const file = process.env.BATON_TIMELINE
if (file !== undefined && file !== "") {
  const marks = []
  const now = () => Number(process.hrtime.bigint() / 1000n)
  process.on("SIGUSR2", () => fs.writeFileSync(`${file}.io`, JSON.stringify(marks)))
  const types = ["part", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "part"]
  /** The packet a chunk starts (a packet's first write: its fixed header's first byte); "part" for the rest of it. */
  const what = (socket, chunk) =>
    socket.remotePort === undefined ? "pipe" : typeof chunk === "string" || chunk?.length !== 1 ? "part" : types[chunk[0] >> 4]
  const write = net.Socket.prototype.write
  net.Socket.prototype.write = function (chunk, ...rest) {
    marks.push(`W ${what(this, chunk)}`, now(), chunk?.length ?? 0)
    return write.call(this, chunk, ...rest)
  }
  const writev = net.Socket.prototype._writev
  net.Socket.prototype._writev = function (chunks, cb) {
    if (this.remotePort !== undefined) marks.push("X writev", now(), chunks.length)
    return writev.call(this, chunks, cb)
  }
  const writeOne = net.Socket.prototype._write
  net.Socket.prototype._write = function (chunk, encoding, cb) {
    if (this.remotePort !== undefined) marks.push("X write", now(), chunk?.length ?? 0)
    return writeOne.call(this, chunk, encoding, cb)
  }
  const emit = net.Socket.prototype.emit
  net.Socket.prototype.emit = function (event, ...args) {
    if (event === "data") marks.push(`R ${this.remotePort === undefined ? "pipe" : types[args[0]?.[0] >> 4]}`, now(), args[0]?.length ?? 0)
    return emit.call(this, event, ...args)
  }
  const immediate = globalThis.setImmediate
  globalThis.setImmediate = function (f, ...args) {
    marks.push("setImmediate", now(), 0)
    return immediate((...a) => {
      marks.push("immediate", now(), 0)
      return f(...a)
    }, ...args)
  }
  for (const method of ["all", "get", "run"]) {
    const original = StatementSync.prototype[method]
    StatementSync.prototype[method] = function (...args) {
      const t = process.hrtime.bigint()
      try {
        return original.apply(this, args)
      } finally {
        marks.push(`Q:${this.sourceSQL.replace(/\s+/g, " ").trim().slice(0, 48)}`, now(), Number((process.hrtime.bigint() - t) / 1000n))
      }
    }
  }
}
