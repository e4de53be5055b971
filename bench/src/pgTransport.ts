/**
 * `node bench/src/pgTransport.ts [roundTrips] [rounds]`: the CPU a PostgreSQL round trip costs the
 * client process and the server's backend, over TCP on 127.0.0.1 and over the server's Unix socket
 * (`BATON_AB_PGSOCKET`, `/var/run/postgresql` by default), in interleaved rounds. Each round trip
 * is one prepared `SELECT $1::int` through `pg` (one write, one read each side), one at a time: the
 * shape of the runtime's waited statements (ab.ts's `#unix` runs the whole order flow). Prints per
 * round and transport: microseconds of client CPU (this process: utime + stime) and of the backend's
 * (its pid's /proc stat) per round trip, and the wall time; at the end the median and the least of each (the least: the cost with the least interference from other load).
 */
import { createRequire } from "node:module"
import { serverUrl } from "@baton/testkit/postgres"
import { cpuMs, median, overUnixSocket } from "./lib.ts"

// The store's own `pg` (the bench package does not depend on it).
interface Client {
  connect(): Promise<void>
  query<R>(q: string | { readonly name: string; readonly text: string; readonly values: ReadonlyArray<unknown> }): Promise<{ readonly rows: Array<R> }>
  end(): Promise<void>
}
const pg = createRequire(new URL("../../packages/store/package.json", import.meta.url))("pg") as { readonly Client: new (config: { connectionString: string }) => Client }
const [tripsArg = "20000", roundsArg = "5"] = process.argv.slice(2)
const trips = Number(tripsArg)
const rounds = Number(roundsArg)
const transports = {
  tcp: serverUrl,
  unix: overUnixSocket(serverUrl)
} as const

const once = async (url: string) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  const pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid
  const statement = { name: "rt", text: "SELECT $1::int AS n", values: [0] }
  for (let i = 0; i < 500; i++) await client.query({ ...statement, values: [i] })
  const c0 = cpuMs(process.pid)
  const b0 = cpuMs(pid)
  const t0 = performance.now()
  for (let i = 0; i < trips; i++) await client.query({ ...statement, values: [i] })
  const wall = performance.now() - t0
  const result = { client: ((cpuMs(process.pid) - c0) * 1000) / trips, backend: ((cpuMs(pid) - b0) * 1000) / trips, wall: (wall * 1000) / trips }
  await client.end()
  return result
}

const results: Record<string, Array<{ client: number; backend: number; wall: number }>> = { tcp: [], unix: [] }
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? (["tcp", "unix"] as const) : (["unix", "tcp"] as const)
  for (const t of order) {
    const r = await once(transports[t])
    results[t]!.push(r)
    console.log(`round ${round + 1} ${t}: client ${r.client.toFixed(1)} us CPU, backend ${r.backend.toFixed(1)} us CPU, wall ${r.wall.toFixed(1)} us per round trip`)
  }
}
for (const t of ["tcp", "unix"] as const) {
  const m = (f: (r: { client: number; backend: number; wall: number }) => number) => median(results[t]!.map(f))
  const least = (f: (r: { client: number; backend: number; wall: number }) => number) => Math.min(...results[t]!.map(f)).toFixed(1)
  console.log(`${t}: median (least) client ${m((r) => r.client).toFixed(1)} (${least((r) => r.client)}) us, backend ${m((r) => r.backend).toFixed(1)} (${least((r) => r.backend)}) us, wall ${m((r) => r.wall).toFixed(1)} (${least((r) => r.wall)}) us per round trip`)
}
