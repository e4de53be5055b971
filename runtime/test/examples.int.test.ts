/**
 * The examples as a newcomer runs them (issue #19): against a runtime on other ports than the
 * defaults, given the runtime's own variables, each finishes and exits at once; without a runtime
 * there, one line on stderr and exit code 1.
 */
import { describe, expect, it } from "vitest"
import { execFile } from "node:child_process"
import { createServer, type AddressInfo } from "node:net"
import { fileURLToPath } from "node:url"
import { useRuntime, type Harness } from "./support.ts"

const example = (name: string) => fileURLToPath(new URL(`../../examples/src/${name}.ts`, import.meta.url))
/** As `pnpm example:<name>` runs them: through the launcher that checks Node's version first. */
const launcher = fileURLToPath(new URL("../bin/start.mjs", import.meta.url))

/** Runs an example to its end; resolves with its exit code, output and duration. */
const run = (name: string, env: Record<string, string>, args: ReadonlyArray<string> = []) =>
  new Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string; readonly ms: number }>((resolve) => {
    const started = Date.now()
    // Only the runtime's variables: BATON_URL or BATON_HTTP from the test's environment would win.
    const { BATON_URL: _u, BATON_HTTP: _h, ...inherited } = process.env
    execFile(process.execPath, [launcher, example(name), ...args], { env: { ...inherited, ...env }, timeout: 40_000 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr, ms: Date.now() - started })
    )
  })

const variables = (h: Harness) => ({ BATON_HOST: "127.0.0.1", BATON_MQTT_PORT: String(h.runtime.mqttPort), BATON_HTTP_PORT: String(h.runtime.httpPort) })

/** A port nothing listens on: bound, then released. */
const closedPort = async () => {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((r) => server.close(() => r()))
  return port
}

describe("examples against a runtime on other ports", () => {
  const ctx = useRuntime()

  it("example:orders and example:request-reply reach it through BATON_MQTT_PORT", { timeout: 60_000 }, async () => {
    const orders = await run("place-orders", variables(ctx.h), ["2"])
    expect(orders.stderr).toBe("")
    expect(orders.code).toBe(0)
    expect(orders.stdout).toContain("events/order-shipped")
    const rr = await run("request-reply", variables(ctx.h))
    expect(rr.code).toBe(0)
    expect(rr.stdout).toMatch(/temporary .* reply \{"orderId"/)
  })

  it("without a runtime at the given ports, one line on stderr and exit code 1", { timeout: 30_000 }, async () => {
    const port = String(await closedPort())
    const orders = await run("place-orders", { ...variables(ctx.h), BATON_MQTT_PORT: port })
    expect(orders.code).toBe(1)
    expect(orders.stderr.trim().split("\n")).toEqual([expect.stringContaining(`cannot reach the runtime's broker at mqtt://127.0.0.1:${port}`)])
    // The trading example reaches the broker but this runtime runs no dashboard (BATON_APP=trading).
    const trading = await run("trading", variables(ctx.h))
    expect(trading.code).toBe(1)
    expect(trading.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^GET http:\/\/127\.0\.0\.1:\d+\/dashboard: 404 /)])
  })
})

describe("example:mediator against a mediator runtime on other ports", () => {
  const ctx = useRuntime({ topology: "mediator" })

  it("restarts the failed workflow over BATON_HTTP_PORT and exits once it completes, not after its 20 s deadline", { timeout: 60_000 }, async () => {
    const mediator = await run("mediator", variables(ctx.h))
    expect(mediator.stderr).toBe("")
    expect(mediator.code).toBe(0)
    expect(mediator.stdout).toContain("operator: restarted")
    expect(mediator.stdout).toContain("events/workflow-completed")
    expect(mediator.ms).toBeLessThan(15_000)
  })

  it("example:orders ends on each workflow's end in the mediator topology (no order-shipped is published there)", { timeout: 60_000 }, async () => {
    const orders = await run("place-orders", variables(ctx.h), ["2"])
    expect(orders.stderr).toBe("")
    expect(orders.code).toBe(0)
    expect(orders.stdout).toContain("events/workflow-completed")
    expect(orders.stdout).not.toContain("order-shipped")
  })
})
