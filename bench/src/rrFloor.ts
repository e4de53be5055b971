/**
 * `node bench/src/rrFloor.ts <round trips> <rounds> [<tree>]`: how far a durable request-reply can
 * come to the raw echo at all on this machine. In interleaved rounds, the same requester (the raw
 * echo's, `latency.ts`'s `rawPingPong`) against:
 *
 * - the raw echo (`peers/aedes.ts`, `PEER=echo`: an MQTT.js client in the broker's process
 *   answers, nothing stored), and the same asked through `@baton/request-reply`'s requester
 *   (full envelopes, correlation ids: the client Baton's arm uses);
 * - the floor of a durable answer (`PEER=durable-echo`, `FLOOR_SHAPE=one`): a bare Aedes whose
 *   `beforeAck` writes the request with its reply in one SQLite transaction (one INSERT, WAL,
 *   synchronous=NORMAL) and publishes the reply in-process after the COMMIT, then PUBACKs: no
 *   Baton code, no envelope, no schema, no handler;
 * - the same with Baton's five writes of an inline round trip (`FLOOR_SHAPE=baton`);
 * - with `<tree>`, Baton itself (the `ping` processor, correlation mode, `@baton/request-reply`'s
 *   requester, as scenario 5 and `rr.ts`).
 *
 * Prints each run's p50/p99, then the medians and each one's ratio to the raw echo's: issue #16
 * asks Baton's p50 for at most 1.5x the echo's, and the floor's ratio says how much of that a
 * durable commit before the PUBACK leaves to everything else.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { median } from "./lib.ts"
import { rawPingPong, requestReply } from "./scenarios/latency.ts"

const [countArg = "2000", roundsArg = "6", tree] = process.argv.slice(2)
const count = Number(countArg)
const floor = (shape: string) => async () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-rr-floor-"))
  try {
    return await rawPingPong(count, { PEER: "durable-echo", FLOOR_SHAPE: shape, FLOOR_DIR: dir })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
/** The raw echo asked through `@baton/request-reply`'s requester (Baton's client, as Baton's arm is asked). */
const throughRequester = async () => {
  process.env.BENCH_RR_RAW_CLIENT = "requester"
  try {
    return await rawPingPong(count)
  } finally {
    delete process.env.BENCH_RR_RAW_CLIENT
  }
}
const arms: ReadonlyArray<readonly [string, () => Promise<{ readonly p50: number; readonly p99: number }>]> = [
  ["raw echo", () => rawPingPong(count)],
  ["raw echo, asked through Baton's requester", throughRequester],
  ["durable floor, one INSERT", floor("one")],
  ["durable floor, Baton's five writes", floor("baton")],
  ...(tree === undefined ? [] : [[`Baton (${tree})`, () => requestReply("correlation", count, resolve(tree, "runtime/src/main.ts"))] as const])
]
const p50s = arms.map((): Array<number> => [])
const p99s = arms.map((): Array<number> => [])
for (let round = 0; round < Number(roundsArg); round++) {
  const order = round % 2 === 0 ? arms.map((_, i) => i) : arms.map((_, i) => i).reverse()
  for (const i of order) {
    const [name, run] = arms[i]!
    const s = await run()
    p50s[i]!.push(s.p50)
    p99s[i]!.push(s.p99)
    console.log(`round ${round} ${name}: p50 ${s.p50.toFixed(3)} ms, p99 ${s.p99.toFixed(3)} ms`)
  }
}
const raw = median(p50s[0]!)
for (const [i, [name]] of arms.entries()) {
  const pairwise = median(p50s[i]!.map((v, r) => v / p50s[0]![r]!))
  console.log(`${name}: p50 ${median(p50s[i]!).toFixed(3)} ms (${pairwise.toFixed(2)}x the raw echo's, pairwise by round), p99 ${median(p99s[i]!).toFixed(3)} ms; raw echo p50 ${raw.toFixed(3)} ms`)
}
process.exit(0)
